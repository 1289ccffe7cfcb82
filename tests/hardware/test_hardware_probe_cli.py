"""probe(), probe_from_dir() on recorded bundles, and the ``mlops hardware`` CLI."""

from __future__ import annotations

import json
import platform
import re
import shutil
from pathlib import Path

import pytest

from mlops.hardware import HardwareProfile, ThermalReading, probe, probe_from_dir
from mlops.hardware.cli import main
from mlops.hardware.model import MLX_DEVICES, THERMAL_STATES, UNKNOWN

FIXTURES = Path(__file__).parent / "fixtures"
M2 = FIXTURES / "m2pro_bundle"
INTEL = FIXTURES / "intel_throttled_bundle"
PARTIAL = FIXTURES / "partial_bundle"
GIB_32 = 32 * 2**30


def test_m2_pro_bundle():
    profile = probe_from_dir(M2)
    assert isinstance(profile, HardwareProfile) and isinstance(profile.thermal, ThermalReading)
    assert profile.platform == "macos"
    assert profile.chip == "Apple M2 Pro"
    assert profile.is_apple_silicon is True
    assert (profile.performance_cores, profile.efficiency_cores) == (8, 4)
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (12, 12)
    assert profile.memory_total_bytes == GIB_32
    assert profile.memory_total_gb == "32.0"
    assert profile.memory_available_bytes == UNKNOWN  # not in the bundle
    assert profile.unified_memory is True
    assert (profile.gpu_name, profile.gpu_cores) == ("Apple M2 Pro", 19)
    assert profile.thermal.state == "nominal"
    assert profile.os_version == "macOS 14.5"
    assert profile.python_version == UNKNOWN
    assert (profile.mlx_version, profile.mlx_device) == ("0.32.4", "gpu")
    assert (profile.metal_available, profile.cuda_available) == (True, False)
    assert profile.sources["performance_cores"] == str(M2 / "sysctl.txt")
    assert profile.sources["gpu_cores"] == str(M2 / "system_profiler-displays.json")
    assert profile.thermal.source == str(M2 / "pmset-therm.txt")
    assert profile.sources["mlx_device"] == str(M2 / "mlx-device-info.json")


def test_intel_throttled_bundle():
    profile = probe_from_dir(INTEL)
    assert profile.chip == profile.cpu_brand == "Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz"
    assert profile.is_apple_silicon is False
    assert (profile.performance_cores, profile.efficiency_cores) == (UNKNOWN, UNKNOWN)
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (8, 16)
    assert profile.unified_memory is False  # discrete Radeon with its own VRAM
    assert profile.gpu_cores == UNKNOWN
    assert profile.thermal.state == "serious"
    assert profile.thermal.cpu_speed_limit_percent == 72
    assert (profile.mlx_version, profile.mlx_device) == (UNKNOWN, UNKNOWN)  # no mlx-device-info.json


def test_partial_bundle_leaves_missing_files_unknown():
    profile = probe_from_dir(PARTIAL)
    assert profile.chip == "Apple M1"
    assert (profile.performance_cores, profile.efficiency_cores) == (4, 4)
    assert profile.gpu_name == UNKNOWN and profile.gpu_cores == UNKNOWN
    assert profile.thermal.state == UNKNOWN
    assert profile.metal_available == UNKNOWN
    assert (profile.mlx_version, profile.mlx_device) == (UNKNOWN, UNKNOWN)


def test_empty_bundle_is_all_unknown(tmp_path):
    profile = probe_from_dir(tmp_path)
    data = profile.to_dict()
    for key in ("chip", "cpu_brand", "is_apple_silicon", "cpu_cores_physical", "performance_cores",
                "memory_total_bytes", "unified_memory", "gpu_name", "gpu_cores", "metal_available",
                "os_version", "python_version", "mlx_version", "mlx_device"):
        assert data[key] == UNKNOWN, key
    assert data["thermal"]["state"] == UNKNOWN


def test_bundle_with_only_mlx_record_fills_gaps(tmp_path):
    shutil.copy(M2 / "mlx-device-info.json", tmp_path)
    profile = probe_from_dir(tmp_path)
    assert profile.mlx_device == "gpu"
    assert profile.gpu_name == "Apple M2 Pro" and profile.chip == "Apple M2 Pro"
    assert profile.memory_total_bytes == GIB_32


def test_bundle_with_broken_mlx_record(tmp_path):
    (tmp_path / "mlx-device-info.json").write_text("{nope")
    profile = probe_from_dir(tmp_path)
    assert profile.mlx_version == UNKNOWN and profile.mlx_device == UNKNOWN
    assert "unreadable" in profile.sources["mlx_version"]


def test_probe_from_missing_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        probe_from_dir(tmp_path / "nope")


def test_probe_this_machine():
    profile = probe()
    expected = {"Darwin": "macos", "Linux": "linux"}.get(platform.system(), "unknown")
    assert profile.platform == expected
    assert profile.thermal.state in THERMAL_STATES
    assert profile.mlx_device in MLX_DEVICES
    json.dumps(profile.to_dict())


# ----------------------------------------------------------------- CLI


def test_cli_from_dir_json(capsys):
    assert main(["--from-dir", str(M2), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["platform"] == "macos"
    assert data["performance_cores"] == 8
    assert data["efficiency_cores"] == 4
    assert data["memory_total_bytes"] == GIB_32
    assert data["memory_total_gb"] == "32.0"
    assert data["gpu_cores"] == 19
    assert data["thermal"]["state"] == "nominal"
    assert data["mlx_device"] == "gpu"


def test_cli_from_dir_table(capsys):
    assert main(["--from-dir", str(INTEL)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("Thermal state") and line.endswith("serious") for line in lines)
    assert any(line.startswith("Performance cores") and line.endswith("unknown") for line in lines)
    assert "CPU speed limit" in out and "72%" in out
    # every value starts in the same column
    assert len({re.match(r"^(.*?\S)\s{2,}(\S)", line).start(2) for line in lines}) == 1


def test_cli_missing_dir_exits_2(capsys, tmp_path):
    missing = tmp_path / "no-such-bundle"
    assert main(["--from-dir", str(missing), "--json"]) == 2
    captured = capsys.readouterr()
    assert str(missing) in captured.err
    assert "does not exist" in captured.err
    assert captured.out == ""


def test_cli_file_instead_of_dir_exits_2(capsys):
    assert main(["--from-dir", str(M2 / "sysctl.txt")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_cli_live_probe(capsys):
    assert main([]) == 0
    assert "Thermal state" in capsys.readouterr().out
    assert main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["thermal"]["state"] in THERMAL_STATES


def test_cli_usage(capsys):
    assert main(["--help"]) == 0
    assert "mlops hardware" in capsys.readouterr().out
    assert main(["--bogus"]) == 2
