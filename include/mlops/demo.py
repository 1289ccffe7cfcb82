"""README command 1: run one sample project's whole lifecycle with `airflow dags test`, then summarise.

For a project with `serving.enabled`, the demo then starts the Ray head and the gateway
(if `mlops up` has not), runs the project's deploy DAG, sends one prediction through the
gateway and prints the API key it generated; `mlops down` stops what it started. With
`monitoring.enabled` it then sends traffic whose inputs are shifted away from the training
data (with feedback labels), and runs the monitor DAG, which finds the drift and requests
retraining.

Airflow's own output (every task's log) goes to one file per demo, whose path it prints; the
terminal gets a line per task as it ends (state, time, result), a failed task's error, and the
summary.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from mlops.airflow_env import airflow_environment
from mlops.dag_test_runner import DagTestRun, error_excerpt, run_dag_test
from mlops.services import migrate
from mlops.settings import Settings


def demo_log(settings: Settings, project: str) -> Path:
    """The file this demo's Airflow output goes to (one per demo run, kept under the state folder)."""
    return settings.home / "logs" / f"demo-{project}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def dag_step(airflow: str, dag_id: str, env: dict[str, str], log: Path) -> DagTestRun | None:
    """Run one DAG with `airflow dags test`, a line per task; None (and the error printed) if it failed."""
    print(f"== {dag_id}", flush=True)
    run = run_dag_test(airflow, dag_id, env, log, echo=lambda line: print(line, flush=True))
    if run.ok:
        return run
    failed = ", ".join(s.task_id for s in run.failed_steps()) or f"airflow dags test (exit {run.returncode})"
    print(f"\n{dag_id} failed at {failed} after {run.seconds:.0f} s. Its error:", file=sys.stderr)
    print(error_excerpt(log) or "(no error found in the log)", file=sys.stderr)
    print(f"Whole log: {log}", file=sys.stderr)
    return None


def lifecycle_summary(settings: Settings, project: str) -> dict[str, Any]:
    """What the latest lifecycle run of `project` produced, read back from MLflow."""
    import mlflow
    from mlflow import MlflowClient

    from mlops.analytics import names
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
        "performance": {k: v for k, v in run.data.metrics.items() if k.startswith(names.PERF)},
        "throughput_unit": run.data.tags.get(names.PERF_UNIT, "samples"),
        "machine": run.data.tags.get(names.MACHINE, "unknown"),
    }


def performance_line(summary: dict[str, Any]) -> str:
    """The run's comparable figures in one line (those it has: power only where it was read)."""
    from mlops.analytics import names

    perf, unit = summary["performance"], summary["throughput_unit"]
    parts = []
    for key, template in (
        (names.THROUGHPUT, "{:.0f} " + unit + "/s"), (names.STEP_TIME_MS, "step {:.2f} ms"),
        (names.PEAK_MEMORY_MB, "peak {:.1f} MB"), (names.MODEL_FOOTPRINT_MB, "model {:.2f} MB"),
        (names.CPU_UTILIZATION_MEAN, "CPU {:.0f} %"), (names.GPU_UTILIZATION_MEAN, "GPU {:.0f} %"),
        (names.ENERGY_PER_SAMPLE_J, "{:.2g} J/" + unit.rstrip("s")),
    ):
        if key in perf:
            parts.append(template.format(perf[key]))
    return ", ".join(parts) or "not recorded"


