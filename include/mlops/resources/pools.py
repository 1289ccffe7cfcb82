"""Pool sizes from the hardware profile: pure sizing, no Airflow.

Two Airflow pools gate the heavy MLX steps (names in :mod:`mlops.resources.names`):

``mlx_memory``
    One slot per whole GB (GiB, 2**30 bytes, like ``HardwareProfile.memory_total_gb``) of
    memory that ML work may use: total memory minus a reserve for the OS and the platform's
    own services (Airflow, MLflow, the DB).  Default reserve: ``max(2 GB, 25 % of total)``
    -- 2 GB covers the services on a small machine, a quarter keeps a big one responsive.
    A training task takes ``ceil(training.memory_gb)`` slots, so tasks whose declared
    memory adds up to more than the machine can give wait instead of swapping.
``mlx_compute``
    How many accelerator-bound tasks may run at once: Apple GPU (Metal on Apple Silicon)
    -> 2 (one kernel stream computes while the other loads/evaluates; more only queue on
    the one GPU); CUDA -> one per GPU (1 when the count is unknown); CPU only ->
    ``max(1, physical cores // 2)`` (an MLX CPU task keeps about two cores busy).
    ``MLOPS_COMPUTE_SLOTS`` replaces that hardware-derived base (an operator's choice, or a
    test that needs a known pool size on any machine); thermal scaling still applies.

Thermal scaling, the platform's choice: a hot machine runs fewer accelerator tasks at once.
The compute pool is scaled by the thermal state -- nominal 100 %, fair 75 %, serious 50 %,
critical 25 % -- rounded down (when hot, round toward fewer tasks) and never below 1 slot;
an "unknown" state (nothing could be read) is not scaled.  The memory pool is not
scaled: heat does not change how much memory a task needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mlops.hardware.model import THERMAL_STATES, UNKNOWN, HardwareProfile
from mlops.resources.names import COMPUTE_POOL, MEMORY_POOL, memory_slots

GIB = 2**30
#: Reserve for the OS and services: the larger of these two.
MIN_RESERVE_GB = 2.0
RESERVE_FRACTION = 0.25
#: Memory pool size when the profile could not read the machine's memory (the description says so).
UNKNOWN_MEMORY_SLOTS = 8
#: Concurrent MLX tasks on one Apple GPU.
APPLE_GPU_SLOTS = 2
#: Share of the compute pool kept per thermal state ("unknown" is absent: not scaled).
THERMAL_SCALE = {"nominal": 1.0, "fair": 0.75, "serious": 0.5, "critical": 0.25}


@dataclass(frozen=True)
class PoolSize:
    name: str
    slots: int
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def default_reserve_gb(total_gb: float) -> float:
    """GB kept back for the OS and the platform's services: ``max(2 GB, 25 % of total)``."""
    return max(MIN_RESERVE_GB, RESERVE_FRACTION * total_gb)


def memory_pool(profile: HardwareProfile, reserve_gb: float | None = None) -> PoolSize:
    """The ``mlx_memory`` pool: whole GB of total memory minus the reserve (at least 1)."""
    total = _int(profile.memory_total_bytes)
    if total is None:
        return PoolSize(
            MEMORY_POOL,
            UNKNOWN_MEMORY_SLOTS,
            f"MLX memory in GB: total memory could not be read, so a fallback of {UNKNOWN_MEMORY_SLOTS} GB; "
            "a task takes ceil(training.memory_gb) slots. Sized by mlops.",
        )
    total_gb = total / GIB
    reserve = default_reserve_gb(total_gb) if reserve_gb is None else float(reserve_gb)
    if reserve < 0:
        raise ValueError(f"reserve_gb must be >= 0, got {reserve_gb}")
    slots = max(1, math.floor(total_gb - reserve + 1e-9))
    kind = "unified memory" if profile.unified_memory is True else "memory"
    return PoolSize(
        MEMORY_POOL,
        slots,
        f"MLX memory in GB: {slots} of {total_gb:.1f} GB {kind} ({reserve:.1f} GB reserved for the OS and "
        "services); a task takes ceil(training.memory_gb) slots. Sized by mlops.",
    )


