"""macOS parsers and readers, fed the command outputs in fixtures/.

``fixtures/recorded/`` holds verbatim outputs of real Macs (sources in
fixtures/SOURCES.md); ``m2pro_bundle`` and ``intel_throttled_bundle`` are
hand-made edge cases, and so is every inline string below marked "hand-made".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops.hardware import macos
from mlops.hardware.model import UNKNOWN

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = FIXTURES / "recorded"
M2 = FIXTURES / "m2pro_bundle"  # hand-made
INTEL = FIXTURES / "intel_throttled_bundle"  # hand-made
M3MAX_SYSCTL_HW = RECORDED / "m3max_macbookpro_j516c" / "sysctl.txt"  # verbatim, perflevel1 listed first
GB_16, GB_64, GB_128 = 16 * 2**30, 64 * 2**30, 128 * 2**30


def recorded(name: str, file: str = "sysctl.txt") -> str:
    return (RECORDED / name / file).read_text(encoding="utf-8")


# ----------------------------------------------------------------- sysctl


def test_parse_sysctl_m2_pro_hand_made():
    values = macos.parse_sysctl((M2 / "sysctl.txt").read_text())
    assert values["machdep.cpu.brand_string"] == "Apple M2 Pro"
    assert values["hw.perflevel0.physicalcpu"] == "8"
    assert values["hw.perflevel1.physicalcpu"] == "4"
    assert values["hw.memsize"] == "34359738368"
    assert values["hw.optional.arm64"] == "1"


def test_parse_sysctl_keeps_every_line_of_a_real_sysctl_hw():
    values = macos.parse_sysctl(recorded("m4max_archspec_sequoia"))
    assert len(values) == 142  # every line of the recording is a key
    assert values["machdep.cpu.brand_string"] == "Apple M4 Max"
    assert values["hw.osenvironment"] == ""  # "hw.osenvironment:" with nothing after it
    assert values["hw.cachesize"] == "3369320448 65536 4194304 0 0 0 0 0 0 0"


def test_m3_max_lists_the_efficiency_level_first_and_is_still_read_by_name():
    """Verbatim `sysctl hw` of an M3 Max (J516c, 128 GB): every hw.perflevel1 line comes first."""
    text = M3MAX_SYSCTL_HW.read_text()
    first_level_line = next(line for line in text.splitlines() if line.startswith("hw.perflevel"))
    assert first_level_line == "hw.perflevel1.physicalcpu: 4"  # the first level listed is the efficiency one
    assert text.index("hw.perflevel1.name: Efficiency") < text.index("hw.perflevel0.name: Performance")

    values = macos.parse_sysctl(text)
    assert [(lv["level"], lv["name"], lv["physicalcpu"]) for lv in macos.perf_levels(values)] == [
        (0, "Performance", 12),
        (1, "Efficiency", 4),
    ]
    split = macos.core_split(values)
    assert (split["performance"], split["efficiency"]) == (12, 4)
    assert split["levels"] == "12 Performance + 4 Efficiency"

    profile = macos.build_profile(text, None, None)
    assert (profile.performance_cores, profile.efficiency_cores) == (12, 4)
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (16, 16)
    assert profile.memory_total_bytes == GB_128
    assert profile.is_apple_silicon is True and profile.unified_memory is True
    assert profile.chip == UNKNOWN  # `sysctl hw` prints no machdep.cpu.brand_string


@pytest.mark.parametrize(
    ("name", "chip", "physical", "performance", "efficiency", "levels", "memory"),
    [
        # macOS 12/13 printed no hw.perflevelN.name: no P/E split is claimed, only the levels.
        ("m1_macbookair_j313", UNKNOWN, 8, UNKNOWN, UNKNOWN, "4 (level 0, unnamed) + 4 (level 1, unnamed)", GB_16),
        ("m2_macbookair_j413", UNKNOWN, 8, UNKNOWN, UNKNOWN, "4 (level 0, unnamed) + 4 (level 1, unnamed)", 24 * 2**30),
        ("m1pro_archspec_monterey", "Apple M1 Pro", 8, UNKNOWN, UNKNOWN, "6 (level 0, unnamed) + 2 (level 1, unnamed)", GB_16),
        ("m2_archspec_monterey", "Apple M2", 8, UNKNOWN, UNKNOWN, "4 (level 0, unnamed) + 4 (level 1, unnamed)", GB_16),
        # Named levels (macOS 14+).
        ("m3max_macbookpro_j516c", UNKNOWN, 16, 12, 4, "12 Performance + 4 Efficiency", GB_128),
        ("m3max_archspec_sequoia", "Apple M3 Max", 14, 10, 4, "10 Performance + 4 Efficiency", 36 * 2**30),
        ("m4pro_macmini_j773s", UNKNOWN, 14, 10, 4, "10 Performance + 4 Efficiency", GB_64),
        ("m4max_archspec_sequoia", "Apple M4 Max", 16, 12, 4, "12 Performance + 4 Efficiency", GB_64),
        # M5 (macOS 26): level 0 is named "Super", which counts in neither field (see the test below).
        ("m5_macbookpro_mac17_2_archspec_tahoe", "Apple M5", 10, 0, 6, "4 Super + 6 Efficiency", 24 * 2**30),
    ],
)
def test_real_apple_silicon_sysctl_recordings(name, chip, physical, performance, efficiency, levels, memory):
    profile = macos.build_profile(recorded(name), None, None)
    assert profile.chip == chip
    assert profile.is_apple_silicon is True and profile.unified_memory is True
    assert profile.cpu_cores_physical == profile.cpu_cores_logical == physical
    assert (profile.performance_cores, profile.efficiency_cores) == (performance, efficiency)
    assert profile.cpu_core_levels == levels
    assert profile.memory_total_bytes == memory
    assert profile.sources["cpu_core_levels"] == "sysctl"


def test_real_m5_super_level_is_not_read_as_performance_by_index():
    """Verbatim `sysctl -i hw -i machdep` of an M5 MacBook Pro (Mac17,2, macOS 26.4.1, archspec-json#153).

    Level 0 is named "Super", level 1 "Efficiency": there is no "Performance" level at all.  Read by
    name, the 4 Super cores count in neither field (as documented for `cpu_core_levels`), so the
    split is 0 performance + 6 efficiency and `cpu_core_levels` carries the whole picture.  Reading
    by index would have called the 4 Super cores performance cores.
    """
    text = recorded("m5_macbookpro_mac17_2_archspec_tahoe")
    assert "hw.perflevel0.name: Super\n" in text and "hw.perflevel1.name: Efficiency\n" in text
    values = macos.parse_sysctl(text)
    assert len(values) == len(text.splitlines())  # every line of the recording is a key
    assert [(lv["level"], lv["name"], lv["physicalcpu"]) for lv in macos.perf_levels(values)] == [
        (0, "Super", 4),
        (1, "Efficiency", 6),
    ]
    assert macos.core_split(values) == {"performance": 0, "efficiency": 6, "levels": "4 Super + 6 Efficiency"}
    profile = macos.build_profile(text, None, None)
    assert profile.os_version == UNKNOWN  # `sysctl -i hw -i machdep` prints no kern.osproductversion


def test_real_intel_sysctl_machdep_only():
    """archspec's i5-3230M listing has only machdep.cpu.*: cores come from core_count/thread_count."""
    profile = macos.build_profile(recorded("intel_i5_3230m_archspec_mojave"), None, None)
    assert profile.chip == profile.cpu_brand == "Intel(R) Core(TM) i5-3230M CPU @ 2.60GHz"
    assert profile.is_apple_silicon is False
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (2, 4)  # not the *_per_package 8/16
    assert (profile.performance_cores, profile.efficiency_cores, profile.cpu_core_levels) == (UNKNOWN,) * 3
    assert profile.memory_total_bytes == UNKNOWN and profile.unified_memory == UNKNOWN


def test_real_big_sur_m1_brand_string_is_not_a_chip_name():
    """macOS 11.0 said "machdep.cpu.brand_string: Apple processor" on an M1."""
    assert "machdep.cpu.brand_string: Apple processor\n" in recorded("m1_archspec_bigsur")
    profile = macos.build_profile(recorded("m1_archspec_bigsur"), None, None)
    assert profile.cpu_brand == "Apple processor"
    assert profile.chip == UNKNOWN
    assert profile.is_apple_silicon is True  # hw.optional.arm64: 1
    assert (profile.cpu_cores_physical, profile.cpu_cores_logical) == (8, 8)  # machdep.cpu.core_count/thread_count


# hand-made: M5 Pro/Max level names ("Super" above "Performance", no "Efficiency"), as described in
# vladkens/macmon#49 and kennss/SiliconScope#30; no whole verbatim recording could be retrieved.
HAND_MADE_SUPER_LEVELS = (
    "hw.nperflevels: 2\n"
    "hw.perflevel0.physicalcpu: 6\n"
    "hw.perflevel0.name: Super\n"
    "hw.perflevel1.physicalcpu: 12\n"
    "hw.perflevel1.name: Performance\n"
)


def test_hand_made_super_and_performance_levels_are_not_read_by_index():
    split = macos.core_split(macos.parse_sysctl(HAND_MADE_SUPER_LEVELS))
    # Index reading would call the 6 "Super" cores performance cores and the 12 "Performance" ones efficiency cores.
    assert (split["performance"], split["efficiency"]) == (12, 0)
    assert split["levels"] == "6 Super + 12 Performance"


@pytest.mark.parametrize(
    ("text", "levels", "performance", "efficiency"),
    [
        # hand-made: hw.nperflevels says 2 but only level 0 is in the text (e.g. a grep excerpt).
        ("hw.nperflevels: 2\nhw.perflevel0.physicalcpu: 8\nhw.perflevel0.name: Performance\n",
         "8 Performance", UNKNOWN, UNKNOWN),
        # hand-made: one level named, one not.
        ("hw.perflevel0.physicalcpu: 8\nhw.perflevel0.name: Performance\nhw.perflevel1.physicalcpu: 4\n",
         "8 Performance + 4 (level 1, unnamed)", UNKNOWN, UNKNOWN),
        # hand-made: a single level named neither Performance nor Efficiency.
        ("hw.nperflevels: 1\nhw.perflevel0.physicalcpu: 4\nhw.perflevel0.name: Standard\n",
         "4 Standard", UNKNOWN, UNKNOWN),
        # hand-made: a named level without its core count leaves only that count unknown.
        ("hw.perflevel0.name: Performance\nhw.perflevel1.physicalcpu: 4\nhw.perflevel1.name: Efficiency\n",
         "? Performance + 4 Efficiency", UNKNOWN, 4),
    ],
)
def test_hand_made_incomplete_levels(text, levels, performance, efficiency):
    split = macos.core_split(macos.parse_sysctl(text))
    assert (split["levels"], split["performance"], split["efficiency"]) == (levels, performance, efficiency)


def test_no_perflevels_is_unknown():
    assert macos.core_split({"hw.physicalcpu": "8"}) == {"performance": UNKNOWN, "efficiency": UNKNOWN, "levels": UNKNOWN}


def test_parse_sysctl_ignores_error_lines_and_keeps_spaces():
    # hand-made: an error line, a blank line, garbage and the "key = value" form
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


def test_parse_displays_apple_silicon_hand_made():
    gpu = macos.parse_system_profiler_displays((M2 / "system_profiler-displays.json").read_text())
    assert gpu["gpu_name"] == "Apple M2 Pro"
    assert gpu["gpu_cores"] == 19
    assert gpu["metal_supported"] is True
    assert gpu["dedicated_vram"] is False


def test_parse_displays_intel_dual_gpu_has_no_core_count_hand_made():
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


# ----------------------------------------------------------------- ioreg


def test_real_m1_ioreg_accelerator_entry_has_8_gpu_cores():
    """Verbatim AGXAccelerator entry of an M1 MacBook Air's `ioreg -l` (macOS 11.0.1)."""
    text = recorded("m1_macbookair10_1_thomaskaiser", "ioreg-accelerator.txt")
    assert macos.parse_ioreg_accelerator(text) == {"gpu_cores": 8, "model": "Apple M1"}
    profile = macos.build_profile(None, None, None, ioreg_text=text, ioreg_source="ioreg excerpt")
    assert (profile.gpu_name, profile.gpu_cores) == ("Apple M1", 8)
    assert profile.sources["gpu_cores"] == "ioreg excerpt"
    assert profile.chip == UNKNOWN  # without sysctl nothing says this is Apple Silicon


def test_system_profiler_core_count_wins_over_ioreg():
    ioreg = recorded("m1_macbookair10_1_thomaskaiser", "ioreg-accelerator.txt")
    profile = macos.build_profile(None, (M2 / "system_profiler-displays.json").read_text(), None, ioreg_text=ioreg)
    assert (profile.gpu_name, profile.gpu_cores) == ("Apple M2 Pro", 19)


@pytest.mark.parametrize("text", ["", '+-o IntelAccelerator  <class IntelAccelerator>\n  {\n    "model" = "x"\n  }\n'])
def test_ioreg_without_core_count_is_unknown(text):
    assert macos.parse_ioreg_accelerator(text) == {"gpu_cores": UNKNOWN, "model": UNKNOWN}


# ----------------------------------------------------------------- pmset


def test_real_m1_pro_pmset_notes_are_nominal():
    """Verbatim `pmset -g therm` of an M1 Pro MacBook Pro 14" on macOS 12.1 (exelban/stats#749)."""
    reading = macos.parse_pmset_therm(recorded("m1pro_macbookpro14_2021_stats749", "pmset-therm.txt"))
    assert reading.state == "nominal"
    assert reading.cpu_speed_limit_percent is None
    assert reading.max_temperature_c is None
    assert reading.detail == "no thermal warning recorded; no performance warning recorded; no CPU power status recorded"
    assert reading.source == "pmset -g therm"


def test_real_intel_pmset_power_notify_at_full_speed_is_nominal():
    """Verbatim `pmset -g therm` of an Intel MacBook with 12 CPUs (prometheus/node_exporter#2031)."""
    reading = macos.parse_pmset_therm(recorded("intel_macbook_12cpu_node_exporter2031", "pmset-therm.txt"))
    assert reading.state == "nominal"
    assert reading.cpu_speed_limit_percent == 100
    assert "CPU_Scheduler_Limit 100%" in reading.detail and "CPU_Available_CPUs 12" in reading.detail


def test_real_intel_pmset_throttled_to_35_percent_is_critical():
    """Verbatim `pmset -g therm` of a MacBook Pro (15-inch, Early 2011) on macOS 10.13.6 running without
    its battery, throttled to CPU_Speed_Limit 35 (question on newbetuts.com/407192-…, see SOURCES.md).

    The source shows the "CPU Power notify" block indented with spaces where pmset prints tabs (see the
    node_exporter recording); the parser reads both.
    """
    reading = macos.parse_pmset_therm(recorded("intel_macbookpro15_early2011_newbetuts407192", "pmset-therm.txt"))
    assert reading.state == "critical"  # 35 is below this platform's 50 % band
    assert reading.cpu_speed_limit_percent == 35
    assert reading.max_temperature_c is None
    assert reading.detail == (
        "no thermal warning recorded; no performance warning recorded; "
        "CPU_Speed_Limit 35%; CPU_Scheduler_Limit 100%; CPU_Available_CPUs 8"
    )


def test_pmset_apple_silicon_notes_are_nominal_hand_made():
    reading = macos.parse_pmset_therm((M2 / "pmset-therm.txt").read_text())
    assert reading.state == "nominal"
    assert "no thermal warning recorded" in reading.detail


def test_pmset_intel_throttled_is_serious_hand_made():
    reading = macos.parse_pmset_therm((INTEL / "pmset-therm.txt").read_text())
    assert reading.state == "serious"
    assert reading.cpu_speed_limit_percent == 72
    assert "CPU_Available_CPUs 16" in reading.detail


def _power_notify(speed: int) -> str:
    """hand-made: the Intel "CPU Power notify" block (layout of the real node_exporter#2031 recording)."""
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
    # hand-made: the Rosetta brand string
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
    assert macos.read_ioreg_accelerator() is None
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
    _fake_command(bin_dir, "sysctl", f'echo "$@" >> "{args_file}"; cat "{M2 / "sysctl.txt"}"; echo "sysctl: unknown oid" >&2; exit 1')
    _fake_command(bin_dir, "system_profiler", f'cat "{M2 / "system_profiler-displays.json"}"')
    _fake_command(bin_dir, "pmset", f'cat "{INTEL / "pmset-therm.txt"}"')
    ioreg_args = tmp_path / "ioreg-args"
    ioreg_file = RECORDED / "m1_macbookair10_1_thomaskaiser" / "ioreg-accelerator.txt"
    _fake_command(bin_dir, "ioreg", f'echo "$@" > "{ioreg_args}"; cat "{ioreg_file}"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")

    profile = macos.build_profile(
        macos.read_sysctl(), macos.read_system_profiler_displays(), macos.read_pmset_therm(),
        ioreg_text=macos.read_ioreg_accelerator(),
    )
    assert args_file.read_text().splitlines() == [" ".join(macos.SYSCTL_KEYS)]  # one call (appended to), all keys
    assert {"hw.perflevel0.name", "hw.perflevel1.name", "hw.nperflevels"} <= set(macos.SYSCTL_KEYS)
    assert ioreg_args.read_text().split() == list(macos.IOREG_CMD[1:])
    assert profile.chip == "Apple M2 Pro"
    assert (profile.performance_cores, profile.efficiency_cores, profile.gpu_cores) == (8, 4, 19)
    assert profile.thermal.state == "serious"


def test_run_command_times_out(monkeypatch, tmp_path):
    _fake_command(tmp_path, "slow", "exec sleep 5")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert macos.run_command(["slow"], timeout=0.2) is None
