"""The hardware sampler: every `tracking.sample_seconds` of a training or evaluation task, what the
machine is doing, logged to the task's MLflow run as `system/...` metrics.

Why not MLflow's own `enable_system_metrics_logging`: its monitors know psutil, NVIDIA and ROCm,
not Apple's GPU, memory pressure, thermal state or MLX's allocator. The sampler keeps MLflow's
names where MLflow has one (`mlops.analytics.names`), so MLflow's UI charts them the same way.

Each reader is a plain function returning `{metric: value}` (of two readers giving one name, the
one listed first wins: Apple's own GPU counter over macmon's). One that cannot read on this machine
raises `ReaderUnavailable` and is dropped quietly; one that fails is dropped with its error kept in
`problems` (logged once); the others go on. Nothing unreadable is logged, nothing is invented.
The thread is a daemon and stops with its `with` block, so it never outlives its task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlops.analytics import names

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

Reader = Callable[[], dict[str, float]]


def default_readers() -> dict[str, Reader]:
    """Every reader this platform has, by name; the ones that cannot read here drop out on first use."""
    from mlops.hardware import usage

    return {
        "cpu_memory": usage.read_cpu_memory,
        "memory_pressure": usage.read_memory_pressure,
        "thermal": read_thermal_level,
        "mlx_memory": read_mlx_memory,
        "apple_gpu": usage.read_apple_gpu,
        "nvidia_gpu": usage.read_nvidia_gpu,
        "macmon": usage.read_macmon,
    }


def read_thermal_level() -> dict[str, float]:
    """The machine's thermal state as a level (0 nominal .. 3 critical); nothing when unknown."""
    from mlops.hardware.thermal import read_thermal, state_rank
    from mlops.hardware.usage import ReaderUnavailable

    reading = read_thermal()
    rank = state_rank(reading.state)
    if rank is None:
        raise ReaderUnavailable(f"thermal state unknown ({reading.detail})")
    return {names.THERMAL_LEVEL: float(rank)}


def read_mlx_memory() -> dict[str, float]:
    """MLX's allocator: active, peak and cache memory of this process, in MB."""
    from mlops.training.device import memory_snapshot

    snap = memory_snapshot()
    return {
        names.MLX_ACTIVE_MB: snap["mlx_active_memory_bytes"] / 1e6,
        names.MLX_PEAK_MB: snap["mlx_peak_memory_bytes"] / 1e6,
        names.MLX_CACHE_MB: snap["mlx_cache_memory_bytes"] / 1e6,
    }


@dataclass
class Series:
    """The values one metric took during the task, with their sample times (monotonic seconds)."""

    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def time_weighted_integral(self, end: float) -> float:
        """Sum of value x seconds it held (each sample holds until the next one, the last until `end`)."""
        total = 0.0
        for i, (value, start) in enumerate(zip(self.values, self.times)):
            stop = self.times[i + 1] if i + 1 < len(self.times) else end
            total += value * max(0.0, stop - start)
        return total


