"""Linux readers against fake /proc + /sys trees, plus the real probe on this host."""

from __future__ import annotations

import platform
import sys
import types
from pathlib import Path

import pytest

from mlops.hardware import linux
from mlops.hardware.model import THERMAL_STATES, UNKNOWN

X86_CPUINFO = "".join(
    f"processor\t: {cpu}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
    f"physical id\t: 0\ncore id\t\t: {cpu // 2}\nflags\t\t: fpu vme\n\n"
    for cpu in range(8)
)


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _zone(root: Path, n: int, kind: str, temp_milli: int | str | None, trips: list[tuple[int, str]] = ()) -> Path:
    zone = root / f"sys/class/thermal/thermal_zone{n}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(kind + "\n")
    if temp_milli is not None:
        (zone / "temp").write_text(f"{temp_milli}\n")
    for i, (trip, trip_type) in enumerate(trips):
        (zone / f"trip_point_{i}_temp").write_text(f"{trip}\n")
        (zone / f"trip_point_{i}_type").write_text(f"{trip_type}\n")
    return zone


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError


# ----------------------------------------------------------------- CPU


def test_x86_cpuinfo_brand_and_counts(tmp_path):
    _write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    info = linux.read_cpuinfo(tmp_path)
    assert info["brand"] == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert info["chip"] == info["brand"]
    assert info["is_apple_silicon"] is False
    assert linux.read_cpu_counts(tmp_path) == (4, 8, "/proc/cpuinfo")
    assert linux.read_core_types(tmp_path) == (UNKNOWN, UNKNOWN, "")  # homogeneous: no P/E split


def test_aarch64_without_model_name_uses_implementer_and_part(tmp_path):
    blocks = "".join(
        f"processor\t: {cpu}\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
        f"CPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n"
        for cpu in range(4)
    )
    _write(tmp_path, "proc/cpuinfo", blocks)
    info = linux.read_cpuinfo(tmp_path)
    assert info["brand"] == "ARM Neoverse-N1"
    assert info["is_apple_silicon"] is False
    # no "core id" in ARM cpuinfo and no sysfs topology: physical count cannot be read
    assert linux.read_cpu_counts(tmp_path) == (UNKNOWN, 4, "/proc/cpuinfo")


def test_aarch64_hardware_line_wins_over_part(tmp_path):
    text = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4\n"
    _write(tmp_path, "proc/cpuinfo", text)
    assert linux.read_cpuinfo(tmp_path)["brand"] == "BCM2835"


def test_asahi_apple_cores_by_part(tmp_path):
    parts = ["0x034"] * 4 + ["0x035"] * 8  # M2 Pro: Blizzard (E) + Avalanche (P)
    text = "".join(f"processor\t: {i}\nCPU implementer\t: 0x61\nCPU part\t: {p}\n\n" for i, p in enumerate(parts))
    _write(tmp_path, "proc/cpuinfo", text)
    info = linux.read_cpuinfo(tmp_path)
    assert info["chip"] == "Apple M2 Pro" and info["is_apple_silicon"] is True
    assert linux.read_core_types(tmp_path) == (8, 4, "/proc/cpuinfo CPU part")


def test_intel_hybrid_counts_physical_cores(tmp_path):
    _write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    _write(tmp_path, "sys/devices/cpu_core/cpus", "0-3\n")  # 2 P-cores with hyperthreading
    _write(tmp_path, "sys/devices/cpu_atom/cpus", "4-7\n")  # 4 E-cores
    for cpu, core in enumerate([0, 0, 4, 4, 8, 9, 10, 11]):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/topology/core_id", f"{core}\n")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id", "0\n")
    assert linux.read_core_types(tmp_path) == (2, 4, "sysfs cpu_core/cpu_atom")


def test_big_little_by_cpu_capacity(tmp_path):
    _write(tmp_path, "proc/cpuinfo", "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\n")
    for cpu, cap in enumerate([446, 446, 446, 446, 1024, 1024]):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpu_capacity", f"{cap}\n")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/topology/core_id", f"{cpu}\n")
    assert linux.read_core_types(tmp_path) == (2, 4, "sysfs cpu_capacity")


