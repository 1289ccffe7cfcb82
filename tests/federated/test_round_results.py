"""A client's update is a nested MLflow run per attempt; a round counts each client once."""

from __future__ import annotations

import pytest
from federated_support import federated_project, open_federation
from mlflow import MlflowClient

from mlops.analytics import names
from mlops.analytics.compare import training_runs
from mlops.data.dvc_workspace import DataError
from mlops.federated.client_update import train_client
from mlops.federated.tracking import round_results


def test_a_retried_client_counts_once_with_its_highest_finished_attempt(machines):
    a, _ = machines
    config = federated_project("fed_attempts", rounds=1)
    _, partitions, federation = open_federation(a, config)
    run_id, client = federation["run_id"], MlflowClient()
    lost = {**partitions, "clients": {**partitions["clients"], "client_1": {"version": "0" * 32 + ".dir", "examples": 1}}}

    with pytest.raises(DataError):  # attempt 1 cannot get its partition: its run fails, nothing counts
        train_client(a, config, federation, lost, 1, "client_1", 1, {"airflow.try_number": "1"})
    assert round_results(client, run_id, 1) == {}

    second = train_client(a, config, federation, partitions, 1, "client_1", 2, {"airflow.try_number": "2"})
    third = train_client(a, config, federation, partitions, 1, "client_1", 3, {"airflow.try_number": "3"})
    results = round_results(client, run_id, 1)
    assert list(results) == ["client_1"]  # three attempts, two finished: one update
    assert (results["client_1"]["attempt"], results["client_1"]["run_id"]) == (3, third["run_id"])
    assert results["client_1"]["examples"] == partitions["clients"]["client_1"]["examples"] == third["examples"]

    runs = client.search_runs([federation["experiment_id"]], f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    tags = client.get_run(second["run_id"]).data.tags
    assert tags["mlflow.runName"] == "round 1 · client_1" and tags["mlops.federated.attempt"] == "2"
    assert tags["mlops.federated.host"] == second["host"] and tags["airflow.try_number"] == "2"
    assert tags[names.KIND] == "federated_client" and tags[names.PROJECT] == config.name
    assert [a.path for a in client.list_artifacts(third["run_id"])] == ["client.safetensors"]
    # The clients' runs are no training runs of the project (its runs page and `mlops compare` skip them)
    assert training_runs(client, federation["experiment_id"]) == []