class HardwareSampler:
    """Samples `readers` every `interval` seconds on a thread and logs each sample to `run_id`.

    Steps continue after the run's last `system/` step, so the evaluation task's samples follow the
    training task's on the same run. `clock` and `sleep` are injectable (tests drive time by hand).
    """

    def __init__(
        self,
        client: MlflowClient | None,
        run_id: str | None,
        interval: float,
        readers: dict[str, Reader] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.run_id, self.interval = client, run_id, interval
        self.readers = dict(default_readers() if readers is None else readers)
        self.clock = clock
        self.series: dict[str, Series] = {}
        self.problems: dict[str, str] = {}  # reader -> why it was dropped after failing
        self.unavailable: dict[str, str] = {}  # reader -> why it cannot read here
        self.samples = 0
        self.busy_seconds = 0.0  # wall time spent reading and logging: the sampler's own cost
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._step = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- one sample
    def sample(self) -> dict[str, float]:
        """Read every live reader once, keep the values, log them; return what was read."""
        from mlops.hardware.usage import ReaderUnavailable

        began = time.perf_counter()
        now = self.clock()
        values: dict[str, float] = {}
        for name, reader in list(self.readers.items()):
            try:
                got = reader()
            except ReaderUnavailable as exc:
                self.unavailable[name] = str(exc) or type(exc).__name__
                del self.readers[name]
                continue
            except Exception as exc:  # noqa: BLE001 - one broken reader must not stop the others
                self.problems[name] = f"{type(exc).__name__}: {exc}"
                log.warning("hardware sampler: reader %r failed and is stopped: %s", name, self.problems[name])
                del self.readers[name]
                continue
            for key, value in got.items():  # a name two readers give: the one listed first wins
                if value is not None:
                    values.setdefault(key, float(value))
        for key, value in values.items():
            series = self.series.setdefault(key, Series())
            series.values.append(value)
            series.times.append(now)
        self.samples += 1
        self._log(values)
        self.busy_seconds += time.perf_counter() - began
        return values

    def _log(self, values: dict[str, float]) -> None:
        if not values or self.client is None or self.run_id is None:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(names.SYSTEM + key, value, stamp, self._step) for key, value in sorted(values.items())]
        self._step += 1
        try:
            self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)
        except Exception as exc:  # noqa: BLE001 - a tracking hiccup loses one sample, never the task
            log.warning("hardware sampler: could not log a sample to run %s: %s", self.run_id, exc)

    # ----------------------------------------------------------------- the thread
    def start(self) -> HardwareSampler:
        self._step = self._next_step()
        self.started_at = self.clock()
        self._thread = threading.Thread(target=self._loop, name="mlops-hardware-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        """A sample at once, one per interval, and a last one when stopped (the stretch since the previous).

        All on this thread: psutil measures CPU utilization since the previous call of the same thread."""
        self.sample()
        while not self._stop.wait(self.interval):
            self.sample()
        self.sample()

    def stop(self) -> None:
        """Stop sampling (idempotent: the figures may stop it before its block ends)."""
        if self.stopped_at is not None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval))
        self.stopped_at = self.clock()

    def __enter__(self) -> HardwareSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_step(self) -> int:
        """After the last `system/` step already on the run (MLflow's own resume rule)."""
        if self.client is None or self.run_id is None:
            return 0
        try:
            run = self.client.get_run(self.run_id)
        except Exception:  # noqa: BLE001
            return 0
        keys = [k for k in run.data.metrics if k.startswith(names.SYSTEM)]
        if not keys:
            return 0
        history = self.client.get_metric_history(self.run_id, keys[0])
        return max((m.step for m in history), default=-1) + 1

    # ----------------------------------------------------------------- results
    @property
    def seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.stopped_at if self.stopped_at is not None else self.clock()) - self.started_at

    def means(self) -> dict[str, float]:
        return {key: series.mean for key, series in self.series.items() if series.values}

    def energy_joules(self) -> float | None:
        """Energy over the sampled time from the package (else CPU + GPU) power, when a source gave it."""
        end = self.stopped_at if self.stopped_at is not None else self.clock()
        if names.PACKAGE_POWER_WATTS in self.series:
            return self.series[names.PACKAGE_POWER_WATTS].time_weighted_integral(end)
        parts = [self.series[k] for k in (names.CPU_POWER_WATTS, names.GPU_POWER_WATTS) if k in self.series]
        if not parts:
            return None
        return sum(series.time_weighted_integral(end) for series in parts)

    def throttled_share(self) -> float | None:
        """Share of thermal samples at "serious" (level 2) or worse; None when no thermal reading."""
        series = self.series.get(names.THERMAL_LEVEL)
        if series is None or not series.values:
            return None
        return sum(1 for v in series.values if v >= 2) / len(series.values)

    def readers_report(self) -> dict[str, str]:
        """reader -> "sampled" / "unavailable: why" / "failed: error", for the run's tags."""
        report = {name: "sampled" for name in self.readers}
        report.update({name: f"unavailable: {why}" for name, why in self.unavailable.items()})
        report.update({name: f"failed: {why}" for name, why in self.problems.items()})
        return report

