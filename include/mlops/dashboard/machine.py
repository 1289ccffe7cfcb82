"""This machine as the overview shows it: chip, memory and MLX device (probed once per process: they do
not change while it runs), the thermal state now (read on every call), and Airflow's pools."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.dashboard.airflow_state import AirflowState
    from mlops.hardware.model import HardwareProfile
    from mlops.settings import Settings

POOL_KEYS = ("name", "slots", "running", "queued", "open")


@functools.lru_cache(maxsize=1)
def static_profile() -> HardwareProfile:
    """The hardware probe (OS readers + MLX), once per process."""
    from mlops.hardware import probe

    return probe()


def machine_id() -> str:
    """This machine's `machine.id`, as the trainer tags runs with it (for `mlops compare`'s verdicts)."""
    from mlops.analytics import names
    from mlops.analytics.performance import machine_tags

    profile = static_profile()
    return machine_tags(profile, profile.mlx_device)[names.MACHINE]


def machine_section(settings: Settings, airflow: AirflowState) -> dict[str, Any]:
    from mlops.hardware.thermal import read_thermal

    profile = static_profile()
    chip = profile.chip if profile.chip != "unknown" else profile.cpu_brand
    memory = profile.memory_total_bytes
    thermal = read_thermal(settings.hardware_root)
    return {
        "chip": str(chip),
        "memory_gb": round(memory / 1024**3, 1) if isinstance(memory, int) else None,
        "device": profile.mlx_device,
        "thermal": thermal.state,
        "thermal_source": thermal.source,
        "thermal_detail": thermal.detail,
        "pools": [{key: pool.get(key) for key in POOL_KEYS} for pool in airflow.pools],
    }
