"""MLX's view: real read, missing MLX, recorded device info."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops.hardware.mlx_info import MlxInfo, from_record, read_mlx, training_device
from mlops.hardware.model import UNKNOWN, HardwareProfile
from mlops.hardware.probe import apply_mlx


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


def test_from_record_infers_metal_from_apple_gpu_architecture():
    info = from_record({"architecture": "applegpu_g14s", "device_name": "Apple M2 Pro", "memory_size": 1024})
    assert info.metal_available is True and info.device == "gpu"
    assert info.version == UNKNOWN and info.cuda_available == UNKNOWN
    assert info.memory_size == 1024 and info.device_name == "Apple M2 Pro"


def test_cpu_device_info_does_not_become_a_gpu():
    profile = HardwareProfile(platform="linux")
    info = MlxInfo(version="0.32.4", metal_available=False, cuda_available=False, device="cpu",
                   device_info={"architecture": "x86_64", "device_name": "AMD EPYC"})
    apply_mlx(profile, info)
    assert profile.mlx_device == "cpu"
    assert profile.gpu_name == UNKNOWN and profile.chip == UNKNOWN


def test_package_import_does_not_import_mlx():
    code = "import sys, mlops.hardware, mlops.hardware.cli; assert 'mlx' not in sys.modules, 'mlx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
