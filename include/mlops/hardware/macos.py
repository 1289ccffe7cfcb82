"""macOS readers: ``sysctl``, ``system_profiler``, ``pmset`` and ``ioreg``.

Why: on a Mac the facts that matter for MLX (chip, core split, unified memory
size, GPU core count, thermal throttling) are only exposed through these
commands.  Parsers are pure functions over the commands' text so recorded
outputs (support bundles, test fixtures) go through exactly the same code as a
live read; readers run a command only when it exists on this machine.

Performance levels are read by *name*, never by index or listing order:
``sysctl`` lists ``hw.perflevel1.*`` before ``hw.perflevel0.*`` on some machines
(a recorded M3 Max), and the names change by generation ("Performance" /
"Efficiency" up to M4, "Super" / "Performance" on M5 Pro/Max, where level 0 is
not the "Performance" level).  Levels without a name (older macOS such as
Monterey prints none) give no performance/efficiency split at all.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
from typing import Any

from mlops.hardware.model import UNKNOWN, HardwareProfile, ThermalReading, worst_state

#: Performance levels asked for (Apple Silicon has 2 so far; ``sysctl`` skips unknown ones).
MAX_PERF_LEVELS = 4
#: The keys read with one ``sysctl`` call.
SYSCTL_KEYS = (
    "machdep.cpu.brand_string",
    "hw.nperflevels",  # Apple Silicon (and macOS 12+) only
    *(f"hw.perflevel{n}.{field}" for n in range(MAX_PERF_LEVELS) for field in ("name", "physicalcpu")),
    "hw.memsize",
    "hw.physicalcpu",
    "hw.logicalcpu",
    "hw.optional.arm64",
    "kern.osproductversion",
)
SYSCTL_CMD = ("sysctl", *SYSCTL_KEYS)
SYSTEM_PROFILER_CMD = ("system_profiler", "SPDisplaysDataType", "-json")
PMSET_CMD = ("pmset", "-g", "therm")
#: The GPU's IORegistry entry with its properties (``gpu-core-count`` on Apple Silicon).
IOREG_CMD = ("ioreg", "-r", "-d", "1", "-c", "IOAccelerator")
COMMAND_TIMEOUT_S = 15.0

#: Level names (lower case) counted as performance / efficiency cores.
PERFORMANCE_LEVEL = "performance"
EFFICIENCY_LEVEL = "efficiency"


# --------------------------------------------------------------------------- parsers


def parse_sysctl(text: str) -> dict[str, str]:
    """``sysctl`` output (``key: value`` lines) -> ``{key: value}``.

    Error lines such as ``sysctl: unknown oid 'hw.perflevel0.physicalcpu'``
    (printed on Intel Macs) are ignored, so a missing key simply stays absent.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)+)\s*(?::|=)\s?(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


_PERFLEVEL_KEY = re.compile(r"^hw\.perflevel(\d+)\.(\w+)$")


def perf_levels(values: dict[str, str]) -> list[dict[str, Any]]:
    """The ``hw.perflevelN.*`` entries of a parsed ``sysctl``, one dict per level N.

    Sorted by N (whatever order ``sysctl`` printed them in); each has ``level``,
    ``name`` (``None`` when not reported) and ``physicalcpu`` / ``logicalcpu``
    (int or "unknown").
    """
    levels: dict[int, dict[str, Any]] = {}
    for key, value in values.items():
        match = _PERFLEVEL_KEY.match(key)
        if not match:
            continue
        number = int(match.group(1))
        level = levels.setdefault(number, {"level": number, "name": None, "physicalcpu": UNKNOWN, "logicalcpu": UNKNOWN})
        field = match.group(2)
        if field == "name":
            level["name"] = value.strip() or None
        elif field in ("physicalcpu", "logicalcpu"):
            level[field] = _to_int(value)
    return [levels[n] for n in sorted(levels)]


def core_split(values: dict[str, str]) -> dict[str, Any]:
    """Performance / efficiency core counts from the performance levels' *names*.

    ``performance`` sums the levels named "Performance", ``efficiency`` those
    named "Efficiency" (0 when every level is named and none has that name, e.g.
    an M5 Max's "Super" + "Performance").  Both are "unknown" when any level is
    unnamed (older macOS prints no names), when no level has either name, when a
    level counted has no core count, or when ``hw.nperflevels`` says levels are
    missing from the output.  ``levels`` describes every level in level order,
    e.g. "6 Super + 12 Performance", or "unknown" without levels.
    """
    levels = perf_levels(values)
    result: dict[str, Any] = {"performance": UNKNOWN, "efficiency": UNKNOWN, "levels": UNKNOWN}
    if not levels:
        return result
    parts = []
    for level in levels:
        count = level["physicalcpu"] if level["physicalcpu"] != UNKNOWN else "?"
        parts.append(f"{count} {level['name']}" if level["name"] else f"{count} (level {level['level']}, unnamed)")
    result["levels"] = " + ".join(parts)
    declared = _to_int(values.get("hw.nperflevels"))
    if isinstance(declared, int) and declared != len(levels):
        return result
    if any(level["name"] is None for level in levels):
        return result
    names = [level["name"].lower() for level in levels]
    if PERFORMANCE_LEVEL not in names and EFFICIENCY_LEVEL not in names:
        return result
    for key, wanted in (("performance", PERFORMANCE_LEVEL), ("efficiency", EFFICIENCY_LEVEL)):
        counts = [level["physicalcpu"] for level in levels if level["name"].lower() == wanted]
        result[key] = sum(counts) if all(isinstance(c, int) for c in counts) else UNKNOWN
    return result


def parse_ioreg_accelerator(text: str) -> dict[str, Any]:
    """``ioreg -r -d 1 -c IOAccelerator`` (or any ``ioreg -l`` excerpt with the GPU entry) -> GPU facts.

    Returns ``gpu_cores`` (the first ``"gpu-core-count" = N``; Apple Silicon
    only) and ``model`` (the ``"model"`` of that entry), each "unknown" when absent.
    """
    cores = re.search(r'"gpu-core-count"\s*=\s*(\d+)', text)
    if not cores:
        return {"gpu_cores": UNKNOWN, "model": UNKNOWN}
    # The model belongs to the same entry: between the entry's "+-o" line and the core count.
    start = text.rfind("+-o ", 0, cores.start())
    model = re.search(r'"model"\s*=\s*"([^"]+)"', text[max(start, 0) : cores.start()])
    return {"gpu_cores": int(cores.group(1)), "model": model.group(1) if model else UNKNOWN}


def parse_system_profiler_displays(json_text: str) -> dict[str, Any]:
    """``system_profiler SPDisplaysDataType -json`` -> GPU summary.

    Returns ``gpus`` (one dict per GPU: name, cores, vendor, metal,
    dedicated_vram), plus ``gpu_name`` (names joined by " + "), ``gpu_cores``
    (``sppci_cores`` -- reported on Apple Silicon only) and ``metal_supported``.
    Raises ``ValueError`` if the text is not that document.
    """
    try:
        document = json.loads(json_text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    entries = document.get("SPDisplaysDataType") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("no SPDisplaysDataType list in system_profiler output")
    gpus = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("sppci_model") or entry.get("_name")
        metal = next(
            (entry[k] for k in ("spdisplays_mtlgpufamilysupport", "spdisplays_metalfamily", "spdisplays_metal") if entry.get(k)),
            None,
        )
        gpus.append(
            {
                "name": str(name) if name else UNKNOWN,
                "cores": _to_int(entry.get("sppci_cores")),
                "vendor": str(entry.get("spdisplays_vendor", UNKNOWN)),
                "metal": str(metal) if metal else UNKNOWN,
                # "spdisplays_vram" is dedicated VRAM; integrated GPUs report "..._vram_shared".
                "dedicated_vram": "spdisplays_vram" in entry,
            }
        )
    names = [g["name"] for g in gpus if g["name"] != UNKNOWN]
    cores = [g["cores"] for g in gpus if isinstance(g["cores"], int)]
    metals = [g["metal"] for g in gpus]
    if not gpus:
        metal_supported: bool | str = UNKNOWN
    elif any(m != UNKNOWN and "unsupported" not in m.lower() for m in metals):
        metal_supported = True
    else:
        metal_supported = UNKNOWN
    return {
        "gpus": gpus,
        "gpu_name": " + ".join(names) if names else UNKNOWN,
        "gpu_cores": sum(cores) if cores else UNKNOWN,
        "metal_supported": metal_supported,
        "dedicated_vram": any(g["dedicated_vram"] for g in gpus),
    }


def speed_limit_state(percent: int) -> str:
    """Map pmset's ``CPU_Speed_Limit`` to a thermal state.

    The bands are this platform's own choice (macOS publishes only the number):
    100 -> nominal, 80-99 -> fair, 50-79 -> serious, below 50 -> critical.
    """
    if percent >= 100:
        return "nominal"
    if percent >= 80:
        return "fair"
    if percent >= 50:
        return "serious"
    return "critical"


def thermal_warning_state(level: int) -> str:
    """Map pmset's "Thermal warning level set to N." to a thermal state.

    IOPM defines Normal = 0, Danger = 5, Crisis = 10; in-between values are
    treated as the band they exceed: 0 nominal, 1-4 fair, 5-9 serious, >=10 critical.
    """
    if level <= 0:
        return "nominal"
    if level < 5:
        return "fair"
    if level < 10:
        return "serious"
    return "critical"


def parse_pmset_therm(text: str) -> ThermalReading:
    """``pmset -g therm`` -> :class:`ThermalReading` (worst of all evidence found).

    * "Note: No thermal warning level has been recorded" (typical on Apple
      Silicon) means the OS never raised a warning -> nominal.
    * "Thermal warning level set to N." -> :func:`thermal_warning_state`.
    * "Performance warning level set to N." -> nominal for 0, fair otherwise
      (the scale is not public; any non-zero level is a reduced-performance hint).
    * ``CPU_Speed_Limit = N`` (Intel-era "CPU Power notify" block; last one
      wins) -> :func:`speed_limit_state`.
    Output with none of these -> "unknown".
    """
    states: list[str] = []
    details: list[str] = []
    if re.search(r"No thermal warning level has been recorded", text):
        states.append("nominal")
        details.append("no thermal warning recorded")
    for match in re.finditer(r"Thermal warning level set to (\d+)", text):
        level = int(match.group(1))
        states.append(thermal_warning_state(level))
        details.append(f"thermal warning level {level}")
    if re.search(r"No performance warning level has been recorded", text):
        states.append("nominal")
        details.append("no performance warning recorded")
    for match in re.finditer(r"Performance warning level set to (\d+)", text):
        level = int(match.group(1))
        states.append("nominal" if level == 0 else "fair")
        details.append(f"performance warning level {level}")
    if re.search(r"No CPU power status has been recorded", text):
        details.append("no CPU power status recorded")

    speed = _last_int(r"CPU_Speed_Limit\s*=\s*(\d+)", text)
    scheduler = _last_int(r"CPU_Scheduler_Limit\s*=\s*(\d+)", text)
    available = _last_int(r"CPU_Available_CPUs\s*=\s*(\d+)", text)
    if speed is not None:
        states.append(speed_limit_state(speed))
        details.append(f"CPU_Speed_Limit {speed}%")
    if scheduler is not None:
        details.append(f"CPU_Scheduler_Limit {scheduler}%")
    if available is not None:
        details.append(f"CPU_Available_CPUs {available}")

    state = worst_state(*states)
    return ThermalReading(
        state=state,
        detail="; ".join(details) if details else "unrecognised pmset -g therm output",
        cpu_speed_limit_percent=speed,
        max_temperature_c=None,  # pmset does not report temperatures
        source="pmset -g therm",
    )


# --------------------------------------------------------------------------- readers


def run_command(args: tuple[str, ...] | list[str], timeout: float = COMMAND_TIMEOUT_S) -> str | None:
    """Stdout of ``args`` if the command exists and ran; ``None`` otherwise.

    The exit status is not checked: ``sysctl`` exits non-zero when one of
    several keys is unknown but still prints the others.
    """
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def read_sysctl() -> str | None:
    """Raw output of one ``sysctl`` call for :data:`SYSCTL_KEYS`."""
    return run_command(SYSCTL_CMD)


def read_system_profiler_displays() -> str | None:
    """Raw JSON from ``system_profiler SPDisplaysDataType -json``."""
    return run_command(SYSTEM_PROFILER_CMD, timeout=60.0)


def read_pmset_therm() -> str | None:
    """Raw output of ``pmset -g therm``."""
    return run_command(PMSET_CMD)


def read_ioreg_accelerator() -> str | None:
    """Raw output of ``ioreg -r -d 1 -c IOAccelerator``."""
    return run_command(IOREG_CMD)


def build_profile(
    sysctl_text: str | None,
    displays_json: str | None,
    pmset_text: str | None,
    *,
    ioreg_text: str | None = None,
    sysctl_source: str = "sysctl",
    displays_source: str = "system_profiler SPDisplaysDataType",
    pmset_source: str = "pmset -g therm",
    ioreg_source: str = "ioreg -c IOAccelerator",
) -> HardwareProfile:
    """A macOS :class:`HardwareProfile` from the commands' outputs.

    ``None`` for an output means it was not available: its fields stay
    "unknown".  ``ioreg`` only fills the GPU core count / name where
    ``system_profiler`` did not.  The ``*_source`` labels go into
    ``profile.sources`` (a bundle passes its file paths).  Used for both
    live reads and bundles.
    """
    profile = HardwareProfile(platform="macos")
    # macOS has no CUDA; MLX there is Metal or CPU.
    profile.set("cuda_available", False, "platform: no CUDA on macOS")

    sysctl = parse_sysctl(sysctl_text) if sysctl_text is not None else {}
    brand = sysctl.get("machdep.cpu.brand_string") or UNKNOWN
    arm64 = _to_int(sysctl.get("hw.optional.arm64"))
    if arm64 in (0, 1):
        apple_silicon: bool | str = arm64 == 1
    elif brand.startswith("Apple "):
        apple_silicon = True
    elif "Intel" in brand:
        apple_silicon = False
    else:
        apple_silicon = UNKNOWN
    s = sysctl_source
    profile.set("cpu_brand", brand, s)
    profile.set("is_apple_silicon", apple_silicon, s)
    # ``sysctl machdep.cpu`` alone (no hw.*) still has the core and thread counts.
    physical = _to_int(sysctl.get("hw.physicalcpu", sysctl.get("machdep.cpu.core_count")))
    logical = _to_int(sysctl.get("hw.logicalcpu", sysctl.get("machdep.cpu.thread_count")))
    profile.set("cpu_cores_physical", physical, s)
    profile.set("cpu_cores_logical", logical, s)
    split = core_split(sysctl)
    profile.set("performance_cores", split["performance"], s)
    profile.set("efficiency_cores", split["efficiency"], s)
    profile.set("cpu_core_levels", split["levels"], s)
    profile.set("memory_total_bytes", _to_int(sysctl.get("hw.memsize")), s)
    if sysctl.get("kern.osproductversion"):
        profile.set("os_version", f"macOS {sysctl['kern.osproductversion']}", s)
    # Under Rosetta the brand string is "VirtualApple ..." and macOS 11.0 said "Apple processor":
    # neither names the chip, which then comes from the GPU.
    if brand != UNKNOWN and not brand.startswith("VirtualApple") and brand != "Apple processor":
        profile.set("chip", brand, s)

    if displays_json is not None:
        s = displays_source
        try:
            displays = parse_system_profiler_displays(displays_json)
        except ValueError as exc:
            profile.sources["gpu_name"] = f"{s} (unreadable: {exc})"
        else:
            profile.set("gpu_name", displays["gpu_name"], s)
            profile.set("gpu_cores", displays["gpu_cores"], s)
            profile.set("metal_available", displays["metal_supported"], s)
            # On Apple Silicon the GPU model is the SoC name ("Apple M2 Pro").
            if profile.chip == UNKNOWN and apple_silicon is True and str(displays["gpu_name"]).startswith("Apple "):
                profile.set("chip", displays["gpu_name"], s)
            if apple_silicon is False and displays["dedicated_vram"]:
                profile.set("unified_memory", False, s)
    if ioreg_text is not None:
        accelerator = parse_ioreg_accelerator(ioreg_text)
        if profile.gpu_cores == UNKNOWN:
            profile.set("gpu_cores", accelerator["gpu_cores"], ioreg_source)
        if profile.gpu_name == UNKNOWN:
            profile.set("gpu_name", accelerator["model"], ioreg_source)
        if profile.chip == UNKNOWN and apple_silicon is True and str(accelerator["model"]).startswith("Apple "):
            profile.set("chip", accelerator["model"], ioreg_source)
    if apple_silicon is True:
        profile.set("unified_memory", True, sysctl_source)

    if pmset_text is not None:
        thermal = parse_pmset_therm(pmset_text)
        thermal.source = pmset_source
        profile.thermal = thermal
        profile.sources["thermal"] = thermal.source
    return profile


def read_macos() -> HardwareProfile:
    """Live macOS profile (MLX fields are added by :func:`mlops.hardware.probe`)."""
    import psutil

    profile = build_profile(
        read_sysctl(), read_system_profiler_displays(), read_pmset_therm(), ioreg_text=read_ioreg_accelerator()
    )
    if profile.os_version == UNKNOWN and platform.mac_ver()[0]:
        profile.set("os_version", f"macOS {platform.mac_ver()[0]}", "platform.mac_ver")
    profile.set("python_version", platform.python_version(), "platform")
    memory = psutil.virtual_memory()
    profile.set("memory_available_bytes", int(memory.available), "psutil")
    if profile.memory_total_bytes == UNKNOWN:
        profile.set("memory_total_bytes", int(memory.total), "psutil")
    return profile


# --------------------------------------------------------------------------- helpers


def _to_int(value: Any) -> int | str:
    if value is None or isinstance(value, bool):
        return UNKNOWN
    try:
        return int(str(value).strip())
    except ValueError:
        return UNKNOWN


def _last_int(pattern: str, text: str) -> int | None:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None
