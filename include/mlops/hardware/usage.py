"""What the machine is doing *now*: the per-sample readers of the training-time sampler.

Why: :mod:`mlops.analytics.sampler` logs, every few seconds of a training task, CPU and memory use,
memory pressure, GPU use and (where a tool reports it) power and temperatures, under the metric
names of :mod:`mlops.analytics.names` (MLflow's own where MLflow has one).  Each reader here is a
plain function without arguments returning ``{metric name without "system/": value}`` with only
the values it actually read.  A reader that cannot read on this machine (no such command,
library or device) raises :class:`ReaderUnavailable` and the sampler drops it; any other
exception is a real failure.  Nothing is ever invented: a value that was not read is absent.

As in :mod:`mlops.hardware.macos`, parsers are pure functions over a command's text, so recorded
outputs (tests/hardware/fixtures/recorded/) go through the same code as a live read, and a
command is only run when it exists.  Keys are read by name, never by position: the key order of
ioreg's ``"PerformanceStatistics"`` differs between GPU generations and macOS versions.
"""

from __future__ import annotations

import errno
import json
import math
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from mlops.analytics import names


class ReaderUnavailable(Exception):
    """This reader cannot read on this machine (message says why); the sampler drops it."""


#: ``sysctl -n kern.memorystatus_vm_pressure_level`` (macOS only).
VM_PRESSURE_CMD = ("sysctl", "-n", "kern.memorystatus_vm_pressure_level")
#: The kernel's levels (NOTE_MEMORYSTATUS_PRESSURE_NORMAL / _WARN / _CRITICAL) -> ours.
VM_PRESSURE_LEVELS = {1: 0.0, 2: 1.0, 4: 2.0}
#: Linux pressure stall information for memory.
PSI_MEMORY_PATH = Path("/proc/pressure/memory")
#: Our bands over PSI's ``some avg10`` (the share of the last 10 s in which at least one task
#: stalled on memory), not the kernel's: below 10 % -> 0 (normal), below 40 % -> 1 (warning),
#: else 2 (critical).  PSI publishes percentages only; these thresholds are this platform's choice.
PSI_WARNING_PERCENT = 10.0
PSI_CRITICAL_PERCENT = 40.0
#: The GPU's IORegistry entry, unwrapped (``-w 0``) so the statistics dictionary is one line.
IOREG_ACCELERATOR_CMD = ("ioreg", "-r", "-d", "1", "-w", "0", "-c", "IOAccelerator")
#: macmon (https://github.com/vladkens/macmon, sudoless): one sample over this many milliseconds.
MACMON_INTERVAL_MS = 500
MACMON_CMD = ("macmon", "pipe", "-s", "1", "-i", str(MACMON_INTERVAL_MS))
#: A polled command must answer well within a sampling period.
COMMAND_TIMEOUT_S = 10.0

# The names the sampler logs (without names.SYSTEM).
_GPU_UTIL = names.GPU_UTILIZATION
_GPU_MEM = names.GPU_MEMORY_MB


# --------------------------------------------------------------------------- parsers


def parse_vm_pressure_level(text: str) -> dict[str, float]:
    """``sysctl [-n] kern.memorystatus_vm_pressure_level`` -> ``{MEMORY_PRESSURE: 0 | 1 | 2}``.

    Reads ``kern.memorystatus_vm_pressure_level: N`` among other ``sysctl`` lines, or a bare
    ``N`` (the ``-n`` form).  The kernel reports 1 (normal), 2 (warning) or 4 (critical), mapped
    to 0 / 1 / 2 (macOS's own three levels).  Any other value, or no value: ``{}``.
    """
    named = re.search(r"^\s*kern\.memorystatus_vm_pressure_level\s*[:=]\s*(-?\d+)\s*$", text, re.MULTILINE)
    bare = re.fullmatch(r"\s*(-?\d+)\s*", text)
    match = named or bare
    if not match:
        return {}
    level = VM_PRESSURE_LEVELS.get(int(match.group(1)))
    return {} if level is None else {names.MEMORY_PRESSURE: level}


