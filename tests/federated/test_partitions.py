"""Partitions: one DVC version per client, rows split without overlap, fetched by version on any machine."""

from __future__ import annotations

import numpy as np
import pytest
from federated_support import federated_project, project_data

from mlops.data.dvc_workspace import DataError
from mlops.federated.partitions import load_partition, partition_paths, split_rows, write_partitions
from mlops.federated.plan import client_names
from mlops.training.trainer import project_family


def test_each_client_gets_its_own_rows_of_train_under_a_stable_version(machines):
    a, _ = machines
    config = federated_project("fed_parts", clients=3)
    data = project_data(a, config)
    arrays = project_family(a, config).load_dataset(config, data["path"])
    clients = client_names(config)

    first = write_partitions(a, config.name, clients, arrays, data["version"], config.data.seed)
    again = write_partitions(a, config.name, clients, arrays, data["version"], config.data.seed)
    assert again == first and first["data_version"] == data["version"]
    assert len({part["version"] for part in first["clients"].values()}) == 3

    owner = np.asarray(arrays["train_client"])
    seen = np.zeros(len(owner), dtype=int)
    for i, name in enumerate(clients):
        rows = np.flatnonzero(owner == i)  # the family's label-skewed split, kept as it is
        part = load_partition(a, config.name, name, first["clients"][name]["version"])
        assert first["clients"][name]["examples"] == len(rows) == len(part["train_x"])
        np.testing.assert_array_equal(part["train_x"], arrays["train_x"][rows])
        np.testing.assert_array_equal(part["train_y"], arrays["train_y"][rows])
        assert not part["train_client"].any()  # a partition is one client's own: every row is "client 0"
        assert not any(k.startswith("val_") for k in part)  # validation stays with the coordinator
        seen[rows] += 1
    assert (seen == 1).all()  # disjoint, and together all of train


def test_data_without_owners_is_dealt_out_evenly_in_a_seeded_order():
    data = {"train_x": np.arange(10)}
    parts = split_rows(data, 3, seed=7)
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert [p.tolist() for p in split_rows(data, 3, seed=7)] == [p.tolist() for p in parts]
    assert [p.tolist() for p in split_rows(data, 3, seed=8)] != [p.tolist() for p in parts]


def test_a_client_with_no_rows_is_refused_with_the_fix(machines):
    a, _ = machines
    data = {"train_x": np.zeros((8, 2)), "train_client": np.array([0, 1, 0, 1, 0, 1, 0, 1])}
    with pytest.raises(ValueError, match=r"client\(s\) client_3 get no training rows .*hyperparameters.clients"):
        write_partitions(a, "fed_empty", ["client_1", "client_2", "client_3"], data, "v", 0)


def test_a_client_on_another_machine_gets_its_partition_from_the_remote(machines):
    a, b = machines
    config = federated_project("fed_remote")
    data = project_data(a, config)
    arrays = project_family(a, config).load_dataset(config, data["path"])
    partitions = write_partitions(a, config.name, client_names(config), arrays, data["version"], 0)
    version = partitions["clients"]["client_2"]["version"]

    folder, _ = partition_paths(b, config.name, "client_2")
    assert not folder.exists()  # nothing of it on b yet
    on_b = load_partition(b, config.name, "client_2", version)
    on_a = load_partition(a, config.name, "client_2", version)
    assert folder.is_dir() and folder.is_relative_to(b.dvc_workspace)
    assert sorted(on_b) == sorted(on_a)
    for name in on_a:
        np.testing.assert_array_equal(on_b[name], on_a[name])
    with pytest.raises(DataError, match="cannot get data version 0{32}.dir"):
        load_partition(b, config.name, "client_1", "0" * 32 + ".dir")
