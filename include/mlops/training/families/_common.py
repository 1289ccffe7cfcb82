"""Plumbing shared by the families: seeded shuffling, mini-batch epochs, the LoRA switch-over.

Nothing here imports MLX or numpy at module level, so a family module may import this one
at its top and still be cheap to import while Airflow parses DAG files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from mlops.training.families.base import TrainingSession

if TYPE_CHECKING:
    import mlx.nn as nn
    import numpy as np


def merged(defaults: dict[str, Any], hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """make_dataset may get only the overrides; fill in the family defaults."""
    return {**defaults, **(hyperparameters or {})}


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """One generator per (seed, epoch): reruns shuffle identically, epochs differ.

    `stream` separates side passes (teacher, pretraining, sampling) from the main one.
    """
    import numpy as np

    return np.random.default_rng([seed, epoch, stream])


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None):
    """Index arrays covering range(n) in mini-batches, shuffled when a rng is given."""
    import numpy as np

    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def classifier_signature(hp: dict[str, Any]) -> dict[str, Any]:
    """Serving signature of the MLP classifiers: feature rows in, class probabilities and labels out."""
    return {
        "inputs": {"x": {"dtype": "float32", "shape": [-1, hp["features"]]}},
        "outputs": {
            "probabilities": {"dtype": "float32", "shape": [-1, hp["num_classes"]]},
            "label": {"dtype": "int32", "shape": [-1]},
        },
    }


def split(arrays: dict[str, np.ndarray], num_val: int) -> dict[str, np.ndarray]:
    """Name the first rows `val_*` and the rest `train_*` (rows are already i.i.d.)."""
    out = {}
    for name, array in arrays.items():
        out[f"val_{name}"] = array[:num_val]
        out[f"train_{name}"] = array[num_val:]
    return out


def make_blobs(rng: np.random.Generator, n: int, features: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes made of two overlapping gaussian clusters each: learnable, but not linearly."""
    import numpy as np

    centers = rng.normal(0.0, 1.0, (2 * classes, features)) * 0.45
    cluster = rng.integers(0, 2 * classes, n)
    x = centers[cluster] + rng.normal(0.0, 1.0, (n, features))
    return x.astype(np.float32), (cluster % classes).astype(np.int32)


class Session(TrainingSession):
    """A model plus an Adam optimizer, with the epoch loop most families share."""

    def __init__(self, model: nn.Module, hyperparameters: dict[str, Any], techniques: list[str], seed: int):
        import mlx.optimizers as optim

        self.model = model
        self.hp = hyperparameters
        self.techniques = list(techniques)
        self.seed = seed
        self.optimizer = optim.Adam(learning_rate=hyperparameters["learning_rate"])
        self.lora_pending = "lora" in self.techniques  # base gets pretrained first, see start_lora

    def run_epoch(
        self,
        loss_fn: Callable[..., Any],
        arrays: list[np.ndarray],
        batch_size: int,
        epoch: int,
        model: nn.Module | None = None,
        optimizer: Any = None,
        stream: int = 0,
    ) -> tuple[float, int]:
        """One shuffled pass of `loss_fn(model, *batch)`; returns (mean loss, rows seen)."""
        import mlx.core as mx
        import mlx.nn as nn

        model = model or self.model
        optimizer = optimizer or self.optimizer
        step = nn.value_and_grad(model, loss_fn)
        total, seen = 0.0, 0
        for idx in batches(len(arrays[0]), batch_size, epoch_rng(self.seed, epoch, stream)):
            loss, grads = step(model, *(mx.array(a[idx]) for a in arrays))
            optimizer.update(model, grads)
            mx.eval(model.parameters(), optimizer.state, loss)
            total += loss.item() * len(idx)
            seen += len(idx)
        return total / max(seen, 1), seen

    @staticmethod
    def lora_layers(path: str, module: nn.Module) -> bool:
        """Which Linear layers get LoRA adapters; families narrow it (e.g. projections only)."""
        return True

    def start_lora(self, predicate: Callable[[str, nn.Module], bool] | None = None) -> None:
        """Freeze the (just pretrained) base, wrap its Linear layers in LoRA, restart Adam."""
        import mlx.core as mx
        import mlx.optimizers as optim

        from mlops.training.families._lora import add_lora

        mx.random.seed(self.seed)  # adapter init must not depend on what ran since create()
        self.model.freeze()
        add_lora(self.model, self.hp["lora_rank"], self.hp["lora_alpha"], predicate)
        self.optimizer = optim.Adam(learning_rate=self.hp["learning_rate"])
        self.lora_pending = False

    def restore_structure(self, techniques: list[str]) -> None:
        """Mirror what training and `post_training` do to the structure: adapters, fusing, quantizing."""
        from mlops.training.families._lora import fuse_lora
        from mlops.training.families._techniques import quantize

        if self.lora_pending:
            self.start_lora(self.lora_layers)
        if {"pruning", "quantization"} & set(techniques) and not getattr(self, "keep_adapters", False):
            fuse_lora(self.model)
        if "quantization" in techniques:
            quantize(self.model, int(self.hp["quant_bits"]))

    def apply_techniques(self, techniques: list[str], data: dict[str, np.ndarray]) -> dict[str, Any]:
        from mlops.training.families._techniques import post_training

        return post_training(self, techniques, data)
