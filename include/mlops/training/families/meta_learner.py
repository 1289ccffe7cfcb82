"""`meta_learner`: first-order MAML on few-shot sine-wave regression (LoRA = meta-learning PEFT).

A task is y = A sin(x + phase); the model sees `k_shot` support points, adapts with
`inner_steps` SGD steps, and is scored on `k_query` query points. Adaptation is batched: every
task gets its own copy of the adapted weights along a leading task axis (see TaskLinear), so a
meta-batch of 64 tasks is one set of matmuls. The outer (meta) step is first-order MAML: the
query-loss gradient at the adapted weights, averaged over tasks, updates the meta weights.

With "lora", the inner loop adapts only LoRA adapters (per-task PEFT) while the outer loop
meta-learns the base weights and the adapter initialisation: the "meta-learning PEFT" project.
Its reported `trainable_parameters` are the adapter weights each task adapts.

Quantization keeps what can still adapt in float: with LoRA the adapters (the base under
them is quantized), without it only the biases and the 1-input first layer, so expect a
higher `adapted_loss` after quantizing a model that was meta-trained for full adaptation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.training.families._common import Session, merged, split
from mlops.training.families.base import EpochStats, ModelFamily

if TYPE_CHECKING:
    import mlx.core as mx
    import numpy as np


def _task_loss(model, x, y):
    """Sum over tasks of each task's MSE, so the gradient w.r.t. a task's own weights is its own."""
    return ((model(x) - y) ** 2).mean(axis=(1, 2)).sum()


class MetaLearnerSession(Session):
    keep_adapters = True  # quantize the base under the adapters: they are what adapts per task

    def __init__(self, hp: dict[str, Any], techniques: list[str], seed: int):
        import mlx.core as mx

        from mlops.training.families._lora import add_lora
        from mlops.training.families._models import TaskMLP

        mx.random.seed(seed)
        super().__init__(TaskMLP(hp["hidden"], hp["layers"]), hp, techniques, seed)
        self.lora = "lora" in techniques
        if self.lora:
            add_lora(self.model, hp["lora_rank"], hp["lora_alpha"])
            self.lora_pending = False  # adapters exist from the start; the base is meta-learned with them

    def _inner_parameters(self) -> dict:
        """What the inner loop adapts: LoRA adapters only, or every trainable weight."""
        from mlops.training.families._lora import LoRALinear

        if self.lora:
            self.model.freeze()
            for _, module in self.model.named_modules():
                if isinstance(module, LoRALinear):
                    module.unfreeze(keys=["lora_a", "lora_b"], recurse=False)
        return self.model.trainable_parameters()

    def _adapt(self, support_x: mx.array, support_y: mx.array) -> dict:
        """`inner_steps` of per-task SGD from the meta weights; leaves the adapted weights in the model."""
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_flatten, tree_map

        tasks = support_x.shape[0]

        def per_task(p):  # (out,) -> (tasks, 1, out); (a, b) -> (tasks, a, b)
            p = p.reshape(1, -1) if p.ndim == 1 else p
            return mx.broadcast_to(p[None], (tasks, *p.shape))

        fast = tree_map(per_task, self._inner_parameters())
        grad_fn = nn.value_and_grad(self.model, _task_loss)
        for _ in range(self.hp["inner_steps"]):
            self.model.update(fast)
            _, grads = grad_fn(self.model, support_x, support_y)
            # Clip each task's gradient norm: with LoRA the step on B grows with |A| (and vice
            # versa), and once meta-learning enlarges the adapters, plain SGD would diverge.
            norm = mx.sqrt(sum((g.reshape(tasks, -1) ** 2).sum(axis=1) for _, g in tree_flatten(grads)))
            step = self.hp["inner_lr"] * mx.minimum(1.0, self.hp["inner_grad_clip"] / (norm + 1e-6))
            fast = tree_map(lambda p, g: p - step.reshape(-1, *([1] * (g.ndim - 1))) * g, fast, grads)
            mx.eval(fast)
        self.model.update(fast)
        return fast

    def _meta_step(self, batch: list[mx.array]) -> float:
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_flatten, tree_unflatten

        support_x, support_y, query_x, query_y = batch
        tasks = support_x.shape[0]
        meta = self.model.parameters()
        meta_shapes = {k: v.shape for k, v in tree_flatten(meta)}
        adapted = {k for k, _ in tree_flatten(self._adapt(support_x, support_y))}
        if self.lora:
            self.model.unfreeze()  # the outer loop meta-learns the base and the adapter init
        loss, grads = nn.value_and_grad(self.model, _task_loss)(self.model, query_x, query_y)
        meta_grads = [
            (k, g.mean(axis=0).reshape(meta_shapes[k]) if k in adapted else g / tasks)
            for k, g in tree_flatten(grads)
        ]
        self.model.update(meta)
        self.optimizer.update(self.model, tree_unflatten(meta_grads))
        mx.eval(self.model.parameters(), self.optimizer.state, loss)
        return loss.item() / tasks

    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        import mlx.core as mx

        from mlops.training.families._common import batches, epoch_rng

        names = ["train_support_x", "train_support_y", "train_query_x", "train_query_y"]
        total, tasks = 0.0, 0
        for idx in batches(len(data[names[0]]), batch_size, epoch_rng(self.seed, epoch)):
            total += self._meta_step([mx.array(data[n][idx]) for n in names]) * len(idx)
            tasks += len(idx)
        return EpochStats(loss=total / tasks, samples=tasks * self.hp["k_shot"])

    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """Query MSE on held-out tasks before ("loss") and after ("adapted_loss") inner adaptation."""
        import mlx.core as mx

        support_x, support_y, query_x, query_y = (
            mx.array(data[f"val_{n}"]) for n in ("support_x", "support_y", "query_x", "query_y")
        )
        tasks = support_x.shape[0]
        meta = self.model.parameters()
        loss = _task_loss(self.model, query_x, query_y).item() / tasks
        self._adapt(support_x, support_y)
        adapted_loss = _task_loss(self.model, query_x, query_y).item() / tasks
        self.model.update(meta)
        return {"adapted_loss": adapted_loss, "loss": loss}


    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"x": [B, 1]} -> {"y": [B, 1]}: the meta-learned base model, without task adaptation."""
        import mlx.core as mx
        import numpy as np

        y = self.model(mx.array(inputs["x"], dtype=mx.float32)[None])[0]  # one "task" of B points
        mx.eval(y)
        return {"y": np.array(y, dtype=np.float32)}


