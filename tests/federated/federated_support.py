"""What the federated tests share: a tiny federated_mlp project, its data, and an opened federation."""

from __future__ import annotations

from typing import Any

from mlops.config.schema import ProjectConfig
from mlops.settings import Settings


def federated_project(
    name: str, clients: int = 2, num_samples: int = 512, techniques: tuple[str, ...] = (), **federated: Any
) -> ProjectConfig:
    """A federated_mlp project whose data marks rows for `clients` clients (label-skewed)."""
    if "nodes" not in federated:
        federated["clients"] = clients
    return ProjectConfig(
        name=name,
        data={"num_samples": num_samples},
        model={"family": "federated_mlp", "hyperparameters": {"clients": clients}},
        training={"techniques": list(techniques)},
        federated=federated,
    )


def project_data(settings: Settings, config: ProjectConfig) -> dict[str, Any]:
    """What `pull_data` gives: the project's synthetic data, DVC-versioned and pushed."""
    from mlops.data.project_data import ensure_project_data

    return ensure_project_data(settings, config.name, config.model.family, config.data.num_samples, config.data.seed,
                               config.model.hyperparameters)


def open_federation(settings: Settings, config: ProjectConfig) -> tuple[dict, dict, dict]:
    """pull_data, partition_data and start_federation: (data, partitions, federation)."""
    from mlops.federated.federation import start_federation
    from mlops.federated.partitions import write_partitions
    from mlops.federated.plan import client_names
    from mlops.training.trainer import project_family

    data = project_data(settings, config)
    arrays = project_family(settings, config).load_dataset(config, data["path"])
    partitions = write_partitions(settings, config.name, client_names(config), arrays, data["version"], config.data.seed)
    return data, partitions, start_federation(settings, config, data["version"], partitions, {})
