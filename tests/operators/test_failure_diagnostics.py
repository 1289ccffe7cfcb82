"""Real failures of a lifecycle DAG in `dag.test()`: the failure callback diagnoses them.

Airflow 3 runs `on_failure_callback` in the task's process, after the task failed, with
`context["exception"]` set (task_runner.finalize); `dag.test()` runs every task in-process,
so a monkeypatched model family is what the train task runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from structlog.testing import capture_logs

from mlops.settings import get_settings

REPO = Path(__file__).resolve().parents[2]
ZERO_VERSION = "0" * 32 + ".dir"
PROJECT = """\
name: {name}
owner: test-team
retries: 0
data:
  num_samples: 256
{version}model:
  family: mlp_classifier
training:
  epochs: 1
"""


def load_dag(name: str, tmp_path: Path, monkeypatch, version: str | None = None, retries: int = 0):
    """The project's lifecycle DAG as Airflow loads it from dags/ (the factory's, callbacks as shipped)."""
    from airflow.dag_processing.dagbag import DagBag

    projects = tmp_path / "projects"
    projects.mkdir()
    pinned = f'  version: "{version}"\n' if version else ""
    text = PROJECT.format(name=name, version=pinned).replace("retries: 0\n", f"retries: {retries}\n")
    (projects / f"{name}.yaml").write_text(text)
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))
    # An empty hardware tree: thermal state "unknown", which the gate's default lets through.
    (tmp_path / "hw").mkdir()
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path / "hw"))
    return DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag(f"{name}__lifecycle")


def task_log(events: list[dict]) -> str:
    """What the tasks' own loggers (structlog ``airflow.task.operators.<module>.<class>``) wrote."""
    return "\n".join(str(e.get("event")) for e in events if e.get("log_level") in ("info", "warning", "error"))


def test_data_step_failure_is_diagnosed_as_data_error_in_the_task_log(airflow_db, tmp_path, monkeypatch):
    dag = load_dag("diag_data", tmp_path, monkeypatch, version=ZERO_VERSION)
    with capture_logs() as events:
        run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["pull_data"] == "failed" and states["train"] == "upstream_failed"

    log = task_log(events)
    assert "Failure diagnostics for diag_data__lifecycle.pull_data" in log
    assert "Failure diagnosis: data_error (confidence high)" in log
    assert f"DataError from the DVC data layer: DataError: cannot get data version {ZERO_VERSION}" in log
    assert "hardware at failure" in log and "memory:" in log and "MLX:" in log
    assert "no MLflow training run in this DAG run yet" in log


def test_train_out_of_memory_tags_the_mlflow_run(airflow_db, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from mlops.training.families.mlp_classifier import MLPClassifierSession

    def out_of_memory(self, data, batch_size, epoch):
        raise MemoryError("[metal::malloc] Attempting to allocate 68719476736 bytes")

    monkeypatch.setattr(MLPClassifierSession, "train_epoch", out_of_memory)
    dag = load_dag("diag_oom", tmp_path, monkeypatch)
    with capture_logs() as events:
        run = dag.test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert tis["pull_data"].state == "success" and tis["train"].state == "failed"

    client = MlflowClient(get_settings().tracking_uri)
    experiment = client.get_experiment_by_name("diag_oom")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`airflow.run_id` = '{run.run_id}'"
    )
    assert len(runs) == 1
    mlflow_run = runs[0]
    assert mlflow_run.info.status == "FAILED"
    tags = mlflow_run.data.tags
    assert tags["mlops.failure_cause"] == "out_of_memory"
    assert "[metal::malloc]" in tags["mlops.failure_evidence"]
    assert tags["mlops.failure_task"] == "train (try 1)"

    path = client.download_artifacts(mlflow_run.info.run_id, "failure_diagnosis.json", str(tmp_path))
    payload = json.loads(Path(path).read_text())
    assert payload["task_id"] == "train" and payload["run_id"] == run.run_id
    assert payload["error"]["type"] == "MemoryError"
    assert payload["diagnosis"]["cause"] == "out_of_memory"
    assert payload["snapshot"]["mlx_in_process"] is True and payload["snapshot"]["mlx_device"] in ("cpu", "gpu")
    # The train step limited MLX to the project's memory_gb (default 2 GB): the limit the diagnosis used.
    assert payload["snapshot"]["mlx_memory_limit_bytes"] == 2 * 2**30
    assert payload["snapshot"]["mlx_memory_limit_source"] == "training.memory_gb"

    log = task_log(events)
    assert "Failure diagnosis: out_of_memory" in log and "limit 2.0 GiB (training.memory_gb)" in log
    assert f"failure diagnosis attached to MLflow run {mlflow_run.info.run_id}" in log


