"""Has serving slowed down, and why?  Window statistics against the model's baseline, with causes.

The baseline is the first window the monitor saw for the serving version with enough rows
(kept in `<state>/monitoring/baselines/<project>.json`; a new version gets a new baseline).
A window is degraded when its p50 latency reaches `factor` x the baseline's (throughput is
reported beside it but not judged: it follows the offered load as much as capacity). Causes are named only with the
evidence that supports them (as in `hardware.diagnostics`):

* thermal throttling: requests served while the machine was `serious`/`critical` (captured
  per request), or the thermal state now;
* memory pressure or swap: the memory readings now (`diagnostics.snapshot`);
* larger batches: mean rows per request well above the baseline's;
* a slower model version: the window is served by another version than the baseline's.

No Airflow import; pandas is the caller's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlops.settings import Settings

HOT_STATES = ("serious", "critical")
BATCH_GROWTH = 1.5  # mean rows per request this many times the baseline's counts as "larger batches"


@dataclass
class WindowStats:
    requests: int
    rows: int
    p50_ms: float
    p99_ms: float
    rows_per_request: float
    requests_per_busy_second: float  # requests / seconds in which any request was served
    versions: list[int]
    hot_share: float  # share of requests served while the machine was serious/critical
    device: str

    @classmethod
    def of(cls, window: pd.DataFrame) -> WindowStats | None:
        """Per-request statistics of a prediction-log window (one row per batch row); None if empty."""
        if window is None or window.empty:
            return None
        requests = window.drop_duplicates("request_id")
        latency = requests["latency_ms"].astype(float)
        seconds = requests["ts"].dt.floor("s").nunique() if "ts" in requests else 0
        thermal = requests.get("thermal_state")
        return cls(
            requests=int(len(requests)),
            rows=int(len(window)),
            p50_ms=float(latency.quantile(0.5)),
            p99_ms=float(latency.quantile(0.99)),
            rows_per_request=float(requests["batch_rows"].mean()) if "batch_rows" in requests else 1.0,
            requests_per_busy_second=float(len(requests) / seconds) if seconds else 0.0,
            versions=sorted(int(v) for v in requests["version"].unique()),
            hot_share=float(thermal.isin(HOT_STATES).mean()) if thermal is not None else 0.0,
            device=str(requests["device"].mode().iat[0]) if "device" in requests else "unknown",
        )


@dataclass
class Degradation:
    status: str  # "ok" | "degraded" | "baseline_set" | "insufficient_data"
    window: dict[str, Any] | None
    baseline: dict[str, Any] | None
    latency_ratio: float | None = None
    throughput_ratio: float | None = None
    causes: list[dict[str, str]] = field(default_factory=list)
    hardware: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_file(settings: Settings, project: str) -> Path:
    return settings.home / "monitoring" / "baselines" / f"{project}.json"


def likely_causes(window: WindowStats, baseline: WindowStats, hardware: dict[str, Any]) -> list[dict[str, str]]:
    """Every cause the evidence supports, most specific first; [{"cause", "evidence"}]."""
    from mlops.hardware.diagnostics import memory_evidence

    causes = []
    if window.hot_share > baseline.hot_share or hardware.get("thermal_state") in HOT_STATES:
        causes.append({
            "cause": "thermal_throttling",
            "evidence": f"{100 * window.hot_share:.0f}% of requests served while serious/critical "
            f"(baseline {100 * baseline.hot_share:.0f}%); thermal state now {hardware.get('thermal_state', 'unknown')}",
        })
    memory_lines, pressure, _ = memory_evidence(hardware, None)
    if pressure or memory_lines:
        causes.append({"cause": "memory_pressure", "evidence": "; ".join(memory_lines)})
    if window.rows_per_request >= BATCH_GROWTH * baseline.rows_per_request:
        causes.append({
            "cause": "larger_batches",
            "evidence": f"{window.rows_per_request:.1f} rows per request vs {baseline.rows_per_request:.1f} in the baseline",
        })
    new_versions = [v for v in window.versions if v not in baseline.versions]
    if new_versions:
        causes.append({
            "cause": "slower_model_version",
            "evidence": f"served by version(s) {new_versions}, the baseline by {baseline.versions}",
        })
    return causes or [{"cause": "unknown", "evidence": "no thermal, memory, batch-size or version change seen"}]


def check_performance(
    settings: Settings, project: str, window: pd.DataFrame, factor: float, min_requests: int = 20,
    hardware: dict[str, Any] | None = None,
) -> Degradation:
    """Compare the window with the project's baseline (set from this window when there is none for its version)."""
    from mlops.hardware.diagnostics import snapshot

    hardware = hardware if hardware is not None else snapshot(str(settings.hardware_root) if settings.hardware_root else None)
    stats = WindowStats.of(window)
    if stats is None or stats.requests < min_requests:
        return Degradation("insufficient_data", asdict(stats) if stats else None, None, hardware=hardware)
    path = baseline_file(settings, project)
    stored = json.loads(path.read_text()) if path.is_file() else None
    serving = max(stats.versions)
    if stored is None or (serving not in stored["versions"] and len(stats.versions) == 1):
        path.parent.mkdir(parents=True, exist_ok=True)  # first window of this version: it is the baseline
        path.write_text(json.dumps(asdict(stats), indent=2))
        return Degradation("baseline_set", asdict(stats), asdict(stats), 1.0, 1.0, hardware=hardware)
    baseline = WindowStats(**stored)
    latency_ratio = stats.p50_ms / baseline.p50_ms if baseline.p50_ms else None
    throughput_ratio = (
        stats.requests_per_busy_second / baseline.requests_per_busy_second if baseline.requests_per_busy_second else None
    )
    degraded = latency_ratio is not None and latency_ratio >= factor
    causes = likely_causes(stats, baseline, hardware) if degraded else []
    return Degradation(
        "degraded" if degraded else "ok", asdict(stats), asdict(baseline), latency_ratio, throughput_ratio, causes, hardware
    )
