"""The monitor DAG's operators: drift, accuracy and performance checks, the report, retrain and alert.

Each is thin: the checks live in `mlops.monitoring`; these read the project's monitoring
config, pick the window and hand results on through XCom.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

WINDOW_COLUMNS = ["request_id", "ts", "version", "latency_ms", "batch_rows", "thermal_state", "device"]


def window_start(hours: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(hours=hours)


class DriftCheckOperator(ProjectOperator):
    """Served inputs of the last `window_hours` against the serving version's training data (Evidently)."""

    ui_color = "#fff2cc"

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.monitoring.drift import check_drift, save_report
        from mlops.monitoring.prediction_log import read_predictions
        from mlops.monitoring.reference import load_reference

        settings, m = self.settings(), self.config.monitoring
        try:
            reference = load_reference(settings, self.config.name)
        except LookupError as exc:
            self.log.warning("no drift check: %s", exc)
            return {"status": "no_reference", "messages": [str(exc)]}
        current = read_predictions(
            settings, self.config.name, since=window_start(m.window_hours), max_rows=m.max_rows, seed=0
        )
        current = current[[c for c in current.columns if c.startswith("in.")]] if len(current.columns) else current
        result = check_drift(
            reference.frame,
            current,
            methods={f"in.{name}": c.method for name, c in m.columns.items() if c.method},
            thresholds={f"in.{name}": c.threshold for name, c in m.columns.items() if c.threshold is not None},
            default_method=m.method,
            default_threshold=m.threshold,
            drift_share=m.drift_threshold,
            min_rows=m.min_rows,
            max_rows=m.max_rows,
            seed=0,
        )
        out = result.as_dict()
        out.update(model_version=reference.model_version, data_version=reference.data_version)
        # Logged even without a verdict (insufficient data, schema mismatch): the history shows those too.
        out["report"] = save_report(result, settings, self.config.name, f"drift-{context['run_id']}")
        self.log.info(
            "drift: %s, share %s, drifted %s", out["status"], out.get("drift_share"), out.get("drifted_columns")
        )
        return out


class ServingAccuracyOperator(ProjectOperator):
    """Accuracy of the window's predictions that got feedback labels."""

    ui_color = "#fff2cc"

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.monitoring.prediction_log import accuracy

        m = self.config.monitoring
        result = dict(accuracy(self.settings(), self.config.name, since=window_start(m.window_hours)))
        enough = result.get("accuracy") is not None and result.get("rows", 0) >= m.min_feedback_rows
        result.update(
            threshold=m.accuracy_threshold,
            enough_labels=enough,
            below_threshold=bool(enough and m.accuracy_threshold is not None and result["accuracy"] < m.accuracy_threshold),
        )
        self.log.info("accuracy: %s", result)
        return result


class ServingPerformanceOperator(ProjectOperator):
    """Serving latency of the window against the version's baseline, with likely causes."""

    ui_color = "#fff2cc"

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.monitoring.performance import check_performance
        from mlops.monitoring.prediction_log import read_predictions

        settings, m = self.settings(), self.config.monitoring
        window = read_predictions(
            settings, self.config.name, since=window_start(m.window_hours), columns=WINDOW_COLUMNS,
            max_rows=m.max_rows, seed=0,
        )
        result = check_performance(settings, self.config.name, window, m.latency_degradation).as_dict()
        self.log.info("performance: %s (p50 ratio %s) causes %s", result["status"], result["latency_ratio"], result["causes"])
        return result


class MonitoringReportOperator(ProjectOperator):
    """Joins the three checks into one report, logged to MLflow, and decides whether to retrain."""

    template_fields: Sequence[str] = ("drift", "accuracy", "performance")
    ui_color = "#fce5cd"

    def __init__(self, *, drift: Any, accuracy: Any, performance: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drift, self.accuracy, self.performance = drift, accuracy, performance

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.monitoring.report import build_report, log_report

        report = build_report(self.config, self.drift, self.accuracy, self.performance)
        report["mlflow_run_id"] = log_report(self.settings(), report, f"monitor-{context['run_id']}")
        self.log.info("monitoring report: retrain %s; %s", report["retrain"], report["summary"])
        return report


class _ActsOnReport(ProjectOperator):
    """Base of the steps after `report`: `report` is its XCom (usually `report.output`)."""

    template_fields: Sequence[str] = ("report",)
    ui_color = "#f4cccc"

    def __init__(self, *, report: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report = report


class RetrainRequestOperator(_ActsOnReport):
    """Publishes the retrain asset (with the reason) when the report asks for it; skipped otherwise."""

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        retrain = self.report["retrain"]
        if not retrain["requested"]:
            raise AirflowSkipException(f"no retraining needed: {retrain['reason']}")
        extra = {"reason": retrain["reason"], "monitor_run_id": context["run_id"], "model_version": self.report.get("model_version")}
        for asset in self.outlets:
            context["outlet_events"][asset].extra = extra
        self.log.info("retraining requested: %s", retrain["reason"])
        return extra


class WebhookAlertOperator(_ActsOnReport):
    """Posts the report's alert to every configured HTTP connection; keeps what could not be sent.

    The alert goes to the outbox first; then every pending alert (this one and earlier failures)
    is posted with Airflow's HttpHook. Any failure fails the task after the others were tried, so
    Airflow retries it; the outbox keeps the alert until a send succeeds.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.http.hooks.http import HttpHook

        from mlops.monitoring import alerts

        settings = self.settings()
        body = alerts.alert_message(self.report)
        connections = self.config.monitoring.alert_connections
        if body is not None and context["ti"].try_number == 1:  # retries re-send the outbox, not a copy
            for connection in connections:
                alerts.enqueue(settings, connection, body, self.config.name)
        sent, failed = [], []
        for path in alerts.pending(settings):
            record = alerts.read(path)
            if record["project"] != self.config.name:
                continue
            try:
                HttpHook(method="POST", http_conn_id=record["connection"]).run(
                    json=record["body"], headers={"Content-Type": "application/json"}, extra_options={"timeout": 10}
                )
            except Exception as exc:  # noqa: BLE001 - kept in the outbox, reported below
                alerts.mark_failed(path, f"{type(exc).__name__}: {exc}")
                failed.append(f"{record['connection']}: {type(exc).__name__}: {exc}")
                continue
            alerts.mark_sent(settings, path)
            sent.append(record["connection"])
        if failed:
            raise RuntimeError(f"{len(failed)} alert(s) not delivered (kept in the outbox, retried): {'; '.join(failed)}")
        self.log.info("alert: %s; delivered to %s", "none needed" if body is None else "sent", sent or "nobody")
        return {"alert": body is not None, "sent": sent}
