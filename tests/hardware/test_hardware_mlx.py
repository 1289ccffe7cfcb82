"""MLX's view: real read, missing MLX, recorded device info.

The device-info recordings in fixtures/recorded/mlx/ are verbatim (sources in
fixtures/SOURCES.md); strings marked "hand-made" are not.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.hardware.mlx_info import MlxInfo, from_record, read_mlx, training_device
from mlops.hardware.model import UNKNOWN, HardwareProfile
from mlops.hardware.probe import apply_mlx

MLX_RECORDINGS = Path(__file__).parent / "fixtures" / "recorded" / "mlx"


def mlx_c_device_info(name: str) -> dict:
    """The "  key: value" lines under "Device info (N keys):" of MLX-C's example output, as a dict."""
    text = (MLX_RECORDINGS / name).read_text()
    count = int(re.search(r"Device info \((\d+) keys\):", text).group(1))
    pairs = re.findall(r"^  (\w+): (.*)$", text, re.M)
    assert len(pairs) == count, "the recording holds every key it announces"
    return {key: int(value) if value.isdigit() else value for key, value in pairs}


def test_read_real_mlx():
    info = read_mlx()  # mlx is a dependency: this reads the real installed build
    assert info.version != UNKNOWN
    assert isinstance(info.metal_available, bool) and isinstance(info.cuda_available, bool)
    assert info.device == training_device(info.metal_available, info.cuda_available)
    assert info.device in ("gpu", "cpu")


def test_mlx_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx", None)
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    info = read_mlx()
    assert (info.version, info.metal_available, info.cuda_available, info.device) == (UNKNOWN,) * 4
    profile = HardwareProfile(platform="linux")
    apply_mlx(profile, info)
    assert profile.mlx_version == UNKNOWN and profile.mlx_device == UNKNOWN


@pytest.mark.parametrize(
    ("metal", "cuda", "device"),
    [(True, False, "gpu"), (False, True, "gpu"), (False, False, "cpu"), (UNKNOWN, False, UNKNOWN), (UNKNOWN, True, "gpu")],
)
def test_training_device(metal, cuda, device):
    assert training_device(metal, cuda) == device


def test_real_m3_max_device_info_fills_chip_and_memory():
    """MLX-C's device info on a 128 GB M3 Max (ml-explore/mlx-c#93), the keys of mx.device_info()."""
    record = mlx_c_device_info("mlx-c-pr93-example-m3max.txt")
    assert record == {
        "device_name": "Apple M3 Max", "max_recommended_working_set_size": 103079215104, "memory_size": 137438953472,
        "architecture": "applegpu_g15s", "max_buffer_length": 77309411328, "resource_limit": 499000,
    }
    info = from_record(record, source="mlx-c example")
    assert info.metal_available is True and info.device == "gpu"  # an applegpu_* architecture is a Metal device
    assert info.version == UNKNOWN and info.cuda_available == UNKNOWN  # not in a device-info record
    assert (info.device_name, info.memory_size) == ("Apple M3 Max", 128 * 2**30)
    profile = HardwareProfile(platform="macos")
    apply_mlx(profile, info)
    assert (profile.chip, profile.gpu_name, profile.memory_total_bytes) == ("Apple M3 Max", "Apple M3 Max", 128 * 2**30)
    assert profile.sources["memory_total_bytes"] == "mlx-c example"


def test_real_first_metal_device_info_has_no_name_or_memory():
    """mx.metal.device_info() as first merged (ml-explore/mlx#1060): three keys only."""
    record = ast.literal_eval((MLX_RECORDINGS / "mlx-pr1060-metal-device_info.txt").read_text())
    info = from_record(record)
    assert info.metal_available is True  # architecture applegpu_g14d
    assert info.device_name == UNKNOWN and info.memory_size == UNKNOWN
    profile = HardwareProfile(platform="macos")
    apply_mlx(profile, info)
    assert profile.chip == UNKNOWN and profile.memory_total_bytes == UNKNOWN and profile.gpu_name == UNKNOWN


def test_real_cpu_build_device_info_does_not_become_a_gpu():
    """MLX-C's device info on a Linux CPU-only build (ml-explore/mlx-c#93)."""
    record = mlx_c_device_info("mlx-c-pr93-example-linux-cpu.txt")
    assert record == {"architecture": "x86_64", "device_name": "Intel(R) Xeon(R) Silver 4410T"}
    assert from_record(record).metal_available == UNKNOWN  # an x86_64 architecture says nothing about Metal
    profile = HardwareProfile(platform="linux")
    info = MlxInfo(version="0.30.4", metal_available=False, cuda_available=False, device="cpu", device_info=record)
    apply_mlx(profile, info)
    assert profile.mlx_device == "cpu"
    assert profile.gpu_name == UNKNOWN and profile.chip == UNKNOWN and profile.memory_total_bytes == UNKNOWN


def test_from_record_reads_the_bundle_format_hand_made():
    # hand-made: the platform's own bundle format (device_info_record()), not a command's output
    info = from_record({"architecture": "applegpu_g14s", "device_name": "Apple M2 Pro", "memory_size": 1024,
                        "mlx_version": "0.32.4", "metal_available": True, "cuda_available": False})
    assert info.metal_available is True and info.cuda_available is False and info.device == "gpu"
    assert info.version == "0.32.4"
    assert info.memory_size == 1024 and info.device_name == "Apple M2 Pro"


def test_package_import_does_not_import_mlx():
    code = "import sys, mlops.hardware, mlops.hardware.cli; assert 'mlx' not in sys.modules, 'mlx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
