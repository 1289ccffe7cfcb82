"""`tiny_diffusion`: a DDPM on a 2-D ring of gaussians, with adaptive timesteps and self-improvement.

* `schedule`: "linear" (DDPM betas rescaled to T steps), "cosine" (Nichol & Dhariwal), or
  "adaptive" = cosine betas, but training timesteps are importance-sampled in proportion to a
  running per-timestep loss estimate (reweighted by 1 / (T p(t)) so the objective stays unbiased):
  the "adaptive diffusion" project.
* `self_improve_rounds` (the "self-improving diffusion" project): the first `self_improve_after`
  calls of train_epoch are ordinary epochs; each of the next `self_improve_rounds` calls is one
  round: sample `self_improve_samples` points, keep the `self_improve_keep` fraction closest to the
  train set (mean distance to the 5 nearest train points, a k-NN density estimate) and train that
  epoch on the train set plus the kept samples. Later calls are ordinary epochs again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlops.training.families._common import Session, merged, split
from mlops.training.families.base import EpochStats, ModelFamily

if TYPE_CHECKING:
    import numpy as np


def beta_schedule(schedule: str, steps: int) -> np.ndarray:
    import numpy as np

    if schedule == "linear":
        scale = 1000 / steps
        return np.linspace(scale * 1e-4, scale * 0.02, steps)
    if schedule in ("cosine", "adaptive"):
        f = np.cos((np.arange(steps + 1) / steps + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.clip(1 - f[1:] / f[:-1], 0, 0.999)
    raise ValueError(f"unknown schedule {schedule!r}: linear, cosine or adaptive")


def rbf_mmd(x: np.ndarray, y: np.ndarray, bandwidths=(0.1, 0.3, 1.0)) -> float:
    """Biased MMD^2 between two point sets, averaged over a few RBF bandwidths."""
    import numpy as np

    def kernel(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.mean([np.exp(-d2 / (2 * s * s)) for s in bandwidths], axis=0)

    return float(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean())


def knn_distance(points: np.ndarray, reference: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean distance from each point to its k nearest reference points (low = high density)."""
    import numpy as np

    d = np.sqrt(((points[:, None, :] - reference[None, :, :]) ** 2).sum(-1))
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


