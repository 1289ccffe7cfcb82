"""No manual step from a better model to serving, nor from drift back to training: the chain of assets.

The project is not built in: it is what `mlops new-project` writes (its own MLX family in
projects/<name>/model.py, its own CSV files under projects/<name>/data/), so every platform
service is proven on the path a user's project takes.

Real scheduler, dag-processor and api-server (LocalExecutor), a real Ray head and the gateway:
a triggered lifecycle run registers and builds version 1; its `build` task publishes the
project's model asset; the scheduler starts `<project>__deploy` on that event by itself; the
deploy task brings v1 up on Ray Serve and switches the gateway, which then serves it. Then the
gateway serves (and captures) traffic shifted away from the training data; a file is added to the
project's data folder; a monitor run finds the drift and publishes the retrain asset; the
scheduler starts the lifecycle on it, and that run trains on a new DVC version of the data and
its MLflow training run says why.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from mlops_testing import airflow_cluster, free_port, ray_head, sqlite_rows, wait_for

from mlops.settings import Settings

PROJECT = "own_served"
FEATURES = 8  # the template's sample data


def _own_project(projects: Path) -> Path:
    """`mlops new-project` output, made quick and manual: no retries, the monitor run by hand, fewer rows needed."""
    from mlops.project_template import create_project

    created = create_project(PROJECT, projects)
    yaml = created.folder / "project.yaml"
    text = yaml.read_text()
    for old, new in (
        ("tags: [own-family]\n", "tags: [own-family]\nretries: 0\n"),
        ("  enabled: true       # drift", "  schedule: null\n  min_rows: 50\n  enabled: true       # drift"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    yaml.write_text(text)
    return created.folder


def _runs(db: Path, dag_id: str) -> list[tuple[str, str]]:
    return sqlite_rows(db, "select run_type, state from dag_run where dag_id = ? order by id", dag_id)


def _finished_runs(db: Path, dag: str, count: int, timeout: float) -> list[tuple[str, str]]:
    """(run type, state) of the DAG's runs once `count` of them exist and the last one has finished."""
    def done() -> bool:
        runs = _runs(db, f"{PROJECT}__{dag}")
        return len(runs) >= count and runs[-1][1] in ("success", "failed")

    try:
        wait_for(done, timeout, f"run {count} of {PROJECT}__{dag} to finish", interval=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_state(db)}") from None
    return _runs(db, f"{PROJECT}__{dag}")


def _state(db: Path) -> str:
    """Every run, task and asset event, and the scheduler log's tail: what a timeout needs to be explained."""
    runs = sqlite_rows(db, "select dag_id, run_id, run_type, state, start_date, end_date from dag_run order by id")
    tasks = sqlite_rows(db, "select dag_id, run_id, task_id, state, try_number, start_date, end_date from task_instance")
    events = sqlite_rows(db, "select asset_id, source_dag_id, source_run_id, timestamp from asset_event order by id")
    queued = sqlite_rows(db, "select * from asset_dag_run_queue")
    log = db.parent.parent.parent / "logs" / "scheduler.log"
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no scheduler log)"
    lines = ["runs:", *map(str, runs), "tasks:", *map(str, tasks), "asset events:", *map(str, events),
             "asset queue:", *map(str, queued), "scheduler log tail:", tail]
    return "\n".join(lines)


def _captured_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.rglob("*.parquet") if not f.name.startswith("."))


def _trigger(env: dict, airflow: str, dag: str) -> None:
    subprocess.run([airflow, "dags", "trigger", f"{PROJECT}__{dag}"], env=env, check=True, stdout=subprocess.DEVNULL)


