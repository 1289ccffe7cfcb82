"""probe(), probe_from_dir() on bundles, and the ``mlops hardware`` CLI.

``fixtures/recorded/*`` are verbatim outputs of real Macs (see fixtures/SOURCES.md);
``m2pro_bundle``, ``intel_throttled_bundle`` and ``partial_bundle`` are hand-made.
"""

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
RECORDED = FIXTURES / "recorded"
M2 = FIXTURES / "m2pro_bundle"  # hand-made
INTEL = FIXTURES / "intel_throttled_bundle"  # hand-made
PARTIAL = FIXTURES / "partial_bundle"  # hand-made
M4MAX = RECORDED / "m4max_archspec_sequoia"  # verbatim sysctl of an M4 Max, 64 GB
GIB_32 = 32 * 2**30


def test_m2_pro_bundle_hand_made():
    profile = probe_from_dir(M2)
    assert isinstance(profile, HardwareProfile) and isinstance(profile.thermal, ThermalReading)
    assert profile.platform == "macos"
    assert profile.chip == "Apple M2 Pro"
    assert profile.is_apple_silicon is True
    assert (profile.performance_cores, profile.efficiency_cores) == (8, 4)
    assert profile.cpu_core_levels == "8 Performance + 4 Efficiency"
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


def test_intel_throttled_bundle_hand_made():
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
    # Its levels carry no names (like real macOS 12/13 output): no P/E split is claimed.
    assert (profile.performance_cores, profile.efficiency_cores) == (UNKNOWN, UNKNOWN)
    assert profile.cpu_core_levels == "4 (level 0, unnamed) + 4 (level 1, unnamed)"
    assert profile.gpu_name == UNKNOWN and profile.gpu_cores == UNKNOWN
    assert profile.thermal.state == UNKNOWN
    assert profile.metal_available == UNKNOWN
    assert (profile.mlx_version, profile.mlx_device) == (UNKNOWN, UNKNOWN)


def test_real_m4_max_sysctl_bundle():
    profile = probe_from_dir(M4MAX)
    assert profile.platform == "macos"
    assert profile.chip == "Apple M4 Max" and profile.is_apple_silicon is True
    assert (profile.performance_cores, profile.efficiency_cores) == (12, 4)
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (16, 16)
    assert profile.memory_total_bytes == 64 * 2**30 and profile.unified_memory is True
    # Only sysctl was recorded: GPU, thermal and MLX stay unknown, never guessed.
    assert (profile.gpu_name, profile.gpu_cores, profile.metal_available) == (UNKNOWN,) * 3
    assert profile.thermal.state == UNKNOWN
    assert (profile.mlx_version, profile.mlx_device) == (UNKNOWN, UNKNOWN)
    assert profile.sources["performance_cores"] == str(M4MAX / "sysctl.txt")


def test_real_m1_ioreg_bundle_gives_the_gpu_core_count():
    bundle = RECORDED / "m1_macbookair10_1_thomaskaiser"
    profile = probe_from_dir(bundle)
    assert (profile.gpu_name, profile.gpu_cores) == ("Apple M1", 8)
    assert profile.sources["gpu_cores"] == str(bundle / "ioreg-accelerator.txt")


@pytest.mark.parametrize(
    ("name", "state", "speed_limit"),
    [
        ("m1pro_macbookpro14_2021_stats749", "nominal", None),
        ("intel_macbook_12cpu_node_exporter2031", "nominal", 100),
        ("intel_macbookpro15_early2011_newbetuts407192", "critical", 35),  # throttled (no battery)
    ],
)
def test_real_pmset_bundles(name, state, speed_limit):
    profile = probe_from_dir(RECORDED / name)
    assert profile.thermal.state == state
    assert profile.thermal.cpu_speed_limit_percent == speed_limit
    assert profile.thermal.source == str(RECORDED / name / "pmset-therm.txt")


def test_real_m5_sysctl_bundle():
    """Verbatim `sysctl -i hw -i machdep` of an M5 MacBook Pro: "Super" + "Efficiency" levels."""
    bundle = RECORDED / "m5_macbookpro_mac17_2_archspec_tahoe"
    profile = probe_from_dir(bundle)
    assert profile.chip == "Apple M5" and profile.is_apple_silicon is True
    assert profile.cpu_core_levels == "4 Super + 6 Efficiency"
    assert (profile.performance_cores, profile.efficiency_cores) == (0, 6)  # "Super" counts in neither
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (10, 10)
    assert profile.memory_total_bytes == 24 * 2**30 and profile.unified_memory is True
    assert profile.sources["cpu_core_levels"] == str(bundle / "sysctl.txt")


@pytest.mark.parametrize(
    ("name", "chip", "cores"),
    [("m2pro_mac14_10_cpufetch183", "Apple M2 Pro", (12, 8, 4)), ("m1pro_macbookpro18_1_cpufetch183", "Apple M1 Pro", (10, 8, 2))],
)
def test_real_system_profiler_hardware_text(name, chip, cores):
    """Verbatim `system_profiler -detailLevel mini SPHardwareDataType` (text) of an M2 Pro and an M1 Pro.

    The readers do not parse this command; the recordings check what the hand-made M2 Pro bundle
    claims about the chip's core split against a real M2 Pro.
    """
    text = (RECORDED / name / "system_profiler-hardware-mini.txt").read_text()
    assert f"      Chip: {chip}\n" in text
    total, performance, efficiency = cores
    assert f"Total Number of Cores: {total} ({performance} performance and {efficiency} efficiency)" in text
    if chip == "Apple M2 Pro":
        hand_made = probe_from_dir(M2)
        assert (hand_made.cpu_cores_physical, hand_made.performance_cores, hand_made.efficiency_cores) == cores


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


def test_cli_from_dir_real_recording_json(capsys):
    assert main(["--from-dir", str(M4MAX), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["chip"], data["performance_cores"], data["efficiency_cores"]) == ("Apple M4 Max", 12, 4)
    assert data["cpu_core_levels"] == "12 Performance + 4 Efficiency"
    assert data["memory_total_gb"] == "64.0"
    assert data["gpu_cores"] == UNKNOWN and data["thermal"]["state"] == UNKNOWN


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