class MetaLearnerFamily(ModelFamily):
    name = "meta_learner"
    description = "First-order MAML on few-shot sine regression; LoRA = adapt only adapters per task."
    metrics = {"adapted_loss": "min", "loss": "min"}
    default_hyperparameters = {
        "k_shot": 10,
        "k_query": 10,
        "hidden": 64,
        "layers": 2,
        "inner_steps": 5,
        "inner_lr": 0.02,
        "inner_grad_clip": 10.0,
        "learning_rate": 3e-3,
        "quant_bits": 8,
        "lora_rank": 4,
        "lora_alpha": 8.0,
    }
    supported_techniques = frozenset({"lora", "quantization"})

    def reference_inputs(self, data: dict[str, np.ndarray], hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Served points are query x values: every task's query points, one per row."""
        return {"x": data["train_query_x"].reshape(-1, 1)}

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        return {
            "inputs": {"x": {"dtype": "float32", "shape": [-1, 1]}},
            "outputs": {"y": {"dtype": "float32", "shape": [-1, 1]}},
        }

    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """`num_samples` tasks: amplitude in [0.1, 5], phase in [0, pi], x uniform in [-5, 5]."""
        import numpy as np

        hp = merged(self.default_hyperparameters, hyperparameters)
        rng = np.random.default_rng(seed)
        amplitude = rng.uniform(0.1, 5.0, (num_samples, 1, 1))
        phase = rng.uniform(0.0, np.pi, (num_samples, 1, 1))
        arrays = {}
        for part, points in (("support", hp["k_shot"]), ("query", hp["k_query"])):
            x = rng.uniform(-5.0, 5.0, (num_samples, points, 1))
            arrays[f"{part}_x"] = x.astype(np.float32)
            arrays[f"{part}_y"] = (amplitude * np.sin(x + phase)).astype(np.float32)
        return split(arrays, num_samples // 5)

    def create(self, hyperparameters: dict[str, Any], techniques: list[str], seed: int) -> MetaLearnerSession:
        return MetaLearnerSession(merged(self.default_hyperparameters, hyperparameters), techniques, seed)