def parse_psi_memory(text: str) -> dict[str, float]:
    """``/proc/pressure/memory`` -> ``{MEMORY_PRESSURE: 0 | 1 | 2}`` from the ``some avg10`` figure.

    The bands are ours (:data:`PSI_WARNING_PERCENT`, :data:`PSI_CRITICAL_PERCENT`); without a
    ``some`` line with ``avg10``: ``{}``.
    """
    match = re.search(r"^some\b.*?\bavg10=(\d+(?:\.\d+)?)", text, re.MULTILINE)
    if not match:
        return {}
    avg10 = float(match.group(1))
    level = 0.0 if avg10 < PSI_WARNING_PERCENT else 1.0 if avg10 < PSI_CRITICAL_PERCENT else 2.0
    return {names.MEMORY_PRESSURE: level}


def parse_ioreg_performance_statistics(text: str) -> dict[str, float]:
    """``ioreg -r -d 1 -w 0 -c IOAccelerator`` (or an ``ioreg -l`` excerpt) -> GPU use.

    Reads the first closed ``"PerformanceStatistics" = {...}`` dictionary holding
    ``"Device Utilization %"`` or ``"In use system memory"``: GPU_UTILIZATION from the former,
    GPU_MEMORY_MB from the latter (bytes / 1e6, as MLflow counts megabytes).  Keys are matched
    whole, so ``"In use system memory (driver)"`` (newer macOS) is not taken for it.  A cut-off
    dictionary (no closing brace) is not read: its last number may be cut too.  None: ``{}``.
    """
    for stats in _performance_statistics(text):
        result: dict[str, float] = {}
        if "Device Utilization %" in stats:
            result[_GPU_UTIL] = stats["Device Utilization %"]
        if "In use system memory" in stats:
            result[_GPU_MEM] = stats["In use system memory"] / 1e6
        if result:
            return result
    return {}


