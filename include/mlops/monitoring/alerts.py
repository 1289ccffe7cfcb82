"""Alerts: what the monitor tells people, and an outbox so that no alert is lost.

`alert_message` turns a monitoring report into Slack-compatible JSON (`text` plus `blocks`;
any webhook that takes JSON gets the same body). Every alert is first written to the outbox
(`<state>/monitoring/alerts/outbox/<id>.json`, one file per alert and channel); a send that
succeeds moves it to `sent/`; one that fails stays in the outbox with its attempts and last
error, and is sent again by the next alert task (after the task's own retries). The sending
itself is Airflow's HTTP provider (`operators/alerts.py`): one Airflow connection per channel,
so webhook URLs and tokens stay out of YAML and git.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.settings import Settings


def alert_message(report: dict[str, Any]) -> dict[str, Any] | None:
    """Slack-compatible body for a monitoring report, or None when nothing needs attention."""
    project = report["project"]
    lines, actions = [], []
    drift = report.get("drift") or {}
    if drift.get("status") == "drift":
        columns = ", ".join(drift.get("drifted_columns", [])[:10])
        lines.append(f"*Data drift*: {100 * drift['drift_share']:.0f}% of columns drifted ({columns}).")
    elif drift.get("status") in ("schema_mismatch", "insufficient_data"):
        lines.append(f"*Drift check {drift['status'].replace('_', ' ')}*: {'; '.join(drift.get('messages', []))[:500]}")
    accuracy = report.get("accuracy") or {}
    if accuracy.get("below_threshold"):
        lines.append(
            f"*Accuracy* {accuracy['accuracy']:.3f} on {accuracy['rows']} labelled predictions is below {accuracy['threshold']}."
        )
    performance = report.get("performance") or {}
    if performance.get("status") == "degraded":
        causes = "; ".join(f"{c['cause']}: {c['evidence']}" for c in performance.get("causes", []))
        lines.append(f"*Serving slowed down*: p50 {performance['latency_ratio']:.1f}x the baseline. Likely: {causes}")
    if not lines:
        return None
    retrain = report.get("retrain") or {}
    if retrain.get("requested"):
        actions.append(f"Retraining was requested: {retrain['reason']}.")
    elif drift.get("status") == "drift" or accuracy.get("below_threshold"):
        actions.append(f"Suggested: retrain {project} (`airflow dags trigger {project}__lifecycle`).")
    if report.get("report_url"):
        actions.append(f"Report: {report['report_url']}")
    text = f"[{project}] model v{report.get('model_version', '?')} needs attention\n" + "\n".join(lines + actions)
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in [text.splitlines()[0], *lines, *actions]],
    }


def alerts_dir(settings: Settings) -> Path:
    return settings.home / "monitoring" / "alerts"


def enqueue(settings: Settings, connection: str, body: dict[str, Any], project: str) -> Path:
    """Persist one alert for one channel before any send is attempted."""
    outbox = alerts_dir(settings) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    record = {"id": uuid.uuid4().hex, "project": project, "connection": connection, "created": time.time(),
              "attempts": 0, "last_error": None, "body": body}
    path = outbox / f"{int(record['created'] * 1000)}-{record['id'][:8]}.json"
    _write_json(path, record)
    return path


def pending(settings: Settings) -> list[Path]:
    """Alerts not delivered yet, oldest first."""
    return sorted((alerts_dir(settings) / "outbox").glob("*.json"))


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def mark_sent(settings: Settings, path: Path) -> None:
    sent = alerts_dir(settings) / "sent"
    sent.mkdir(parents=True, exist_ok=True)
    os.replace(path, sent / path.name)


def mark_failed(path: Path, error: str) -> None:
    record = read(path)
    record["attempts"] += 1
    record["last_error"] = error[:1000]
    _write_json(path, record)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, staging = tempfile.mkstemp(prefix=".alert-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(staging, path)
