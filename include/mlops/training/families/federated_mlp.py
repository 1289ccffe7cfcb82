"""`federated_mlp`: FedAvg over simulated clients holding non-IID shards of a blob classification set.

One train_epoch is one communication round: every client starts from the global weights,
takes `local_steps` SGD steps on its own shard, and the server replaces the global weights by
the clients' average weighted by shard size. Shards are label-skewed (per-class client shares
drawn from Dirichlet(`dirichlet_alpha`)), which is what makes local models drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.training.families._common import classifier_signature, Session, make_blobs, merged, split
from mlops.training.families.base import EpochStats, ModelFamily

if TYPE_CHECKING:
    import numpy as np


class FederatedSession(Session):
    def __init__(self, hp: dict[str, Any], techniques: list[str], seed: int):
        import mlx.core as mx

        from mlops.training.families._models import MLP

        mx.random.seed(seed)
        super().__init__(MLP(hp["features"], hp["hidden"], hp["num_classes"], hp["layers"]), hp, techniques, seed)

    @staticmethod
    def _loss(model, x, y):
        import mlx.nn as nn

        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        import mlx.core as mx
        import mlx.nn as nn
        import mlx.optimizers as optim
        import numpy as np
        from mlx.utils import tree_flatten, tree_map

        from mlops.training.families._common import epoch_rng

        x, y, owner = data["train_x"], data["train_y"], data["train_client"]
        rng = epoch_rng(self.seed, epoch)
        global_weights = self.model.parameters()
        step = nn.value_and_grad(self.model, self._loss)
        local_weights, shard_sizes, losses, seen = [], [], [], 0
        for client in range(self.hp["clients"]):
            shard = np.flatnonzero(owner == client)
            if len(shard) == 0:
                continue
            self.model.update(global_weights)
            local_optimizer = optim.SGD(learning_rate=self.hp["learning_rate"], momentum=0.9)
            for _ in range(self.hp["local_steps"]):
                idx = rng.choice(shard, min(batch_size, len(shard)), replace=False)
                loss, grads = step(self.model, mx.array(x[idx]), mx.array(y[idx]))
                local_optimizer.update(self.model, grads)
                mx.eval(self.model.parameters(), local_optimizer.state, loss)
                losses.append(loss.item())
                seen += len(idx)
            local_weights.append(self.model.parameters())
            shard_sizes.append(len(shard))
        share = [size / sum(shard_sizes) for size in shard_sizes]
        averaged = tree_map(lambda *ws: sum(s * w for s, w in zip(share, ws)), *local_weights)
        self.model.update(averaged)
        mx.eval(self.model.parameters())
        flat_global = dict(tree_flatten(averaged))
        drift = np.mean([
            np.sqrt(sum(((w - flat_global[k]) ** 2).sum().item() for k, w in tree_flatten(weights)))
            for weights in local_weights
        ])
        return EpochStats(
            loss=float(np.mean(losses)),
            samples=seen,
            extra={"client_drift": float(drift), "participating_clients": float(len(local_weights))},
        )

    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        import mlx.core as mx

        logits, y = self.model(mx.array(data["val_x"])), mx.array(data["val_y"])
        return {
            "accuracy": (logits.argmax(axis=-1) == y).mean().item(),
            "loss": self._loss(self.model, mx.array(data["val_x"]), y).item(),
        }


    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"x": [B, features]} -> class {"probabilities": [B, classes], "label": [B]}."""
        import mlx.core as mx
        import numpy as np

        probabilities = mx.softmax(self.model(mx.array(inputs["x"], dtype=mx.float32)), axis=-1)
        mx.eval(probabilities)
        probabilities = np.array(probabilities, dtype=np.float32)
        return {"probabilities": probabilities, "label": probabilities.argmax(axis=-1).astype(np.int32)}


class FederatedMLPFamily(ModelFamily):
    name = "federated_mlp"
    description = "FedAvg over simulated clients with label-skewed (non-IID) shards; one epoch = one round."
    metrics = {"accuracy": "max", "loss": "min"}
    default_hyperparameters = {
        "clients": 4,
        "local_steps": 10,
        "dirichlet_alpha": 0.5,
        "features": 32,
        "num_classes": 4,
        "hidden": 64,
        "layers": 2,
        "learning_rate": 0.05,
        "quant_bits": 4,
    }
    supported_techniques = frozenset({"quantization"})

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        return classifier_signature(merged(self.default_hyperparameters, hyperparameters))

    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Blob classes as in mlp_classifier, plus `train_client`: which client holds each train row."""
        import numpy as np

        hp = merged(self.default_hyperparameters, hyperparameters)
        rng = np.random.default_rng(seed)
        x, y = make_blobs(rng, num_samples, hp["features"], hp["num_classes"])
        data = split({"x": x, "y": y}, num_samples // 5)
        shares = rng.dirichlet(np.full(hp["clients"], hp["dirichlet_alpha"]), size=hp["num_classes"])
        cumulative = shares.cumsum(axis=1)[data["train_y"]]
        draws = rng.random(len(data["train_y"]))[:, None]
        data["train_client"] = np.minimum((cumulative < draws).sum(axis=1), hp["clients"] - 1).astype(np.int32)
        return data

    def create(self, hyperparameters: dict[str, Any], techniques: list[str], seed: int) -> FederatedSession:
        return FederatedSession(merged(self.default_hyperparameters, hyperparameters), techniques, seed)
