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

#: Tasks one Celery worker runs at once, the default of `mlops worker --concurrency` (ML tasks are heavy), and
#: what `mlops queue --demand` divides by unless told otherwise: one number for the workers and their scaling.
WORKER_CONCURRENCY = 1


def memory_slots(memory_gb: float) -> int:
    """Pool slots a task declaring `memory_gb` takes (whole GB, at least one)."""
    return max(1, math.ceil(memory_gb))


def memory_class(gb: float) -> int:
    """The smallest power of two ≥ `gb`: memory needs and machines meet on these classes."""
    return 1 << max(0, math.ceil(math.log2(gb)))


def queue_for(requires: str, min_memory_gb: float | None = None) -> str:
    """Worker queue of a task that needs `requires` hardware and at least `min_memory_gb` of memory.

    A memory need adds its class, rounded up: `apple_silicon` + 24 GB → `apple_silicon_mem32gb`, served
    only by workers with 32 GB or more (conservative: a 24 GB machine would do, but is not offered it).
    """
    base = QUEUES[requires]
    return base if min_memory_gb is None else f"{base}_mem{memory_class(min_memory_gb)}gb"


def worker_queues(profile: HardwareProfile) -> list[str]:
    """Queues a worker on this machine serves: `default` always, plus what its probe proves it has.

    "unknown" is not proof: a machine whose chip or GPU cannot be read serves `default` only, and
    one whose memory cannot be read serves no memory-class queue (see `queue_for`).
    `gpu` means a GPU MLX can use: Metal on Apple Silicon (not an Intel Mac's GPU), or CUDA.
    """
    bases = [QUEUES["any"]]
    apple_silicon = profile.is_apple_silicon is True
    if apple_silicon:
        bases.append(QUEUES["apple_silicon"])
    if (apple_silicon and profile.metal_available is True) or profile.cuda_available is True:
        bases.append(QUEUES["gpu"])
    memory = profile.memory_total_bytes
    classes = []
    if isinstance(memory, int) and memory >= 2**30:  # every class this machine's memory reaches
        classes = [1 << k for k in range(int(math.log2(memory / 2**30)) + 1)]
    return bases + [f"{base}_mem{c}gb" for base in bases for c in classes]
