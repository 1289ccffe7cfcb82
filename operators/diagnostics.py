"""``on_failure_diagnostics``: why did this task fail?  Hardware context into the log and MLflow.

An Airflow ``on_failure_callback``.  In Airflow 3 it runs in the task's own process
right after the task failed (``finalize()`` of the task runner, with
``context["exception"]`` set), so the memory, swap, thermal and MLX allocator
readings describe the machine and the process that just failed.  It:

1. takes a :func:`mlops.hardware.diagnostics.snapshot` and diagnoses the exception;
2. logs the report (cause, evidence, advice, readings) to the task log;
3. when the DAG run has an MLflow training run -- the failed task's ``training``
   input, the XCom of an upstream train task, or (for the train task itself) the
   run MLXTrainOperator tagged with ``airflow.dag_id`` + ``airflow.run_id`` --
   sets ``mlops.failure_cause`` / ``mlops.failure_evidence`` / ``mlops.failure_task``
   on it and logs ``failure_diagnosis.json``.

It never raises: a failing diagnosis is logged and must not mask the task's own error.
Only Airflow-free modules are imported at module level, so DAG files stay light.
"""

from __future__ import annotations

import logging
from typing import Any

ARTIFACT_FILE = "failure_diagnosis.json"
TAG_CAUSE = "mlops.failure_cause"
TAG_EVIDENCE = "mlops.failure_evidence"
TAG_TASK = "mlops.failure_task"
#: MLflow tag values are limited (8000 chars on the server); keep well inside it.
_TAG_MAX = 5000
_TRAIN_OPERATOR = "MLXTrainOperator"


def on_failure_diagnostics(context: Any) -> None:
    """Airflow ``on_failure_callback`` (also usable as ``on_retry_callback``); never raises."""
    logger = _task_logger(context)
    try:
        _diagnose_failure(context, logger)
    except Exception:  # noqa: BLE001 - diagnostics must never mask the task's own error
        logger.exception("failure diagnostics could not complete (the task's own error is reported above)")


def _task_logger(context: Any) -> logging.Logger:
    task = _get(context, "task")
    logger = getattr(task, "log", None)
    return logger if logger is not None else logging.getLogger("airflow.task")


def _get(context: Any, key: str) -> Any:
    try:
        return context.get(key)
    except Exception:  # noqa: BLE001 - a context that is not a mapping
        return None


def _diagnose_failure(context: Any, logger: logging.Logger) -> dict[str, Any]:
    from mlops.hardware.diagnostics import diagnose, format_report, snapshot

    task, ti = _get(context, "task"), _get(context, "ti")
    error = _get(context, "exception")
    snap = snapshot(thermal_root=getattr(task, "hardware_root", None))
    limit = _memory_limit(task)
    if limit is not None:
        # The train step's own MLX limit (restored when training ended), not MLX's process default.
        snap.update(mlx_memory_limit_bytes=limit, mlx_memory_limit_source="training.memory_gb")
    diag = diagnose(error, snap, memory_limit_bytes=limit)
    report = format_report(diag, snap)
    where = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} run {getattr(ti, 'run_id', '?')} try {getattr(ti, 'try_number', '?')}"
    # Messages are formatted here: the task logger is structlog in Airflow 3, stdlib as a fallback.
    logger.error(f"Failure diagnostics for {where}\n{report}")

    payload = {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "try_number": getattr(ti, "try_number", None),
        "map_index": getattr(ti, "map_index", None),
        "error": None if error is None else {"type": type(error).__name__, "message": str(error)[:4000]},
        "diagnosis": diag.to_dict(),
        "snapshot": snap,
        "report": report,
    }
    result = {"diagnosis": diag, "snapshot": snap, "report": report, "mlflow_run_id": None}
    if diag.cause == "tracking_unavailable":
        logger.info("MLflow is unreachable: the diagnosis is only in this log")
        return result
    run_id = _attach_to_mlflow(task, ti, diag, payload, logger)
    result["mlflow_run_id"] = run_id
    return result


