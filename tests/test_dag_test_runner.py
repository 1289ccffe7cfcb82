"""`run_dag_test`: a real `airflow dags test` whose output goes to a file, one line per task on screen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.airflow_env import airflow_environment
from mlops.dag_test_runner import error_excerpt, run_dag_test
from mlops.settings import Settings

DAGS = '''
from datetime import datetime, timezone
from airflow.sdk import DAG, task

with DAG("runner_ok", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False):
    @task
    def make_data():
        print("many lines of task log " * 20)
        return {"rows": 256, "version": "abc123", "nested": {"x": 1}}

    @task
    def train(data):
        return {"accuracy": 0.912345, "epochs": 1}

    train(make_data())

with DAG("runner_fails", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False,
         default_args={"retries": 0}):
    @task
    def prepare():
        return "ready"

    @task
    def explode(_):
        raise ValueError("the data folder /nowhere has no files: run pull_data first")

    @task
    def after(_):
        return 1

    after(explode(prepare()))
'''


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("runner")
    (root / "dags").mkdir()
    (root / "dags" / "runner_dags.py").write_text(DAGS)
    env = airflow_environment(Settings.from_env({"MLOPS_HOME": str(root / "state")}), base=dict(os.environ))
    env.update(MLOPS_HOME=str(root / "state"), AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"))
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    return {**env, "_airflow": airflow, "_root": str(root)}


def test_each_task_gets_one_line_and_the_log_goes_to_the_file(airflow_env):
    lines: list[str] = []
    log = Path(airflow_env["_root"]) / "logs" / "ok.log"
    run = run_dag_test(airflow_env["_airflow"], "runner_ok", airflow_env, log, echo=lines.append)

    assert run.ok and run.returncode == 0
    assert [s.task_id for s in run.steps] == ["make_data", "train"]
    assert [line.split()[0] for line in lines] == ["make_data", "train"]  # in the order they ended, once each
    assert "success" in lines[0] and "rows=256, version=abc123" in lines[0] and "nested" not in lines[0]
    assert "accuracy=0.9123, epochs=1" in lines[1]
    assert all(s.seconds is not None and s.seconds >= 0 for s in run.steps)
    text = log.read_text()
    assert "airflow dags test runner_ok" in text and "many lines of task log" in text
    assert not any("many lines" in line for line in lines)


def test_a_failed_task_names_its_error(airflow_env):
    lines: list[str] = []
    log = Path(airflow_env["_root"]) / "logs" / "fails.log"
    run = run_dag_test(airflow_env["_airflow"], "runner_fails", airflow_env, log, echo=lines.append)

    assert not run.ok
    states = {s.task_id: s.state for s in run.steps}
    assert states == {"prepare": "success", "explode": "failed", "after": "upstream_failed"}
    assert [s.task_id for s in run.failed_steps()] == ["explode"]
    excerpt = error_excerpt(log)
    assert excerpt.splitlines()[-1].strip().startswith("ValueError: the data folder /nowhere has no files"), excerpt


def test_error_excerpt_of_a_log_without_a_traceback(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("INFO all fine\n[2026-12-07] ERROR - the api-server refused the task\nINFO done\n")
    assert error_excerpt(log) == "[2026-12-07] ERROR - the api-server refused the task"
    assert error_excerpt(tmp_path / "missing.log") == ""
