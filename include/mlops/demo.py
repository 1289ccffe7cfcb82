"""README command 1: run one sample project's whole lifecycle with `airflow dags test`, then summarise.

For a project with `serving.enabled`, the demo then starts the Ray head and the gateway
(if `mlops up` has not), runs the project's deploy DAG, sends one prediction through the
gateway and prints the API key it generated; `mlops down` stops what it started.
"""

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
    config = load_project(source)
    if config.serving.enabled and registered:
        code = serve_demo(settings, project, airflow, env)
        if code:
            return code
    print(f"\nOpen the UIs:  .venv/bin/mlops up   (Airflow http://{settings.bind_host}:{settings.airflow_port}, "
          f"MLflow http://{settings.bind_host}:{settings.mlflow_port}); stop them with .venv/bin/mlops down")
    return 0


def serve_demo(settings: Settings, project: str, airflow: str, env: dict[str, str]) -> int:
    """Deploy the registered version through the deploy DAG and predict once through the gateway."""
    import json
    import urllib.request

    from mlops.serving.api_keys import api_keys_file, ensure_api_key
    from mlops.serving.footprint import example_inputs
    from mlops.serving.ray_cluster import ray_environment
    from mlops.services import platform_services, running_pid, start, wait_healthy

    key = ensure_api_key(settings)
    service_env = {**env, **ray_environment(settings)}
    for service in platform_services(settings):
        if service.name not in ("ray-head", "gateway"):
            continue
        pid = running_pid(settings, service.name)
        if pid is None:
            print(f"== starting {service.name}", flush=True)
            pid = start(settings, service, service_env)
        if service.health_url and not wait_healthy(service.health_url, pid=pid):
            print(f"{service.name} did not start; see {settings.run_dir / (service.name + '.log')}", file=sys.stderr)
            return 1
    dag_id = f"{project}__deploy"
    print(f"== airflow dags test {dag_id}", flush=True)
    start_time = time.monotonic()
    done = subprocess.run([airflow, "dags", "test", dag_id], env=service_env)
    if done.returncode != 0:
        print(f"deploy of {project} failed (exit {done.returncode}); the task log is above", file=sys.stderr)
        return done.returncode
    deploy_seconds = time.monotonic() - start_time

    gateway = f"http://{settings.bind_host}:{settings.gateway_port}"
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    with urllib.request.urlopen(urllib.request.Request(f"{gateway}/v1/models", headers=headers), timeout=60) as response:
        model = next(m for m in json.loads(response.read())["models"] if m["name"] == project)
    inputs = {name: a.tolist() for name, a in example_inputs(model["signature"], 1).items()}
    url = f"{gateway}/v1/projects/{project}/models/latest/predict"
    body = json.dumps({"inputs": inputs}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=60) as response:
        answer = json.loads(response.read())
    print(f"\n== {project}: deployed in {deploy_seconds:.0f} s")
    print(f"Serving               version {model.get('serving_version')} on {model['backend']} ({model['device']}), "
          f"replicas {model['replicas']}")
    print(f"Gateway               {gateway}   API key (generated, in {api_keys_file(settings)}): {key}")
    print(f"Prediction            {json.dumps(answer['outputs'])[:200]}")
    print(f"Try it:  curl -s -H 'X-API-Key: {key}' -H 'Content-Type: application/json' {url} -d '{body.decode()}'")
    print("Ray head and gateway keep running; stop them with .venv/bin/mlops down")
    return 0
