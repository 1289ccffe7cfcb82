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


# Tests that start real servers or clusters (Airflow, Ray, MLflow on PostgreSQL, a browser): one xdist
# worker runs them one after another (`-n 2 --dist loadgroup` in pyproject's addopts); two such tests at
# once on 2 cores would only slow each other. The bench scripts' smoke runs (their own gateways and Ray,
# two scripts at a time) are the other group: xdist hands the two largest groups to the two workers
# first (`loadscope` reordering), and the rest of the suite fills in around them. In one group the
# servers' worker ran ~19 min while the other idled for the last ~6.
SERVER_TESTS = ("integration/", "serving/test_ray_deploy.py", "environments/test_isolated_lifecycles.py", "browser/")
BENCH_TESTS = ("bench/",)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(tests).as_posix()
        if relative.startswith(SERVER_TESTS):
            item.add_marker(pytest.mark.xdist_group("servers"))
        elif relative.startswith(BENCH_TESTS):
            item.add_marker(pytest.mark.xdist_group("bench"))


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
