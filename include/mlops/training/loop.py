"""The bare MLX training loop, shared by the tracked trainer and the overhead benchmark."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from mlops.training.families.base import TrainingSession


@dataclass
class EpochReport:
    epoch: int
    loss: float
    samples: int
    seconds: float
    steps: int
    val: dict[str, float]
    extra: dict[str, float]

    @property
    def throughput(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def train_steps(data: dict[str, np.ndarray], batch_size: int) -> int:
    """Optimizer steps in one epoch (batches over the first `train_` array)."""
    n = next(len(v) for k, v in data.items() if k.startswith("train_"))
    return max(1, math.ceil(n / batch_size))


def run_epochs(
    session: TrainingSession,
    data: dict[str, np.ndarray],
    epochs: int,
    batch_size: int,
    on_epoch: Callable[[EpochReport], Any] | None = None,
) -> list[EpochReport]:
    """Train `epochs` passes, scoring the validation split after each; call `on_epoch` with the figures."""
    reports = []
    steps = train_steps(data, batch_size)
    for epoch in range(epochs):
        start = time.perf_counter()
        stats = session.train_epoch(data, batch_size, epoch)
        seconds = time.perf_counter() - start
        report = EpochReport(epoch, stats.loss, stats.samples, seconds, steps, session.evaluate(data), stats.extra)
        reports.append(report)
        if on_epoch is not None:
            on_epoch(report)
    return reports
