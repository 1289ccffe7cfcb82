"""Why did a task fail?  Hardware context at the moment of failure, and a likely cause.

Why: "the train task failed" is not actionable on a laptop; "it ran out of memory
(97% used, 6 GiB swapped, MLX peaked at 3.9 of its 4 GiB)" is.  :func:`snapshot`
reads memory pressure, swap, the thermal state, MLX's allocator and the load
average; :func:`diagnose` combines the error with that evidence into one
:class:`Diagnosis`; :func:`format_report` renders both for a task log.

The rules are evidence-driven: a cause is named only with the reading or the
exception that supports it, listed in ``evidence``; with nothing to go on the
cause is "unknown".  Anything that cannot be read is the string "unknown".
No Airflow imports; ``mlx`` is imported lazily.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlops.hardware.model import UNKNOWN

CAUSES = ("out_of_memory", "thermal_throttling", "data_error", "tracking_unavailable", "unknown")
CONFIDENCES = ("low", "medium", "high")

#: Memory use (percent of RAM) that counts as pressure.
MEMORY_PRESSURE_PERCENT = 90.0
#: Swap use (percent) that, with memory pressure, means the machine was paging hard.
SWAP_PRESSURE_PERCENT = 50.0
#: MLX peak memory at or above this fraction of its limit: the run hit its memory ceiling.
MLX_LIMIT_FRACTION = 0.90

#: Substrings (lower case) of an error message that mean an allocation failed.
_OOM_MESSAGES = (
    "[metal::malloc]",
    "out of memory",
    "outofmemory",
    "cannot allocate memory",
    "std::bad_alloc",
    "unable to allocate",
    "failed to allocate",
    "insufficient memory",
    "[malloc]",
)
#: The process was killed from outside (the kernel's OOM killer uses SIGKILL).
_KILLED = re.compile(r"sigkill|signal 9\b|negsignal\.sigkill|exit(?:ed)? (?:code|status)?\s*-9\b|returncode[ =:]+-9\b|\bkilled\b", re.I)
_TIMEOUT_NAMES = {"AirflowTaskTimeout", "AirflowSensorTimeout", "TimeoutError"}
_YAML_NAMES = {"YAMLError", "ScannerError", "ParserError", "ComposerError", "ConstructorError", "ReaderError"}
_DATA_FRAME = re.compile(r"[/\\]mlops[/\\]data[/\\]|[/\\]dvc[/\\]|numpy[/\\]lib[/\\](?:_npyio_impl|npyio|format)")


@dataclass(frozen=True)
class Diagnosis:
    """The likely cause of a failure, how sure, the readings behind it, and what to do."""

    cause: str
    confidence: str
    evidence: list[str] = field(default_factory=list)
    advice: str = ""

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"cause {self.cause!r} not in {CAUSES}")
        if self.confidence not in CONFIDENCES:
            raise ValueError(f"confidence {self.confidence!r} not in {CONFIDENCES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ADVICE = {
    "out_of_memory": (
        "Reduce training.batch_size or the model's size, or raise training.memory_gb (the train task holds "
        "that many GB of the mlx_memory pool and MLX is limited to it); close other memory-heavy work on the "
        "machine (`mlops queue` shows what else holds the pool)."
    ),
    "thermal_throttling": (
        "The machine was running hot: let it cool down, lower scheduling.thermal_threshold so heavy steps "
        "wait earlier, or give long tasks more time (execution_timeout / scheduling.thermal_timeout_seconds)."
    ),
    "data_error": (
        "Check the project's data: a pinned data.version (or the run's data_version param) must exist in the "
        "DVC remote, and the data folder must be readable; clear data_version to use the latest data."
    ),
    "tracking_unavailable": (
        "Start the MLflow server with `mlops up` or point MLOPS_TRACKING_URI (or the mlflow_default "
        "connection) at a running server, then clear the task."
    ),
    "unknown": "No hardware or data cause stood out: read the traceback in the task log.",
}


# --------------------------------------------------------------------------- snapshot


def snapshot(thermal_root: str | None = None) -> dict[str, Any]:
    """Hardware readings now: memory, swap, thermal, MLX allocator and device, load average.

    Never raises: a reading that fails is "unknown".  ``mlx_in_process`` says
    whether MLX had been imported before the snapshot (i.e. whether the MLX
    readings describe work done in this process).  ``mlx_memory_limit_bytes`` is
    MLX's current limit; a caller that knows the failed step's own limit may
    replace it and say so in ``mlx_memory_limit_source``.
    """
    snap: dict[str, Any] = {"taken_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    snap.update(_memory())
    snap.update(_thermal(thermal_root))
    snap.update(_mlx())
    snap["load_average"] = _load_average()
    snap["cpu_count"] = os.cpu_count() or UNKNOWN
    return snap


def _memory() -> dict[str, Any]:
    result: dict[str, Any] = dict.fromkeys(
        ("memory_percent", "memory_available_bytes", "memory_total_bytes", "swap_used_bytes", "swap_percent"), UNKNOWN
    )
    try:
        import psutil

        vm = psutil.virtual_memory()
        result.update(
            memory_percent=float(vm.percent), memory_available_bytes=int(vm.available), memory_total_bytes=int(vm.total)
        )
        swap = psutil.swap_memory()
        result.update(swap_used_bytes=int(swap.used), swap_percent=float(swap.percent))
    except Exception:  # noqa: BLE001 - a reading, never a failure
        pass
    return result


def _thermal(root: str | None) -> dict[str, Any]:
    try:
        try:
            from mlops.hardware.thermal import read_thermal
        except ImportError:  # older tree without the cheap reader
            from mlops.hardware import probe

            reading = probe().thermal
        else:
            reading = read_thermal(root)
        return {"thermal_state": reading.state, "thermal_detail": reading.detail, "thermal_source": reading.source}
    except Exception as exc:  # noqa: BLE001
        return {"thermal_state": UNKNOWN, "thermal_detail": f"thermal read failed: {exc}", "thermal_source": UNKNOWN}


def _mlx() -> dict[str, Any]:
    result: dict[str, Any] = dict.fromkeys(
        ("mlx_active_memory_bytes", "mlx_peak_memory_bytes", "mlx_cache_memory_bytes", "mlx_memory_limit_bytes", "mlx_device"),
        UNKNOWN,
    )
    result["mlx_in_process"] = "mlx.core" in sys.modules
    try:
        import mlx.core as mx
    except Exception:  # noqa: BLE001 - not installed / no wheel for this platform
        return result
    for key, name in (
        ("mlx_active_memory_bytes", "get_active_memory"),
        ("mlx_peak_memory_bytes", "get_peak_memory"),
        ("mlx_cache_memory_bytes", "get_cache_memory"),
        ("mlx_memory_limit_bytes", "get_memory_limit"),
    ):
        try:
            result[key] = int(getattr(mx, name)())
        except Exception:  # noqa: BLE001
            pass
    try:
        result["mlx_device"] = str(getattr(mx.default_device(), "type", mx.default_device())).replace("DeviceType.", "")
    except Exception:  # noqa: BLE001
        pass
    return result


def _load_average() -> list[float] | str:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return UNKNOWN


# --------------------------------------------------------------------------- diagnose


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes/contexts, outermost first (cycles cut)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _error_facts(error: BaseException | str | None) -> dict[str, Any]:
    """Class names (with bases), messages, traceback file names and file paths of the error chain."""
    if error is None:
        return {"names": set(), "text": "", "summary": "no exception reached the callback", "frames": [], "paths": [], "none": True}
    if isinstance(error, str):
        names = set(re.findall(r"\b([A-Z][A-Za-z0-9_]*(?:Error|Exception|Unavailable|Timeout))\b", error))
        return {"names": names, "text": error, "summary": _one_line(error), "frames": [], "paths": [], "none": False}
    chain = _chain(error)
    names: set[str] = set()
    frames: list[str] = []
    paths: list[str] = []
    for exc in chain:
        names.update(cls.__name__ for cls in type(exc).__mro__)
        remote = getattr(exc, "type_name", None)  # raised in a project's own environment (IsolatedRunError)
        if isinstance(remote, str) and remote:
            names.add(remote.rsplit(".", 1)[-1])
        frames.extend(f.filename for f in traceback.extract_tb(exc.__traceback__))
        filename = getattr(exc, "filename", None)
        if filename:
            paths.append(str(filename))
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    return {"names": names, "text": text, "summary": _one_line(f"{type(error).__name__}: {error}"), "frames": frames, "paths": paths, "none": False}


def _one_line(text: str, limit: int = 300) -> str:
    """Whitespace (newlines included) collapsed, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _gib(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value / 2**30:.1f} GiB"