def run_demo(settings: Settings, project: str) -> int:
    from mlops.config import ProjectConfigError, load_project, project_file

    source = project_file(settings.projects_dir, project)
    try:
        load_project(source)
    except ProjectConfigError as exc:
        print(f"cannot run the demo of {project!r}:\n{exc}", file=sys.stderr)
        return 1
    env = airflow_environment(settings)
    airflow = str(Path(sys.executable).with_name("airflow"))
    log = demo_log(settings, project)
    print(f"== Airflow's output and task logs go to {log}", flush=True)
    print("== initialising the Airflow metadata DB", flush=True)
    migrate(settings)
    run = dag_step(airflow, f"{project}__lifecycle", env, log)
    if run is None:
        return 1
    summary = lifecycle_summary(settings, project)
    print(f"\n== {project}: lifecycle done in {run.seconds:.0f} s")
    print(f"DVC data version      {summary['data_version']}")
    print(f"DVC model version     {summary['model_dvc_version']}")
    print(f"MLflow experiment     {summary['experiment']}   (tracking store: {settings.tracking_uri})")
    print(f"MLflow run            {summary['run_id']}  on {summary['device']}")
    registered = summary["registered_version"]
    print(f"Registered model      {project} version {registered}" if registered else
          f"Registered model      none: evaluation {summary['evaluation']}")
    for name, value in summary["metrics"].items():
        print(f"  {name:22}{value:.4f}")
    print(f"Performance           {performance_line(summary)}")
    print(f"                      on {summary['machine']}; compare techniques: .venv/bin/mlops compare, "
          f"charts: .venv/bin/mlops report")
    config = load_project(source)
    if config.serving.enabled and registered:
        code = serve_demo(settings, project, airflow, env, log)
        if code:
            return code
        if config.monitoring.enabled:
            code = monitor_demo(settings, project, airflow, env, log)
            if code:
                return code
    print(f"\nOpen the UIs:  .venv/bin/mlops up   (Airflow http://{settings.bind_host}:{settings.airflow_port}, "
          f"its Toolkit dashboard http://{settings.bind_host}:{settings.airflow_port}/plugin/toolkit, "
          f"MLflow http://{settings.bind_host}:{settings.mlflow_port}); stop them with .venv/bin/mlops down")
    return 0


def serve_demo(settings: Settings, project: str, airflow: str, env: dict[str, str], log: Path) -> int:
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
    run = dag_step(airflow, f"{project}__deploy", service_env, log)
    if run is None:
        return 1
    deploy_seconds = run.seconds

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


def _gateway_json(settings: Settings, path: str, key: str, body: dict | None = None) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"http://{settings.bind_host}:{settings.gateway_port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def monitor_demo(
    settings: Settings, project: str, airflow: str, env: dict[str, str], log: Path, requests: int = 200
) -> int:
    """Shifted traffic with feedback through the gateway, then the monitor DAG; print what it found."""
    import numpy as np

    from mlops.serving.api_keys import ensure_api_key
    from mlops.serving.footprint import example_inputs
    from mlops.tracking.client import configure

    key = ensure_api_key(settings)
    model = next(m for m in _gateway_json(settings, "/v1/models", key)["models"] if m["name"] == project)
    rng = np.random.default_rng(0)
    print(f"== sending {requests} predictions with inputs shifted by +2 (feedback: random labels) through the gateway", flush=True)
    for _ in range(requests):
        inputs = {
            name: (array + 2.0 + rng.standard_normal(array.shape)).astype(array.dtype).tolist()
            for name, array in example_inputs(model["signature"], 1).items()
        }
        answer = _gateway_json(settings, f"/v1/projects/{project}/models/latest/predict", key, {"inputs": inputs})
        probabilities = answer["outputs"].get("probabilities")
        if probabilities is not None and answer.get("request_id"):  # ground truth of a world the model no longer fits
            truth = rng.integers(0, len(probabilities[0]), len(probabilities)).tolist()
            _gateway_json(settings, f"/v1/projects/{project}/feedback", key, {"request_id": answer["request_id"], "labels": truth})
    time.sleep(6)  # the capture writer flushes every 5 s
    if dag_step(airflow, f"{project}__monitor", env, log) is None:
        return 1
    import mlflow

    configure(settings)
    (run,) = mlflow.search_runs(
        experiment_names=[project], filter_string="tags.`mlops.kind` = 'monitoring'",
        order_by=["start_time DESC"], max_results=1, output_format="list",
    )
    tags, metrics = run.data.tags, run.data.metrics
    print(f"\n== {project}: monitoring")
    print(f"Drift                 {tags.get('mlops.drift_status')}, share of drifted columns {metrics.get('drift_share', float('nan')):.2f}")
    if "serving_accuracy" in metrics:
        print(f"Accuracy (feedback)   {metrics['serving_accuracy']:.3f}")
    print(f"Serving performance   {tags.get('mlops.performance_status')}")
    print(f"Retraining requested  {tags.get('mlops.retrain_requested')} (the lifecycle runs on the retrain asset under `mlops up`)")
    print(f"Report                MLflow run {run.info.run_id} (monitoring_report.json); drift HTML under "
          f"{settings.home / 'monitoring' / 'reports' / project}")
    return 0