def diagnosed_tries(log: str, dag_id: str, run_id: str) -> list[tuple[str, int]]:
    """(task, try) of every diagnosis in the log, in order."""
    import re

    pattern = rf"Failure diagnostics for {re.escape(dag_id)}\.(\w+) run {re.escape(run_id)} try (\d+)"
    return [(task, int(n)) for task, n in re.findall(pattern, log)]


def test_shipped_callbacks_diagnose_every_retried_and_final_failure(airflow_db, tmp_path, monkeypatch):
    """The factory's DAG as shipped (no callback attached here), one retry per task:
    train fails its first try and succeeds on the retry; evaluate fails both tries.
    ProjectOperator's default on_retry_callback must diagnose train try 1 and evaluate try 1,
    its default on_failure_callback evaluate try 2."""
    from mlflow import MlflowClient

    import mlops.training.evaluate
    from mlops.training.families.mlp_classifier import MLPClassifierSession
    from operators.base import ProjectOperator
    from operators.diagnostics import on_failure_diagnostics

    train_epoch, tries = MLPClassifierSession.train_epoch, []

    def out_of_memory_once(self, data, batch_size, epoch):
        tries.append(epoch)
        if len(tries) == 1:
            raise MemoryError("[metal::malloc] Attempting to allocate 68719476736 bytes")
        return train_epoch(self, data, batch_size, epoch)

    def nan_scores(*args, **kwargs):
        raise FloatingPointError("NaN in the validation scores")

    monkeypatch.setattr(MLPClassifierSession, "train_epoch", out_of_memory_once)
    monkeypatch.setattr(mlops.training.evaluate, "evaluate_model", nan_scores)
    dag = load_dag("diag_retry", tmp_path, monkeypatch, retries=1)
    # As built: every ProjectOperator carries the diagnostics on both callbacks, nothing else does.
    for task in dag.tasks:
        shipped = [on_failure_diagnostics] if isinstance(task, ProjectOperator) else []
        assert (list(task.on_retry_callback or []), list(task.on_failure_callback or [])) == (shipped, shipped), task.task_id
        assert task.retries == 1, task.task_id

    with capture_logs() as events:
        run = dag.test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert (tis["train"].state, tis["train"].try_number) == ("success", 2)
    assert (tis["evaluate"].state, tis["evaluate"].try_number) == ("failed", 2)
    assert tis["register"].state == "upstream_failed"
    assert tries == [0, 0]  # one epoch, run twice: the failed try and the retry

    log = task_log(events)
    # retry callback: train try 1, evaluate try 1; failure callback: evaluate try 2. Nothing else failed.
    assert diagnosed_tries(log, "diag_retry__lifecycle", run.run_id) == [("train", 1), ("evaluate", 1), ("evaluate", 2)]
    assert "Failure diagnosis: out_of_memory" in log
    assert "FloatingPointError" in log

    client = MlflowClient(get_settings().tracking_uri)
    experiment = client.get_experiment_by_name("diag_retry")
    runs = client.search_runs([experiment.experiment_id], f"tags.`airflow.run_id` = '{run.run_id}'")
    by_status = {r.info.status: r for r in runs}
    assert len(runs) == 2 and set(by_status) == {"FAILED", "FINISHED"}
    failed_try, trained = by_status["FAILED"].data.tags, by_status["FINISHED"]
    # The retried train try: tagged by the retry callback.
    assert (failed_try["mlops.failure_task"], failed_try["mlops.failure_cause"]) == ("train (try 1)", "out_of_memory")
    # The run evaluate was given: tagged by evaluate's retry, then by its final failure.
    assert trained.info.run_id == tis["train"].xcom_pull(task_ids="train")["run_id"]
    assert trained.data.tags["mlops.failure_task"] == "evaluate (try 2)"
    path = client.download_artifacts(trained.info.run_id, "failure_diagnosis.json", str(tmp_path))
    payload = json.loads(Path(path).read_text())
    assert (payload["task_id"], payload["try_number"], payload["error"]["type"]) == ("evaluate", 2, "FloatingPointError")