def memory_evidence(snap: dict[str, Any], memory_limit_bytes: int | None) -> tuple[list[str], bool, bool]:
    """(evidence lines, system under memory pressure, MLX at its limit)."""
    evidence: list[str] = []
    percent, swap_pct = _num(snap.get("memory_percent")), _num(snap.get("swap_percent"))
    pressure = percent is not None and percent >= MEMORY_PRESSURE_PERCENT
    if pressure:
        evidence.append(
            f"memory pressure: {percent:.0f}% of RAM used, {_gib(_num(snap.get('memory_available_bytes')))} available"
        )
    if swap_pct is not None and swap_pct >= SWAP_PRESSURE_PERCENT:
        evidence.append(f"swap in use: {_gib(_num(snap.get('swap_used_bytes')))} ({swap_pct:.0f}% of swap)")
        pressure = pressure or (percent is not None and percent >= MEMORY_PRESSURE_PERCENT - 10)
    peak = _num(snap.get("mlx_peak_memory_bytes"))
    limit = _num(memory_limit_bytes) or _num(snap.get("mlx_memory_limit_bytes"))
    at_limit = bool(peak and limit and peak >= MLX_LIMIT_FRACTION * limit)
    if at_limit:
        evidence.append(
            f"MLX peak memory {_gib(peak)} reached {100 * peak / limit:.0f}% of its {_gib(limit)} limit"  # type: ignore[operator]
        )
    return evidence, pressure, at_limit


