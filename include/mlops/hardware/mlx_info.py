"""What MLX itself reports: version, Metal/CUDA backends, device info.

Why: the OS can say a GPU exists, but only MLX can say whether a training run
will actually use it.  ``mlx`` is imported lazily inside :func:`read_mlx` so
the rest of the package (and the CLI) works where MLX is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops.hardware.model import UNKNOWN

#: File name of a recorded :func:`device_info_record` inside a support bundle.
RECORD_FILE = "mlx-device-info.json"


@dataclass
class MlxInfo:
    """MLX's view of the machine; "unknown" where MLX could not be asked."""

    version: str = UNKNOWN
    metal_available: bool | str = UNKNOWN
    cuda_available: bool | str = UNKNOWN
    device: str = UNKNOWN  # "gpu" | "cpu" | "unknown"
    device_info: dict[str, Any] = field(default_factory=dict)
    source: str = "mlx"

    @property
    def device_name(self) -> str:
        return str(self.device_info.get("device_name") or UNKNOWN)

    @property
    def memory_size(self) -> int | str:
        value = self.device_info.get("memory_size")
        return value if isinstance(value, int) and not isinstance(value, bool) else UNKNOWN


def training_device(metal: bool | str, cuda: bool | str) -> str:
    """"gpu" if Metal or CUDA is available, "cpu" if both are known absent, else "unknown"."""
    if metal is True or cuda is True:
        return "gpu"
    if metal is False and cuda is False:
        return "cpu"
    return UNKNOWN


def read_mlx() -> MlxInfo:
    """Ask the installed MLX; all fields "unknown" if ``mlx.core`` cannot be imported."""
    try:
        import mlx.core as mx
    except Exception:  # noqa: BLE001 - not installed, or no wheel for this platform
        return MlxInfo(source="mlx not importable")

    version = getattr(mx, "__version__", None)
    if not version:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("mlx")
        except Exception:  # noqa: BLE001
            version = UNKNOWN
    metal = _ask(getattr(getattr(mx, "metal", None), "is_available", None))
    cuda_module = getattr(mx, "cuda", None)
    # An MLX without an ``mx.cuda`` module predates the CUDA backend: no CUDA.
    cuda = _ask(getattr(cuda_module, "is_available", None)) if cuda_module is not None else False
    info_fn = getattr(mx, "device_info", None) or getattr(getattr(mx, "metal", None), "device_info", None)
    device_info: dict[str, Any] = {}
    if info_fn is not None:
        try:
            device_info = {str(k): _plain(v) for k, v in dict(info_fn()).items()}
        except Exception:  # noqa: BLE001 - e.g. Metal device info asked on a CPU build
            device_info = {}
    return MlxInfo(
        version=str(version),
        metal_available=metal,
        cuda_available=cuda,
        device=training_device(metal, cuda),
        device_info=device_info,
    )


def device_info_record() -> dict[str, Any]:
    """This machine's MLX view as a JSON-able dict, the format of ``mlx-device-info.json``.

    ``mx.device_info()`` keys plus ``mlx_version``, ``metal_available`` and
    ``cuda_available`` (only those that were known).
    """
    info = read_mlx()
    record: dict[str, Any] = dict(info.device_info)
    for key, value in (
        ("mlx_version", info.version),
        ("metal_available", info.metal_available),
        ("cuda_available", info.cuda_available),
    ):
        if value != UNKNOWN:
            record[key] = value
    return record


def from_record(record: dict[str, Any], source: str = RECORD_FILE) -> MlxInfo:
    """:class:`MlxInfo` from a recorded ``mlx-device-info.json`` (see :func:`device_info_record`).

    Missing keys stay "unknown", except that an ``architecture`` starting with
    "applegpu" can only come from a Metal device, so Metal was available.
    """
    device_info = {k: v for k, v in record.items() if k not in ("mlx_version", "metal_available", "cuda_available")}
    metal = record.get("metal_available")
    if not isinstance(metal, bool):
        metal = True if str(record.get("architecture", "")).startswith("applegpu") else UNKNOWN
    cuda = record.get("cuda_available")
    if not isinstance(cuda, bool):
        cuda = UNKNOWN
    version = record.get("mlx_version")
    return MlxInfo(
        version=str(version) if version else UNKNOWN,
        metal_available=metal,
        cuda_available=cuda,
        device=training_device(metal, cuda),
        device_info=device_info,
        source=source,
    )


def _ask(fn: Any) -> bool | str:
    if fn is None:
        return UNKNOWN
    try:
        return bool(fn())
    except Exception:  # noqa: BLE001
        return UNKNOWN


def _plain(value: Any) -> Any:
    """Keep JSON-able scalars; stringify anything else MLX hands back."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
