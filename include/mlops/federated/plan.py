"""Who takes part in a federation, where each client runs, and which clients a round samples.

Pure functions of the project's config: the DAG factory calls them at parse time, and the
steps at run time, so both always agree on names, queues and samples.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig


def client_names(config: ProjectConfig) -> list[str]:
    """Node names, or `client_1` .. `client_N` when the clients all run on this machine."""
    federated = config.federated
    if federated is None:
        return []
    if federated.nodes:
        return [node.name for node in federated.nodes]
    return [f"client_{i}" for i in range(1, federated.client_count + 1)]


def client_queue(config: ProjectConfig, name: str) -> str | None:
    """The Celery queue of node `name` (its YAML `queue`, else `node_<name>`); None for local clients."""
    for node in (config.federated.nodes if config.federated else []):
        if node.name == name:
            return node.queue or f"node_{name}"
    return None


def sample_clients(clients: list[str], per_round: int | None, seed_text: str, round_number: int) -> list[str]:
    """The clients round `round_number` trains: all, or `per_round` of them drawn with a seed made of
    `seed_text` (the project and its `training.seed`) and the round: a rerun samples the same clients,
    as it starts from the same weights, so the same data and seed give the same model."""
    import numpy as np

    if per_round is None or per_round >= len(clients):
        return sorted(clients)
    rng = np.random.default_rng([zlib.crc32(seed_text.encode()), round_number])
    return sorted(str(c) for c in rng.choice(sorted(clients), size=per_round, replace=False))