def test_missing_cpuinfo_is_unknown(tmp_path):
    info = linux.read_cpuinfo(tmp_path)
    assert info["brand"] == UNKNOWN and info["is_apple_silicon"] == UNKNOWN
    assert linux.read_cpu_counts(tmp_path)[:2] == (UNKNOWN, UNKNOWN)


# ----------------------------------------------------------------- memory / OS


def test_meminfo_and_os_release(tmp_path):
    _write(tmp_path, "proc/meminfo", "MemTotal:       65843012 kB\nMemFree:  1000 kB\nMemAvailable:   60000000 kB\n")
    _write(tmp_path, "etc/os-release", 'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n')
    _write(tmp_path, "proc/sys/kernel/osrelease", "6.8.0-45-generic\n")
    assert linux.read_memory(tmp_path) == (65843012 * 1024, 60000000 * 1024, "/proc/meminfo")
    assert linux.read_os_version(tmp_path) == "Ubuntu 24.04.1 LTS (kernel 6.8.0-45-generic)"


def test_missing_meminfo_and_os_are_unknown(tmp_path):
    assert linux.read_memory(tmp_path) == (UNKNOWN, UNKNOWN, "/proc/meminfo")
    assert linux.read_os_version(tmp_path) == UNKNOWN


# ----------------------------------------------------------------- thermal


PASSIVE_80 = [(80.0, "passive")]


@pytest.mark.parametrize(
    ("temp", "trips", "state"),
    [
        (69.9, PASSIVE_80, "nominal"),
        (70.0, PASSIVE_80, "fair"),  # within 10 °C of the lowest passive trip
        (79.9, PASSIVE_80, "fair"),
        (80.0, PASSIVE_80, "serious"),
        (89.9, PASSIVE_80 + [(90.0, "hot"), (100.0, "critical")], "serious"),
        (90.0, PASSIVE_80 + [(90.0, "hot"), (100.0, "critical")], "critical"),
        (100.0, [(100.0, "critical")], "critical"),
        (60.0, [(100.0, "critical")], "nominal"),
        (65.0, [(70.0, "passive"), (85.0, "passive")], "fair"),  # lowest passive trip counts
        (75.0, [(70.0, "passive"), (85.0, "passive")], "serious"),
        (50.0, [], UNKNOWN),
        (50.0, [(40.0, "active")], UNKNOWN),
    ],
)
def test_classify_zone_boundaries(temp, trips, state):
    assert linux.classify_zone(temp, trips) == state


def test_thermal_zones_worst_state_and_skips(tmp_path):
    _zone(tmp_path, 0, "acpitz", 45000, [(105000, "critical")])
    _zone(tmp_path, 1, "x86_pkg_temp", 74000, [(80000, "passive"), (100000, "critical")])
    _zone(tmp_path, 2, "iwlwifi_1", None)  # no temp file
    _zone(tmp_path, 3, "broken", "N/A")  # unreadable value
    _zone(tmp_path, 10, "no_trips", 52500)
    reading = linux.read_thermal_zones(tmp_path)
    assert reading.state == "fair"
    assert reading.max_temperature_c == 74.0
    assert "x86_pkg_temp (thermal_zone1) 74.0 °C: fair" in reading.detail
    assert "3 zone(s) read" in reading.detail
    assert "thermal_zone2" in reading.detail and "thermal_zone3" in reading.detail
    assert reading.source == "sysfs thermal_zone"
    assert reading.cpu_speed_limit_percent is None


def test_thermal_zone_critical(tmp_path):
    _zone(tmp_path, 0, "cpu-thermal", 96000, [(85000, "passive"), (95000, "hot"), (110000, "critical")])
    assert linux.read_thermal_zones(tmp_path).state == "critical"


def test_thermal_zones_without_trips_report_temperature_only(tmp_path):
    _zone(tmp_path, 0, "soc", 41000)
    reading = linux.read_thermal_zones(tmp_path)
    assert reading.state == UNKNOWN
    assert reading.max_temperature_c == 41.0


