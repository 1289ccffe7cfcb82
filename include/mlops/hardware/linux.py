"""Linux readers: /proc, /sys, psutil and (when installed) NVML.

Why: Linux hosts (CI, x86 workers, CUDA boxes, Asahi Macs) report CPU, memory
and thermal state through the kernel's pseudo-filesystems.  Every reader takes
``root`` (default "/") so tests can point it at a fake /proc + /sys tree.  With
``root="/"`` CPU counts and memory come from psutil; with another root they
are parsed from ``<root>/proc`` so the fake tree is the only input.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

import psutil

from mlops.hardware.model import UNKNOWN, HardwareProfile, ThermalReading, worst_state

#: A zone within this many degrees below its lowest passive trip is "fair".
FAIR_MARGIN_C = 10.0

# /proc/cpuinfo "CPU implementer" codes (arch/arm64/include/asm/cputype.h).
_ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x51: "Qualcomm",
    0x61: "Apple",
    0xC0: "Ampere",
}
_ARM_PARTS = {
    0xD03: "Cortex-A53",
    0xD05: "Cortex-A55",
    0xD07: "Cortex-A57",
    0xD08: "Cortex-A72",
    0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1",
    0xD40: "Neoverse-V1",
    0xD41: "Cortex-A78",
    0xD49: "Neoverse-N2",
    0xD4F: "Neoverse-V2",
}
# Apple cores under Asahi Linux: part -> (chip, "performance" | "efficiency").
_APPLE_PARTS = {
    0x022: ("Apple M1", "efficiency"),
    0x023: ("Apple M1", "performance"),
    0x024: ("Apple M1 Pro", "efficiency"),
    0x025: ("Apple M1 Pro", "performance"),
    0x028: ("Apple M1 Max", "efficiency"),
    0x029: ("Apple M1 Max", "performance"),
    0x032: ("Apple M2", "efficiency"),
    0x033: ("Apple M2", "performance"),
    0x034: ("Apple M2 Pro", "efficiency"),
    0x035: ("Apple M2 Pro", "performance"),
    0x038: ("Apple M2 Max", "efficiency"),
    0x039: ("Apple M2 Max", "performance"),
}
# NVML clock-event (throttle) reason bits, used when pynvml lacks the constants.
_NVML_SW_THERMAL = 0x20
_NVML_HW_THERMAL = 0x40


# --------------------------------------------------------------------------- CPU


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo -> one dict per blank-line-separated block (first value of each key wins)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return blocks


def read_cpuinfo(root: str | Path = "/") -> dict[str, Any]:
    """CPU brand and identity from ``<root>/proc/cpuinfo``.

    Brand: "model name" (x86 and some ARM), else "Hardware" (older ARM
    kernels), else a name built from "CPU implementer"/"CPU part".  Returns
    ``brand``, ``chip``, ``is_apple_silicon``, ``processors`` (per-CPU blocks).
    """
    text = _read_text(Path(root) / "proc/cpuinfo")
    result: dict[str, Any] = {"brand": UNKNOWN, "chip": UNKNOWN, "is_apple_silicon": UNKNOWN, "processors": []}
    if text is None:
        return result
    blocks = parse_cpuinfo(text)
    processors = [b for b in blocks if b.get("processor", "").isdigit()]
    result["processors"] = processors
    merged: dict[str, str] = {}
    for block in blocks:
        for key, value in block.items():
            merged.setdefault(key, value)

    implementer = _hex(merged.get("CPU implementer"))
    parts = sorted({p for p in (_hex(b.get("CPU part")) for b in processors) if p is not None})
    if merged.get("vendor_id"):  # x86: GenuineIntel / AuthenticAMD / ...
        result["is_apple_silicon"] = False
    elif implementer is not None:
        result["is_apple_silicon"] = implementer == 0x61

    if merged.get("model name"):
        result["brand"] = merged["model name"]
    elif merged.get("Hardware"):
        result["brand"] = merged["Hardware"]
    elif implementer is not None:
        result["brand"] = _arm_brand(implementer, parts)
    if implementer == 0x61:
        chips = {_APPLE_PARTS[p][0] for p in parts if p in _APPLE_PARTS}
        if len(chips) == 1:
            result["chip"] = chips.pop()
    if result["chip"] == UNKNOWN:
        result["chip"] = result["brand"]
    return result


def _arm_brand(implementer: int, parts: list[int]) -> str:
    vendor = _ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer:#x}")
    if implementer == 0x61:
        chips = sorted({_APPLE_PARTS[p][0] for p in parts if p in _APPLE_PARTS})
        if len(chips) == 1:
            return chips[0]
    names = [_ARM_PARTS.get(p, f"part {p:#05x}") if implementer == 0x41 else f"part {p:#05x}" for p in parts]
    return f"{vendor} {' + '.join(names)}".strip()


def read_cpu_counts(root: str | Path = "/") -> tuple[int | str, int | str, str]:
    """(physical, logical, source).  psutil for the live root; /proc/cpuinfo otherwise."""
    if Path(root) == Path("/"):
        physical = psutil.cpu_count(logical=False)
        logical = psutil.cpu_count(logical=True)
        return (physical or UNKNOWN, logical or UNKNOWN, "psutil")
    processors = read_cpuinfo(root)["processors"]
    if not processors:
        return (UNKNOWN, UNKNOWN, "/proc/cpuinfo")
    logical = len(processors)
    cores = {(p.get("physical id", "0"), p["core id"]) for p in processors if "core id" in p}
    physical: int | str = len(cores) if cores else UNKNOWN
    if physical == UNKNOWN:
        physical = _count_physical([int(p["processor"]) for p in processors], root)
    return (physical, logical, "/proc/cpuinfo")


def read_core_types(root: str | Path = "/", cpuinfo: dict[str, Any] | None = None) -> tuple[int | str, int | str, str]:
    """(performance cores, efficiency cores, source) on hybrid CPUs; "unknown" otherwise.

    Checked in order: Intel hybrid (``/sys/devices/cpu_core`` + ``cpu_atom``),
    Apple cores by "CPU part" (Asahi), ARM big.LITTLE by ``cpu_capacity``
    (largest capacity = performance).  A homogeneous CPU has no P/E split: unknown.
    """
    root = Path(root)
    core_cpus = _parse_cpu_list(_read_text(root / "sys/devices/cpu_core/cpus"))
    atom_cpus = _parse_cpu_list(_read_text(root / "sys/devices/cpu_atom/cpus"))
    if core_cpus and atom_cpus:
        return (_count_physical(core_cpus, root), _count_physical(atom_cpus, root), "sysfs cpu_core/cpu_atom")

    cpuinfo = cpuinfo if cpuinfo is not None else read_cpuinfo(root)
    roles = [_APPLE_PARTS.get(_hex(p.get("CPU part")) or -1, (None, None))[1] for p in cpuinfo["processors"]]
    if cpuinfo["is_apple_silicon"] is True and roles and all(roles):
        return (roles.count("performance"), roles.count("efficiency"), "/proc/cpuinfo CPU part")

    capacities: dict[int, int] = {}
    for path in (root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpu_capacity"):
        value = _read_int(path)
        if value is not None:
            capacities[int(path.parent.name[3:])] = value
    if len(set(capacities.values())) > 1:
        top = max(capacities.values())
        big = [cpu for cpu, cap in capacities.items() if cap == top]
        little = [cpu for cpu, cap in capacities.items() if cap != top]
        return (_count_physical(big, root), _count_physical(little, root), "sysfs cpu_capacity")
    return (UNKNOWN, UNKNOWN, "")


def _count_physical(cpus: list[int], root: Path | str) -> int | str:
    """Distinct (package, core) pairs among ``cpus`` from sysfs topology; "unknown" if unreadable."""
    base = Path(root) / "sys/devices/system/cpu"
    cores = set()
    for cpu in cpus:
        topology = base / f"cpu{cpu}/topology"
        core = _read_int(topology / "core_id")
        if core is None:
            return UNKNOWN
        cores.add((_read_int(topology / "physical_package_id"), core))
    return len(cores) if cores else UNKNOWN


# --------------------------------------------------------------------------- memory / OS


def read_memory(root: str | Path = "/") -> tuple[int | str, int | str, str]:
    """(total bytes, available bytes, source).  psutil for the live root; /proc/meminfo otherwise."""
    if Path(root) == Path("/"):
        memory = psutil.virtual_memory()
        return (int(memory.total), int(memory.available), "psutil")
    text = _read_text(Path(root) / "proc/meminfo") or ""
    values = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+):\s+(\d+)\s*kB", line)
        if match:
            values[match.group(1)] = int(match.group(2)) * 1024
    return (values.get("MemTotal", UNKNOWN), values.get("MemAvailable", UNKNOWN), "/proc/meminfo")


def read_os_version(root: str | Path = "/") -> str:
    """"<PRETTY_NAME> (kernel <release>)" from /etc/os-release and /proc/sys/kernel/osrelease."""
    root = Path(root)
    pretty = None
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        text = _read_text(root / candidate)
        if text:
            match = re.search(r'^PRETTY_NAME=("?)(.*)\1\s*$', text, re.MULTILINE)
            if match:
                pretty = match.group(2)
                break
    kernel = (_read_text(root / "proc/sys/kernel/osrelease") or "").strip() or None
    if pretty and kernel:
        return f"{pretty} (kernel {kernel})"
    if kernel:
        return f"Linux {kernel}"
    return pretty or UNKNOWN


# --------------------------------------------------------------------------- thermal


def classify_zone(temp_c: float, trips: list[tuple[float, str]]) -> str:
    """Thermal state of one zone from its temperature and (trip °C, trip type) pairs.

    At/above a "hot" or "critical" trip -> critical; at/above a "passive" trip
    -> serious; within :data:`FAIR_MARGIN_C` under the lowest passive trip ->
    fair; below all of them -> nominal.  A zone with no passive/hot/critical
    trip has nothing to compare against -> unknown ("active" trips only start fans).
    """
    hard = [t for t, kind in trips if kind in ("hot", "critical")]
    passive = [t for t, kind in trips if kind == "passive"]
    if any(temp_c >= t for t in hard):
        return "critical"
    if any(temp_c >= t for t in passive):
        return "serious"
    if passive and temp_c >= min(passive) - FAIR_MARGIN_C:
        return "fair"
    if passive or hard:
        return "nominal"
    return UNKNOWN


def read_thermal_zones(root: str | Path = "/") -> ThermalReading:
    """Worst state over ``<root>/sys/class/thermal/thermal_zone*``.

    ``temp`` and ``trip_point_N_temp`` are millidegrees Celsius.  Zones whose
    temp cannot be read are skipped; no readable zone -> "unknown".
    """
    base = Path(root) / "sys/class/thermal"
    source = "sysfs thermal_zone"
    zones = sorted(base.glob("thermal_zone*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    if not zones:
        return ThermalReading(detail=f"no thermal zones under {base}", source=source)
    verdicts: list[tuple[str, str]] = []  # (state, description)
    temps: list[float] = []
    skipped: list[str] = []
    for zone in zones:
        milli = _read_int(zone / "temp")
        if milli is None or milli < -273150:
            skipped.append(zone.name)
            continue
        temp_c = milli / 1000.0
        temps.append(temp_c)
        trips = []
        for trip_file in zone.glob("trip_point_*_temp"):
            index = trip_file.name[len("trip_point_") : -len("_temp")]
            trip_milli = _read_int(trip_file)
            kind = (_read_text(zone / f"trip_point_{index}_type") or "").strip()
            if trip_milli is None or trip_milli <= 0 or not kind:
                continue
            trips.append((trip_milli / 1000.0, kind))
        state = classify_zone(temp_c, trips)
        kind = (_read_text(zone / "type") or "").strip() or zone.name
        verdicts.append((state, f"{kind} ({zone.name}) {temp_c:.1f} °C: {state}"))
    if not temps:
        return ThermalReading(detail=f"no readable zone temperature ({', '.join(skipped)})", source=source)
    state = worst_state(*(s for s, _ in verdicts))
    worst = [d for s, d in verdicts if s == state] if state != UNKNOWN else [d for _, d in verdicts]
    detail = "; ".join(worst[:3])
    detail += f" ({len(temps)} zone(s) read"
    detail += f", skipped unreadable: {', '.join(skipped)})" if skipped else ")"
    if state == UNKNOWN:
        detail += "; no passive/hot/critical trip points to compare against"
    return ThermalReading(state=state, detail=detail, max_temperature_c=max(temps), source=source)


# --------------------------------------------------------------------------- NVML


def read_nvml() -> dict[str, Any] | None:
    """NVIDIA GPUs via ``pynvml``; ``None`` when pynvml is absent or NVML cannot start.

    Returns ``gpus`` (name, cores, temperature_c, state) and the worst
    ``state``: HW thermal slowdown -> critical, SW thermal slowdown -> serious,
    neither -> nominal; unreadable reasons -> unknown.
    """
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - not installed, or a broken install
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver / no device
        return None
    try:
        sw_bit = getattr(pynvml, "nvmlClocksEventReasonSwThermalSlowdown", None) or getattr(
            pynvml, "nvmlClocksThrottleReasonSwThermalSlowdown", _NVML_SW_THERMAL
        )
        hw_bit = getattr(pynvml, "nvmlClocksEventReasonHwThermalSlowdown", None) or getattr(
            pynvml, "nvmlClocksThrottleReasonHwThermalSlowdown", _NVML_HW_THERMAL
        )
        reasons_fn = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        gpus = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            state = UNKNOWN
            reasons = _try(reasons_fn, handle) if reasons_fn else None
            if isinstance(reasons, int):
                state = "critical" if reasons & hw_bit else "serious" if reasons & sw_bit else "nominal"
            temp = _try(pynvml.nvmlDeviceGetTemperature, handle, getattr(pynvml, "NVML_TEMPERATURE_GPU", 0))
            cores = _try(getattr(pynvml, "nvmlDeviceGetNumGpuCores", None), handle)
            gpus.append(
                {
                    "name": str(name),
                    "cores": cores if isinstance(cores, int) else UNKNOWN,
                    "temperature_c": float(temp) if isinstance(temp, (int, float)) else None,
                    "state": state,
                }
            )
    except Exception:  # noqa: BLE001 - a failing NVML call must not break the probe
        return None
    finally:
        _try(getattr(pynvml, "nvmlShutdown", None))
    return {"gpus": gpus, "state": worst_state(*(g["state"] for g in gpus))}


# --------------------------------------------------------------------------- profile


def read_linux(root: str | Path = "/") -> HardwareProfile:
    """Linux :class:`HardwareProfile` (MLX fields are added by :func:`mlops.hardware.probe`)."""
    profile = HardwareProfile(platform="linux")
    cpuinfo = read_cpuinfo(root)
    profile.set("cpu_brand", cpuinfo["brand"], "/proc/cpuinfo")
    profile.set("chip", cpuinfo["chip"], "/proc/cpuinfo")
    profile.set("is_apple_silicon", cpuinfo["is_apple_silicon"], "/proc/cpuinfo")

    physical, logical, source = read_cpu_counts(root)
    profile.set("cpu_cores_physical", physical, source)
    profile.set("cpu_cores_logical", logical, source)
    perf, eff, source = read_core_types(root, cpuinfo)
    profile.set("performance_cores", perf, source)
    profile.set("efficiency_cores", eff, source)

    total, available, source = read_memory(root)
    profile.set("memory_total_bytes", total, source)
    profile.set("memory_available_bytes", available, source)
    profile.set("os_version", read_os_version(root), "/etc/os-release + /proc/sys/kernel/osrelease")
    if Path(root) == Path("/"):
        profile.set("python_version", platform.python_version(), "platform")
    profile.set("metal_available", False, "platform: Metal is macOS-only")

    nvml = read_nvml()
    if nvml is None:
        profile.set("cuda_available", False, "NVML unavailable (pynvml missing or no driver)")
    else:
        profile.set("cuda_available", bool(nvml["gpus"]), "NVML")
        if nvml["gpus"]:
            profile.set("gpu_name", " + ".join(g["name"] for g in nvml["gpus"]), "NVML")
            cores = [g["cores"] for g in nvml["gpus"]]
            if all(isinstance(c, int) for c in cores):
                profile.set("gpu_cores", sum(cores), "NVML")
    if cpuinfo["is_apple_silicon"] is True:
        profile.set("unified_memory", True, "/proc/cpuinfo")
    elif nvml and nvml["gpus"]:
        profile.set("unified_memory", False, "NVML: discrete GPU memory")

    thermal = read_thermal_zones(root)
    if nvml and nvml["gpus"]:
        gpu_temps = [g["temperature_c"] for g in nvml["gpus"] if g["temperature_c"] is not None]
        temps = [t for t in (thermal.max_temperature_c, *gpu_temps) if t is not None]
        thermal = ThermalReading(
            state=worst_state(thermal.state, nvml["state"]),
            detail=f"{thermal.detail}; NVML GPU clocks: {nvml['state']}",
            max_temperature_c=max(temps) if temps else None,
            source=f"{thermal.source} + NVML",
        )
    profile.thermal = thermal
    profile.sources["thermal"] = thermal.source
    return profile


# --------------------------------------------------------------------------- helpers


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _hex(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


def _parse_cpu_list(text: str | None) -> list[int]:
    """Kernel CPU list ("0-7,16-23") -> [0, ..., 7, 16, ..., 23]."""
    cpus: list[int] = []
    for part in (text or "").strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            cpus.extend(range(int(low), int(high or low) + 1))
        except ValueError:
            return []
    return cpus


def _try(fn: Any, *args: Any) -> Any:
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None
