"""The lifecycle operators run for real in `dag.test()`: DVC data, MLX training, MLflow registry."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from mlops_testing import cpu_model_name, free_port, memory_total_bytes, mlx_device

from mlops.config import parse_project_text
from mlops.config.loader import load_project
from mlops.data.project_data import load_arrays
from mlops.settings import get_settings

PROJECT = """\
name: {name}
owner: test-team
tags: [smoke]
data:
  num_samples: 512
model:
  family: mlp_classifier
training:
  epochs: 2
  techniques: [quantization]
evaluation:
  metric: accuracy
  threshold: {threshold}
"""


REPO = Path(__file__).resolve().parents[2]


def model_asset_events(db: Path, project: str) -> list[dict]:
    """The extras of the project's model-asset events in the Airflow DB, oldest first."""
    from mlops_testing import sqlite_rows

    rows = sqlite_rows(
        db,
        "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri = ? order by e.id",
        f"mlops://models/{project}",
    )
    return [json.loads(extra) for (extra,) in rows]


def safetensors_tensor_bytes(path: Path) -> int:
    """Bytes of all tensors in a safetensors file, from its header (8-byte length, JSON of data_offsets)."""
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return sum(end - start for name, spec in header.items() if name != "__metadata__" for start, end in [spec["data_offsets"]])


def run_lifecycle(name: str, threshold: float, tmp_path: Path, monkeypatch):
    """Drop the YAML into a projects folder, load its DAG from dags/ as Airflow does, `dag.test()` it."""
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / f"{name}.yaml").write_text(PROJECT.format(name=name, threshold=threshold))
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(tmp_path))
    dag = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag(f"{name}__lifecycle")
    run = dag.test()
    return dag, run, {ti.task_id: ti for ti in run.get_task_instances()}