def test_a_registered_model_is_deployed_by_the_asset_it_publishes(tmp_path: Path):
    import uvicorn

    from mlops.serving.api_keys import ensure_api_key
    from mlops.serving.gateway import create_app

    projects = tmp_path / "projects"
    folder = _own_project(projects)
    ports = {
        "MLOPS_RAY_PORT": str(free_port()),
        "MLOPS_SERVE_PORT": str(free_port()),
        "MLOPS_GATEWAY_PORT": str(free_port()),
        "MLOPS_SERVING_MEMORY_GB": "2",
    }
    extra = {"MLOPS_PROJECTS_DIR": str(projects), "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3", **ports}
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path / "state"), **ports})
    with ray_head(settings, tmp_path / "ray-head.log"), airflow_cluster(tmp_path, extra) as cluster:
        key = ensure_api_key(settings)
        server = uvicorn.Server(uvicorn.Config(create_app(settings, {key}), host="127.0.0.1", port=settings.gateway_port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        db, env, airflow = cluster["db"], cluster["env"], cluster["airflow"]
        try:
            wait_for(
                lambda: {f"{PROJECT}__lifecycle", f"{PROJECT}__deploy"}
                <= {r[0] for r in sqlite_rows(db, "select dag_id from dag where is_stale = 0")},
                180, "both DAGs to be parsed",
            )
            _trigger(env, airflow, "lifecycle")
            assert _finished_runs(db, "lifecycle", 1, 420) == [("manual", "success")]
            # Nobody triggers the deploy DAG: the scheduler starts it on the asset event.
            deploy_runs = _finished_runs(db, "deploy", 1, 300)
            assert deploy_runs == [("asset_triggered", "success")], (
                deploy_runs, (tmp_path / "logs" / "scheduler.log").read_text()[-3000:]
            )

            request = urllib.request.Request(
                f"http://127.0.0.1:{settings.gateway_port}/v1/projects/{PROJECT}/models/latest/predict",
                data=json.dumps({"inputs": {"x": [[0.1] * FEATURES]}}).encode(),
                headers={"Content-Type": "application/json", "X-API-Key": key},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
            assert body["version"] == 1 and len(body["outputs"]["label"]) == 1
            routes = json.loads((settings.home / "serving" / "routes.json").read_text())["routes"]
            assert routes[PROJECT]["version"] == 1 and routes[PROJECT]["backend"] == "ray"

            # Drifted traffic, captured by the gateway; the monitor asks for retraining, the scheduler obliges.
            for i in range(80):
                shifted = [[3.0 + 0.01 * ((i * 7 + j) % 13) for j in range(FEATURES)]]
                request = urllib.request.Request(
                    f"http://127.0.0.1:{settings.gateway_port}/v1/projects/{PROJECT}/models/latest/predict",
                    data=json.dumps({"inputs": {"x": shifted}}).encode(),
                    headers={"Content-Type": "application/json", "X-API-Key": key},
                )
                urllib.request.urlopen(request, timeout=60).read()
            # All 81 rows, not merely the first flush: a window under min_rows would give no verdict.
            wait_for(
                lambda: _captured_rows(settings.home / "monitoring" / "predictions" / f"project={PROJECT}") >= 81,
                60, "all captured predictions to reach Parquet", interval=1,
            )
            # New rows in the project's own data folder: the retraining run must train on them.
            extra = folder / "data" / "part-2.csv"
            extra.write_text((folder / "data" / "part-0.csv").read_text())
            _trigger(env, airflow, "monitor")
            assert _finished_runs(db, "monitor", 1, 300) == [("manual", "success")]
            retrain = sqlite_rows(db, "select state from task_instance where dag_id = ? and task_id = 'request_retrain'", f"{PROJECT}__monitor")
            assert retrain == [("success",)], (retrain, _state(db))
            # Nobody triggers the retraining either: the retrain asset does.
            assert _finished_runs(db, "lifecycle", 2, 420)[1] == ("asset_triggered", "success")
            import mlflow

            from mlops.tracking.client import configure

            configure(settings)
            trainings = [  # monitoring and drift runs share the experiment; training runs carry the data version
                r for r in mlflow.search_runs(experiment_names=[PROJECT], order_by=["start_time DESC"], output_format="list")
                if "mlops.data_version" in r.data.tags
            ]
            assert len(trainings) == 2 and "mlops.retrain_reason" not in trainings[1].data.tags
            assert trainings[0].data.tags["mlops.retrain_reason"].startswith("data drift:"), trainings[0].data.tags
            first, second = (t.data.tags["mlops.data_version"] for t in reversed(trainings))
            assert first != second  # the added file made a new DVC version, and the retraining used it
            from mlops.data.project_data import data_paths
            from mlops.data.dvc_workspace import tracked_hash

            folder_now, dvc_file = data_paths(settings, PROJECT)
            assert tracked_hash(dvc_file) == second
            assert sorted(p.name for p in folder_now.iterdir()) == ["part-0.csv", "part-1.csv", "part-2.csv"]
            # The served model carries the project's code: the registered version imports it from there.
            manifest = json.loads((settings.home / "serving" / PROJECT / "1" / "model.json").read_text())
            assert manifest["family"] == "model:OwnServedFamily" and manifest["family_code"] == ["model.py"]
            assert manifest["family_origin"] == str(folder / "model.py")
        finally:
            server.should_exit = True
            time.sleep(0.3)
