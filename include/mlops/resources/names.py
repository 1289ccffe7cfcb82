"""Names the library, the DAG factory and the plugin agree on: pools and worker queues."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.hardware.model import HardwareProfile

# Slots = GB of (unified) memory available to ML work; a heavy task takes its declared GB.
MEMORY_POOL = "mlx_memory"
# Slots = how many accelerator-bound tasks may run at once; shrinks when the machine runs hot.
COMPUTE_POOL = "mlx_compute"

QUEUES = {"any": "default", "apple_silicon": "apple_silicon", "gpu": "gpu"}


def memory_slots(memory_gb: float) -> int:
    """Pool slots a task declaring `memory_gb` takes (whole GB, at least one)."""
    return max(1, math.ceil(memory_gb))


def queue_for(requires: str) -> str:
    """Worker queue of a task that needs `requires` hardware (workers subscribe per their probe)."""
    return QUEUES[requires]


def worker_queues(profile: HardwareProfile) -> list[str]:
    """Queues a worker on this machine serves: `default` always, plus what its probe proves it has.

    "unknown" is not proof: a machine whose chip or GPU cannot be read serves `default` only.
    `gpu` means a GPU MLX can use: Metal on Apple Silicon (not an Intel Mac's GPU), or CUDA.
    """
    queues = [QUEUES["any"]]
    apple_silicon = profile.is_apple_silicon is True
    if apple_silicon:
        queues.append(QUEUES["apple_silicon"])
    if (apple_silicon and profile.metal_available is True) or profile.cuda_available is True:
        queues.append(QUEUES["gpu"])
    return queues
