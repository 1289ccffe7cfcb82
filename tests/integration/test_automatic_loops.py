"""The automatic loops are on: a retrain request runs the lifecycle with nobody unpausing anything.

Real api-server, scheduler, dag-processor and triggerer over the committed airflow.cfg (which pauses
DAGs at creation; the factory's DAGs override it). Two monitored projects appear in projects/; one
opts out with `paused: true`. A retrain request arrives for each as an asset event through Airflow's
REST API (what the monitor's `request_retrain` step publishes, or any outside system may): the active
project's lifecycle runs to success by itself; the paused one runs nothing (Airflow queues asset
events only for active DAGs: a paused project ignores the requests made while it is paused).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from mlops_testing import airflow_api, airflow_api_up, airflow_cluster, sqlite_rows, tiny_project, wait_for

from mlops.lifecycle import retrain_asset_uri

MONITORED = "monitoring:\n  enabled: true\n  schedule: null\n"
ACTIVE, OPTED_OUT = "loop_on", "loop_off"


def _token(port: int, state: Path) -> str:
    passwords = json.loads((state / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
    return airflow_api(port, "/auth/token", {"username": "admin", "password": passwords["admin"]})["access_token"]


def _request_retrain(port: int, token: str, project: str) -> None:
    uri = retrain_asset_uri(project)
    assets = airflow_api(port, f"/api/v2/assets?uri_pattern={urllib.request.quote(uri)}", token=token)["assets"]
    (asset,) = [a for a in assets if a["uri"] == uri]
    airflow_api(port, "/api/v2/assets/events", {"asset_id": asset["id"], "extra": {"reason": "test: retrain request"}}, token)


def test_a_retrain_request_runs_the_lifecycle_without_any_unpause(tmp_path: Path):
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / f"{ACTIVE}.yaml").write_text(tiny_project(ACTIVE, MONITORED))
    (projects / f"{OPTED_OUT}.yaml").write_text(tiny_project(OPTED_OUT, MONITORED + "paused: true\n"))
    extra = {"MLOPS_PROJECTS_DIR": str(projects), "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3"}
    with airflow_cluster(tmp_path, extra) as cluster:
        db, port = cluster["db"], cluster["port"]
        assert cluster["env"].get("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION") is None
        expected = {f"{p}__{kind}" for p in (ACTIVE, OPTED_OUT) for kind in ("lifecycle", "monitor")}
        paused = wait_for(
            lambda: (rows := dict(sqlite_rows(db, "select dag_id, is_paused from dag where is_stale = 0")))
            and expected <= set(rows) and rows,
            180, "both projects' DAGs to be parsed",
        )
        assert {d: bool(paused[d]) for d in sorted(expected)} == {
            f"{ACTIVE}__lifecycle": False, f"{ACTIVE}__monitor": False,
            f"{OPTED_OUT}__lifecycle": True, f"{OPTED_OUT}__monitor": True,
        }
        # The retrain assets exist once the scheduler has seen the DAGs that consume them.
        wait_for(lambda: len(sqlite_rows(db, "select id from asset where uri like 'mlops://retrain/%'")) == 2,
                 60, "both retrain assets to be registered", interval=1)

        wait_for(lambda: airflow_api_up(port), 120, "Airflow's api-server to answer", interval=1)
        token = _token(port, cluster["state"])
        for project in (ACTIVE, OPTED_OUT):
            _request_retrain(port, token, project)

        runs = wait_for(
            lambda: [r for r in sqlite_rows(db, "select run_type, state from dag_run where dag_id = ?", f"{ACTIVE}__lifecycle")
                     if r[1] in ("success", "failed")],
            420, f"{ACTIVE}'s lifecycle to run on its retrain request", interval=2,
        )
        tasks = dict(sqlite_rows(db, "select task_id, state from task_instance where dag_id = ?", f"{ACTIVE}__lifecycle"))
        assert runs == [("asset_triggered", "success")], (runs, tasks)
        assert set(tasks.values()) == {"success"} and "train" in tasks and "register" in tasks, tasks

        # Both requests were recorded; the opted-out project got no run and nothing waits for it.
        events = sqlite_rows(db, "select a.uri from asset_event e join asset a on a.id = e.asset_id "
                                 "where a.uri like 'mlops://retrain/%' order by a.uri")
        assert events == [(retrain_asset_uri(OPTED_OUT),), (retrain_asset_uri(ACTIVE),)], events
        assert sqlite_rows(db, "select run_type from dag_run where dag_id = ?", f"{OPTED_OUT}__lifecycle") == []
        assert sqlite_rows(db, "select target_dag_id from asset_dag_run_queue") == []