class _Task:
    task_id = "train"
    pool = "mlx_memory"
    project = {"name": "nothing_here", "training": {"memory_gb": 1}}

    def __init__(self, logger):
        self.log = logger


def test_callback_never_raises(monkeypatch, caplog):
    """A broken diagnosis is logged; the task's own error stays the error."""
    import mlops.hardware.diagnostics as diagnostics
    from operators.diagnostics import on_failure_diagnostics

    def broken(*args, **kwargs):
        raise RuntimeError("sensor exploded")

    monkeypatch.setattr(diagnostics, "snapshot", broken)
    logger = logging.getLogger("test.diagnostics.task")
    with caplog.at_level(logging.INFO, logger="test.diagnostics.task"):
        assert on_failure_diagnostics({"task": _Task(logger), "ti": None, "exception": MemoryError()}) is None
        assert on_failure_diagnostics(None) is None  # not even a context
    assert "failure diagnostics could not complete" in caplog.text and "sensor exploded" in caplog.text


def test_tracking_unavailable_stays_in_the_log(monkeypatch, caplog):
    from mlops.tracking.client import TrackingUnavailable
    from operators import diagnostics

    def no_mlflow(*args, **kwargs):
        raise AssertionError("MLflow must not be contacted when it is the cause")

    monkeypatch.setattr(diagnostics, "_attach_to_mlflow", no_mlflow)
    logger = logging.getLogger("test.diagnostics.task")
    error = TrackingUnavailable("MLflow tracking server http://127.0.0.1:9 is unreachable")
    with caplog.at_level(logging.INFO, logger="test.diagnostics.task"):
        diagnostics.on_failure_diagnostics({"task": _Task(logger), "ti": None, "exception": error})
    assert "Failure diagnosis: tracking_unavailable (confidence high)" in caplog.text
    assert "the diagnosis is only in this log" in caplog.text
    assert "could not complete" not in caplog.text


@pytest.mark.parametrize("pool, limit", [("mlx_memory", 2**30), ("default_pool", None)])
def test_memory_limit_comes_from_the_train_steps_pool_and_yaml(pool, limit, monkeypatch):
    from operators.diagnostics import _memory_limit

    task = _Task(logging.getLogger("x"))
    monkeypatch.setattr(task, "pool", pool, raising=False)
    assert _memory_limit(task) == limit


def test_downstream_failure_tags_the_training_run_it_was_given(tmp_path, monkeypatch, caplog):
    """evaluate/register/version_artifacts get the train result as `training`: its run is the one tagged."""
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from mlops.tracking.client import configure
    from operators.diagnostics import on_failure_diagnostics

    settings = get_settings()
    configure(settings)
    client = MlflowClient(settings.tracking_uri)
    experiment_id = client.create_experiment("diag_eval", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment_id).info.run_id

    class MLXEvaluateOperator:  # the failing task as the callback sees it (rendered fields)
        task_id, pool = "evaluate", "mlx_compute"
        project = {"name": "diag_eval", "training": {"memory_gb": 2}}
        training = {"run_id": run_id}
        log = logging.getLogger("test.diagnostics.evaluate")

        def settings(self):
            return settings

        def get_flat_relatives(self, upstream=False):
            return []

    ti = SimpleNamespace(dag_id="diag_eval__lifecycle", run_id="manual__x", task_id="evaluate", try_number=2, map_index=-1)
    with caplog.at_level(logging.INFO, logger="test.diagnostics.evaluate"):
        on_failure_diagnostics({"task": MLXEvaluateOperator(), "ti": ti, "exception": ValueError("NaN in scores")})
    tags = client.get_run(run_id).data.tags
    assert tags["mlops.failure_cause"] == "unknown" and tags["mlops.failure_task"] == "evaluate (try 2)"
    assert f"attached to MLflow run {run_id} (found by the task's training input)" in caplog.text
    artifacts = [f.path for f in client.list_artifacts(run_id)]
    assert artifacts == ["failure_diagnosis.json"]
