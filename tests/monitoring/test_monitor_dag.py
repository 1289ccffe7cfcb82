"""The monitor DAG for real in `dag.test()`: captured predictions, drift, feedback accuracy, retrain, alerts.

A project is trained and registered; the gateway (with capture) serves it requests whose inputs
are shifted away from the training data, and feedback labels that are mostly wrong. The
monitor run then finds drift (naming the columns) and low accuracy, logs its report to MLflow,
publishes the retrain asset with the reason, and posts a Slack-style alert to a webhook (a real
HTTP server) through an Airflow HTTP connection. With the webhook down the alert stays in the
outbox and the task fails; the next run delivers it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
from mlops_testing import free_port, sqlite_rows

REPO = Path(__file__).resolve().parents[2]
PROJECT = "monitored_mlp"
YAML = f"""\
name: {PROJECT}
data:
  num_samples: 512
model:
  family: mlp_classifier
training:
  epochs: 1
retries: 0
monitoring:
  enabled: true
  min_rows: 50
  min_feedback_rows: 20
  accuracy_threshold: 0.8
  columns:
    x_0: {{method: wasserstein, threshold: 0.1}}
  alert_connections: [ops_webhook]
  alert_retries: 1
"""


class Webhook:
    """A loopback HTTP server that records the JSON bodies posted to it."""

    def __init__(self, port: int):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_shifted_traffic(settings, requests: int = 120) -> None:
    """Predictions through the real gateway (capture on): inputs shifted by +3, wrong labels fed back."""
    from fastapi.testclient import TestClient

    from mlops.serving.gateway import create_app

    rng = np.random.default_rng(7)
    with TestClient(create_app(settings, {"k"})) as client:
        for _ in range(requests):
            x = (rng.standard_normal((1, 32)) + 3.0).astype(np.float32)
            answer = client.post(
                f"/v1/projects/{PROJECT}/models/latest/predict", json={"inputs": {"x": x.tolist()}}, headers={"X-API-Key": "k"}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            wrong = (body["outputs"]["label"][0] + 1) % 4
            feedback = client.post(
                f"/v1/projects/{PROJECT}/feedback", json={"request_id": body["request_id"], "label": wrong},
                headers={"X-API-Key": "k"},
            )
            assert feedback.status_code in (200, 202), feedback.text
    # leaving the client shuts the app down: the capture writer flushes


def retrain_events(db: Path) -> list[dict]:
    rows = sqlite_rows(
        db, "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri = ? order by e.id",
        f"mlops://retrain/{PROJECT}",
    )
    return [json.loads(extra) for (extra,) in rows]


def test_monitor_finds_drift_and_low_accuracy_requests_retraining_and_alerts(airflow_db, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from mlflow import MlflowClient
    from serving_support import train_and_register

    from mlops.monitoring import alerts
    from mlops.settings import get_settings

    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / f"{PROJECT}.yaml").write_text(YAML)
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port}))
    settings = get_settings()
    train_and_register(settings, PROJECT, "mlp_classifier", hyperparameters=None)
    serve_shifted_traffic(settings)

    dag = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag(f"{PROJECT}__monitor")
    lifecycle = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag(f"{PROJECT}__lifecycle")
    assert f"mlops://retrain/{PROJECT}" in str(lifecycle.timetable)  # the lifecycle runs on the retrain asset

    # 1) webhook down: everything is decided, the alert stays in the outbox and its task fails.
    run = dag.test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    drift = tis["check_drift"].xcom_pull(task_ids="check_drift")
    assert drift["status"] == "drift" and drift["drift_share"] > 0.3, drift
    assert "in.x_0" in drift["drifted_columns"]
    accuracy = tis["check_accuracy"].xcom_pull(task_ids="check_accuracy")
    assert accuracy["below_threshold"] and accuracy["rows"] >= 100 and accuracy["accuracy"] < 0.05, accuracy
    report = tis["report"].xcom_pull(task_ids="report")
    assert report["retrain"]["requested"] and "data drift" in report["retrain"]["reason"] and "accuracy" in report["retrain"]["reason"]
    assert tis["request_retrain"].state == "success"
    events = retrain_events(airflow_db)
    assert len(events) == 1 and events[0]["reason"] == report["retrain"]["reason"]
    assert tis["alert"].state in ("failed", "up_for_retry")
    (pending,) = alerts.pending(settings)
    kept = alerts.read(pending)
    # tried once, retried once by Airflow, never duplicated
    assert kept["connection"] == "ops_webhook" and kept["attempts"] == 2 and "Connection" in kept["last_error"]

    # The report is in MLflow with the drift HTML and the monitoring report.
    client = MlflowClient(settings.tracking_uri)
    run_info = client.get_run(report["mlflow_run_id"])
    assert run_info.data.tags["mlops.kind"] == "monitoring" and run_info.data.metrics["drift_share"] == drift["drift_share"]
    assert Path(drift["report"]["html"]).is_file()

    # 2) webhook up: the next run delivers the kept alert and its own.
    webhook = Webhook(port)
    try:
        run = dag.test()
    finally:
        webhook.close()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert tis["alert"].state == "success"
    assert alerts.pending(settings) == [] and len(webhook.received) == 2
    text = webhook.received[0]["text"]
    assert f"[{PROJECT}]" in text and "Data drift" in text and "Accuracy" in text and "Retraining was requested" in text
    assert webhook.received[0]["blocks"][0]["type"] == "section"
