"""Hardware profile data model.

Why: every run, benchmark and DAG task needs one shape for "what machine was
this?" that can be printed, serialised to JSON and logged to MLflow.  Readers
fill it in; anything a reader could not read stays the string ``"unknown"``
(or ``None`` for optional numeric detail) -- values are never guessed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union

UNKNOWN = "unknown"

#: Thermal states, mildest first (the names follow macOS'
#: ``ProcessInfo.thermalState``), plus ``"unknown"`` when nothing was read.
THERMAL_STATES = ("nominal", "fair", "serious", "critical", UNKNOWN)
PLATFORMS = ("macos", "linux", UNKNOWN)
MLX_DEVICES = ("gpu", "cpu", UNKNOWN)

MaybeInt = Union[int, str]  # an int, or "unknown"
MaybeBool = Union[bool, str]  # a bool, or "unknown"
MaybeStr = str  # a value, or "unknown"

# MLflow rejects longer param values on older tracking servers.
_MLFLOW_PARAM_MAX = 500


def worst_state(*states: str) -> str:
    """The most severe of the known thermal states; "unknown" if none is known."""
    known = [s for s in states if s in THERMAL_STATES and s != UNKNOWN]
    if not known:
        return UNKNOWN
    return max(known, key=THERMAL_STATES.index)


@dataclass
class ThermalReading:
    """One thermal verdict plus the evidence it came from."""

    state: str = UNKNOWN
    detail: str = "no thermal source was read"
    cpu_speed_limit_percent: int | None = None
    max_temperature_c: float | None = None
    source: str = UNKNOWN

    def __post_init__(self) -> None:
        if self.state not in THERMAL_STATES:
            raise ValueError(f"thermal state {self.state!r} not in {THERMAL_STATES}")


@dataclass
class HardwareProfile:
    """What a machine offers an MLX training run, as read (never assumed)."""

    platform: str = UNKNOWN
    chip: MaybeStr = UNKNOWN
    cpu_brand: MaybeStr = UNKNOWN
    is_apple_silicon: MaybeBool = UNKNOWN
    cpu_cores_physical: MaybeInt = UNKNOWN
    cpu_cores_logical: MaybeInt = UNKNOWN
    performance_cores: MaybeInt = UNKNOWN
    efficiency_cores: MaybeInt = UNKNOWN
    #: Every CPU performance level by its own name, e.g. "12 Performance + 4 Efficiency" or
    #: "6 Super + 12 Performance" (levels named otherwise count in neither field above).
    cpu_core_levels: MaybeStr = UNKNOWN
    memory_total_bytes: MaybeInt = UNKNOWN
    memory_available_bytes: MaybeInt = UNKNOWN
    unified_memory: MaybeBool = UNKNOWN
    gpu_name: MaybeStr = UNKNOWN
    gpu_cores: MaybeInt = UNKNOWN
    metal_available: MaybeBool = UNKNOWN
    cuda_available: MaybeBool = UNKNOWN
    thermal: ThermalReading = field(default_factory=ThermalReading)
    os_version: MaybeStr = UNKNOWN
    python_version: MaybeStr = UNKNOWN
    mlx_version: MaybeStr = UNKNOWN
    mlx_device: str = UNKNOWN
    #: field name -> the reader that produced its value (only for values read).
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform {self.platform!r} not in {PLATFORMS}")
        if self.mlx_device not in MLX_DEVICES:
            raise ValueError(f"mlx_device {self.mlx_device!r} not in {MLX_DEVICES}")

    def set(self, name: str, value: Any, source: str) -> None:
        """Set a field and record which reader produced it; "unknown"/None is ignored."""
        if value is None or value == UNKNOWN:
            return
        if not hasattr(self, name):
            raise AttributeError(name)
        setattr(self, name, value)
        self.sources[name] = source

    @property
    def memory_total_gb(self) -> str:
        """Total memory in GiB with one decimal, or "unknown"."""
        return _gib(self.memory_total_bytes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: top-level fields, plus nested ``thermal`` and ``sources``."""
        data = asdict(self)
        data["memory_total_gb"] = self.memory_total_gb
        data["memory_available_gb"] = _gib(self.memory_available_bytes)
        return data

    def to_mlflow_params(self) -> dict[str, str]:
        """Flat ``hw.*`` params, every key and value a string, for ``mlflow.log_params``."""
        params = {
            "hw.platform": self.platform,
            "hw.chip": self.chip,
            "hw.cpu_brand": self.cpu_brand,
            "hw.is_apple_silicon": self.is_apple_silicon,
            "hw.cpu_cores_physical": self.cpu_cores_physical,
            "hw.cpu_cores_logical": self.cpu_cores_logical,
            "hw.performance_cores": self.performance_cores,
            "hw.efficiency_cores": self.efficiency_cores,
            "hw.cpu_core_levels": self.cpu_core_levels,
            "hw.memory_total_gb": self.memory_total_gb,
            "hw.unified_memory": self.unified_memory,
            "hw.gpu_name": self.gpu_name,
            "hw.gpu_cores": self.gpu_cores,
            "hw.metal_available": self.metal_available,
            "hw.cuda_available": self.cuda_available,
            "hw.os": self.os_version,
            "hw.python": self.python_version,
            "hw.mlx_version": self.mlx_version,
            "hw.mlx_device": self.mlx_device,
            "hw.thermal_state": self.thermal.state,
            "hw.thermal_source": self.thermal.source,
            "hw.thermal_cpu_speed_limit_percent": self.thermal.cpu_speed_limit_percent,
            "hw.thermal_max_temperature_c": self.thermal.max_temperature_c,
        }
        return {key: _param_str(value) for key, value in params.items()}


def _gib(value: MaybeInt) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return UNKNOWN
    return f"{value / 2**30:.1f}"


def _param_str(value: Any) -> str:
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)[:_MLFLOW_PARAM_MAX]