def _data_related(facts: dict[str, Any]) -> str | None:
    """Why the error is a data error, or None."""
    names = facts["names"]
    if "DataError" in names:
        return f"DataError from the DVC data layer: {facts['summary']}"
    if names & _YAML_NAMES:
        return f"YAML could not be parsed: {facts['summary']}"
    data_frames = any(_DATA_FRAME.search(f) for f in facts["frames"])
    data_paths = [p for p in facts["paths"] if re.search(r"data|dvc|\.npy|\.npz|\.csv|\.parquet", p, re.I)]
    if names & {"FileNotFoundError", "NotADirectoryError", "IsADirectoryError"} and (data_paths or data_frames):
        where = data_paths[0] if data_paths else "a data path"
        return f"data file missing: {where} ({facts['summary']})"
    if names & {"ValueError", "KeyError", "UnpicklingError", "EOFError"} and data_frames:
        return f"bad data raised in the data layer: {facts['summary']}"
    return None


def diagnose(error: BaseException | str | None, snap: dict[str, Any], memory_limit_bytes: int | None = None) -> Diagnosis:
    """The likely cause of ``error`` given the hardware ``snap`` (a :func:`snapshot` dict).

    Rules, first match wins:

    1. the error says an allocation failed (``MemoryError``, ``[metal::malloc]``,
       "out of memory", ...) -> out_of_memory (high with memory evidence, else medium);
    2. ``TrackingUnavailable`` (or an MLflow error about a refused connection) -> tracking_unavailable;
    3. ``DataError``, a YAML error, a missing data file, or a ValueError raised in
       the data layer -> data_error;
    4. killed by SIGKILL / no exception at all (the process died) with memory
       pressure or MLX at its limit -> out_of_memory;
    5. MLX peak memory >= 90% of the limit -> out_of_memory (medium);
    6. thermal state serious/critical -> thermal_throttling (high for a timeout);
    7. memory pressure with heavy swap, or a SIGKILL named in the error alone -> out_of_memory (low);
    8. otherwise unknown (also for "no exception" without memory evidence: Airflow runs the
       callback of a killed task elsewhere, without the exception).
    """
    facts = _error_facts(error)
    names, text = facts["names"], facts["text"].lower()
    mem_evidence, pressure, at_limit = memory_evidence(snap, memory_limit_bytes)
    thermal = str(snap.get("thermal_state", UNKNOWN))
    thermal_line = f"thermal state {thermal}: {snap.get('thermal_detail', '')}".rstrip(": ")
    oom_error = "MemoryError" in names or any(m in text for m in _OOM_MESSAGES)
    killed = facts["none"] or bool(_KILLED.search(facts["text"]))
    timeout = bool(names & _TIMEOUT_NAMES) or "timed out" in text or "timeout" in text

    def make(cause: str, confidence: str, evidence: list[str]) -> Diagnosis:
        return Diagnosis(cause, confidence, evidence, ADVICE[cause])

    if oom_error:
        first = f"allocation failed: {facts['summary']}"
        return make("out_of_memory", "high" if (pressure or at_limit) else "medium", [first, *mem_evidence])
    if "TrackingUnavailable" in names or (
        "MlflowException" in names and re.search(r"connection refused|max retries exceeded|unreachable|failed to establish", text)
    ):
        return make("tracking_unavailable", "high" if "TrackingUnavailable" in names else "medium", [f"MLflow unreachable: {facts['summary']}"])
    if (reason := _data_related(facts)) is not None:
        return make("data_error", "high" if "DataError" in names or names & _YAML_NAMES else "medium", [reason])
    killed_line = (
        "no exception reached the callback: the task process died (killed externally, e.g. SIGKILL by the OOM killer)"
        if facts["none"]
        else f"process killed: {facts['summary']}"
    )
    if killed and (pressure or at_limit):
        return make("out_of_memory", "high" if pressure and at_limit else "medium", [killed_line, *mem_evidence])
    if at_limit:
        return make("out_of_memory", "medium", [*mem_evidence, f"error: {facts['summary']}"])
    if thermal in ("serious", "critical"):
        if timeout:
            confidence = "high"
        else:
            confidence = "medium" if thermal == "critical" else "low"
        return make("thermal_throttling", confidence, [thermal_line, f"error: {facts['summary']}"])
    if pressure and any("swap" in e for e in mem_evidence):
        return make("out_of_memory", "low", [*mem_evidence, f"error: {facts['summary']}"])
    if killed and not facts["none"]:
        # Airflow's supervisor says the same of a SIGKILL: "Likely out of memory error (OOM)".
        return make("out_of_memory", "low", [killed_line, "no memory pressure was visible when the callback ran"])
    seen = [killed_line if facts["none"] else f"error: {facts['summary']}" if facts["summary"] else "no error message"]
    percent = _num(snap.get("memory_percent"))
    seen.append(f"memory {percent:.0f}% used" if percent is not None else "memory use unknown")
    seen.append(thermal_line)
    return make("unknown", "low", seen)