def test_no_thermal_zones_is_unknown(tmp_path):
    reading = linux.read_thermal_zones(tmp_path)
    assert reading.state == UNKNOWN and reading.max_temperature_c is None
    assert "no thermal zones" in reading.detail


def test_only_unreadable_zones_is_unknown(tmp_path):
    _zone(tmp_path, 0, "a", None)
    _zone(tmp_path, 1, "b", "")
    reading = linux.read_thermal_zones(tmp_path)
    assert reading.state == UNKNOWN and reading.max_temperature_c is None


# ----------------------------------------------------------------- NVML


def _fake_pynvml(reasons: int, name=b"NVIDIA A100-SXM4-80GB") -> types.ModuleType:
    module = types.ModuleType("pynvml")
    module.nvmlInit = lambda: None
    module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: 1
    module.nvmlDeviceGetHandleByIndex = lambda i: f"handle{i}"
    module.nvmlDeviceGetName = lambda h: name
    module.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: reasons
    module.nvmlDeviceGetTemperature = lambda h, sensor: 71
    module.NVML_TEMPERATURE_GPU = 0
    return module


def test_nvml_absent_degrades(no_nvml, tmp_path):
    assert linux.read_nvml() is None
    profile = linux.read_linux(tmp_path)
    assert profile.cuda_available is False
    assert profile.gpu_name == UNKNOWN


def test_nvml_init_failure_degrades(monkeypatch):
    module = _fake_pynvml(0)

    def fail():
        raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert linux.read_nvml() is None


@pytest.mark.parametrize(("reasons", "state"), [(0x0, "nominal"), (0x1, "nominal"), (0x20, "serious"), (0x40, "critical"), (0x60, "critical")])
def test_nvml_throttle_reasons(monkeypatch, reasons, state):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(reasons))
    nvml = linux.read_nvml()
    assert nvml["state"] == state
    assert nvml["gpus"][0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert nvml["gpus"][0]["temperature_c"] == 71.0


def test_read_linux_with_nvml_combines_thermal(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(0x20))
    _write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    _zone(tmp_path, 0, "x86_pkg_temp", 50000, [(80000, "passive")])
    profile = linux.read_linux(tmp_path)
    assert profile.cuda_available is True
    assert profile.gpu_name == "NVIDIA A100-SXM4-80GB"
    assert profile.unified_memory is False
    assert profile.thermal.state == "serious"
    assert profile.thermal.max_temperature_c == 71.0
    assert profile.thermal.source == "sysfs thermal_zone + NVML"


# ----------------------------------------------------------------- whole-tree and real host


def test_read_linux_fake_tree(no_nvml, tmp_path):
    _write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    _write(tmp_path, "proc/meminfo", "MemTotal:       16384000 kB\nMemAvailable:   8192000 kB\n")
    _zone(tmp_path, 0, "x86_pkg_temp", 81000, [(80000, "passive")])
    profile = linux.read_linux(tmp_path)
    assert profile.platform == "linux"
    assert profile.chip == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (4, 8)
    assert profile.memory_total_bytes == 16384000 * 1024
    assert profile.metal_available is False
    assert profile.python_version == UNKNOWN  # not the fake tree's python
    assert profile.thermal.state == "serious"
    assert profile.sources["memory_total_bytes"] == "/proc/meminfo"


@pytest.mark.skipif(platform.system() != "Linux", reason="real Linux readers")
def test_real_linux_probe_on_this_host():
    profile = linux.read_linux("/")
    assert profile.platform == "linux"
    assert profile.cpu_brand != UNKNOWN
    assert isinstance(profile.memory_total_bytes, int) and profile.memory_total_bytes > 0
    assert isinstance(profile.memory_available_bytes, int) and profile.memory_available_bytes > 0
    assert isinstance(profile.cpu_cores_logical, int) and profile.cpu_cores_logical >= 1
    assert profile.thermal.state in THERMAL_STATES  # whatever this host reads
    assert profile.python_version == platform.python_version()
    assert profile.sources["memory_total_bytes"] == "psutil"
