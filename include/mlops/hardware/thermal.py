"""The machine's thermal state *now*, cheap enough to poll every few seconds.

Why: the lifecycle's thermal gate holds heavy MLX steps back while the machine
is hot.  It re-reads the state on every poll, so this module reads only the
thermal sources (never the full hardware profile):

* macOS: ``pmset -g therm`` (:func:`mlops.hardware.macos.parse_pmset_therm`)
  combined with the kernel's thermal pressure level from ``notifyutil -g
  com.apple.system.thermalpressurelevel`` -- on Apple Silicon pmset usually
  reports "no thermal warning" while the pressure level is the live signal.
* Linux: the sysfs thermal zones (:func:`mlops.hardware.linux.read_thermal_zones`)
  combined with NVML thermal throttle reasons when pynvml and a driver exist.

The worst state of the sources wins; a source that cannot be read is ignored,
and nothing read at all is "unknown" (never guessed).  No Airflow imports.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

from mlops.hardware.model import UNKNOWN, THERMAL_STATES, ThermalReading, worst_state

#: Known thermal states, mildest first ("unknown" is not part of the order).
STATE_ORDER: tuple[str, ...] = tuple(s for s in THERMAL_STATES if s != UNKNOWN)
assert STATE_ORDER == ("nominal", "fair", "serious", "critical")


THERMAL_PRESSURE_CMD = ("notifyutil", "-g", "com.apple.system.thermalpressurelevel")
#: ``OSThermalPressureLevel`` (``<libkern/OSThermalNotification.h>``) -> thermal state.
THERMAL_PRESSURE_LEVELS = {
    0: ("nominal", "nominal"),
    1: ("moderate", "fair"),
    2: ("heavy", "serious"),
    3: ("trapping", "critical"),
    4: ("sleeping", "critical"),
}
#: A polled command must answer quickly; a hung one counts as unreadable.
POLL_COMMAND_TIMEOUT_S = 5.0


def state_rank(state: str) -> int | None:
    """Position of ``state`` in :data:`STATE_ORDER` (0 = nominal); ``None`` for "unknown"/anything else."""
    return STATE_ORDER.index(state) if state in STATE_ORDER else None


def at_least(state: str, threshold: str) -> bool:
    """True if known ``state`` is as severe as ``threshold`` or worse; False for "unknown"."""
    rank, limit = state_rank(state), state_rank(threshold)
    if limit is None:
        raise ValueError(f"threshold {threshold!r} not in {STATE_ORDER}")
    return rank is not None and rank >= limit


def hardware_root() -> Path | None:
    """``$MLOPS_HARDWARE_ROOT``, or ``None`` when unset.

    Points the Linux readers at a fake /sys and /proc tree (tests, simulations).
    """
    from mlops.settings import get_settings

    return get_settings().hardware_root


def parse_thermal_pressure(text: str) -> ThermalReading:
    """``notifyutil -g com.apple.system.thermalpressurelevel`` -> :class:`ThermalReading`.

    The output is ``com.apple.system.thermalpressurelevel <N>``; levels 0
    nominal, 1 moderate (fair), 2 heavy (serious), 3 trapping and 4 sleeping
    (critical).  A level above 4 is treated as critical; anything unparseable
    is "unknown".
    """
    source = "notifyutil thermalpressurelevel"
    match = re.search(r"thermalpressurelevel\s+(-?\d+)", text) or re.fullmatch(r"\s*(-?\d+)\s*", text)
    if not match:
        return ThermalReading(detail=f"unrecognised thermal pressure output {text.strip()[:80]!r}", source=source)
    level = int(match.group(1))
    if level < 0:
        return ThermalReading(detail=f"invalid thermal pressure level {level}", source=source)
    name, state = THERMAL_PRESSURE_LEVELS.get(level, ("beyond sleeping", "critical"))
    return ThermalReading(state=state, detail=f"thermal pressure level {level} ({name})", source=source)


def read_thermal_pressure() -> ThermalReading | None:
    """Live thermal pressure level; ``None`` when ``notifyutil`` is absent or failed."""
    from mlops.hardware.macos import run_command

    text = run_command(THERMAL_PRESSURE_CMD, timeout=POLL_COMMAND_TIMEOUT_S)
    return parse_thermal_pressure(text) if text else None


def combine(*readings: ThermalReading) -> ThermalReading:
    """One reading from several sources: worst known state, details and sources joined.

    Unknown readings contribute their detail (so "why unknown" stays visible)
    but never their state.
    """
    if not readings:
        return ThermalReading()
    if len(readings) == 1:
        return readings[0]
    state = worst_state(*(r.state for r in readings))
    temps = [r.max_temperature_c for r in readings if r.max_temperature_c is not None]
    speeds = [r.cpu_speed_limit_percent for r in readings if r.cpu_speed_limit_percent is not None]
    return ThermalReading(
        state=state,
        detail="; ".join(f"{r.source}: {r.detail}" for r in readings),
        cpu_speed_limit_percent=min(speeds) if speeds else None,
        max_temperature_c=max(temps) if temps else None,
        source=" + ".join(r.source for r in readings),
    )


def read_macos_thermal() -> ThermalReading:
    """``pmset -g therm`` + thermal pressure level, worst wins; commands that are absent are ignored."""
    from mlops.hardware.macos import PMSET_CMD, parse_pmset_therm, run_command

    readings = []
    pmset = run_command(PMSET_CMD, timeout=POLL_COMMAND_TIMEOUT_S)
    if pmset:
        readings.append(parse_pmset_therm(pmset))
    pressure = read_thermal_pressure()
    if pressure is not None:
        readings.append(pressure)
    if not readings:
        return ThermalReading(detail="neither pmset nor notifyutil could be run", source="macOS")
    return combine(*readings)


def read_linux_thermal(root: str | Path = "/") -> ThermalReading:
    """Sysfs thermal zones under ``root``, plus NVML throttle reasons on the live root only."""
    from mlops.hardware.linux import read_nvml, read_thermal_zones

    zones = read_thermal_zones(root)
    if Path(root) != Path("/"):
        return zones  # a fake tree is the only input; real GPUs are not part of it
    nvml = read_nvml()
    if not nvml or not nvml["gpus"]:
        return zones
    gpu_temps = [g["temperature_c"] for g in nvml["gpus"] if g["temperature_c"] is not None]
    gpus = ThermalReading(
        state=nvml["state"],
        detail="GPU clocks: " + ", ".join(f"{g['name']} {g['state']}" for g in nvml["gpus"]),
        max_temperature_c=max(gpu_temps) if gpu_temps else None,
        source="NVML",
    )
    return combine(zones, gpus)


def read_thermal(root: str | Path | None = None) -> ThermalReading:
    """The current thermal state of this machine.  Never raises for a failed source.

    ``root`` (else ``$MLOPS_HARDWARE_ROOT``) selects a fake /sys tree: it is
    read with the Linux reader on any platform.  Without one: macOS reads
    pmset + the thermal pressure level, Linux the live sysfs zones + NVML, any
    other system is "unknown".
    """
    root = root if root not in (None, "") else hardware_root()
    try:
        if root is not None:
            return read_linux_thermal(root)
        system = platform.system()
        if system == "Darwin":
            return read_macos_thermal()
        if system == "Linux":
            return read_linux_thermal("/")
        return ThermalReading(detail=f"no thermal reader for {system or 'this system'}", source=system or UNKNOWN)
    except Exception as exc:  # noqa: BLE001 - a gate polls this; a reader bug reads as unknown
        return ThermalReading(detail=f"thermal read failed: {type(exc).__name__}: {exc}", source="read_thermal")
