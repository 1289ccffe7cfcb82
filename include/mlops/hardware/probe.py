"""Entry points: probe this machine, or read a recorded Mac support bundle.

Why: callers (DAG tasks, the ``mlops hardware`` CLI, MLflow logging) want one
call that picks the right platform readers and adds MLX's own view, and
Linux CI wants to exercise the macOS path from recorded command outputs.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from mlops.hardware import linux, macos
from mlops.hardware.mlx_info import RECORD_FILE, MlxInfo, from_record, read_mlx, training_device
from mlops.hardware.model import UNKNOWN, HardwareProfile

#: Files of a recorded Mac support bundle (each optional).
SYSCTL_FILE = "sysctl.txt"
PMSET_FILE = "pmset-therm.txt"
DISPLAYS_FILE = "system_profiler-displays.json"
IOREG_FILE = "ioreg-accelerator.txt"


def probe() -> HardwareProfile:
    """Profile the running machine: platform readers + MLX.  Never raises for a failed reader."""
    system = platform.system()
    try:
        if system == "Darwin":
            profile = macos.read_macos()
        elif system == "Linux":
            profile = linux.read_linux("/")
        else:
            profile = _generic_profile()
    except Exception as exc:  # noqa: BLE001 - a probe must not break the run it describes
        profile = _generic_profile()
        profile.sources["error"] = f"{system} reader failed: {type(exc).__name__}: {exc}"
    apply_mlx(profile, read_mlx())
    return profile


def probe_from_dir(path: str | Path) -> HardwareProfile:
    """Profile from a recorded Mac bundle directory.

    Reads ``sysctl.txt``, ``pmset-therm.txt``, ``system_profiler-displays.json``,
    ``ioreg-accelerator.txt`` (a missing file leaves its fields "unknown") and, if present,
    ``mlx-device-info.json`` (otherwise the MLX fields stay "unknown").
    Raises ``FileNotFoundError`` / ``NotADirectoryError`` for a bad path.
    """
    bundle = Path(path)
    if not bundle.exists():
        raise FileNotFoundError(f"hardware bundle directory not found: {bundle}")
    if not bundle.is_dir():
        raise NotADirectoryError(f"hardware bundle path is not a directory: {bundle}")

    def read(name: str) -> str | None:
        file = bundle / name
        return file.read_text(encoding="utf-8", errors="replace") if file.is_file() else None

    profile = macos.build_profile(
        read(SYSCTL_FILE),
        read(DISPLAYS_FILE),
        read(PMSET_FILE),
        ioreg_text=read(IOREG_FILE),
        sysctl_source=str(bundle / SYSCTL_FILE),
        displays_source=str(bundle / DISPLAYS_FILE),
        pmset_source=str(bundle / PMSET_FILE),
        ioreg_source=str(bundle / IOREG_FILE),
    )
    record_text = read(RECORD_FILE)
    if record_text is not None:
        source = str(bundle / RECORD_FILE)
        try:
            record = json.loads(record_text)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            profile.sources["mlx_version"] = f"{source} (unreadable: {exc})"
        else:
            info = from_record(record, source=source)
            if info.cuda_available == UNKNOWN:
                info.cuda_available = False  # no CUDA backend on macOS
                info.device = training_device(info.metal_available, info.cuda_available)
            if "python_version" in record:
                profile.set("python_version", str(record["python_version"]), source)
            apply_mlx(profile, info)
    return profile


def apply_mlx(profile: HardwareProfile, info: MlxInfo) -> None:
    """Fold MLX's view into ``profile``: MLX fields, backend availability, gaps MLX can fill."""
    profile.set("mlx_version", info.version, info.source)
    if info.device != UNKNOWN:
        profile.mlx_device = info.device
        profile.sources["mlx_device"] = info.source
    # What MLX can use beats what the OS advertises.
    profile.set("metal_available", info.metal_available, info.source)
    profile.set("cuda_available", info.cuda_available, info.source)
    if info.metal_available is True:
        # Only a Metal device's info describes a GPU (on CPU builds device_name is the CPU).
        if profile.gpu_name == UNKNOWN:
            profile.set("gpu_name", info.device_name, info.source)
        if profile.chip == UNKNOWN and info.device_name.startswith("Apple "):
            profile.set("chip", info.device_name, info.source)
        if profile.memory_total_bytes == UNKNOWN:
            profile.set("memory_total_bytes", info.memory_size, info.source)


def _generic_profile() -> HardwareProfile:
    """Platform-neutral facts for an OS without a dedicated reader."""
    import psutil

    profile = HardwareProfile(platform="unknown")
    profile.set("cpu_brand", platform.processor() or UNKNOWN, "platform.processor")
    profile.set("os_version", platform.platform() or UNKNOWN, "platform.platform")
    profile.set("python_version", platform.python_version(), "platform")
    profile.set("cpu_cores_physical", psutil.cpu_count(logical=False), "psutil")
    profile.set("cpu_cores_logical", psutil.cpu_count(logical=True), "psutil")
    memory = psutil.virtual_memory()
    profile.set("memory_total_bytes", int(memory.total), "psutil")
    profile.set("memory_available_bytes", int(memory.available), "psutil")
    return profile
