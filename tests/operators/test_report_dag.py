"""The `toolkit__report` DAG for real in `dag.test()`: pages written, verdicts tagged, logged to MLflow.

Loaded from dags/ as Airflow loads it, run twice on a seeded history: the first run writes every
page, refreshes `mlops compare`'s verdict tags and logs the pages as a `mlops.kind=report` run of the
`toolkit` experiment; the second run's pool usage shows the first run's task (Airflow's DB, read
in-process as `dag.test()` runs the task).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
import re
from pathlib import Path

from mlops.analytics import names
from mlops.analytics.seeding import EXPECTED_BEST, seed_history

REPO = Path(__file__).resolve().parents[2]
PROJECTS = ("alpha_proj", "beta_proj")


def test_the_report_dag_writes_tags_and_logs_the_reports(airflow_db, tmp_path: Path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    seed_history(client, list(PROJECTS), 10, seed=3)
    projects = tmp_path / "projects"
    projects.mkdir()
    for name in PROJECTS:
        (projects / f"{name}.yaml").write_text(f"name: {name}\nmodel:\n  family: mlp_classifier\n")
    monkeypatch.setenv("MLOPS_TRACKING_URI", uri)
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))

    bag = DagBag(dag_folder=str(REPO / "dags" / "toolkit_report.py"))
    assert bag.import_errors == {}
    dag = bag.get_dag("toolkit__report")
    assert dag.timetable.expression == "0 0 * * *" and dag.is_paused_upon_creation is False  # "@daily", active
    assert [t.task_id for t in dag.tasks] == ["report"]

    (ti,) = dag.test().get_task_instances()
    assert ti.state == "success"
    result = ti.xcom_pull(task_ids="report")
    toolkit = Path(result["toolkit"])
    assert toolkit.name == "toolkit-report.html" and toolkit.is_file()
    assert sorted(result["projects"]) == list(PROJECTS) and all(Path(p).is_file() for p in result["projects"].values())

    # compare's verdict, refreshed by the DAG on each project's experiment
    for name in PROJECTS:
        verdict = json.loads(client.get_experiment_by_name(name).tags[names.BEST_TECHNIQUE])
        assert verdict == {"objective": "fastest", "best": EXPECTED_BEST} == {
            "objective": "fastest", "best": result["verdicts"][name]}

    # the pages, logged to MLflow as a report run of the toolkit experiment
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags[names.KIND] == "report"
    assert client.get_experiment(run.info.experiment_id).name == "toolkit"
    logged = sorted(Path(a.path).name for a in client.list_artifacts(run.info.run_id, "reports"))
    assert logged == sorted(["toolkit-report.html", *(f"{name}.html" for name in PROJECTS)])
    assert "toolkit" not in result["projects"]  # the report's own experiment is no project

    # the second run sees the first's task in Airflow's DB: slot-hours of default_pool for "toolkit"
    (ti,) = dag.test().get_task_instances()
    assert ti.state == "success"
    page = Path(ti.xcom_pull(task_ids="report")["toolkit"]).read_text()
    section = re.search(r'<section data-plot="pool-usage" data-project="toolkit-report" data-status="(\w[\w-]*)">'
                        r"(.*?)</section>", page, re.S)
    assert section and section[1] == "chart", section and section[2][:500]
    assert '"default_pool"' in section[2] and '"name":"toolkit"' in section[2].replace(" ", "")


def test_task_code_kept_out_of_airflows_db_reads_the_schedulers_snapshot(airflow_db, tmp_path, monkeypatch):
    """A task run by Airflow's supervisor (not `dag.test()`) may not touch the metadata DB: without the
    scheduler's snapshot the report says why; with it, the usage is the snapshot's, dated."""
    import os
    import subprocess
    import sys

    from mlops_airflow.pool_refresher import PoolRefresher
    from mlops.resources.pool_usage import WINDOW, read_pool_usage

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    script = (
        "from datetime import UTC, datetime, timedelta\n"
        "from airflow.sdk.execution_time.supervisor import block_orm_access\n"
        "from mlops.resources.pool_usage import usage_for_report\n"
        "from mlops.settings import get_settings\n"
        "block_orm_access()  # what the supervisor does before running task code\n"
        "usage = usage_for_report(get_settings(), datetime.now(UTC) - timedelta(days=30))\n"
        "print(sorted(usage.slot_seconds), usage.note)\n"
    )

    def task_sees() -> str:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              check=True, env=os.environ.copy())
        return done.stdout.strip().splitlines()[-1]

    out = task_sees()
    assert out.startswith("[] Airflow's metadata DB is not readable here") and "no snapshot from the scheduler" in out, out
    PoolRefresher.snapshot_usage()  # what the scheduler's refresher does at start and every 10 min
    out = task_sees()
    assert "as the scheduler read it at" in out, out
    # exactly what this process (which may read the DB, as the scheduler) finds there: whatever tests ran before
    direct = read_pool_usage(datetime.now(UTC) - WINDOW)
    assert out.startswith(str(sorted(direct.slot_seconds))), (out, direct)
