"""``mlops hardware [--json] [--from-dir DIR]``: print the hardware profile.

Why: lets an engineer see, before launching a run, exactly what the probe
(and therefore the MLflow ``hw.*`` params) will record -- for this machine or
for a support bundle recorded on a Mac.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mlops.hardware.model import UNKNOWN, HardwareProfile
from mlops.hardware.probe import probe, probe_from_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops hardware",
        description="Show this machine's hardware profile (or one recorded in a Mac support bundle).",
    )
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    parser.add_argument(
        "--from-dir",
        metavar="DIR",
        help="read a recorded bundle (sysctl.txt, pmset-therm.txt, system_profiler-displays.json, "
        "mlx-device-info.json) instead of probing this machine",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for usage errors / missing bundle dir)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else 2

    if args.from_dir is not None:
        bundle = Path(args.from_dir)
        if not bundle.is_dir():
            problem = "does not exist" if not bundle.exists() else "is not a directory"
            print(f"{parser.prog}: error: --from-dir {bundle} {problem}", file=sys.stderr)
            return 2
        profile = probe_from_dir(bundle)
    else:
        profile = probe()

    if args.json:
        print(json.dumps(profile.to_dict(), indent=2, sort_keys=False))
    else:
        print(format_table(profile))
    return 0


def format_table(profile: HardwareProfile) -> str:
    """Human-readable, label-aligned table."""
    thermal = profile.thermal
    rows: list[tuple[str, Any]] = [
        ("Platform", profile.platform),
        ("Chip", profile.chip),
        ("CPU brand", profile.cpu_brand),
        ("Apple Silicon", profile.is_apple_silicon),
        ("CPU cores (physical)", profile.cpu_cores_physical),
        ("CPU cores (logical)", profile.cpu_cores_logical),
        ("Performance cores", profile.performance_cores),
        ("Efficiency cores", profile.efficiency_cores),
        ("Memory total", _gib(profile.memory_total_gb)),
        ("Memory available", _gib(profile.to_dict()["memory_available_gb"])),
        ("Unified memory", profile.unified_memory),
        ("GPU", profile.gpu_name),
        ("GPU cores", profile.gpu_cores),
        ("Metal available", profile.metal_available),
        ("CUDA available", profile.cuda_available),
        ("OS", profile.os_version),
        ("Python", profile.python_version),
        ("MLX version", profile.mlx_version),
        ("MLX device", profile.mlx_device),
        ("Thermal state", thermal.state),
        ("Thermal detail", thermal.detail),
        ("CPU speed limit", _fmt(thermal.cpu_speed_limit_percent, "{}%")),
        ("Max temperature", _fmt(thermal.max_temperature_c, "{:.1f} °C")),
        ("Thermal source", thermal.source),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {_show(value)}" for label, value in rows)


def _gib(value: str) -> str:
    return value if value == UNKNOWN else f"{value} GiB"


def _fmt(value: float | None, template: str) -> str:
    return UNKNOWN if value is None else template.format(value)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
