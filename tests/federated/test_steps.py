"""The federated lifecycle through its JSON steps, as the operators call them, on two machines."""

from __future__ import annotations

import json

import pytest
from federated_support import federated_project, project_data
from mlflow import MlflowClient

from mlops.analytics.compare import training_runs
from mlops.federated import steps
from mlops.federated.partitions import partition_paths
from mlops.federated.plan import sample_clients
from mlops.training.evaluate import evaluate_model

# What `train_project` returns: evaluate, register, build and version_artifacts read these
TRAIN_RESULT = {"run_id", "experiment_id", "experiment", "model_uri", "model_dir", "metrics", "epochs", "device",
                "mlx_version", "data_version", "dtype", "weights_bytes", "peak_memory_bytes", "applied"}


def test_two_clients_on_two_machines_improve_over_three_rounds_and_publish_a_model(machines):
    a, b = machines
    config = federated_project("fed_loop", rounds=3, num_samples=1024)
    project = config.model_dump(mode="json")
    data = project_data(a, config)
    tags = {"airflow.dag_id": "fed_loop__lifecycle", "airflow.run_id": "manual__1"}

    partitions = steps.partition(project, a.to_env(), data["path"], data["version"])
    federation = steps.start(project, a.to_env(), data["version"], partitions, tags)
    assert json.loads(json.dumps(federation)) == federation  # it travels as XCom
    assert federation["sampled"] == {"1": ["client_1", "client_2"], "2": ["client_1", "client_2"],
                                     "3": ["client_1", "client_2"]}
    accuracy = []
    for r in (1, 2, 3):
        for name, machine in (("client_1", a), ("client_2", b)):
            trained = steps.train_client(project, machine.to_env(), federation, partitions, r, name, 1, tags)
            assert trained["status"] == "trained" and trained["examples"] == partitions["clients"][name]["examples"]
        assert sorted(steps.round_results(a.to_env(), federation["run_id"], r)) == ["client_1", "client_2"]
        closed = steps.aggregate(project, a.to_env(), federation, r, data["path"], 1.0)
        assert (closed["round"], closed["missing"]) == (r, [])
        accuracy.append(closed["metrics"]["accuracy"])
    assert accuracy[2] > accuracy[0] + 0.05, accuracy
    assert partition_paths(b, config.name, "client_2")[0].is_dir()  # b trained on its own copy, from the remote
    assert not partition_paths(b, config.name, "client_1")[0].exists()

    client = MlflowClient()
    history = client.get_metric_history(federation["run_id"], "global_accuracy")
    assert [(m.step, m.value) for m in history] == [(r, pytest.approx(v)) for r, v in zip((1, 2, 3), accuracy)]

    result = steps.publish_model(project, a.to_env(), federation, data["path"], data["version"])
    assert set(result) == TRAIN_RESULT and result["run_id"] == federation["run_id"]
    assert [e["epoch"] for e in result["epochs"]] == [1, 2, 3] and result["data_version"] == data["version"]
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy[-1])
    evaluation = evaluate_model(a, config, data["path"], result["run_id"], result["model_dir"])
    assert evaluation["metric"] == "accuracy" and evaluation["value"] == pytest.approx(accuracy[-1])

    run = client.get_run(federation["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mlops.federated"] == "true"
    assert run.data.tags["mlops.model_uri"] == result["model_uri"] and run.data.tags["airflow.dag_id"] == tags["airflow.dag_id"]
    assert run.data.params["federated.rounds"] == "3" and run.data.params["data_version"] == data["version"]
    assert [r.info.run_id for r in training_runs(client, federation["experiment_id"])] == [federation["run_id"]]

    rounds = steps.participation(a.to_env(), federation, config=project)["rounds"]
    assert {r: (p["reported"], p["missing"]) for r, p in rounds.items()} == {
        str(r): (["client_1", "client_2"], []) for r in (1, 2, 3)
    }


def test_a_client_the_round_did_not_sample_has_nothing_to_do(machines):
    a, _ = machines
    config = federated_project("fed_sample", clients=3, rounds=2, clients_per_round=2)
    project = config.model_dump(mode="json")
    data = project_data(a, config)
    partitions = steps.partition(project, a.to_env(), data["path"], data["version"])
    federation = steps.start(project, a.to_env(), data["version"], partitions, {})
    clients = ["client_1", "client_2", "client_3"]
    for r in (1, 2):
        sampled = federation["sampled"][str(r)]
        assert sampled == sample_clients(clients, 2, f"{config.name}:{config.training.seed}", r) and len(sampled) == 2
        (left_out,) = set(clients) - set(sampled)
        skipped = steps.train_client(project, a.to_env(), federation, partitions, r, left_out, 1, {})
        assert skipped == {"status": "not_sampled", "reason": f"round {r} did not sample {left_out}"}
