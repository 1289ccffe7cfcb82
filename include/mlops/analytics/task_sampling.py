"""The sampler as a training or evaluation task uses it: on or off and its interval from the YAML."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mlops.analytics.sampler import HardwareSampler

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.config.schema import ProjectConfig


@contextlib.contextmanager
def task_sampler(config: ProjectConfig, run_id: str, client: MlflowClient | None = None) -> Iterator[HardwareSampler]:
    """Samples into `run_id` for the block when `tracking.system_metrics` is on; when it is off, a
    sampler that never starts (no reader, nothing logged), so callers never branch."""
    tracking = config.tracking
    if not tracking.system_metrics:
        idle = HardwareSampler(None, None, tracking.sample_seconds, readers={})
        yield idle
        idle.stop()
        return
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient()
    with HardwareSampler(client, run_id, tracking.sample_seconds) as sampler:
        yield sampler


def sampler_tags(sampler: HardwareSampler) -> dict[str, str]:
    """`mlops.sampler.<reader>` = sampled / unavailable: why / failed: error; the sample count and the
    seconds the sampler spent reading and logging."""
    tags = {f"mlops.sampler.{name}": status[:500] for name, status in sampler.readers_report().items()}
    tags["mlops.sampler.samples"] = str(sampler.samples)
    tags["mlops.sampler.busy_seconds"] = f"{sampler.busy_seconds:.3f}"
    return tags
