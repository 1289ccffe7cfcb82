"""ensure_environment / list / prune: real uv builds of small pinned environments in a temporary state folder.

Packages come from uv's cache (the shared venv's versions: six 1.17.0, pygments 2.21.0,
python-dateutil 2.9.0.post0), so builds take a fraction of a second and need no download.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlops.environments import cache
from mlops.environments.cache import (
    EnvironmentBuildError,
    ensure_environment,
    environments_root,
    list_environments,
    prune_environments,
)
from mlops.settings import REPO_ROOT, Settings

SIX = ["six==1.17.0"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"MLOPS_HOME": str(tmp_path / "state")})


def count_builds(monkeypatch, delay: float = 0.0) -> list[str]:
    builds: list[str] = []
    real = cache._build

    def counted(envs, key, pinned):
        builds.append(key)
        time.sleep(delay)
        return real(envs, key, pinned)

    monkeypatch.setattr(cache, "_build", counted)
    return builds


def run_python(python: Path, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env)


def test_build_once_then_reuse(settings, monkeypatch):
    builds = count_builds(monkeypatch)
    python = ensure_environment(settings, SIX, "k1")
    root = environments_root(settings) / "k1"
    assert python == root / "bin" / "python" and python.exists()
    marker = json.loads((root / cache.MARKER).read_text())
    assert marker["key"] == "k1" and marker["pinned"] == SIX and marker["build_seconds"] > 0
    assert marker["python_version"] == "%d.%d.%d" % sys.version_info[:3]
    assert (root / "requirements.txt").read_text() == "six==1.17.0\n"
    config = (root / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config and "relocatable = true" in config

    started = time.perf_counter()
    # the same resolution written differently (order, case, spacing) is the same environment
    assert ensure_environment(settings, [" Six == 1.17.0 "], "k1") == python
    assert time.perf_counter() - started < 0.05
    assert builds == ["k1"]
    assert json.loads((root / cache.MARKER).read_text()) == marker
    assert not [p.name for p in environments_root(settings).iterdir() if p.name.startswith(".build-")]


def test_environment_sees_only_its_pinned_packages(settings):
    python = ensure_environment(settings, SIX, "k1")
    done = run_python(python, "import six, sys; print(six.__version__, six.__file__)")
    assert done.returncode == 0, done.stderr
    version, file = done.stdout.split()
    assert version == "1.17.0" and file.startswith(str(python.parent.parent))
    for shared_only in ("yaml", "pandas", "airflow"):
        done = run_python(python, f"import {shared_only}")
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


def test_console_scripts_work_after_the_rename_into_place(settings):
    """Built in .build-<key>-<pid>, renamed to <key>: relocatable scripts still find their python."""
    python = ensure_environment(settings, ["pygments==2.21.0"], "scripts")
    script = python.parent / "pygmentize"
    assert ".build-" not in script.read_text()
    done = subprocess.run([str(script), "-V"], capture_output=True, text=True)
    assert done.returncode == 0 and "2.21.0" in done.stdout, done.stderr


def test_two_threads_build_once(settings, monkeypatch):
    builds = count_builds(monkeypatch, delay=0.5)
    barrier = threading.Barrier(2)
    results: list[Path] = []

    def ask():
        barrier.wait()
        results.append(ensure_environment(settings, SIX, "shared"))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert builds == ["shared"]
    assert len(results) == 2 and results[0] == results[1]


BUILDER = """
import logging, sys, time
sys.path[:0] = [{include!r}]
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from mlops.environments import cache
from mlops.settings import Settings
real = cache._build
def slow(envs, key, pinned):
    time.sleep({delay})
    return real(envs, key, pinned)
cache._build = slow
print("python", cache.ensure_environment(Settings.from_env(), ["six==1.17.0"], "shared"), flush=True)
"""


def test_two_processes_build_once(settings):
    env = {**os.environ, "MLOPS_HOME": str(settings.home)}
    code = BUILDER.format(include=str(REPO_ROOT / "include"), delay=1.5)
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    both = "".join(outputs)
    assert both.count("building environment shared") == 1, outputs
    pythons = {line for line in both.splitlines() if line.startswith("python ")}
    assert len(pythons) == 1
    assert time.monotonic() - started < 1.5 * 2 + 20  # the second waited for the first, it did not build too


def test_failed_build_leaves_nothing_and_the_next_call_retries(settings, monkeypatch):
    real = cache._uv
    staged: list[bool] = []

    def failing(key, cwd, args):
        if args[:2] == ["pip", "install"]:
            staged.append(any(p.name.startswith(".build-k1-") for p in cwd.iterdir()))
            raise EnvironmentBuildError("simulated: the index went away mid-build")
        return real(key, cwd, args)

    monkeypatch.setattr(cache, "_uv", failing)
    with pytest.raises(EnvironmentBuildError, match="simulated"):
        ensure_environment(settings, SIX, "k1")
    envs = environments_root(settings)
    assert staged == [True]  # the venv existed, half-built, in its staging folder only
    assert sorted(p.name for p in envs.iterdir()) == [".locks"]
    assert list_environments(settings) == []

    monkeypatch.setattr(cache, "_uv", real)
    python = ensure_environment(settings, SIX, "k1")
    assert run_python(python, "import six").returncode == 0


def test_uv_failure_is_reported_with_its_output(settings):
    with pytest.raises(EnvironmentBuildError) as info:
        ensure_environment(settings, ["not-a-package @ file:///nonexistent/not_a_package-1.0-py3-none-any.whl"], "bad")
    assert "bad" in str(info.value) and "uv pip install" in str(info.value) and "nonexistent" in str(info.value)
    assert not (environments_root(settings) / "bad").exists()


def test_a_list_missing_a_dependency_fails_the_build(settings):
    """--no-deps installs exactly the list; `uv pip check` refuses one that is not a closed resolution."""
    with pytest.raises(EnvironmentBuildError, match="six"):
        ensure_environment(settings, ["python-dateutil==2.9.0.post0"], "open")
    assert not (environments_root(settings) / "open").exists()
    python = ensure_environment(settings, ["python-dateutil==2.9.0.post0", "six==1.17.0"], "closed")
    assert run_python(python, "import dateutil.parser").returncode == 0


KILLED = """
import sys, time
sys.path[:0] = [{include!r}]
from mlops.environments import cache
from mlops.settings import Settings
real = cache._uv
def stalled(key, cwd, args):
    if args[:2] == ["pip", "install"]:
        print("staged", flush=True)
        time.sleep(60)
    return real(key, cwd, args)