# --------------------------------------------------------------------------- report


def format_report(diag: Diagnosis, snap: dict[str, Any]) -> str:
    """Multi-line, human-readable: cause, evidence, advice, then the hardware readings."""
    lines = [f"Failure diagnosis: {diag.cause} (confidence {diag.confidence})", "  evidence:"]
    lines.extend(f"    - {e}" for e in diag.evidence or ["(none)"])
    lines.append(f"  advice: {diag.advice}")
    lines.append(f"  hardware at failure ({snap.get('taken_at', UNKNOWN)}):")
    percent = _num(snap.get("memory_percent"))
    lines.append(
        f"    memory:   {f'{percent:.0f}%' if percent is not None else UNKNOWN} used, "
        f"{_gib(_num(snap.get('memory_available_bytes')))} available of {_gib(_num(snap.get('memory_total_bytes')))}"
    )
    swap_pct = _num(snap.get("swap_percent"))
    lines.append(
        f"    swap:     {_gib(_num(snap.get('swap_used_bytes')))} used"
        + (f" ({swap_pct:.0f}%)" if swap_pct is not None else "")
    )
    lines.append(
        f"    thermal:  {snap.get('thermal_state', UNKNOWN)} - {snap.get('thermal_detail', '')} "
        f"[source: {snap.get('thermal_source', UNKNOWN)}]"
    )
    lines.append(
        f"    MLX:      device {snap.get('mlx_device', UNKNOWN)}, active {_gib(_num(snap.get('mlx_active_memory_bytes')))}, "
        f"peak {_gib(_num(snap.get('mlx_peak_memory_bytes')))}, limit {_gib(_num(snap.get('mlx_memory_limit_bytes')))}"
        + (f" ({snap['mlx_memory_limit_source']})" if snap.get("mlx_memory_limit_source") else "")
        + ("" if snap.get("mlx_in_process", True) else " (MLX not used in this process)")
    )
    load = snap.get("load_average", UNKNOWN)
    load_text = " ".join(f"{x:.2f}" for x in load) if isinstance(load, (list, tuple)) else str(load)
    lines.append(f"    load:     {load_text} (1/5/15 min, {snap.get('cpu_count', UNKNOWN)} CPUs)")
    return "\n".join(lines)
