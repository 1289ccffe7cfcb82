"""Planning a project's environment against the shared layer, with the real uv and the real index.

The shared lock pins six 1.17.0: `six>=1.16` is satisfied there, `six==1.16.0` / `six==1.15.0`
conflict (the project runs isolated), `six==999` resolves nowhere, and `cowsay` (pure Python, no
dependencies) is on the index but not in the shared layer.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from mlops.environments import shared
from mlops.environments.lock import (
    LockError,
    env_hash,
    environment_notes,
    inputs_hash,
    lock_environment,
    lock_is_current,
    lock_path,
    read_lock,
    write_lock,
)
from mlops.environments.resolve import plan_environment
from mlops.environments.shared import RUNTIME_PACKAGES, UvError, runtime_requirements, shared_layer, uv_reason
from mlops.settings import REPO_ROOT

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def layer():
    return shared_layer()


def _no_uv(*args, **kwargs):
    raise AssertionError(f"uv was run: {args}")


def test_the_shared_layer_is_what_uv_sync_installs(layer):
    assert layer.pins["six"] == "1.17.0"
    assert layer.pins["pytest"]  # the dev group: `uv sync` installs default groups
    assert "torch" not in layer.pins and "gcsfs" in layer.pins  # extras are not (gcsfs: dev's dvc[gs])
    assert "mlx-mlops" not in layer.pins  # the project itself runs from source
    assert ("mlx-cpu" in layer.pins) == (sys.platform == "linux")  # markers evaluated for this platform
    assert shared_layer() is layer  # exported once per process and lock version


def test_satisfied_requirements_run_in_the_shared_layer_without_resolving(layer, monkeypatch):
    monkeypatch.setattr(shared, "run_uv", _no_uv)  # the layer is cached: nothing to ask uv
    plan = plan_environment("p", ["six>=1.16", "numpy", "cowsay; python_version < '3'"])
    assert (plan.kind, plan.problems, plan.pinned) == ("shared", (), ())
    assert plan.shared_digest == layer.digest


def test_a_package_missing_from_the_shared_layer_is_named(layer):
    plan = plan_environment("p", ["six>=1.16", "cowsay>=6"])
    assert plan.kind == "missing"
    [problem] = plan.errors
    assert (problem.index, problem.package, problem.kind) == (1, "cowsay", "missing")
    assert "package cowsay is not in the shared layer" in problem.message and "cowsay==" in problem.message
    assert "uv add 'cowsay>=6'" in problem.suggestion and "uv.lock" in problem.suggestion


def test_an_extra_that_brings_a_package_the_layer_lacks_is_missing():
    plan = plan_environment("p", ["requests[socks]"])
    [problem] = plan.errors
    assert plan.kind == "missing" and problem.package == "requests"
    assert "requests[socks] needs pysocks==" in problem.message


@pytest.mark.parametrize("pin", ["six==1.16.0", "six==1.15.0"])
def test_a_conflict_runs_isolated_with_the_runtime_at_the_shared_versions(layer, pin):
    started = time.monotonic()
    plan = plan_environment("old_six", [pin, "cowsay"])
    print(f"isolated resolution of {pin}: {time.monotonic() - started:.2f} s")
    assert plan.kind == "isolated" and plan.errors == []
    [note] = plan.notes
    assert note.index == 0 and note.package == "six"
    assert note.message == f"runs isolated: {pin} conflicts with the shared layer's six 1.17.0"
    pins = dict(line.split("==") for line in plan.pinned)
    assert pins["six"] == pin.split("==")[1] and "cowsay" in pins  # a missing package is just installed here
    for package in ("numpy", "pandas", "pyarrow", "mlflow-skinny", "sqlalchemy", "pydantic", "pyyaml", "psutil", "mlx"):
        assert pins[package] == layer.pins[package], package  # the runtime at the versions the platform runs
    if sys.platform == "linux":
        assert pins["mlx-cpu"] == layer.pins["mlx-cpu"]
    assert "apache-airflow" not in pins and "mlflow" not in pins  # the runtime, not the shared layer
    differing = {name for name, version in pins.items() if layer.pins.get(name, version) != version}
    # Transitive dependencies too: only what must differ differs. Ray's opencensus (a serving
    # dependency of the runtime) needs six~=1.16 in the shared layer's version: with six 1.15 it
    # must move to an older release too.
    assert differing == ({"six", "opencensus"} if pin == "six==1.15.0" else {"six"})


def test_a_requirement_that_resolves_nowhere_is_an_error_naming_it():
    plan = plan_environment("p", ["six>=1.16", "six-but-not-a-real-package-zz1"])
    [problem] = plan.errors
    assert plan.kind == "unresolvable" and (problem.index, problem.package) == (1, "six-but-not-a-real-package-zz1")
    assert "not found in the package registry" in problem.message

    plan = plan_environment("p", ["six==999"])
    [problem] = plan.errors
    assert (plan.kind, problem.index, problem.package) == ("unresolvable", 0, "six")
    assert problem.message.startswith("six==999 resolves nowhere: Because there is no version of six==999")
    assert plan.notes == []  # no "runs isolated" for what runs nowhere


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_index_is_a_problem_not_a_traceback(monkeypatch, layer):
    monkeypatch.setenv("UV_DEFAULT_INDEX", f"http://127.0.0.1:{_closed_port()}/simple")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    plan = plan_environment("p", ["six==1.15.0"])
    [problem] = plan.errors
    assert (plan.kind, problem.kind, problem.index) == ("unchecked", "unchecked", None)
    assert problem.message.startswith("cannot reach the package index: ") and "Connection refused" in problem.message
    assert "UV_OFFLINE=1" in problem.suggestion


def test_uv_comes_from_this_interpreter_never_path(monkeypatch, tmp_path):
    fake = tmp_path / "uv"
    fake.write_text("#!/bin/sh\necho fake uv >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "uv " in shared.run_uv(["--version"], cwd=tmp_path)
    with pytest.raises(UvError, match="took longer than 0.001 s"):
        shared.run_uv(["--version"], cwd=tmp_path, timeout=0.001)


def test_uv_reason_keeps_the_causes_on_one_line():
    stderr = ("Resolved 3 packages\nerror: No solution found when resolving dependencies:\n"
              "  ╰─▶ Because you require six==1.16.0 and six==1.17.0, we can conclude that your requirements are "
              "unsatisfiable.\n\nhint: something\n")
    assert uv_reason(stderr) == ("Because you require six==1.16.0 and six==1.17.0, we can conclude that your "
                                 "requirements are unsatisfiable")


def test_the_runtime_takes_pyproject_bounds():
    lines = runtime_requirements()
    assert 'mlx[cpu]<0.33,>=0.32; sys_platform == "linux"' in lines  # mlx's two declarations, markers and all
    assert 'mlx<0.33,>=0.32; sys_platform == "darwin"' in lines
    assert "pandas<3" in lines and "mlflow-skinny<4,>=3" in lines and "pyarrow" in lines
    assert {line.split("[")[0].split(">")[0].split("<")[0].split(";")[0] for line in lines} == set(RUNTIME_PACKAGES)


def test_the_lock_records_an_isolated_plan_and_detects_staleness(tmp_path, monkeypatch):
    flat = tmp_path / "projects" / "old_six.yaml"
    folder = tmp_path / "projects" / "own" / "project.yaml"
    assert lock_path(flat) == tmp_path / "projects" / "old_six.requirements.lock"
    assert lock_path(folder) == tmp_path / "projects" / "own" / "requirements.lock"
    flat.parent.mkdir(parents=True)

    plan = lock_environment(flat, "old_six", ["six==1.16.0"])
    assert plan.kind == "isolated"
    lock = read_lock(lock_path(flat))
    assert lock.pinned == plan.pinned and lock.env == env_hash(plan.pinned) and lock.project == "old_six"
    assert lock.requirements == ("six==1.16.0",) and lock.shared_lock == shared_layer().digest
    assert lock.notes == (("six==1.16.0", "runs isolated: six==1.16.0 conflicts with the shared layer's six 1.17.0"),)
    text = lock_path(flat).read_text()
    assert text.startswith("# mlops environment lock") and "\nsix==1.16.0\n" in text

    assert lock_is_current(lock_path(flat), [" six == 1.16.0 "])  # spacing and order do not matter
    assert not lock_is_current(lock_path(flat), ["six==1.15.0"])
    other_lock = tmp_path / "uv.lock"
    other_lock.write_bytes((REPO_ROOT / "uv.lock").read_bytes() + b"\n# changed\n")
    assert not lock_is_current(lock_path(flat), ["six==1.16.0"], lock_file=other_lock)

    monkeypatch.setattr(shared, "run_uv", _no_uv)  # a current lock is the plan: nothing resolved
    again = lock_environment(flat, "old_six", ["six==1.16.0"])
    assert (again.kind, again.pinned, again.notes) == ("isolated", plan.pinned, plan.notes)
    assert environment_notes(flat, ["six==1.16.0"]) == list(plan.notes)
    assert [n.kind for n in environment_notes(flat, ["six==1.15.0"])] == ["stale"]

    monkeypatch.undo()
    assert lock_environment(flat, "old_six", ["six>=1.16"]).kind == "shared"
    assert not lock_path(flat).exists()  # back on the shared layer: the lock is gone


def test_a_damaged_or_edited_lock_is_refused(tmp_path):
    path = tmp_path / "p.requirements.lock"
    assert read_lock(path) is None
    path.write_text("six==1.16.0\n")
    with pytest.raises(LockError, match="not an mlops environment lock"):
        read_lock(path)
    plan = plan_environment("p", ["six==1.16.0"])
    write_lock(path, plan)
    path.write_text(path.read_text().replace("six==1.16.0\n", "six==1.15.0\n"))
    with pytest.raises(LockError, match="edited"):
        read_lock(path)
    assert not lock_is_current(path, ["six==1.16.0"])


def test_env_hash_is_the_cache_key_of_the_pins():
    pins = ["six==1.16.0", "numpy==2.4.6"]
    assert env_hash(pins) == env_hash(["NumPy==2.4.6", "six==1.16.0"])  # order and name spelling aside
    assert env_hash(pins) != env_hash(["six==1.15.0", "numpy==2.4.6"])
    assert env_hash(pins) != env_hash(pins, python="3.12.0")  # a venv belongs to its interpreter
    assert len(env_hash(pins)) == 64
    assert inputs_hash(["b", "a"], "x") == inputs_hash(["a", "b"], "x") != inputs_hash(["a"], "x")


def test_uv_export_output_is_parsed_for_this_platform():
    text = "six==1.17.0\nmlx-cpu==0.32.4 ; sys_platform == 'linux'\nmlx-metal==0.32.4 ; sys_platform == 'darwin'\n"
    pins = shared.parse_pins(text)
    assert pins["six"] == "1.17.0"
    assert ("mlx-cpu" in pins, "mlx-metal" in pins) == (sys.platform == "linux", sys.platform == "darwin")


def test_no_uv_on_the_machine_is_a_problem(monkeypatch, tmp_path):
    monkeypatch.setattr(shared.sys, "executable", shutil.which("false") or "/bin/false")
    shared._exported.cache_clear()
    try:
        plan = plan_environment("p", ["six==1.15.0"])
    finally:
        shared._exported.cache_clear()
    assert plan.kind == "unchecked" and plan.errors[0].message.startswith("cannot check the requirements")


def test_a_conflict_through_a_dependency_runs_isolated(tmp_path):
    """A shared layer (a uv.lock of its own) pinning charset-normalizer 1.4.1: requests 2.32.3 is absent
    from it and needs charset-normalizer>=2, so it fits only an isolated environment."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "layer-fixture"\nversion = "0"\nrequires-python = ">=3.11,<3.13"\n'
        'dependencies = ["charset-normalizer==1.4.1", "six==1.17.0"]\n'
    )
    shared.run_uv(["lock", "--quiet"], cwd=tmp_path)
    plan = plan_environment("p", ["requests==2.32.3", "six"], lock_file=tmp_path / "uv.lock")
    assert plan.kind == "isolated" and plan.errors == []
    [note] = plan.notes
    assert (note.index, note.package) == (0, "requests")
    assert note.message.startswith("runs isolated: requests==2.32.3 does not resolve with the shared layer's versions: "
                                   "Because requests==2.32.3 depends on charset-normalizer")
    pins = dict(line.split("==") for line in plan.pinned)
    assert pins["requests"] == "2.32.3" and pins["charset-normalizer"] != "1.4.1" and pins["six"] == "1.17.0"


def test_a_requirement_that_excludes_the_training_runtime_is_an_error():
    plan = plan_environment("p", ["six==1.15.0", "pandas>=3"])  # pyproject.toml: pandas<3
    [problem] = plan.errors
    assert (plan.kind, problem.index, problem.package) == ("unresolvable", 1, "pandas")
    assert problem.message.startswith("pandas>=3 excludes the platform's training runtime (mlx, numpy, pandas")
    assert "you require pandas>=3 and pandas<3" in problem.message
