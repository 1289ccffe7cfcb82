"""run_in_environment: a function called in an isolated environment, as if here; nothing shared leaks in.

One real environment (uv, pinned six) built for the module; targets live in isolated_targets.py,
which the child imports from the repo (standard library only).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops.environments.cache import ensure_environment
from mlops.environments.runner import IsolatedRunError, child_environment, run_in_environment
from mlops.settings import REPO_ROOT, Settings

T = "tests.environments.isolated_targets"
SHARED_SITE = str(Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages")


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path_factory.mktemp("runner-home"))})
    return ensure_environment(settings, ["six==1.17.0"], "runner")


def test_result_and_kwargs_cross_as_json(python):
    kwargs = {"name": "iris", "rows": [1, 2.5, None], "options": {"seed": 7, "tag": "é"}, "flag": True}
    assert run_in_environment(python, f"{T}:echo", kwargs) == kwargs


def test_child_sys_path_holds_nothing_of_the_shared_venv(python):
    seen = run_in_environment(python, f"{T}:interpreter", {})
    env_root = str(python.parent.parent)
    assert seen["prefix"] == env_root and seen["virtual_env"] == env_root
    assert not any(".venv/lib" in entry or entry == SHARED_SITE for entry in seen["sys_path"]), seen["sys_path"]
    assert not any(entry.startswith(str(Path(sys.prefix))) for entry in seen["sys_path"]), seen["sys_path"]
    site_dirs = [p for p in seen["sys_path"] if p.endswith("site-packages")]
    assert site_dirs == [f"{env_root}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"]
    assert seen["user_site_enabled"] is False
    assert "" not in seen["sys_path"]  # -P: not the working directory either
    # the library comes from source, first after the caller's own PYTHONPATH
    assert seen["mlops_file"] == str(REPO_ROOT / "include" / "mlops" / "__init__.py")
    assert seen["pythonpath"].split(":") == [str(REPO_ROOT / "include"), str(REPO_ROOT)]
    assert seen["path"].split(":")[0] == f"{env_root}/bin"
    assert str(Path(sys.prefix) / "bin") not in seen["path"].split(":")


def test_packages_only_in_the_shared_venv_do_not_import(python):
    # all of these are installed here (the shared layer); inside, only the pinned six imports
    assert all(importlib.util.find_spec(name) for name in ("airflow", "pandas", "yaml"))
    found = run_in_environment(python, f"{T}:importable", {"names": ["airflow", "pandas", "yaml", "six"]})
    assert found["airflow"] is None and found["pandas"] is None and found["yaml"] is None
    assert found["six"].startswith(str(python.parent.parent))


def test_exception_crosses_with_type_message_and_traceback(python):
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, f"{T}:fail", {"rows": 3})
    exc = info.value
    assert exc.type_name == f"{T}.BadData"
    assert exc.message == "expected at least 10 rows, got 3"
    assert "in _validate" in exc.remote_traceback and "isolated_targets.py" in exc.remote_traceback
    assert exc.returncode == 0
    assert "BadData: expected at least 10 rows" in str(exc) and "in _validate" in str(exc)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.type_name, copy.message, copy.remote_traceback, str(copy)) == (
        exc.type_name, exc.message, exc.remote_traceback, str(exc))


def test_builtin_exception_and_unimportable_target(python):
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, "importlib:import_module", {"name": "pandas"})
    assert info.value.type_name == "ModuleNotFoundError" and "pandas" in info.value.message
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, "no_such_module_here:fn", {})
    assert info.value.type_name == "ModuleNotFoundError"
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, "json", {})
    assert info.value.type_name == "ValueError" and "module:function" in info.value.message


def test_output_is_streamed_to_the_callers_logger(python, caplog):
    logger = logging.getLogger("test.isolated.task")
    with caplog.at_level(logging.INFO, logger="test.isolated.task"):
        assert run_in_environment(python, f"{T}:chatty", {"lines": 3}, logger=logger) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "test.isolated.task"]
    assert [line for line in lines if line.startswith("stdout line")] == [f"stdout line {i}" for i in range(3)]
    assert "to stderr" in lines
    assert "INFO project.train: child logging reaches the caller" in lines


def test_result_that_is_not_json_is_an_error_there_and_kwargs_here(python):
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, f"{T}:unserializable", {})
    assert info.value.type_name == "TypeError" and "as JSON" in info.value.message
    with pytest.raises(TypeError):
        run_in_environment(python, f"{T}:echo", {"value": object()})


def test_timeout_kills_the_child(python):
    started = time.monotonic()
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, f"{T}:sleep", {"seconds": 60}, timeout=1)
    assert info.value.type_name == "TimeoutError"
    assert time.monotonic() - started < 10


def test_child_that_dies_without_a_result(python):
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, f"{T}:exit_hard", {"code": 3})
    assert info.value.type_name == "ProcessExit" and info.value.returncode == 3
    with pytest.raises(IsolatedRunError) as info:
        run_in_environment(python, f"{T}:exit_soft", {"code": 2})
    assert info.value.type_name == "SystemExit" and info.value.message == "2"


def test_environment_variables_pass_and_extend(python, monkeypatch):
    monkeypatch.setenv("MLOPS_TEST_INHERITED", "from-the-task")
    monkeypatch.setenv("PYTHONPATH", SHARED_SITE)  # the caller's own PYTHONPATH never reaches the child
    assert run_in_environment(python, f"{T}:env_var", {"name": "MLOPS_TEST_INHERITED"}) == "from-the-task"
    assert run_in_environment(python, f"{T}:env_var", {"name": "EXTRA"}, env={"EXTRA": "1"}) == "1"
    seen = run_in_environment(python, f"{T}:interpreter", {}, env={"PYTHONPATH": "/opt/project-code"})
    assert seen["sys_path"].index("/opt/project-code") < seen["sys_path"].index(str(REPO_ROOT / "include"))
    assert SHARED_SITE not in seen["sys_path"]


def test_a_shared_site_packages_on_pythonpath_is_refused(python):
    with pytest.raises(ValueError, match="shared environment"):
        child_environment(python, {"PYTHONPATH": SHARED_SITE})


def test_entry_imports_only_the_standard_library(python):
    """What the child imports before the user's function: stdlib + mlops modules (no site-packages)."""
    probe = (
        "import sys, json; before = set(sys.modules); import mlops.environments.entry; "
        "print(json.dumps(sorted((n, getattr(m, '__file__', None) or '') for n, m in sys.modules.items() "
        "if n not in before)))"
    )
    done = subprocess.run([str(python), "-P", "-c", probe], env=child_environment(python), capture_output=True,
                          text=True, check=True)
    loaded = json.loads(done.stdout)
    assert not [name for name, file in loaded if "site-packages" in file], loaded
    assert {name for name, _ in loaded if name.startswith("mlops")} == {"mlops", "mlops.environments",
                                                                       "mlops.environments.entry"}
