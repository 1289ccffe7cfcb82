"""Hardware probe: what machine an MLX run is on, read from the OS and MLX (never guessed)."""

from mlops.hardware.model import HardwareProfile, ThermalReading
from mlops.hardware.probe import probe, probe_from_dir

__all__ = ["HardwareProfile", "ThermalReading", "probe", "probe_from_dir"]
