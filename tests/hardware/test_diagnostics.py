"""Failure diagnosis rules on snapshots: the cause follows the evidence, never a guess.

The snapshots below are hand-made (no public source records ``snapshot()`` at a
failure); only the thermal fields of the nominal ones come from a real
``pmset -g therm`` recording (fixtures/recorded/, see fixtures/SOURCES.md),
read through the same parser the live thermal reader uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.hardware.diagnostics import CAUSES, Diagnosis, diagnose, format_report, snapshot
from mlops.hardware.macos import parse_pmset_therm

GiB = 2**30

# Verbatim `pmset -g therm` of an M1 Pro MacBook Pro 14" on macOS 12.1 (exelban/stats#749).
REAL_NOMINAL_PMSET = parse_pmset_therm(
    (Path(__file__).parent / "fixtures/recorded/m1pro_macbookpro14_2021_stats749/pmset-therm.txt").read_text()
)
REAL_NOMINAL_THERMAL = {
    "thermal_state": REAL_NOMINAL_PMSET.state,
    "thermal_detail": REAL_NOMINAL_PMSET.detail,
    "thermal_source": REAL_NOMINAL_PMSET.source,
}

# hand-made: a 16 GiB, 12-CPU Apple Silicon Mac while a too-large batch was training (MLX limited to
# 4 GiB); the memory, swap, MLX and load values are invented, the thermal fields are the real recording's.
OOM_SNAPSHOT = {
    "taken_at": "2026-03-02T10:15:04+00:00",
    "memory_percent": 97.1,
    "memory_available_bytes": int(0.46 * GiB),
    "memory_total_bytes": 16 * GiB,
    "swap_used_bytes": int(6.2 * GiB),
    "swap_percent": 77.5,
    **REAL_NOMINAL_THERMAL,
    "mlx_active_memory_bytes": int(3.1 * GiB),
    "mlx_peak_memory_bytes": int(3.9 * GiB),
    "mlx_cache_memory_bytes": 0,
    "mlx_memory_limit_bytes": 4 * GiB,
    "mlx_device": "gpu",
    "mlx_in_process": True,
    "load_average": [7.9, 6.2, 4.0],
    "cpu_count": 12,
}
# hand-made: the same machine, idle but hot (pmset: CPU speed limited); no public recording of a
# throttled `pmset -g therm` was found, so the critical thermal fields are invented too.
HOT_SNAPSHOT = {
    **OOM_SNAPSHOT,
    "memory_percent": 41.0,
    "memory_available_bytes": int(9.4 * GiB),
    "swap_used_bytes": 0,
    "swap_percent": 0.0,
    "thermal_state": "critical",
    "thermal_detail": "CPU_Speed_Limit = 52",
    "mlx_active_memory_bytes": int(0.2 * GiB),
    "mlx_peak_memory_bytes": int(0.6 * GiB),
}
CALM_SNAPSHOT = {**HOT_SNAPSHOT, **REAL_NOMINAL_THERMAL}
# hand-made: a Linux CI host without MLX and without thermal zones.
UNKNOWN_SNAPSHOT = {
    "memory_percent": 22.0, "memory_available_bytes": 12 * GiB, "memory_total_bytes": 16 * GiB,
    "swap_used_bytes": "unknown", "swap_percent": "unknown",
    "thermal_state": "unknown", "thermal_detail": "no thermal zones under /sys/class/thermal", "thermal_source": "sysfs",
    "mlx_active_memory_bytes": "unknown", "mlx_peak_memory_bytes": "unknown", "mlx_memory_limit_bytes": "unknown",
    "mlx_device": "unknown", "mlx_in_process": False, "load_average": "unknown", "cpu_count": 2,
}


def test_the_real_recording_reads_nominal():
    assert REAL_NOMINAL_THERMAL == {
        "thermal_state": "nominal",
        "thermal_detail": "no thermal warning recorded; no performance warning recorded; no CPU power status recorded",
        "thermal_source": "pmset -g therm",
    }


def test_memory_error_with_pressure_and_swap_is_out_of_memory_high():
    diag = diagnose(MemoryError("cannot allocate 2147483648 bytes"), OOM_SNAPSHOT, memory_limit_bytes=4 * GiB)
    assert (diag.cause, diag.confidence) == ("out_of_memory", "high")
    text = " ".join(diag.evidence)
    assert "MemoryError" in text and "97% of RAM" in text and "swap in use: 6.2 GiB" in text
    assert "MLX peak memory 3.9 GiB reached 97% of its 4.0 GiB limit" in text
    assert "memory_gb" in diag.advice


def test_metal_malloc_message_is_out_of_memory_even_as_a_runtime_error():
    error = RuntimeError("[metal::malloc] Attempting to allocate 17179869184 bytes which is greater than the maximum allowed")
    assert diagnose(error, OOM_SNAPSHOT).cause == "out_of_memory"
    # Without any memory evidence the error alone still names the cause, less surely.
    assert diagnose(error, UNKNOWN_SNAPSHOT).confidence == "medium"


def test_sigkill_needs_memory_evidence():
    killed = "Process terminated by signal. Likely out of memory error (OOM). signal=-9 signal_name=SIGKILL"
    assert diagnose(killed, OOM_SNAPSHOT).cause == "out_of_memory"
    only_killed = "Task exited with return code Negsignal.SIGKILL"
    diag = diagnose(only_killed, CALM_SNAPSHOT)
    assert (diag.cause, diag.confidence) == ("out_of_memory", "low")


def test_mlx_peak_at_its_limit_is_out_of_memory_without_an_oom_message():
    diag = diagnose(RuntimeError("NaN loss"), {**CALM_SNAPSHOT, "mlx_peak_memory_bytes": int(3.7 * GiB)}, 4 * GiB)
    assert (diag.cause, diag.confidence) == ("out_of_memory", "medium")
    assert diagnose(RuntimeError("NaN loss"), CALM_SNAPSHOT, 4 * GiB).cause == "unknown"


def test_thermal_critical_is_thermal_throttling():
    diag = diagnose(RuntimeError("step diverged"), HOT_SNAPSHOT)
    assert (diag.cause, diag.confidence) == ("thermal_throttling", "medium")
    assert any("thermal state critical: CPU_Speed_Limit = 52" in e for e in diag.evidence)

    class AirflowTaskTimeout(Exception):
        pass

    assert diagnose(AirflowTaskTimeout("Timeout, PID: 4242"), HOT_SNAPSHOT).confidence == "high"
    assert diagnose(RuntimeError("x"), {**HOT_SNAPSHOT, "thermal_state": "serious"}).confidence == "low"


def test_data_error_is_data_error_even_on_a_hot_loaded_machine():
    from mlops.data.dvc_workspace import DataError

    try:
        try:
            raise FileNotFoundError(2, "No such file", "/remote/00/000000.dir")
        except FileNotFoundError as inner:
            raise DataError("cannot get data version 00000000000000000000000000000000.dir for data/x") from inner
    except DataError as exc:
        error = exc
    for snap in (OOM_SNAPSHOT | {"mlx_peak_memory_bytes": 0}, HOT_SNAPSHOT):
        diag = diagnose(error, snap)
        assert (diag.cause, diag.confidence) == ("data_error", "high"), snap
        assert "DataError" in diag.evidence[0] and "000.dir" in diag.evidence[0]
    assert "data_version" in diag.advice


def test_missing_data_file_and_yaml_errors_are_data_errors():
    import yaml

    missing = FileNotFoundError(2, "No such file or directory", "/state/dvc/data/proj/x.npy")
    assert diagnose(missing, CALM_SNAPSHOT).cause == "data_error"
    try:
        yaml.safe_load("a: [1, 2")
    except yaml.YAMLError as exc:
        assert diagnose(exc, CALM_SNAPSHOT).cause == "data_error"
    # A missing file that is not data says nothing about data.
    assert diagnose(FileNotFoundError(2, "No such file", "/usr/bin/tool"), CALM_SNAPSHOT).cause == "unknown"


def test_tracking_unavailable():
    from mlops.tracking.client import TrackingUnavailable

    diag = diagnose(TrackingUnavailable("MLflow tracking server http://127.0.0.1:1 is unreachable"), OOM_SNAPSHOT)
    assert (diag.cause, diag.confidence) == ("tracking_unavailable", "high")
    assert "mlops up" in diag.advice


def test_unknown_lists_what_was_seen():
    diag = diagnose(KeyError("hp.width"), UNKNOWN_SNAPSHOT)
    assert (diag.cause, diag.confidence) == ("unknown", "low")
    assert diag.evidence == ["error: KeyError: 'hp.width'", "memory 22% used", "thermal state unknown: no thermal zones under /sys/class/thermal"]


def test_no_exception_with_pressure_means_the_process_was_killed_for_memory():
    diag = diagnose(None, OOM_SNAPSHOT, 4 * GiB)
    assert (diag.cause, diag.confidence) == ("out_of_memory", "high")
    assert "task process died" in diag.evidence[0]
    calm = diagnose(None, CALM_SNAPSHOT)
    assert (calm.cause, calm.confidence) == ("unknown", "low") and "task process died" in calm.evidence[0]


def test_diagnosis_is_frozen_and_validated():
    diag = diagnose("boom", UNKNOWN_SNAPSHOT)
    with pytest.raises(AttributeError):
        diag.cause = "out_of_memory"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Diagnosis("cosmic_rays", "low")
    assert set(json.loads(json.dumps(diag.to_dict()))) == {"cause", "confidence", "evidence", "advice"}
    assert "unknown" in CAUSES


def test_report_shows_cause_evidence_and_readings():
    diag = diagnose(MemoryError(), OOM_SNAPSHOT, 4 * GiB)
    report = format_report(diag, OOM_SNAPSHOT)
    lines = report.splitlines()
    assert lines[0] == "Failure diagnosis: out_of_memory (confidence high)"
    for needle in ("memory:   97% used, 0.5 GiB available of 16.0 GiB", "swap:     6.2 GiB used (78%)",
                   "thermal:  nominal", "MLX:      device gpu, active 3.1 GiB, peak 3.9 GiB, limit 4.0 GiB",
                   "load:     7.90 6.20 4.00 (1/5/15 min, 12 CPUs)", "advice: "):
        assert needle in report, needle
    assert "unknown" in format_report(diagnose("x", UNKNOWN_SNAPSHOT), UNKNOWN_SNAPSHOT)


def test_live_snapshot_reads_this_machine():
    snap = snapshot()
    assert isinstance(snap["memory_percent"], float) and 0 <= snap["memory_percent"] <= 100
    assert snap["thermal_state"] in ("nominal", "fair", "serious", "critical", "unknown")
    assert snap["mlx_device"] in ("cpu", "gpu", "unknown")
    json.dumps(snap)


def test_snapshot_honours_the_hardware_root(tmp_path, monkeypatch):
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("101000\n")
    (zone / "trip_point_0_temp").write_text("95000\n")
    (zone / "trip_point_0_type").write_text("critical\n")
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    assert snapshot()["thermal_state"] == "critical"


def test_an_error_raised_in_a_project_environment_is_diagnosed_by_its_remote_type():
    """A step run in a project's own environment (issue 14) fails here as IsolatedRunError: the remote
    exception's type decides the diagnosis as it would in-process."""
    from mlops.environments.runner import IsolatedRunError

    remote = IsolatedRunError("mlops.training.isolated:train", "MemoryError", "cannot allocate 2147483648 bytes")
    local = diagnose(MemoryError("cannot allocate 2147483648 bytes"), OOM_SNAPSHOT, memory_limit_bytes=4 * GiB)
    isolated = diagnose(remote, OOM_SNAPSHOT, memory_limit_bytes=4 * GiB)
    assert (isolated.cause, isolated.confidence) == (local.cause, local.confidence) == ("out_of_memory", "high")
    other = IsolatedRunError("mlops.training.isolated:train", "ValueError", "bad shape")
    assert diagnose(other, OOM_SNAPSHOT, memory_limit_bytes=4 * GiB).confidence != "high"