class TinyDiffusionSession(Session):
    def __init__(self, hp: dict[str, Any], techniques: list[str], seed: int):
        import mlx.core as mx
        import numpy as np

        from mlops.training.families._models import NoisePredictor

        mx.random.seed(seed)
        super().__init__(NoisePredictor(2, hp["hidden"], hp["layers"]), hp, techniques, seed)
        self.steps = hp["timesteps"]
        self.betas = beta_schedule(hp["schedule"], self.steps)
        self.alpha_bars = np.cumprod(1 - self.betas)
        self._alpha_bars = mx.array(self.alpha_bars.astype(np.float32))
        self.timestep_loss = np.ones(self.steps)  # running per-t loss, drives "adaptive" sampling
        self.epochs_done = 0

    def _timestep_probs(self) -> np.ndarray:
        import numpy as np

        if self.hp["schedule"] != "adaptive":
            return np.full(self.steps, 1 / self.steps)
        # a 10% uniform floor keeps every t visited, so its estimate can recover
        return 0.9 * self.timestep_loss / self.timestep_loss.sum() + 0.1 / self.steps

    def _loss(self, model, x0, t, noise, weights):
        """Weighted epsilon-prediction MSE; also returns the per-example loss."""
        import mlx.core as mx

        ab = self._alpha_bars[t][:, None]
        per_example = ((model(mx.sqrt(ab) * x0 + mx.sqrt(1 - ab) * noise, t) - noise) ** 2).mean(axis=1)
        return (weights * per_example).mean(), per_example

    def _fit(self, x: np.ndarray, batch_size: int, epoch: int) -> float:
        import mlx.core as mx
        import mlx.nn as nn
        import numpy as np

        from mlops.training.families._common import batches, epoch_rng

        rng = epoch_rng(self.seed, epoch)
        step = nn.value_and_grad(self.model, self._loss)
        total = 0.0
        for idx in batches(len(x), batch_size, rng):
            probs = self._timestep_probs()
            t = rng.choice(self.steps, len(idx), p=probs)
            noise = rng.standard_normal((len(idx), 2)).astype(np.float32)
            weights = (1 / (self.steps * probs[t])).astype(np.float32)
            (loss, per_example), grads = step(
                self.model, mx.array(x[idx]), mx.array(t), mx.array(noise), mx.array(weights)
            )
            self.optimizer.update(self.model, grads)
            mx.eval(self.model.parameters(), self.optimizer.state, loss, per_example)
            total += loss.item() * len(idx)
            per_example = np.array(per_example)
            for step_t in np.unique(t):
                self.timestep_loss[step_t] = 0.9 * self.timestep_loss[step_t] + 0.1 * per_example[t == step_t].mean()
        return total / len(x)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Ancestral DDPM sampling, posterior variance beta~_t."""
        import mlx.core as mx
        import numpy as np

        x = mx.array(rng.standard_normal((count, 2)).astype(np.float32))
        for t in reversed(range(self.steps)):
            beta, ab = float(self.betas[t]), float(self.alpha_bars[t])
            eps = self.model(x, mx.full((count,), t))
            x = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
            if t > 0:
                variance = beta * (1 - self.alpha_bars[t - 1]) / (1 - ab)
                x = x + math.sqrt(variance) * mx.array(rng.standard_normal((count, 2)).astype(np.float32))
        return np.array(x)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"noise": [B, 2]} -> {"samples": [B, 2]}: the deterministic (DDIM, eta = 0) reverse
        process over all timesteps, started from the given noise; same noise, same samples."""
        import mlx.core as mx
        import numpy as np

        x = mx.array(inputs["noise"], dtype=mx.float32)
        count = x.shape[0]
        for t in reversed(range(self.steps)):
            ab = max(float(self.alpha_bars[t]), 1e-8)  # a beta of 1 (linear, few steps) zeroes it
            ab_prev = float(self.alpha_bars[t - 1]) if t > 0 else 1.0
            eps = self.model(x, mx.full((count,), t))
            x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
            x = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps
        mx.eval(x)
        return {"samples": np.array(x, dtype=np.float32)}

    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        import numpy as np

        from mlops.training.families._common import epoch_rng

        x, extra = data["train_x"], {}
        round_index = self.epochs_done - self.hp["self_improve_after"]
        if 0 <= round_index < self.hp["self_improve_rounds"]:
            candidates = self.sample(self.hp["self_improve_samples"], epoch_rng(self.seed, epoch, stream=4))
            score = knn_distance(candidates, x)
            kept = candidates[np.argsort(score)[: int(len(candidates) * self.hp["self_improve_keep"])]]
            x = np.concatenate([x, kept.astype(np.float32)])
            extra = {"self_improve_round": float(round_index + 1), "synthetic_kept": float(len(kept))}
            extra["synthetic_knn_distance"] = float(knn_distance(kept, data["train_x"]).mean())
        loss = self._fit(x, batch_size, epoch)
        self.epochs_done += 1
        if self.hp["schedule"] == "adaptive":
            extra["timestep_prob_max"] = float(self._timestep_probs().max())
        return EpochStats(loss=loss, samples=len(x), extra=extra)

    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """Val denoising MSE (uniform t) and MMD of fresh samples to val; fixed noise for comparability."""
        import mlx.core as mx
        import numpy as np

        from mlops.training.families._common import epoch_rng

        val = data["val_x"]
        rng = epoch_rng(self.seed, 0, stream=3)
        t = rng.integers(0, self.steps, len(val))
        noise = rng.standard_normal(val.shape).astype(np.float32)
        weights = mx.ones(len(val))
        loss, _ = self._loss(self.model, mx.array(val), mx.array(t), mx.array(noise), weights)
        samples = self.sample(self.hp["eval_samples"], epoch_rng(self.seed, 0, stream=2))
        return {"loss": loss.item(), "sample_mmd": rbf_mmd(samples, val)}


class TinyDiffusionFamily(ModelFamily):
    name = "tiny_diffusion"
    description = "DDPM on a 2-D ring of gaussians; linear/cosine/adaptive schedules, self-improvement rounds."
    metrics = {"loss": "min", "sample_mmd": "min"}
    default_hyperparameters = {
        "timesteps": 50,
        "schedule": "linear",
        "hidden": 128,
        "layers": 2,
        "learning_rate": 3e-3,
        "modes": 8,
        "quant_bits": 8,
        "eval_samples": 256,
        "self_improve_rounds": 0,
        "self_improve_after": 2,
        "self_improve_samples": 512,
        "self_improve_keep": 0.5,
    }
    supported_techniques = frozenset({"quantization"})

    def reference_inputs(self, data: dict[str, np.ndarray], hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """A sampler takes standard normal noise: the reference is that distribution (seeded), one row per sample."""
        import numpy as np

        rows = len(data["train_x"])
        return {"noise": np.random.default_rng(0).standard_normal((rows, 2)).astype(np.float32)}

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        return {
            "inputs": {"noise": {"dtype": "float32", "shape": [-1, 2]}},
            "outputs": {"samples": {"dtype": "float32", "shape": [-1, 2]}},
        }

    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """`modes` gaussians (std 0.1) evenly spaced on a circle of radius 1.5."""
        import numpy as np

        hp = merged(self.default_hyperparameters, hyperparameters)
        rng = np.random.default_rng(seed)
        angle = 2 * np.pi * rng.integers(0, hp["modes"], num_samples) / hp["modes"]
        x = 1.5 * np.stack([np.cos(angle), np.sin(angle)], axis=1) + 0.1 * rng.standard_normal((num_samples, 2))
        return split({"x": x.astype(np.float32)}, num_samples // 5)

    def create(self, hyperparameters: dict[str, Any], techniques: list[str], seed: int) -> TinyDiffusionSession:
        return TinyDiffusionSession(merged(self.default_hyperparameters, hyperparameters), techniques, seed)
