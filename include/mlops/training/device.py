"""Which MLX device trains: the GPU when MLX has one (Metal, or CUDA builds), else the CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def select_device() -> str:
    """Make the best device MLX's default and return its name ("gpu" or "cpu")."""
    import mlx.core as mx

    cuda = getattr(mx, "cuda", None)
    has_gpu = mx.metal.is_available() or bool(cuda and cuda.is_available())
    mx.set_default_device(mx.gpu if has_gpu else mx.cpu)
    return "gpu" if has_gpu else "cpu"


def memory_snapshot() -> dict[str, int]:
    """MLX allocator readings in bytes (active, peak, cache)."""
    import mlx.core as mx

    return {
        "mlx_active_memory_bytes": int(mx.get_active_memory()),
        "mlx_peak_memory_bytes": int(mx.get_peak_memory()),
        "mlx_cache_memory_bytes": int(mx.get_cache_memory()),
    }


@contextlib.contextmanager
def memory_limit(limit_bytes: int) -> Iterator[int]:
    """Keep MLX's allocations under `limit_bytes` (what the task declared) while inside the block."""
    import mlx.core as mx

    previous = mx.set_memory_limit(limit_bytes)
    try:
        yield limit_bytes
    finally:
        mx.set_memory_limit(previous)
