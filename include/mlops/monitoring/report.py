"""The monitoring report: drift, accuracy and performance side by side, the hardware, and the decision.

Retraining is requested when drift is above the project's threshold (and `retrain_on_drift`)
or the feedback accuracy is below `accuracy_threshold` with enough labels; the reason names
the numbers. The report is logged as an MLflow run of the project's experiment
(`mlops.kind=monitoring`: metrics plus `monitoring_report.json`, tagged with the served version
and the link to the project's history report, which `mlops report` and the toolkit__report DAG write).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings

#: Run tag of a monitoring run: the registered version it watched (the history report groups by it).
MODEL_VERSION_TAG = "mlops.model_version"
#: Run tag of a monitoring run: the project's history report (file:// URL).
PROJECT_REPORT_TAG = "mlops.project_report"


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
    config: ProjectConfig, drift: dict[str, Any], accuracy: dict[str, Any], performance: dict[str, Any],
    settings: Settings | None = None,
) -> dict[str, Any]:
    from mlops.analytics.report_files import project_report_path
    from mlops.settings import get_settings

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
        # The project's history (runs, techniques, serving, drift): rewritten daily, so linked even before it exists.
        "project_report_url": project_report_path(settings or get_settings(), config.name).as_uri(),
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
        if report.get("model_version") is not None:
            mlflow.set_tag(MODEL_VERSION_TAG, str(report["model_version"]))
        if report.get("project_report_url"):
            mlflow.set_tag(PROJECT_REPORT_TAG, report["project_report_url"])
        if metrics:
            mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "monitoring_report.json"
            path.write_text(json.dumps(report, indent=2, default=str))
            mlflow.log_artifact(str(path))
        return run.info.run_id
