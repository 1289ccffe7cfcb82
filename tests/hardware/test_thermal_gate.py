"""Thermal gate policy, the thermal-pressure parser and `read_thermal` against fake sysfs trees."""

from __future__ import annotations

import itertools
import platform
import sys
from pathlib import Path

import pytest

from mlops.hardware import thermal
from mlops.hardware.model import THERMAL_STATES, UNKNOWN, ThermalReading
from mlops.hardware.thermal import STATE_ORDER, at_least, parse_thermal_pressure, read_thermal, state_rank
from mlops.hardware.thermal_gate import GateDecision, decide

# Millidegrees giving each state for a zone with trips passive 85 °C, hot 95 °C, critical 105 °C.
TEMPS = {"nominal": 40000, "fair": 80000, "serious": 90000, "critical": 96000}
TRIPS = [(85000, "passive"), (95000, "hot"), (105000, "critical")]


def make_zone(root: Path, n: int, state: str, kind: str = "x86_pkg_temp") -> Path:
    zone = root / f"sys/class/thermal/thermal_zone{n}"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "type").write_text(kind + "\n")
    (zone / "temp").write_text(f"{TEMPS[state]}\n")
    for i, (trip, trip_type) in enumerate(TRIPS):
        (zone / f"trip_point_{i}_temp").write_text(f"{trip}\n")
        (zone / f"trip_point_{i}_type").write_text(f"{trip_type}\n")
    return zone


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)


# ----------------------------------------------------------------- policy

# Expected action per (state, threshold): proceed while state < threshold, wait at/above.
EXPECTED = {
    ("nominal", "fair"): "proceed", ("nominal", "serious"): "proceed", ("nominal", "critical"): "proceed",
    ("fair", "fair"): "wait", ("fair", "serious"): "proceed", ("fair", "critical"): "proceed",
    ("serious", "fair"): "wait", ("serious", "serious"): "wait", ("serious", "critical"): "proceed",
    ("critical", "fair"): "wait", ("critical", "serious"): "wait", ("critical", "critical"): "wait",
}


@pytest.mark.parametrize(
    "state,threshold,on_unknown",
    list(itertools.product(THERMAL_STATES, ("fair", "serious", "critical"), ("proceed", "wait", "fail"))),
)
def test_decision_table(state, threshold, on_unknown):
    reading = ThermalReading(state=state, detail="zone0 91.0 °C", source="sysfs thermal_zone")
    decision = decide(reading, threshold, on_unknown)
    assert isinstance(decision, GateDecision)
    expected = on_unknown if state == UNKNOWN else EXPECTED[(state, threshold)]
    assert decision.action == expected
    assert decision.state == state
    # the message names the state, its evidence and the threshold
    assert state in decision.message and threshold in decision.message
    assert "zone0 91.0 °C" in decision.message and "sysfs thermal_zone" in decision.message
    assert decision.warning == (state == UNKNOWN and on_unknown == "proceed")
    if decision.warning:
        assert "unknown" in decision.message and "proceeding anyway" in decision.message


def test_decision_is_frozen():
    decision = decide(ThermalReading(state="nominal"), "serious", "proceed")
    with pytest.raises(AttributeError):
        decision.action = "wait"  # type: ignore[misc]


@pytest.mark.parametrize("threshold,on_unknown", [("nominal", "proceed"), ("hot", "proceed"), ("serious", "retry")])
def test_decide_rejects_bad_policy(threshold, on_unknown):
    with pytest.raises(ValueError):
        decide(ThermalReading(state="nominal"), threshold, on_unknown)


def test_state_order_helpers():
    assert STATE_ORDER == ("nominal", "fair", "serious", "critical")
    assert [state_rank(s) for s in THERMAL_STATES] == [0, 1, 2, 3, None]
    assert at_least("serious", "serious") and at_least("critical", "fair") and not at_least("fair", "serious")
    assert not at_least(UNKNOWN, "fair")
    with pytest.raises(ValueError):
        at_least("fair", UNKNOWN)


# ----------------------------------------------------------------- macOS thermal pressure


@pytest.mark.parametrize(
    "text,state,name",
    [
        ("com.apple.system.thermalpressurelevel 0\n", "nominal", "nominal"),
        ("com.apple.system.thermalpressurelevel 1\n", "fair", "moderate"),
        ("com.apple.system.thermalpressurelevel 2\n", "serious", "heavy"),
        ("com.apple.system.thermalpressurelevel 3\n", "critical", "trapping"),
        ("com.apple.system.thermalpressurelevel 4\n", "critical", "sleeping"),
        ("com.apple.system.thermalpressurelevel 7\n", "critical", "beyond sleeping"),
        ("2\n", "serious", "heavy"),
    ],
)
def test_parse_thermal_pressure_levels(text, state, name):
    reading = parse_thermal_pressure(text)
    assert reading.state == state
    assert name in reading.detail and reading.source == "notifyutil thermalpressurelevel"


