"""Model weights as the rounds exchange them: safetensors files through MLflow, averaged with numpy.

Clients and coordinator share no disk, only MLflow: the global model of round r is the parent
run's artifact `federated/round_<r>/global.safetensors`, each client's update its own run's
`client.safetensors`. Files live in a scratch folder under MLOPS_HOME only while a step uses them.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings
    from mlops.training.families.base import TrainingSession
    from mlops.training.trainer import ProjectFamily

GLOBAL_FILE = "global.safetensors"
CLIENT_FILE = "client.safetensors"


def round_dir(round_number: int) -> str:
    """The parent run's artifact folder of one round (round 0: the initial weights)."""
    return f"federated/round_{round_number}"


@contextlib.contextmanager
def scratch(settings: Settings) -> Iterator[Path]:
    """A temporary folder under MLOPS_HOME (the machine's state disk, not /tmp), removed afterwards."""
    root = settings.home / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="federated-", dir=root) as folder:
        yield Path(folder)


def save_weights(path: Path, weights: dict[str, Any]) -> Path:
    """Write name -> array (MLX or numpy) as safetensors, what `model.load_weights` reads."""
    import mlx.core as mx

    path.parent.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(path), {name: mx.array(value) for name, value in weights.items()})
    return path


def load_session(
    project: ProjectFamily, config: ProjectConfig, weights_file: Path, techniques: list[str] | None = None
) -> TrainingSession:
    """A new session of the project's model holding `weights_file` (strict: every name and shape must match).
    Plain structure unless `techniques` say otherwise: rounds exchange plain weights."""
    with project.step("create"):
        session = project.family.create(project.hyperparameters, techniques or [], config.training.seed)
    session.model.load_weights(str(weights_file), strict=True)
    return session


def download(client: MlflowClient, run_id: str, artifact: str, folder: Path) -> Path:
    """One artifact of run `run_id` into `folder` (created); its local path."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, artifact, str(folder)))


def federated_average(updates: dict[str, tuple[Path, int]]) -> dict[str, Any]:
    """FedAvg: sum(n_i * w_i) / sum(n_i) over the clients' weight files (client -> (file, examples)).

    Accumulated in float64 one file at a time (two models in memory, whatever the client count),
    returned as MLX arrays in each weight's own dtype. Clients whose weights have other names or
    shapes are named: they trained another model.
    """
    import mlx.core as mx
    import numpy as np

    total = sum(examples for _, examples in updates.values())
    sums: dict[str, np.ndarray] = {}
    dtypes: dict[str, Any] = {}
    first = None
    for name, (path, examples) in updates.items():
        weights = mx.load(str(path))
        if first is None:
            first, dtypes = name, {key: value.dtype for key, value in weights.items()}
            sums = {key: np.zeros(value.shape, dtype=np.float64) for key, value in weights.items()}
        shapes = {key: tuple(value.shape) for key, value in weights.items()}
        expected = {key: value.shape for key, value in sums.items()}
        if shapes != expected:
            differ = sorted(set(shapes.items()) ^ set(expected.items()))
            raise ValueError(f"client {name}'s weights do not match client {first}'s (names or shapes differ: {differ[:5]})")
        for key, value in weights.items():
            sums[key] += examples * np.array(value.astype(mx.float32), dtype=np.float64)
    return {key: mx.array((value / total).astype(np.float32)).astype(dtypes[key]) for key, value in sums.items()}