def parse_macmon_line(text: str) -> dict[str, float]:
    """One ``macmon pipe`` JSON line (the last non-empty line of ``text``) -> power, temperatures, GPU use.

    * CPU_POWER_WATTS / GPU_POWER_WATTS: ``cpu_power`` / ``gpu_power``.
    * PACKAGE_POWER_WATTS: ``all_power``, which macmon sums from CPU + GPU + ANE (not DRAM:
      ``ram_power`` is separate).  ``sys_power`` is not used: it is the whole machine's draw
      (SMC), display and everything else included, not the SoC's.
    * CPU_TEMPERATURE_C / GPU_TEMPERATURE_C: ``temp.cpu_temp_avg`` / ``temp.gpu_temp_avg`` when
      above 0 -- macmon writes 0.0 when it found no sensor (an average over none), not a reading.
    * GPU_UTILIZATION: ``gpu_active_ratio`` x 100 (macmon 0.8+: the share of the interval the GPU
      was active, as NVML's utilisation is).  The older ``gpu_usage`` pair is frequency-scaled
      residency, a different measure, and is not used.

    Fields that are absent or not finite numbers are left out.  Raises ``ValueError`` when the
    line is not a JSON object.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no macmon output")
    try:
        document = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"macmon output is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("macmon output is not a JSON object")
    result: dict[str, float] = {}
    for key, metric in (
        ("cpu_power", names.CPU_POWER_WATTS),
        ("gpu_power", names.GPU_POWER_WATTS),
        ("all_power", names.PACKAGE_POWER_WATTS),
    ):
        value = _number(document.get(key))
        if value is not None and value >= 0:
            result[metric] = value
    temp = document.get("temp")
    if isinstance(temp, dict):
        for key, metric in (("cpu_temp_avg", names.CPU_TEMPERATURE_C), ("gpu_temp_avg", names.GPU_TEMPERATURE_C)):
            value = _number(temp.get(key))
            if value is not None and value > 0:
                result[metric] = value
    active = _number(document.get("gpu_active_ratio"))
    if active is not None and 0 <= active <= 1:
        result[_GPU_UTIL] = active * 100
    return result


# --------------------------------------------------------------------------- readers


#: Per thread object (not per ident: Python reuses a dead thread's ident, and psutil would then measure
#: from that thread's last call): whether this thread's CPU baseline is set.
_cpu_baseline = threading.local()


def read_cpu_memory() -> dict[str, float]:
    """CPU and memory use from psutil, with MLflow's CPUMonitor names and units.

    CPU_UTILIZATION is ``psutil.cpu_percent(interval=None)``: the share since this thread's
    previous call.  psutil keeps that baseline per thread ident, so the first call in a thread only
    sets it and reports no CPU value (psutil would answer a meaningless 0.0 there, or, where the ident
    is a dead thread's, the share since that thread's last call).
    MEMORY_USED_MB and SWAP_USED_MB are bytes / 1e6 (as MLflow); MEMORY_USED_PERCENT is
    psutil's ``percent``.
    """
    try:
        import psutil
    except ImportError as exc:  # a dependency of the platform; absent only in a broken install
        raise ReaderUnavailable(f"psutil is not installed: {exc}") from exc
    primed = getattr(_cpu_baseline, "set", False)
    _cpu_baseline.set = True
    cpu = psutil.cpu_percent(interval=None)
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    result = {
        names.MEMORY_USED_MB: memory.used / 1e6,
        names.MEMORY_USED_PERCENT: float(memory.percent),
        names.SWAP_USED_MB: swap.used / 1e6,
    }
    if primed:
        result[names.CPU_UTILIZATION] = float(cpu)
    return result


def read_memory_pressure() -> dict[str, float]:
    """MEMORY_PRESSURE: macOS's ``kern.memorystatus_vm_pressure_level``, else Linux PSI (our bands).

    ReaderUnavailable on macOS without ``sysctl`` and elsewhere without ``/proc/pressure/memory``
    (kernels before 4.20, or PSI switched off).  An output neither parser recognises is a failure.
    """
    if sys.platform == "darwin":
        return _read_vm_pressure_level()
    return _read_psi_memory()


def read_apple_gpu() -> dict[str, float]:
    """GPU_UTILIZATION and GPU_MEMORY_MB from ``ioreg``'s ``PerformanceStatistics`` (no sudo).

    ReaderUnavailable off macOS, without ``ioreg``, or when no accelerator reports those
    statistics (e.g. a virtual machine).
    """
    if sys.platform != "darwin":
        raise ReaderUnavailable(f"ioreg's GPU statistics are macOS only (this is {sys.platform})")
    text = _run(IOREG_ACCELERATOR_CMD)
    values = parse_ioreg_performance_statistics(text)
    if not values:
        raise ReaderUnavailable("no IOAccelerator reports PerformanceStatistics on this Mac")
    return values


def read_nvidia_gpu() -> dict[str, float]:
    """GPU 0 through NVML (pynvml), with MLflow's GPUMonitor names and units.

    GPU_UTILIZATION (``nvmlDeviceGetUtilizationRates().gpu``), GPU_MEMORY_MB (used / 1e6),
    GPU_MEMORY_PERCENT (used / total x 100) and GPU_POWER_WATTS (milliwatts / 1000); a query
    NVML refuses (not supported, no permission) is left out, as MLflow's monitor skips it.  ReaderUnavailable without pynvml, when NVML cannot
    start (no driver) or without a GPU.
    """
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ReaderUnavailable(f"pynvml is not installed: {exc}") from exc
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded / ...
        raise ReaderUnavailable(f"NVML cannot start: {exc}") from exc
    try:
        if int(pynvml.nvmlDeviceGetCount()) < 1:
            raise ReaderUnavailable("NVML reports no GPU")
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        result: dict[str, float] = {}
        memory = _nvml(pynvml, pynvml.nvmlDeviceGetMemoryInfo, handle)
        if memory is not None:
            result[_GPU_MEM] = memory.used / 1e6
            if memory.total:
                result[names.GPU_MEMORY_PERCENT] = memory.used / memory.total * 100
        rates = _nvml(pynvml, pynvml.nvmlDeviceGetUtilizationRates, handle)
        if rates is not None:
            result[_GPU_UTIL] = float(rates.gpu)
        milliwatts = _nvml(pynvml, pynvml.nvmlDeviceGetPowerUsage, handle)
        if milliwatts is not None:
            result[names.GPU_POWER_WATTS] = milliwatts / 1000
        if not result:
            raise RuntimeError("NVML answered none of GPU 0's memory, utilisation or power queries")
        return result
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - shutting down a library that started is best effort
            pass


def read_macmon() -> dict[str, float]:
    """Power, temperatures and GPU use from one ``macmon pipe`` sample (:func:`parse_macmon_line`).

    ReaderUnavailable without ``macmon`` on PATH (``brew install macmon``).  A sample that gives
    none of those values is a failure.
    """
    values = parse_macmon_line(_run(MACMON_CMD))
    if not values:
        raise RuntimeError("macmon's sample has no power, temperature or GPU figure")
    return values


# --------------------------------------------------------------------------- helpers


def _read_vm_pressure_level() -> dict[str, float]:
    if sys.platform != "darwin":
        raise ReaderUnavailable(f"kern.memorystatus_vm_pressure_level is macOS only (this is {sys.platform})")
    text = _run(VM_PRESSURE_CMD)
    values = parse_vm_pressure_level(text)
    if not values:
        raise RuntimeError(f"unrecognised memory pressure level {text.strip()[:40]!r}")
    return values


def _read_psi_memory(path: Path = PSI_MEMORY_PATH) -> dict[str, float]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ReaderUnavailable(f"no {path} (kernel without pressure stall information)") from exc
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):  # PSI compiled in but switched off (psi=0)
            raise ReaderUnavailable(f"{path}: pressure stall information is switched off") from exc
        raise
    values = parse_psi_memory(text)
    if not values:
        raise RuntimeError(f"unrecognised {path}: {text.strip()[:80]!r}")
    return values


def _run(args: tuple[str, ...]) -> str:
    """Stdout of a command that must succeed; ReaderUnavailable when it is not installed."""
    if shutil.which(args[0]) is None:
        raise ReaderUnavailable(f"{args[0]} is not on PATH")
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}: {done.stderr.strip()[:200]}")
    return done.stdout


def _performance_statistics(text: str) -> list[dict[str, float]]:
    """Every closed ``"PerformanceStatistics" = {...}`` dictionary: its numeric entries by key."""
    found = []
    for match in re.finditer(r'"PerformanceStatistics"\s*=\s*\{', text):
        body = _dictionary_body(text, match.end())
        if body is None:
            continue
        entries = {}
        for entry in re.finditer(r'"([^"]*)"\s*=\s*(-?\d+(?:\.\d+)?)(?=\s*[,}]|\s*$)', body):
            entries[entry.group(1)] = float(entry.group(2))
        found.append(entries)
    return found


def _dictionary_body(text: str, start: int) -> str | None:
    """The text from ``start`` (just after an opening brace) to its closing brace; None if unclosed."""
    depth, quoted = 1, False
    for index in range(start, len(text)):
        char = text[index]
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:index]
        elif char == "\n":
            return None  # ioreg -w 0 prints a dictionary on one line; a break means it was cut
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _nvml(pynvml: Any, function: Any, handle: Any) -> Any:
    """One NVML query; None when it fails (not supported, no permission, ...): that value is not read."""
    try:
        return function(handle)
    except pynvml.NVMLError:
        return None
