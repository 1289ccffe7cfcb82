"""HardwareProfile / ThermalReading serialisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.hardware import HardwareProfile, ThermalReading, probe_from_dir
from mlops.hardware.model import UNKNOWN, worst_state

FIXTURES = Path(__file__).parent / "fixtures"
M2 = FIXTURES / "m2pro_bundle"  # hand-made (see fixtures/SOURCES.md)
M3MAX = FIXTURES / "recorded" / "m3max_macbookpro_j516c"  # verbatim `sysctl hw` of a 128 GB M3 Max
REQUIRED_PARAMS = {
    "hw.chip", "hw.performance_cores", "hw.efficiency_cores", "hw.cpu_core_levels", "hw.memory_total_gb", "hw.unified_memory",
    "hw.gpu_cores", "hw.metal_available", "hw.cuda_available", "hw.os", "hw.python", "hw.mlx_version",
    "hw.mlx_device", "hw.thermal_state",
}


@pytest.mark.parametrize(
    "profile", [HardwareProfile(), probe_from_dir(M2), probe_from_dir(M3MAX)], ids=["empty", "m2pro-hand-made", "m3max-recorded"]
)
def test_mlflow_params_are_flat_strings(profile):
    params = profile.to_mlflow_params()
    assert REQUIRED_PARAMS <= params.keys()
    for key, value in params.items():
        assert isinstance(key, str) and key.startswith("hw.")
        assert isinstance(value, str)


def test_mlflow_params_m2_values_hand_made():
    params = probe_from_dir(M2).to_mlflow_params()
    assert params["hw.chip"] == "Apple M2 Pro"
    assert params["hw.performance_cores"] == "8"
    assert params["hw.efficiency_cores"] == "4"
    assert params["hw.cpu_core_levels"] == "8 Performance + 4 Efficiency"
    assert params["hw.memory_total_gb"] == "32.0"
    assert params["hw.gpu_cores"] == "19"
    assert params["hw.unified_memory"] == "true"
    assert params["hw.cuda_available"] == "false"
    assert params["hw.thermal_state"] == "nominal"
    assert params["hw.thermal_cpu_speed_limit_percent"] == UNKNOWN
    assert params["hw.python"] == UNKNOWN


def test_mlflow_params_from_a_real_m3_max_recording():
    params = probe_from_dir(M3MAX).to_mlflow_params()
    assert (params["hw.performance_cores"], params["hw.efficiency_cores"]) == ("12", "4")
    assert params["hw.cpu_core_levels"] == "12 Performance + 4 Efficiency"
    assert params["hw.memory_total_gb"] == "128.0"
    assert params["hw.chip"] == UNKNOWN  # `sysctl hw` has no brand string
    assert params["hw.unified_memory"] == "true"


def test_empty_profile_params_are_unknown():
    params = HardwareProfile().to_mlflow_params()
    assert set(params.values()) == {UNKNOWN}


def test_to_dict_is_json_serialisable():
    data = probe_from_dir(M2).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["thermal"]["state"] == "nominal"
    assert isinstance(data["sources"], dict)


def test_set_records_source_and_ignores_unknown():
    profile = HardwareProfile()
    profile.set("gpu_cores", 10, "reader-a")
    profile.set("gpu_cores", UNKNOWN, "reader-b")
    profile.set("chip", None, "reader-c")
    assert profile.gpu_cores == 10 and profile.sources == {"gpu_cores": "reader-a"}


def test_invalid_values_rejected():
    with pytest.raises(ValueError):
        ThermalReading(state="hot")
    with pytest.raises(ValueError):
        HardwareProfile(platform="windows")
    with pytest.raises(ValueError):
        HardwareProfile(mlx_device="tpu")


def test_worst_state():
    assert worst_state("nominal", "serious", "fair") == "serious"
    assert worst_state("unknown", "fair") == "fair"
    assert worst_state("unknown") == worst_state() == UNKNOWN