def accelerator(profile: HardwareProfile) -> tuple[str, int, str]:
    """(kind, base compute slots, why): "apple_gpu", "cuda" or "cpu"."""
    if profile.is_apple_silicon is True and profile.metal_available is not False:
        return "apple_gpu", APPLE_GPU_SLOTS, f"Apple GPU ({profile.chip}): {APPLE_GPU_SLOTS} concurrent MLX tasks"
    if profile.cuda_available is True:
        names = [n for n in str(profile.gpu_name).split(" + ") if n and n != UNKNOWN]
        if names:
            return "cuda", len(names), f"CUDA: one task per GPU ({len(names)}: {profile.gpu_name})"
        return "cuda", 1, "CUDA: GPU count unknown, 1"
    cores = _int(profile.cpu_cores_physical)
    label = "physical"
    if cores is None:
        cores, label = _int(profile.cpu_cores_logical), "logical"
    if cores is None:
        return "cpu", 1, "CPU only, core count unknown: 1"
    return "cpu", max(1, cores // 2), f"CPU only: {cores} {label} cores // 2"


def thermal_scaled(base: int, thermal_state: str) -> int:
    """``base`` compute slots scaled for ``thermal_state`` (rounded down, at least 1)."""
    if thermal_state not in THERMAL_STATES:
        raise ValueError(f"thermal state {thermal_state!r} not in {THERMAL_STATES}")
    if thermal_state == UNKNOWN:
        return max(1, base)
    return max(1, math.floor(base * THERMAL_SCALE[thermal_state] + 1e-9))


def compute_pool(profile: HardwareProfile, thermal_state: str, base_slots: int | None = None) -> PoolSize:
    """The ``mlx_compute`` pool: accelerator concurrency, shrunk while the machine runs hot.

    ``base_slots`` (``MLOPS_COMPUTE_SLOTS``) replaces the hardware-derived base before thermal scaling.
    """
    _, base, why = accelerator(profile)
    if base_slots is not None:
        if _int(base_slots) is None:
            raise ValueError(f"base_slots must be a whole number >= 1, got {base_slots!r}")
        why = f"MLOPS_COMPUTE_SLOTS={base_slots} (the hardware would give {base}: {why})"
        base = base_slots
    slots = thermal_scaled(base, thermal_state)
    if thermal_state == UNKNOWN:
        heat = "thermal state unknown: not scaled"
    else:
        heat = f"thermal {thermal_state}: {THERMAL_SCALE[thermal_state]:.0%} of {base}"
    return PoolSize(
        COMPUTE_POOL,
        slots,
        f"MLX compute: {slots} concurrent accelerator task(s); {why}; {heat}. Sized by mlops.",
    )


def pool_plan(
    profile: HardwareProfile,
    thermal_state: str,
    reserve_gb: float | None = None,
    compute_slots: int | None = None,
) -> dict[str, PoolSize]:
    """Both pools for this machine in this thermal state, keyed by pool name.

    ``reserve_gb`` overrides the default reserve (``max(2 GB, 25 % of total)``);
    ``compute_slots`` the compute pool's hardware-derived base (thermal scaling still applies).
    """
    return {
        MEMORY_POOL: memory_pool(profile, reserve_gb),
        COMPUTE_POOL: compute_pool(profile, thermal_state, compute_slots),
    }


def check_memory_fits(memory_gb: float, profile: HardwareProfile, reserve_gb: float | None = None) -> str | None:
    """An error message when a task declaring ``memory_gb`` could never get its slots here; else None.

    Such a task would wait in the scheduler forever. Unknown machine memory: no verdict (None).
    """
    if _int(profile.memory_total_bytes) is None:
        return None
    pool = memory_pool(profile, reserve_gb)
    need = memory_slots(memory_gb)
    if need <= pool.slots:
        return None
    total_gb = profile.memory_total_bytes / GIB
    return (
        f"training.memory_gb {memory_gb:g} needs {need} slot(s) of pool `{MEMORY_POOL}`, but this machine's pool "
        f"has {pool.slots} ({total_gb:.1f} GB total minus the reserve for the OS and services): the task would "
        f"never be scheduled; lower memory_gb to at most {pool.slots}"
    )
