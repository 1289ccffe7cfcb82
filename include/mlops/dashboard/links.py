"""Where the dashboard points: MLflow, Evidently and the history reports (Airflow's own are in
`airflow_state`). MLflow and Evidently are the servers `mlops up` runs; the reports are served by the
plugin under `/toolkit/reports/...`, so their links are relative to `/toolkit/`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from mlops.settings import Settings

TOOLKIT_REPORT = "reports/toolkit"


def mlflow_base(settings: Settings) -> str:
    """The MLflow UI: the tracking server itself, else (a local store) the server `mlops up` runs on it."""
    if settings.tracking_uri.startswith(("http://", "https://")):
        return settings.tracking_uri.rstrip("/")
    return f"http://{settings.bind_host}:{settings.mlflow_port}"


def experiment_url(base: str, experiment_id: str | None) -> str | None:
    return f"{base}/#/experiments/{experiment_id}" if experiment_id else None


def mlflow_run_url(base: str, experiment_id: str | None, run_id: str | None) -> str | None:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if experiment_id and run_id else None


def model_url(base: str, name: str) -> str:
    return f"{base}/#/models/{quote(name, safe='')}"


def model_version_url(base: str, name: str, version: int | str) -> str:
    return f"{model_url(base, name)}/versions/{version}"


def evidently_base(settings: Settings) -> str:
    return f"http://{settings.bind_host}:{settings.evidently_port}"


def evidently_projects(settings: Settings) -> dict[str, str]:
    """Platform project -> Evidently project id, read from the workspace's `<id>/metadata.json` files
    (what `mlops.monitoring.evidently_workspace` writes; the smallest id wins for a name made twice)."""
    from mlops.monitoring.evidently_workspace import workspace_dir

    found: dict[str, str] = {}
    root = workspace_dir(settings)
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir(), key=lambda p: p.name, reverse=True):
        try:
            name = json.loads((folder / "metadata.json").read_text(encoding="utf-8")).get("name")
        except (OSError, ValueError, AttributeError):
            continue  # not a project folder (Evidently skips it too)
        if isinstance(name, str):
            found[name] = folder.name
    return found


def evidently_project_url(settings: Settings, project_id: str | None) -> str | None:
    return f"{evidently_base(settings)}/projects/{project_id}" if project_id else None


def report_status(settings: Settings, project: str | None) -> dict[str, object]:
    """A history report: its link (relative to /toolkit/) when the page exists, and when it was written."""
    from mlops.analytics.report_files import project_report_path, toolkit_report_path

    path = toolkit_report_path(settings) if project is None else project_report_path(settings, project)
    try:
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return {"url": None, "exists": False, "generated": None}
    return {"url": TOOLKIT_REPORT if project is None else f"reports/{project}", "exists": True, "generated": written}
