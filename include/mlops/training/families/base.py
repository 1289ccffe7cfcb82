"""The contract every MLX model family fulfils.

A family knows three things: how to make its synthetic data set (fixed seed, no
download) and read a project's own files (`load_dataset`, a default most families keep), how
to build and train its model, and how to score it. The trainer
(`mlops.training.trainer`) owns the loop, timing, memory readings and tracking,
so a family stays a few dozen lines of model code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from pathlib import Path

    import mlx.nn as nn
    import numpy as np

Goal = Literal["max", "min"]


@dataclass
class EpochStats:
    """What one epoch of training produced."""

    loss: float
    samples: int  # examples (or tokens, see `ModelFamily.throughput_unit`) processed
    extra: dict[str, float] = field(default_factory=dict)


class TrainingSession(ABC):
    """One model being trained: created by `ModelFamily.create`, driven by the trainer."""

    model: nn.Module

    @abstractmethod
    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        """Run one pass over the training split (keys prefixed `train_`)."""

    @abstractmethod
    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """Score the model on the validation split (keys prefixed `val_`); keys are metric names."""

    def apply_techniques(self, techniques: list[str], data: dict[str, np.ndarray]) -> dict[str, Any]:
        """Apply post-training optimizations (quantization, pruning, ...); return what was done.

        Returned keys are logged as params/tags, e.g. {"dtype": "int4", "sparsity": 0.5}.
        Techniques applied during training (lora, distillation) are handled in `create`.
        """
        return {}

    def restore_structure(self, techniques: list[str]) -> None:
        """Give a freshly created model the structure training left it in (adapters, quantized
        layers), so the saved weights load strictly. Families whose structure never changes keep this no-op."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the trained model on a batch: named numpy arrays in, named numpy arrays out.

        Inputs and outputs follow `ModelFamily.signature` (first axis = batch). Pure
        inference: no weights change, and the same inputs always give the same outputs.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement predict")

    def weights(self) -> dict[str, Any]:
        """Flat name -> mx.array mapping saved as the model artifact (safetensors)."""
        from mlx.utils import tree_flatten

        return dict(tree_flatten(self.model.parameters()))


class ModelFamily(ABC):
    """A kind of small MLX model, chosen by name in a project's YAML (`model.family`)."""

    name: ClassVar[str]
    description: ClassVar[str]
    metrics: ClassVar[dict[str, Goal]]  # every metric `evaluate` returns, and whether higher is better
    default_hyperparameters: ClassVar[dict[str, Any]]
    supported_techniques: ClassVar[frozenset[str]] = frozenset()
    throughput_unit: ClassVar[Literal["samples", "tokens"]] = "samples"

    @abstractmethod
    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Synthetic data made with `seed`: arrays named `train_*` and `val_*` (float32/int32)."""

    def load_dataset(
        self, folder: Path, hyperparameters: dict[str, Any], seed: int, val_fraction: float
    ) -> dict[str, np.ndarray]:
        """The data the trainer, the evaluation and the drift reference read: `train_*`/`val_*` arrays.

        `folder` is the project's DVC-versioned data folder, whichever the source: synthetic data
        is there as `train_*.npy`/`val_*.npy` (returned memory-mapped, exactly as `make_dataset`
        made them); a project's own files are read by `mlops.data.loaders` (.npy, .npz, .csv,
        .parquet, .jsonl; one array per file or table column) and, unless already split into
        train/val files, their rows are shuffled with `seed` and `val_fraction` of them held out.

        Override it when the files need more than that to become what `TrainingSession` reads:
        a table to stack into one input (see `mlops.training.families.tabular` and the MLP
        classifier), text to tokenize, images to decode. Call `super().load_dataset(...)` for
        the arrays, and keep memory-mapped arrays as they are where you can.
        """
        from mlops.data.loaders import load_folder, split_rows

        return split_rows(load_folder(folder), val_fraction, seed, where=str(folder))

    @abstractmethod
    def create(
        self, hyperparameters: dict[str, Any], techniques: list[str], seed: int
    ) -> TrainingSession:
        """Build the model and its optimizer (hyperparameters already merged with the defaults)."""

    def restore(
        self, hyperparameters: dict[str, Any], techniques: list[str], seed: int, weights_file: Path
    ) -> TrainingSession:
        """Rebuild a trained model from its saved weights (the evaluate step and serving use this)."""
        session = self.create(hyperparameters, techniques, seed)
        session.restore_structure(techniques)
        session.model.load_weights(str(weights_file), strict=True)
        return session

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """What `TrainingSession.predict` takes and returns, as JSON-able data.

        {"inputs": {name: spec}, "outputs": {name: spec}} where spec is {"dtype": "float32" | "int32",
        "shape": [-1, d, ...]}: -1 is the batch axis (first) or any length; an optional
        "max_shape" bounds -1 axes and an optional "range": [low, high) bounds int32 values.
        """
        raise NotImplementedError(f"{type(self).__name__} does not declare a signature")

    def reference_inputs(self, data: dict[str, np.ndarray], hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """The training split as the model's serving inputs would look (drift checks compare with it).

        Default: `train_<input name>` for every input of the signature; families whose inputs are
        not stored as such override it.
        """
        names = self.signature(hyperparameters)["inputs"]
        return {name: data[f"train_{name}"] for name in names}

    def check_hyperparameters(self, hyperparameters: dict[str, Any]) -> list[str]:
        """Names in `hyperparameters` this family does not know (for config validation)."""
        return sorted(set(hyperparameters) - set(self.default_hyperparameters))