def test_lifecycle_registers_a_tagged_model(airflow_db, tmp_path: Path, monkeypatch):
    from mlflow import MlflowClient

    dag, run, tis = run_lifecycle("smoke_ok", 0.3, tmp_path, monkeypatch)
    assert {t: ti.state for t, ti in tis.items()} == {
        "pull_data": "success", "thermal_gate": "success", "train": "success", "evaluate": "success",
        "register": "success", "build": "success", "version_artifacts": "success",
    }
    training = tis["train"].xcom_pull(task_ids="train")
    registered = tis["register"].xcom_pull(task_ids="register")
    data = tis["pull_data"].xcom_pull(task_ids="pull_data")

    client = MlflowClient(get_settings().tracking_uri)
    mlflow_run = client.get_run(training["run_id"])
    experiment = client.get_experiment(mlflow_run.info.experiment_id)
    assert experiment.name == "smoke_ok" and experiment.tags["mlops.project"] == "smoke_ok"
    tags, params, metrics = mlflow_run.data.tags, mlflow_run.data.params, mlflow_run.data.metrics
    assert tags["mlops.data_version"] == data["version"] and params["data_version"] == data["version"]
    device = mlx_device()  # what MLX itself picks on this machine
    assert tags["technique.quantization"] == "true" and tags["mlops.device"] == device
    assert tags["mlops.model_dvc_version"].endswith(".dir")

    # The hardware logged is this machine's, as the OS reports it (not the platform's probe).
    assert params["hw.mlx_version"] == importlib.metadata.version("mlx") and params["hw.mlx_device"] == device
    if sys.platform == "darwin":
        assert params["hw.chip"] == cpu_model_name()
    else:
        assert params["hw.cpu_brand"] == params["hw.chip"] == cpu_model_name()
    hardware = json.loads(Path(client.download_artifacts(training["run_id"], "hardware.json", str(tmp_path))).read_text())
    assert (hardware["memory_total_bytes"], hardware["cpu_cores_logical"]) == (memory_total_bytes(), os.cpu_count())
    assert params["hw.memory_total_gb"] == f"{memory_total_bytes() / 2**30:.1f}"

    # Performance figures agree with each other and with the data the run trained on.
    config = parse_project_text(PROJECT.format(name="smoke_ok", threshold=0.3), "smoke_ok.yaml")
    arrays = load_arrays(data["path"])
    n_train, n_val = len(arrays["train_y"]), len(arrays["val_y"])
    assert (n_train, n_val) == (410, 102)  # 512 samples, a fifth held out
    steps = math.ceil(n_train / config.training.batch_size)
    history = {
        key: [m.value for m in sorted(client.get_metric_history(training["run_id"], key), key=lambda m: m.step)]
        for key in ("epoch_seconds", "samples_per_second", "step_time_ms", "val_accuracy", "mlx_peak_memory_bytes")
    }
    assert [m.step for m in client.get_metric_history(training["run_id"], "val_accuracy")] == [0, 1]  # one point per epoch
    for epoch in range(2):
        seconds = history["epoch_seconds"][epoch]
        assert history["samples_per_second"][epoch] * seconds == pytest.approx(n_train, rel=1e-9)
        assert history["step_time_ms"][epoch] == pytest.approx(1000 * seconds / steps, rel=1e-9)
        correct = history["val_accuracy"][epoch] * n_val  # a count of right answers out of n_val
        assert correct == pytest.approx(round(correct), abs=1e-3) and 0 <= round(correct) <= n_val
    # Both epochs ran inside the train task.
    train_seconds = (tis["train"].end_date - tis["train"].start_date).total_seconds()
    assert 0 < sum(history["epoch_seconds"]) < train_seconds
    # MLX memory: at least the float32 weights, Adam's two moments and the gradients
    # (4 x 6,532 parameters x 4 bytes), within the task's limit; the peak only grows over the run.
    hp = {"features": 32, "hidden": 64, "num_classes": 4}  # mlp_classifier's defaults: 2 hidden layers
    parameters = (hp["features"] + 1) * hp["hidden"] + (hp["hidden"] + 1) * hp["hidden"] + (hp["hidden"] + 1) * hp["num_classes"]
    peaks = history["mlx_peak_memory_bytes"]
    assert 4 * 4 * parameters <= peaks[0] <= peaks[1] <= metrics["mlx_run_peak_memory_bytes"] <= int(params["mlx_memory_limit_bytes"])
    # Final and evaluate-step accuracy = the saved model's accuracy on the validation split, computed here.
    from mlops.training.artifacts import restore_session

    predicted = restore_session(Path(training["model_dir"])).predict({"x": np.asarray(arrays["val_x"])})["label"]
    accuracy = float(np.mean(predicted == np.asarray(arrays["val_y"])))
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-6) and metrics["eval_accuracy"] == pytest.approx(accuracy, abs=1e-6)

    version = client.get_model_version("smoke_ok", str(registered["version"]))
    assert version.run_id == training["run_id"]
    assert (version.tags["project"], version.tags["model_family"], version.tags["techniques"]) == ("smoke_ok", "mlp_classifier", "quantization")
    assert (version.tags["mlx_version"], version.tags["device_trained_on"]) == (importlib.metadata.version("mlx"), device)
    assert version.tags["dtype"] == "int4"  # quant_bits 4
    # The footprint tag is the size of the tensors in the saved safetensors file (read from its header).
    assert int(version.tags["memory_footprint_bytes"]) == safetensors_tensor_bytes(Path(training["model_dir"]) / "model.safetensors")
    # The evaluation rides on the version too (the dashboard ranks versions without reading their runs).
    assert (version.tags["mlops.quality_metric"], version.tags["mlops.quality_goal"]) == ("accuracy", "max")
    assert float(version.tags["mlops.eval.accuracy"]) == metrics["eval_accuracy"]
    assert float(version.tags["mlops.eval.loss"]) == metrics["eval_loss"]

    # build published the model asset with the version: what schedules the project's deploy DAG.
    assert model_asset_events(airflow_db, "smoke_ok") == [{"version": registered["version"], "bento": f"smoke_ok:v{registered['version']}"}]


def test_register_is_idempotent_on_retry(airflow_db, tmp_path: Path, monkeypatch):
    from mlops.tracking.registry import register_run_model

    _, _, tis = run_lifecycle("smoke_retry", 0.0, tmp_path, monkeypatch)
    training = tis["train"].xcom_pull(task_ids="train")
    first = tis["register"].xcom_pull(task_ids="register")
    again = register_run_model(get_settings(), "smoke_retry", training["run_id"], training["model_uri"], {})
    assert (again["version"], again["created"]) == (first["version"], False)


