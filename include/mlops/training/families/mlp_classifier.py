"""`mlp_classifier`: an MLP on synthetic gaussian-blob classes or a project's table of features + label
(quantization, pruning, distillation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.training.families._common import classifier_signature, Session, make_blobs, merged, split
from mlops.training.families.base import EpochStats, ModelFamily

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np


class MLPClassifierSession(Session):
    """Trains the student MLP; with distillation, first a 4x wider teacher on the same data."""

    def __init__(self, hp: dict[str, Any], techniques: list[str], seed: int):
        import mlx.core as mx
        import mlx.optimizers as optim

        from mlops.training.families._models import MLP

        mx.random.seed(seed)
        super().__init__(MLP(hp["features"], hp["hidden"], hp["num_classes"], hp["layers"]), hp, techniques, seed)
        self.teacher = None
        if "distillation" in techniques:
            self.teacher = MLP(hp["features"], hp["teacher_hidden"], hp["num_classes"], hp["layers"])
            self.teacher_optimizer = optim.Adam(learning_rate=hp["learning_rate"])
            self.teacher_trained = False

    @staticmethod
    def _hard_loss(model, x, y):
        import mlx.nn as nn

        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    def _distill_loss(self, model, x, y):
        """alpha * CE(labels) + (1 - alpha) * T^2 * CE(teacher soft labels at temperature T)."""
        import mlx.core as mx
        import mlx.nn as nn

        temperature, alpha = self.hp["temperature"], self.hp["distill_alpha"]
        logits = model(x)
        soft_targets = mx.softmax(mx.stop_gradient(self.teacher(x)) / temperature, axis=-1)
        soft = -(soft_targets * nn.log_softmax(logits / temperature, axis=-1)).sum(axis=-1).mean()
        return alpha * self._hard_loss(model, x, y) + (1 - alpha) * temperature**2 * soft

    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        arrays = [data["train_x"], data["train_y"]]
        extra: dict[str, float] = {}
        if self.teacher is not None and not self.teacher_trained:
            # The teacher gets its whole training (`teacher_epochs`) in the first call, then stays fixed.
            for teacher_epoch in range(self.hp["teacher_epochs"]):
                extra["teacher_loss"], _ = self.run_epoch(
                    self._hard_loss, arrays, batch_size, teacher_epoch, self.teacher, self.teacher_optimizer, stream=1
                )
            self.teacher.freeze()
            self.teacher_trained = True
        loss_fn = self._hard_loss if self.teacher is None else self._distill_loss
        loss, seen = self.run_epoch(loss_fn, arrays, batch_size, epoch)
        return EpochStats(loss=loss, samples=seen, extra=extra)

    def _scores(self, model, data: dict[str, np.ndarray]) -> dict[str, float]:
        import mlx.core as mx
        import mlx.nn as nn

        logits, y = model(mx.array(data["val_x"])), mx.array(data["val_y"])
        return {
            "accuracy": (logits.argmax(axis=-1) == y).mean().item(),
            "loss": nn.losses.cross_entropy(logits, y, reduction="mean").item(),
        }

    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        return self._scores(self.model, data)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"x": [B, features]} -> class {"probabilities": [B, classes], "label": [B]}."""
        import mlx.core as mx
        import numpy as np

        probabilities = mx.softmax(self.model(mx.array(inputs["x"], dtype=mx.float32)), axis=-1)
        mx.eval(probabilities)
        probabilities = np.array(probabilities, dtype=np.float32)
        return {"probabilities": probabilities, "label": probabilities.argmax(axis=-1).astype(np.int32)}

    def apply_techniques(self, techniques: list[str], data: dict[str, np.ndarray]) -> dict[str, Any]:
        from mlops.training.families._techniques import parameter_count

        report: dict[str, Any] = {}
        if "distillation" in techniques and self.teacher is not None:
            report["teacher_parameters"] = parameter_count(self.teacher)
            report["teacher_accuracy"] = self._scores(self.teacher, data)["accuracy"]
        return {**report, **super().apply_techniques(techniques, data)}


class MLPClassifierFamily(ModelFamily):
    name = "mlp_classifier"
    description = "ReLU MLP on synthetic multi-cluster gaussian classes; quantization, pruning, distillation."
    metrics = {"accuracy": "max", "loss": "min"}
    default_hyperparameters = {
        "features": 32,
        "num_classes": 4,
        "hidden": 64,
        "layers": 2,
        "learning_rate": 3e-3,
        "quant_bits": 4,
        "prune_sparsity": 0.5,
        "temperature": 2.0,
        "distill_alpha": 0.5,
        "teacher_hidden": 256,
        "teacher_epochs": 3,
    }
    supported_techniques = frozenset({"quantization", "pruning", "distillation"})

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        return classifier_signature(merged(self.default_hyperparameters, hyperparameters))

    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        import numpy as np

        hp = merged(self.default_hyperparameters, hyperparameters)
        x, y = make_blobs(np.random.default_rng(seed), num_samples, hp["features"], hp["num_classes"])
        return split({"x": x, "y": y}, num_samples // 5)

    def load_dataset(
        self, folder: Path, hyperparameters: dict[str, Any], seed: int, val_fraction: float
    ) -> dict[str, np.ndarray]:
        """x/y arrays as they are (synthetic data), or a table of numeric features + a `label` column."""
        from mlops.training.families.tabular import classification_arrays

        hp = merged(self.default_hyperparameters, hyperparameters)
        data = super().load_dataset(folder, hyperparameters, seed, val_fraction)
        return classification_arrays(data, features=hp["features"], num_classes=hp["num_classes"], where=str(folder))

    def create(self, hyperparameters: dict[str, Any], techniques: list[str], seed: int) -> MLPClassifierSession:
        return MLPClassifierSession(merged(self.default_hyperparameters, hyperparameters), techniques, seed)
