"""macOS parsers and readers, fed the recorded command outputs in fixtures/."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops.hardware import macos
from mlops.hardware.model import UNKNOWN

FIXTURES = Path(__file__).parent / "fixtures"
M2 = FIXTURES / "m2pro_bundle"
INTEL = FIXTURES / "intel_throttled_bundle"


# ----------------------------------------------------------------- sysctl


def test_parse_sysctl_m2_pro():
    values = macos.parse_sysctl((M2 / "sysctl.txt").read_text())
    assert values["machdep.cpu.brand_string"] == "Apple M2 Pro"
    assert values["hw.perflevel0.physicalcpu"] == "8"
    assert values["hw.perflevel1.physicalcpu"] == "4"
    assert values["hw.memsize"] == "34359738368"
    assert values["hw.optional.arm64"] == "1"


def test_parse_sysctl_ignores_error_lines_and_keeps_spaces():
    text = (
        "sysctl: unknown oid 'hw.perflevel0.physicalcpu'\n"
        "machdep.cpu.brand_string: Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz\n"
        "\n"
        "garbage line\n"
        "hw.memsize = 17179869184\n"
    )
    values = macos.parse_sysctl(text)
    assert values == {
        "machdep.cpu.brand_string": "Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz",
        "hw.memsize": "17179869184",
    }


# ----------------------------------------------------------------- system_profiler


def test_parse_displays_apple_silicon():
    gpu = macos.parse_system_profiler_displays((M2 / "system_profiler-displays.json").read_text())
    assert gpu["gpu_name"] == "Apple M2 Pro"
    assert gpu["gpu_cores"] == 19
    assert gpu["metal_supported"] is True
    assert gpu["dedicated_vram"] is False


def test_parse_displays_intel_dual_gpu_has_no_core_count():
    gpu = macos.parse_system_profiler_displays((INTEL / "system_profiler-displays.json").read_text())
    assert gpu["gpu_name"] == "Intel UHD Graphics 630 + AMD Radeon Pro 5500M"
    assert gpu["gpu_cores"] == UNKNOWN
    assert gpu["dedicated_vram"] is True


def test_parse_displays_empty_list_is_unknown():
    gpu = macos.parse_system_profiler_displays('{"SPDisplaysDataType": []}')
    assert gpu["gpu_name"] == UNKNOWN and gpu["gpu_cores"] == UNKNOWN and gpu["metal_supported"] == UNKNOWN


@pytest.mark.parametrize("text", ["not json", "[]", '{"SPOther": []}'])
def test_parse_displays_rejects_other_documents(text):
    with pytest.raises(ValueError):
        macos.parse_system_profiler_displays(text)


# ----------------------------------------------------------------- pmset


def test_pmset_apple_silicon_notes_are_nominal():
    reading = macos.parse_pmset_therm((M2 / "pmset-therm.txt").read_text())
    assert reading.state == "nominal"
    assert reading.cpu_speed_limit_percent is None
    assert reading.max_temperature_c is None
    assert "no thermal warning recorded" in reading.detail
    assert reading.source == "pmset -g therm"


def test_pmset_intel_throttled_is_serious():
    reading = macos.parse_pmset_therm((INTEL / "pmset-therm.txt").read_text())
    assert reading.state == "serious"
    assert reading.cpu_speed_limit_percent == 72
    assert "CPU_Available_CPUs 16" in reading.detail


def _power_notify(speed: int) -> str:
    return (
        "2024-05-14 16:02:11 +0200 CPU Power notify\n"
        "\tCPU_Scheduler_Limit \t= 100\n"
        "\tCPU_Available_CPUs \t= 16\n"
        f"\tCPU_Speed_Limit \t= {speed}\n"
    )


@pytest.mark.parametrize(
    ("speed", "state"),
    [(100, "nominal"), (99, "fair"), (80, "fair"), (79, "serious"), (50, "serious"), (49, "critical"), (0, "critical")],
)
def test_speed_limit_boundaries(speed, state):
    assert macos.speed_limit_state(speed) == state
    assert macos.parse_pmset_therm(_power_notify(speed)).state == state


@pytest.mark.parametrize(
    ("level", "state"),
    [(0, "nominal"), (1, "fair"), (4, "fair"), (5, "serious"), (9, "serious"), (10, "critical"), (100, "critical")],
)
def test_thermal_warning_level_boundaries(level, state):
    reading = macos.parse_pmset_therm(f"Thermal warning level set to {level}.\n")
    assert reading.state == state
    assert f"thermal warning level {level}" in reading.detail


@pytest.mark.parametrize(("level", "state"), [(0, "nominal"), (2, "fair")])
def test_performance_warning_level(level, state):
    assert macos.parse_pmset_therm(f"Performance warning level set to {level}.\n").state == state


def test_pmset_takes_worst_evidence_and_last_power_block():
    text = "Thermal warning level set to 5.\n" + _power_notify(40) + _power_notify(100)
    reading = macos.parse_pmset_therm(text)
    assert reading.cpu_speed_limit_percent == 100  # the latest notification
    assert reading.state == "serious"  # warning level 5 outranks speed limit 100


@pytest.mark.parametrize("text", ["", "Note: No CPU power status has been recorded\n", "something else\n"])
def test_pmset_without_evidence_is_unknown(text):
    assert macos.parse_pmset_therm(text).state == UNKNOWN


# ----------------------------------------------------------------- build_profile / readers


def test_build_profile_with_nothing_is_unknown():
    profile = macos.build_profile(None, None, None)
    assert profile.platform == "macos"
    for name in ("chip", "cpu_brand", "is_apple_silicon", "performance_cores", "memory_total_bytes", "gpu_cores", "unified_memory"):
        assert getattr(profile, name) == UNKNOWN, name
    assert profile.thermal.state == UNKNOWN
    assert profile.cuda_available is False


def test_build_profile_rosetta_takes_chip_from_gpu():
    sysctl = "machdep.cpu.brand_string: VirtualApple @ 2.50GHz\nhw.optional.arm64: 1\n"
    profile = macos.build_profile(sysctl, (M2 / "system_profiler-displays.json").read_text(), None)
    assert profile.is_apple_silicon is True
    assert profile.chip == "Apple M2 Pro"
    assert profile.unified_memory is True


def test_build_profile_bad_displays_json_keeps_gpu_unknown():
    profile = macos.build_profile(None, "{broken", None)
    assert profile.gpu_name == UNKNOWN
    assert "unreadable" in profile.sources["gpu_name"]


def test_readers_without_commands_return_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert macos.read_sysctl() is None
    assert macos.read_system_profiler_displays() is None
    assert macos.read_pmset_therm() is None
    profile = macos.read_macos()
    assert profile.chip == UNKNOWN and profile.thermal.state == UNKNOWN and profile.gpu_cores == UNKNOWN


def _fake_command(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_readers_run_real_commands(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "sysctl-args"
    _fake_command(bin_dir, "sysctl", f'echo "$@" > "{args_file}"; cat "{M2 / "sysctl.txt"}"; echo "sysctl: unknown oid" >&2; exit 1')
    _fake_command(bin_dir, "system_profiler", f'cat "{M2 / "system_profiler-displays.json"}"')
    _fake_command(bin_dir, "pmset", f'cat "{INTEL / "pmset-therm.txt"}"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")

    assert args_file.exists() is False
    profile = macos.build_profile(macos.read_sysctl(), macos.read_system_profiler_displays(), macos.read_pmset_therm())
    assert args_file.read_text().split() == list(macos.SYSCTL_KEYS)  # one call, all keys
    assert profile.chip == "Apple M2 Pro"
    assert (profile.performance_cores, profile.efficiency_cores, profile.gpu_cores) == (8, 4, 19)
    assert profile.thermal.state == "serious"


def test_run_command_times_out(monkeypatch, tmp_path):
    _fake_command(tmp_path, "slow", "exec sleep 5")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert macos.run_command(["slow"], timeout=0.2) is None
