"""The monitoring report: drift, accuracy and performance side by side, the hardware, and the decision.

Retraining is requested when drift is above the project's threshold (and `retrain_on_drift`)
or the feedback accuracy is below `accuracy_threshold` with enough labels; the reason names
the numbers. The report is logged as an MLflow run of the project's experiment
(`mlops.kind=monitoring`: metrics plus `monitoring_report.json`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


def retrain_decision(config: ProjectConfig, drift: dict[str, Any], accuracy: dict[str, Any]) -> dict[str, Any]:
    m = config.monitoring
    reasons = []
    if drift.get("status") == "drift" and m.retrain_on_drift:
        reasons.append(
            f"data drift: {100 * drift['drift_share']:.0f}% of columns drifted (threshold {100 * m.drift_threshold:.0f}%): "
            + ", ".join(drift.get("drifted_columns", [])[:10])
        )
    if accuracy.get("below_threshold"):
        reasons.append(
            f"accuracy {accuracy['accuracy']:.3f} on {accuracy['rows']} labelled predictions is below {m.accuracy_threshold}"
        )
    if reasons:
        return {"requested": True, "reason": "; ".join(reasons)}
    why = f"drift {drift.get('status', 'not checked')}"
    if accuracy.get("accuracy") is not None:
        why += f", accuracy {accuracy['accuracy']:.3f}"
    return {"requested": False, "reason": why}


def build_report(
    config: ProjectConfig, drift: dict[str, Any], accuracy: dict[str, Any], performance: dict[str, Any]
) -> dict[str, Any]:
    retrain = retrain_decision(config, drift, accuracy)
    report_html = (drift.get("report") or {}).get("html")
    summary = [f"drift: {drift.get('status')}"]
    if drift.get("drift_share") is not None:
        summary[-1] += f" ({100 * drift['drift_share']:.0f}% of columns)"
    if accuracy.get("accuracy") is not None:
        summary.append(f"accuracy: {accuracy['accuracy']:.3f} on {accuracy['rows']} labels")
    summary.append(f"performance: {performance.get('status')}")
    if performance.get("latency_ratio") is not None:
        summary[-1] += f" (p50 {performance['latency_ratio']:.2f}x baseline)"
    return {
        "project": config.name,
        "model_version": drift.get("model_version"),
        "drift": drift,
        "accuracy": accuracy,
        "performance": performance,
        "hardware": performance.get("hardware", {}),
        "retrain": retrain,
        "report_url": f"file://{report_html}" if report_html else None,
        "summary": "; ".join(summary),
    }


def log_report(settings: Settings, report: dict[str, Any], run_name: str) -> str:
    """Log the report as an MLflow run of the project's experiment; returns the run id."""
    import mlflow

    from mlops.tracking.client import configure

    configure(settings)
    mlflow.set_experiment(report["project"])
    metrics = {}
    if report["drift"].get("drift_share") is not None:
        metrics["drift_share"] = float(report["drift"]["drift_share"])
    if report["accuracy"].get("accuracy") is not None:
        metrics["serving_accuracy"] = float(report["accuracy"]["accuracy"])
    window = report["performance"].get("window") or {}
    for key in ("p50_ms", "p99_ms", "requests", "requests_per_busy_second"):
        if window.get(key) is not None:
            metrics[f"serving_{key}"] = float(window[key])
    if report["performance"].get("latency_ratio") is not None:
        metrics["serving_latency_ratio"] = float(report["performance"]["latency_ratio"])
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({
            "mlops.kind": "monitoring",
            "mlops.project": report["project"],
            "mlops.drift_status": str(report["drift"].get("status")),
            "mlops.performance_status": str(report["performance"].get("status")),
            "mlops.retrain_requested": str(report["retrain"]["requested"]).lower(),
        })
        if metrics:
            mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "monitoring_report.json"
            path.write_text(json.dumps(report, indent=2, default=str))
            mlflow.log_artifact(str(path))
        return run.info.run_id