@pytest.mark.parametrize("text", ["", "notifyutil: unknown name\n", "com.apple.system.thermalpressurelevel -1\n"])
def test_parse_thermal_pressure_unreadable_is_unknown(text):
    assert parse_thermal_pressure(text).state == UNKNOWN


def test_macos_combines_pmset_and_pressure_worst_wins(monkeypatch):
    outputs = {
        "pmset": "Note: No thermal warning level has been recorded\nNote: No performance warning level has been recorded\n",
        "notifyutil": "com.apple.system.thermalpressurelevel 2\n",
    }
    monkeypatch.setattr("mlops.hardware.macos.run_command", lambda args, timeout=0: outputs.get(args[0]))
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.delenv("MLOPS_HARDWARE_ROOT", raising=False)
    reading = read_thermal()
    assert reading.state == "serious"
    assert reading.source == "pmset -g therm + notifyutil thermalpressurelevel"
    assert "no thermal warning recorded" in reading.detail and "heavy" in reading.detail


def test_macos_without_notifyutil_uses_pmset_only(monkeypatch):
    pmset = "CPU Power notify\n\tCPU_Scheduler_Limit \t= 100\n\tCPU_Available_CPUs \t= 8\n\tCPU_Speed_Limit \t= 70\n"
    monkeypatch.setattr("mlops.hardware.macos.run_command", lambda args, timeout=0: pmset if args[0] == "pmset" else None)
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.delenv("MLOPS_HARDWARE_ROOT", raising=False)
    reading = read_thermal()
    assert (reading.state, reading.cpu_speed_limit_percent, reading.source) == ("serious", 70, "pmset -g therm")


def test_real_throttled_pmset_recording_makes_the_gate_wait():
    """Verbatim `pmset -g therm` of a MacBook Pro throttled to CPU_Speed_Limit 35 (fixtures/SOURCES.md)."""
    from mlops.hardware.macos import parse_pmset_therm

    recording = Path(__file__).parent / "fixtures/recorded/intel_macbookpro15_early2011_newbetuts407192/pmset-therm.txt"
    reading = parse_pmset_therm(recording.read_text())
    for threshold in ("fair", "serious", "critical"):
        assert decide(reading, threshold, "proceed").action == "wait"


def test_macos_with_no_command_is_unknown(monkeypatch):
    monkeypatch.setattr("mlops.hardware.macos.run_command", lambda args, timeout=0: None)
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.delenv("MLOPS_HARDWARE_ROOT", raising=False)
    assert read_thermal().state == UNKNOWN


# ----------------------------------------------------------------- Linux / fake sysfs


@pytest.mark.parametrize("state", STATE_ORDER)
def test_read_thermal_fake_sysfs_via_env(state, tmp_path, monkeypatch, no_nvml):
    make_zone(tmp_path, 0, state)
    make_zone(tmp_path, 1, "nominal", kind="acpitz")
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    assert thermal.hardware_root() == tmp_path
    reading = read_thermal()
    assert reading.state == state
    assert reading.source == "sysfs thermal_zone"
    assert reading.max_temperature_c == TEMPS[state] / 1000


def test_read_thermal_explicit_root_wins_over_env(tmp_path, monkeypatch):
    make_zone(tmp_path / "hot", 0, "critical")
    make_zone(tmp_path / "cool", 0, "nominal")
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path / "hot"))
    assert read_thermal(tmp_path / "cool").state == "nominal"
    assert read_thermal(str(tmp_path / "cool")).state == "nominal"
    assert read_thermal().state == "critical"


def test_read_thermal_empty_tree_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    reading = read_thermal()
    assert reading.state == UNKNOWN and "no thermal zones" in reading.detail


def test_hardware_root_unset_is_none(monkeypatch):
    monkeypatch.delenv("MLOPS_HARDWARE_ROOT", raising=False)
    assert thermal.hardware_root() is None
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", "  ")
    assert thermal.hardware_root() is None


def test_live_linux_combines_nvml_throttling(monkeypatch):
    from mlops.hardware import linux

    monkeypatch.delenv("MLOPS_HARDWARE_ROOT", raising=False)
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    zones = ThermalReading(state="fair", detail="z", source="sysfs thermal_zone", max_temperature_c=70.0)
    monkeypatch.setattr(linux, "read_thermal_zones", lambda root="/": zones)
    nvml = {"gpus": [{"name": "RTX", "cores": 1, "temperature_c": 88.0, "state": "serious"}], "state": "serious"}
    monkeypatch.setattr(linux, "read_nvml", lambda: nvml)
    reading = read_thermal()
    assert (reading.state, reading.max_temperature_c, reading.source) == ("serious", 88.0, "sysfs thermal_zone + NVML")


def test_a_failing_reader_reads_as_unknown(monkeypatch, tmp_path):
    def boom(root="/"):
        raise RuntimeError("sensor bus on fire")

    monkeypatch.setattr("mlops.hardware.linux.read_thermal_zones", boom)
    reading = read_thermal(tmp_path)
    assert reading.state == UNKNOWN and "sensor bus on fire" in reading.detail


def test_read_thermal_on_this_host():
    assert read_thermal().state in THERMAL_STATES
