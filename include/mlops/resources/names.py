"""Names the library, the DAG factory and the plugin agree on: pools and worker queues."""

from __future__ import annotations

import math

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