def _memory_limit(task: Any) -> int | None:
    """The MLX memory limit the train step sets (its ``training.memory_gb``), for tasks in the memory pool."""
    from mlops.resources.names import MEMORY_POOL

    project = getattr(task, "project", None)
    if getattr(task, "pool", None) != MEMORY_POOL or not isinstance(project, dict):
        return None
    try:
        return int(float(project["training"]["memory_gb"]) * 2**30)
    except (KeyError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- MLflow


def _settings(task: Any):
    if callable(getattr(task, "settings", None)):
        try:
            return task.settings()
        except Exception:  # noqa: BLE001 - fall back to the environment
            pass
    from mlops.settings import get_settings

    return get_settings()


def _train_upstreams(task: Any) -> list[Any]:
    try:
        return [t for t in task.get_flat_relatives(upstream=True) if type(t).__name__ == _TRAIN_OPERATOR]
    except Exception:  # noqa: BLE001
        return []


def _run_id_from_inputs(task: Any, ti: Any) -> tuple[str | None, str]:
    """A run id the task was given (its rendered ``training`` input) or an upstream train task pushed."""
    training = getattr(task, "training", None)
    if isinstance(training, dict) and training.get("run_id"):
        return str(training["run_id"]), "the task's training input"
    for upstream in _train_upstreams(task):
        try:
            value = ti.xcom_pull(task_ids=upstream.task_id)
        except Exception:  # noqa: BLE001 - e.g. no XCom channel in this process
            value = None
        if isinstance(value, dict) and value.get("run_id"):
            return str(value["run_id"]), f"XCom of {upstream.task_id}"
    return None, ""


def _tracking_store_exists(tracking_uri: str) -> bool:
    """False for a local SQLite store that was never created (nothing to search, don't create it)."""
    from pathlib import Path

    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).exists()
    return True


def _search_run(client: Any, task: Any, ti: Any) -> str | None:
    """The run MLXTrainOperator tagged with this DAG run (same try first, else the latest)."""
    project = getattr(task, "project", None)
    name = project.get("name") if isinstance(project, dict) else None
    experiment = client.get_experiment_by_name(name) if name else None
    if experiment is None:
        return None
    dag_id, run_id = str(ti.dag_id), str(ti.run_id)
    query = f"tags.`airflow.dag_id` = '{dag_id}'"
    if "'" not in run_id:
        query += f" and tags.`airflow.run_id` = '{run_id}'"
    runs = [
        r
        for r in client.search_runs(
            [experiment.experiment_id], query, max_results=50, order_by=["attributes.start_time DESC"]
        )
        if r.data.tags.get("airflow.run_id") == run_id
    ]
    if not runs:
        return None
    same_try = [r for r in runs if r.data.tags.get("airflow.try_number") == str(getattr(ti, "try_number", ""))]
    return (same_try or runs)[0].info.run_id


def _attach_to_mlflow(task: Any, ti: Any, diag: Any, payload: dict[str, Any], logger: logging.Logger) -> str | None:
    is_train = type(task).__name__ == _TRAIN_OPERATOR
    run_id, found_by = _run_id_from_inputs(task, ti) if not is_train else (None, "")
    if run_id is None and not (is_train or _train_upstreams(task)):
        logger.info("no MLflow training run in this DAG run yet: the diagnosis is only in this log")
        return None

    from mlflow import MlflowClient

    from mlops.tracking.client import TrackingUnavailable, ensure_reachable

    settings = _settings(task)
    try:
        ensure_reachable(settings.tracking_uri, timeout=3.0)
    except TrackingUnavailable as exc:
        logger.warning(f"cannot attach the diagnosis to MLflow: {exc}")
        return None
    if not _tracking_store_exists(settings.tracking_uri):
        logger.info(f"no MLflow store at {settings.tracking_uri}: the diagnosis is only in this log")
        return None
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    if run_id is None:
        run_id, found_by = _search_run(client, task, ti), "tags airflow.dag_id + airflow.run_id"
    if run_id is None:
        logger.info("no MLflow run tagged with this DAG run: the diagnosis is only in this log")
        return None

    client.set_tag(run_id, TAG_CAUSE, diag.cause)
    client.set_tag(run_id, TAG_EVIDENCE, "; ".join(diag.evidence)[:_TAG_MAX] or "(none)")
    client.set_tag(run_id, TAG_TASK, f"{payload['task_id']} (try {payload['try_number']})")
    client.log_dict(run_id, payload, ARTIFACT_FILE)
    logger.info(
        f"failure diagnosis attached to MLflow run {run_id} (found by {found_by}): "
        f"tag {TAG_CAUSE}={diag.cause}, artifact {ARTIFACT_FILE}"
    )
    return run_id
