"""README command 1: run one sample project's whole lifecycle with `airflow dags test`, then summarise."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlops.airflow_env import airflow_environment
from mlops.services import migrate
from mlops.settings import Settings


def lifecycle_summary(settings: Settings, project: str) -> dict[str, Any]:
    """What the latest lifecycle run of `project` produced, read back from MLflow."""
    import mlflow
    from mlflow import MlflowClient

    from mlops.tracking.client import configure

    configure(settings)
    runs = mlflow.search_runs(experiment_names=[project], order_by=["start_time DESC"], max_results=1, output_format="list")
    if not runs:
        raise RuntimeError(f"no MLflow run in experiment {project!r}")
    run = runs[0]
    versions = MlflowClient().search_model_versions(f"name = '{project}' and run_id = '{run.info.run_id}'")
    return {
        "project": project,
        "experiment": project,
        "run_id": run.info.run_id,
        "data_version": run.data.tags.get("mlops.data_version"),
        "model_dvc_version": run.data.tags.get("mlops.model_dvc_version"),
        "evaluation": run.data.tags.get("mlops.evaluation"),
        "device": run.data.tags.get("mlops.device"),
        "registered_version": int(versions[0].version) if versions else None,
        "metrics": {k: v for k, v in sorted(run.data.metrics.items()) if k.startswith("eval_")},
    }


def run_demo(settings: Settings, project: str) -> int:
    from mlops.config import ProjectConfigError, load_project

    source = settings.projects_dir / f"{project}.yaml"
    try:
        load_project(source)
    except ProjectConfigError as exc:
        print(f"cannot run the demo of {project!r}:\n{exc}", file=sys.stderr)
        return 1
    env = airflow_environment(settings)
    airflow = str(Path(sys.executable).with_name("airflow"))
    print("== initialising the Airflow metadata DB", flush=True)
    migrate(settings)
    dag_id = f"{project}__lifecycle"
    print(f"== airflow dags test {dag_id}", flush=True)
    start = time.monotonic()
    done = subprocess.run([airflow, "dags", "test", dag_id], env=env)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        print(f"lifecycle of {project} failed (exit {done.returncode}); the task logs are above", file=sys.stderr)
        return done.returncode
    summary = lifecycle_summary(settings, project)
    print(f"\n== {project}: lifecycle done in {seconds:.0f} s")
    print(f"DVC data version      {summary['data_version']}")
    print(f"DVC model version     {summary['model_dvc_version']}")
    print(f"MLflow experiment     {summary['experiment']}   (tracking store: {settings.tracking_uri})")
    print(f"MLflow run            {summary['run_id']}  on {summary['device']}")
    registered = summary["registered_version"]
    print(f"Registered model      {project} version {registered}" if registered else
          f"Registered model      none: evaluation {summary['evaluation']}")
    for name, value in summary["metrics"].items():
        print(f"  {name:22}{value:.4f}")
    print(f"\nOpen the UIs:  .venv/bin/mlops up   (Airflow http://{settings.bind_host}:{settings.airflow_port}, "
          f"MLflow http://{settings.bind_host}:{settings.mlflow_port}); stop them with .venv/bin/mlops down")
    return 0