def test_threshold_not_met_skips_registration_but_versions_artifacts(airflow_db, tmp_path: Path, monkeypatch):
    from mlflow import MlflowClient

    _, run, tis = run_lifecycle("smoke_gate", 1.01, tmp_path, monkeypatch)
    assert tis["evaluate"].state == "success" and tis["register"].state == tis["build"].state == "skipped"
    assert tis["version_artifacts"].state == "success"
    training = tis["train"].xcom_pull(task_ids="train")
    client = MlflowClient(get_settings().tracking_uri)
    assert client.get_run(training["run_id"]).data.tags["mlops.evaluation"] == "failed"
    assert client.search_model_versions("name = 'smoke_gate'") == []
    assert model_asset_events(airflow_db, "smoke_gate") == []  # nothing to deploy


def test_mlflow_unreachable_fails_training_clearly(tmp_path: Path, monkeypatch):
    from mlops.training.trainer import train_project
    from mlops.tracking.client import TrackingUnavailable

    port = free_port()
    monkeypatch.setenv("MLOPS_TRACKING_URI", f"http://127.0.0.1:{port}")
    config = parse_project_text(PROJECT.format(name="smoke_down", threshold=0), "x.yaml")
    with pytest.raises(TrackingUnavailable, match=f"127.0.0.1:{port} is unreachable.*mlops up"):
        train_project(get_settings(), config, data_path=str(tmp_path), data_version="none")


def test_run_param_switches_data_version_and_training_uses_it(airflow_db, tmp_path: Path, monkeypatch):
    """A DAG-run param pins an older DVC data version; the run trains on it and logs it."""
    from airflow.dag_processing.dagbag import DagBag
    from mlflow import MlflowClient

    _, _, tis = run_lifecycle("smoke_versions", 0.0, tmp_path, monkeypatch)
    v1 = tis["pull_data"].xcom_pull(task_ids="pull_data")["version"]
    # The YAML changes: more samples → a new data version on the next run.
    source = tmp_path / "smoke_versions.yaml"
    source.write_text(source.read_text().replace("num_samples: 512", "num_samples: 768"))
    dag = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag("smoke_versions__lifecycle")
    tis2 = {ti.task_id: ti for ti in dag.test().get_task_instances()}
    v2 = tis2["pull_data"].xcom_pull(task_ids="pull_data")["version"]
    assert v2 != v1
    tis3 = {ti.task_id: ti for ti in dag.test(run_conf={"data_version": v1}).get_task_instances()}
    assert tis3["pull_data"].xcom_pull(task_ids="pull_data")["version"] == v1
    run_id = tis3["train"].xcom_pull(task_ids="train")["run_id"]
    run = MlflowClient(get_settings().tracking_uri).get_run(run_id)
    assert run.data.params["data_version"] == v1 and run.data.tags["mlops.data_version"] == v1


SHIPPED = sorted(p.stem for p in (REPO / "projects").glob("*.yaml"))


@pytest.mark.parametrize("project", SHIPPED)
def test_every_shipped_project_runs_its_lifecycle_to_a_registered_model(project: str, airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(REPO / "projects"))
    dag = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag(f"{project}__lifecycle")
    tis = {ti.task_id: ti for ti in dag.test().get_task_instances()}
    states = {t: ti.state for t, ti in tis.items()}
    config = load_project(REPO / "projects" / f"{project}.yaml")
    if config.federated is None:
        steps = ["pull_data", "thermal_gate", "train", "evaluate", "register", "build", "version_artifacts"]
        assert states == dict.fromkeys(steps, "success"), tis["evaluate"].xcom_pull(task_ids="evaluate")
        return
    # Federated: every round trains the clients it sampled (the others skip) and aggregates them.
    fed = config.federated
    skipped = sorted(t for t, s in states.items() if s == "skipped")
    assert all(t.startswith("round_") and ".train_" in t for t in skipped), states
    assert len(skipped) == fed.rounds * (fed.client_count - (fed.clients_per_round or fed.client_count)), states
    assert {s for t, s in states.items() if t not in skipped} == {"success"}, states
    rounds = [tis[f"round_{r}.aggregate"].xcom_pull(task_ids=f"round_{r}.aggregate") for r in range(1, fed.rounds + 1)]
    assert all(not r["missing"] and len(r["clients"]) == (fed.clients_per_round or fed.client_count) for r in rounds)
