"""Test-wide isolation: a throwaway state folder, and the platform's Airflow environment.

Set before anything imports Airflow or MLflow, so no test touches the developer's
`.mlops/`, `~/airflow` or a real server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_STATE = Path(tempfile.mkdtemp(prefix="mlops-test-"))
os.environ["MLOPS_HOME"] = str(_STATE)
os.environ.pop("MLOPS_TRACKING_URI", None)
os.environ.pop("MLOPS_DVC_REMOTE", None)
os.environ.pop("MLOPS_PROJECTS_DIR", None)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_LOG_UV_FILES"] = "false"

from mlops.airflow_env import airflow_environment, plugins_on_path  # noqa: E402
from mlops.settings import get_settings  # noqa: E402

os.environ.update(airflow_environment(get_settings()))
plugins_on_path()  # `mlops_airflow` importable before Airflow is, as in every Airflow process


# Tests that start real servers or clusters (Airflow, Ray, MLflow on PostgreSQL, a browser, the bench
# scripts' gateways): one xdist worker runs them one after another, while the other worker takes the rest
# of the suite (`-n 2 --dist loadgroup` in pyproject's addopts). Two such tests at once on 2 cores would
# only slow each other: with the bench scripts as a second group on the other worker, the servers' tests
# took up to 1.5x longer and the suite as long as before. The isolated-environment lifecycles run beside
# them: uv environments and `dag.test()` runs like the ungrouped lifecycle tests, and a short-lived Ray head
# of their own (ports from `free_port_run`) for one deploy at the end.
SERVER_TESTS = ("integration/", "serving/test_ray_deploy.py", "bench/", "browser/")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(tests).as_posix()
        if relative.startswith(SERVER_TESTS):
            item.add_marker(pytest.mark.xdist_group("servers"))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STATE, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite in the test state folder)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    return _STATE / "airflow" / "airflow.db"


@pytest.fixture
def state_dir() -> Path:
    return _STATE