cache._uv = stalled
cache.ensure_environment(Settings.from_env(), ["six==1.17.0"], "k1")
"""


def test_a_build_killed_midway_is_never_used_and_is_cleaned_up(settings, monkeypatch):
    env = {**os.environ, "MLOPS_HOME": str(settings.home)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(include=str(REPO_ROOT / "include"))], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    envs = environments_root(settings)
    assert [p.name for p in envs.iterdir() if p.name.startswith(".build-k1-")]
    assert not (envs / "k1").exists()
    assert [e.state for e in list_environments(settings)] == ["stale"]

    builds = count_builds(monkeypatch)
    python = ensure_environment(settings, SIX, "k1")  # the lock died with the process: no wait
    assert builds == ["k1"] and python.exists()
    assert sorted(p.name for p in envs.iterdir()) == [".locks", "k1"]


def test_a_new_resolution_is_a_new_environment(settings, monkeypatch):
    builds = count_builds(monkeypatch)
    old = ensure_environment(settings, ["six==1.16.0"], "resolution-a")
    new = ensure_environment(settings, SIX, "resolution-b")
    assert builds == ["resolution-a", "resolution-b"] and old != new
    assert run_python(old, "import six; print(six.__version__)").stdout.strip() == "1.16.0"
    assert run_python(new, "import six; print(six.__version__)").stdout.strip() == "1.17.0"
    assert ensure_environment(settings, ["six==1.16.0"], "resolution-a") == old and len(builds) == 2


def test_same_key_for_another_list_is_refused(settings):
    ensure_environment(settings, SIX, "k1")
    with pytest.raises(ValueError, match="different pinned list"):
        ensure_environment(settings, ["six==1.16.0"], "k1")


def test_an_environment_whose_interpreter_is_gone_is_rebuilt(settings, monkeypatch):
    python = ensure_environment(settings, SIX, "k1")
    python.unlink()
    python.symlink_to("/nonexistent/python3.11")  # e.g. the base Python was upgraded away
    builds = count_builds(monkeypatch)
    assert ensure_environment(settings, SIX, "k1") == python
    assert builds == ["k1"] and run_python(python, "import six").returncode == 0


def test_key_must_be_a_plain_name(settings):
    for key in ("../escape", ".hidden", "a/b", ""):
        with pytest.raises(ValueError, match="plain name"):
            ensure_environment(settings, SIX, key)


def test_list_and_prune(settings):
    for key in ("keep-me", "unused-1", "unused-2"):
        ensure_environment(settings, SIX, key)
    envs = environments_root(settings)
    (envs / ".build-dead-999999999").mkdir()  # left by a build that died
    (envs / ".build-busy-1").mkdir()  # being built right now (its lock is held below)

    listed = {e.key: e for e in list_environments(settings)}
    assert {k: e.state for k, e in listed.items()} == {
        "keep-me": "ready", "unused-1": "ready", "unused-2": "ready", "dead": "stale", "busy": "stale",
    }
    ready = listed["keep-me"]
    assert ready.pinned == tuple(SIX) and ready.built_at and ready.python == envs / "keep-me" / "bin" / "python"
    assert ready.size_bytes > ready.own_bytes > 0  # package files are hard links into uv's cache

    with cache._key_lock(envs, "busy"):
        assert {e.key: e.state for e in list_environments(settings)}["busy"] == "building"
        assert prune_environments(settings, {"keep-me"}, dry_run=True) == ["unused-1", "unused-2"]
        assert len(list_environments(settings)) == 5
        assert prune_environments(settings, {"keep-me"}) == ["unused-1", "unused-2"]
        assert sorted(p.name for p in envs.iterdir()) == [".build-busy-1", ".locks", "keep-me"]
    assert sorted(p.name for p in (envs / ".locks").iterdir()) == ["busy.lock", "keep-me.lock"]
    assert ensure_environment(settings, SIX, "keep-me").exists()
    assert prune_environments(settings, set()) == ["keep-me"]
    assert sorted(p.name for p in envs.iterdir()) == [".locks"]


def test_a_waiter_on_a_pruned_lock_file_locks_the_new_one(settings):
    """prune deletes a removed key's lock file; whoever opened the old file must not count it as held."""
    envs = environments_root(settings)
    entered = threading.Event()
    held_by_waiter = []

    with cache._key_lock(envs, "k"):
        def waiter():
            with cache._key_lock(envs, "k"):
                held_by_waiter.append((envs / ".locks" / "k.lock").exists())
                entered.set()
                time.sleep(0.3)

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)  # the waiter has opened the old file and blocks on it
        cache._drop_lock_file(envs, "k")
    assert entered.wait(10)
    with cache._key_lock(envs, "k", blocking=False) as free:  # the waiter holds the new file's lock
        assert not free
    thread.join(10)
    assert held_by_waiter == [True]
