"""The whole Airflow path for real: dag-processor, scheduler, LocalExecutor tasks, api-server.

One broken YAML shows up as an import error naming its file, line and field while the
other project's DAG is parsed, scheduled and run to success; fixing the YAML clears the
error, and a YAML dropped into projects/ becomes a DAG with nothing else to write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlops_testing import airflow_cluster, sqlite_rows, tiny_project, wait_for

from mlops.airflow_env import airflow_environment
from mlops.settings import Settings

REPO = Path(__file__).resolve().parents[2]
GOOD = tiny_project("svc_good")


@pytest.fixture
def airflow_services(tmp_path: Path):
    """api-server + scheduler + dag-processor on 127.0.0.1 against a fresh DB; stopped by PID."""
    projects = tmp_path / "projects"
    projects.mkdir()
    extra = {"MLOPS_PROJECTS_DIR": str(projects), "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3"}
    with airflow_cluster(tmp_path, extra) as cluster:
        yield {**cluster, "projects": projects}


def active_dags(db: Path) -> set[str]:
    return {r[0] for r in sqlite_rows(db, "select dag_id from dag where is_stale = 0 and has_import_errors = 0")}


def import_errors(db: Path) -> dict[str, str]:
    return dict(sqlite_rows(db, "select filename, stacktrace from import_error"))


def test_bad_yaml_is_an_import_error_while_good_dag_runs(airflow_services):
    svc = airflow_services
    db, projects = svc["db"], svc["projects"]
    (projects / "good.yaml").write_text(GOOD)
    (projects / "bad.yaml").write_text(GOOD.replace("svc_good", "svc_bad").replace("epochs: 1", "epochz: 1"))

    wait_for(lambda: "svc_good__lifecycle" in active_dags(db), 180, "the good DAG to be parsed")
    errors = wait_for(lambda: import_errors(db), 60, "the import error of bad.yaml")
    assert list(errors) == ["project_errors.py"]
    assert f"{projects / 'bad.yaml'}:7:3: training.epochz: unknown field (did you mean 'epochs'?)" in errors["project_errors.py"]

    # The good DAG runs for real: scheduler → LocalExecutor → task SDK via the api-server.
    subprocess.run([svc["airflow"], "dags", "trigger", "svc_good__lifecycle"], env=svc["env"], check=True, stdout=subprocess.DEVNULL)
    state = wait_for(
        lambda: next((s for (s,) in sqlite_rows(db, "select state from dag_run where dag_id = 'svc_good__lifecycle'") if s in ("success", "failed")), None),
        420, "the triggered lifecycle run to finish", interval=2,
    )
    task_states = dict(sqlite_rows(db, "select task_id, state from task_instance where dag_id = 'svc_good__lifecycle'"))
    assert state == "success", task_states
    assert task_states["register"] == task_states["build"] == "success"

    # Fixing the YAML clears its error; a dropped-in YAML becomes a DAG.
    (projects / "bad.yaml").write_text(GOOD.replace("svc_good", "svc_bad"))
    (projects / "new.yaml").write_text(GOOD.replace("svc_good", "svc_new"))
    wait_for(lambda: not import_errors(db), 90, "the import error to clear")
    wait_for(lambda: {"svc_bad__lifecycle", "svc_new__lifecycle"} <= active_dags(db), 90, "the fixed and new DAGs")


def test_airflow_dags_test_runs_a_good_project_next_to_a_broken_one(tmp_path: Path):
    """The README's path (`airflow dags test`) is not blocked by another project's bad YAML."""
    state, projects = tmp_path / "state", tmp_path / "projects"
    projects.mkdir()
    (projects / "good.yaml").write_text(GOOD)
    (projects / "broken.yaml").write_text("name: broken\nmodel: {family: mlp_classifier\n")
    env = airflow_environment(Settings.from_env({"MLOPS_HOME": str(state)}), base=dict(os.environ))
    env.update(MLOPS_HOME=str(state), MLOPS_PROJECTS_DIR=str(projects))
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run([airflow, "dags", "test", "svc_good__lifecycle"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "state=success" in done.stdout + done.stderr
