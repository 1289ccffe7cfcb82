"""Names the monitoring tests share with their conftest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL, ROUTED, DIFFUSION = "capture_mlp", "capture_routed", "capture_diffusion"
THERMAL_STATE = "serious"  # what the fake thermal zone reads


@dataclass
class Registry:
    settings: Any
    home: Path
    versions: dict[str, int]
