"""Closing a round: FedAvg of what reported when the quorum is met, a named failure when it is not."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from federated_support import federated_project, open_federation
from mlflow import MlflowClient

from mlops.federated.client_update import train_client
from mlops.federated.publish import publish_model
from mlops.federated.rounds import QuorumNotMet, aggregate_round, participation
from mlops.training.evaluate import evaluate_model


def test_a_round_averages_the_clients_that_reported_and_the_model_publishes(machines, tmp_path):
    a, _ = machines
    config = federated_project("fed_quorum", clients=3, rounds=1, min_clients=2, techniques=("quantization",))
    data, partitions, federation = open_federation(a, config)
    run_id, client = federation["run_id"], MlflowClient()
    trained = {name: train_client(a, config, federation, partitions, 1, name, 1, {}) for name in ("client_1", "client_2")}

    result = aggregate_round(a, config, federation, 1, data["path"], waited_s=600.0)
    examples = {name: partitions["clients"][name]["examples"] for name in trained}
    assert result["clients"] == ["client_1", "client_2"] and result["missing"] == ["client_3"]
    assert result["examples"] == sum(examples.values())

    # The global model is the clients' weights averaged by their examples
    updates = {n: mx.load(client.download_artifacts(t["run_id"], "client.safetensors", str(tmp_path / n)))
               for n, t in trained.items()}
    averaged = mx.load(client.download_artifacts(run_id, "federated/round_1/global.safetensors", str(tmp_path)))
    assert sorted(averaged) == sorted(updates["client_1"])
    for key, value in averaged.items():
        expected = sum(examples[n] * np.array(updates[n][key]) for n in updates) / result["examples"]
        np.testing.assert_allclose(np.array(value), expected, rtol=1e-5, atol=1e-6)

    run = client.get_run(run_id)
    assert run.data.tags["mlops.federated.closed_round"] == "1"
    metrics = run.data.metrics
    assert (metrics["round_clients"], metrics["round_missing"], metrics["round_examples"]) == (2, 1, result["examples"])
    assert {k: metrics[f"global_{k}"] for k in result["metrics"]} == pytest.approx(result["metrics"])
    assert aggregate_round(a, config, federation, 1, data["path"], waited_s=0.0) == result  # a retry changes nothing

    late = train_client(a, config, federation, partitions, 1, "client_3", 1, {})
    assert late["status"] == "round_closed"
    rounds = participation(a, federation)["rounds"]
    assert rounds["1"]["reported"] == ["client_1", "client_2"] and rounds["1"]["missing"] == ["client_3"]
    assert rounds["1"]["aggregated"] is True

    # Post-training techniques wait for the last round; the model restores as `evaluate` does it
    published = publish_model(a, config, federation, data["path"], data["version"])
    assert published["run_id"] == run_id and published["dtype"] == "int4"
    assert published["metrics"]["accuracy"] == pytest.approx(result["metrics"]["accuracy"], abs=0.1)
    evaluation = evaluate_model(a, config, data["path"], run_id, published["model_dir"])
    assert evaluation["metrics"] == pytest.approx(published["metrics"])
    assert client.get_run(run_id).info.status == "FINISHED"


def test_below_quorum_names_the_missing_nodes_their_queues_and_what_to_check(machines):
    a, _ = machines
    nodes = [{"name": "mac_a"}, {"name": "mac_b", "queue": "studio_b"}]
    config = federated_project("fed_nodes", rounds=1, min_clients=2, nodes=nodes)
    data, partitions, federation = open_federation(a, config)
    train_client(a, config, federation, partitions, 1, "mac_a", 1, {})

    with pytest.raises(QuorumNotMet) as raised:
        aggregate_round(a, config, federation, 1, data["path"], waited_s=600.0)
    message = str(raised.value)
    assert f"project fed_nodes: round 1 of federation run {federation['run_id']} cannot aggregate" in message
    assert "1 of 2 sampled clients reported within 600 s" in message and "min_clients = 2" in message
    assert "Reported: mac_a. Missing: mac_b (queue studio_b)." in message
    assert "`mlops worker --node <name>`" in message and "`mlops queue`" in message

    client = MlflowClient()
    run = client.get_run(federation["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.federated.failed_round"] == "1"
    assert "mlops.federated.closed_round" not in run.data.tags
    assert [f.path for f in client.list_artifacts(federation["run_id"], "federated")] == [
        "federated/federation.json", "federated/partitions.json", "federated/round_0",
    ]  # nothing was published
    with pytest.raises(RuntimeError, match="aggregated 0 of its 1 rounds: nothing to publish"):
        publish_model(a, config, federation, data["path"], data["version"])

    # A retry of the aggregate (the project's retries) that finds the quorum met closes the round after all
    train_client(a, config, federation, partitions, 1, "mac_b", 1, {})
    assert aggregate_round(a, config, federation, 1, data["path"], waited_s=3.0)["clients"] == ["mac_a", "mac_b"]
    run = client.get_run(federation["run_id"])
    assert run.info.status == "RUNNING" and "mlops.federated.failed_round" not in run.data.tags
