"""One project's entry, from what the page's reads found: the YAML, MLflow, the gateway, Evidently, Airflow.

Pure assembly (no reads here): `overview` does the reading and hands each project its share. A part
whose source was not read stays None/empty and the entry's `notes` say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.analytics import names
from mlops.dashboard import links, tracking
from mlops.dashboard.airflow_state import LIFECYCLE, dag_id, dag_url, project_queue, project_runs
from mlops.dashboard.projects import project_summary, yaml_section

if TYPE_CHECKING:
    from mlflow.entities import Experiment, Run

    from mlops.dashboard.airflow_state import AirflowState
    from mlops.dashboard.projects import ProjectFile
    from mlops.dashboard.serving import GatewayView
    from mlops.dashboard.tracking import ProjectTracking
    from mlops.settings import Settings

DRIFT_STATUS = "mlops.drift_status"  # tag of a monitoring run (mlops.monitoring.report.log_report)
RETRAIN_REQUESTED = "mlops.retrain_requested"


@dataclass
class ProjectSources:
    """What every project's entry of one page shares."""

    settings: Settings
    airflow: AirflowState
    mlflow_base: str
    gateway: GatewayView | None
    evidently: dict[str, str]
    here: str | None  # this machine's machine.id
    mlflow_ok: bool


def project_entry(
    sources: ProjectSources, name: str, file: ProjectFile | None, experiment: Experiment | None,
    state: ProjectTracking | None, notes: list[str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the project's overview entry, all its versions as VERSION dicts, oldest first)."""
    from mlops.dashboard.serving import project_serving

    settings, airflow, base = sources.settings, sources.airflow, sources.mlflow_base
    experiment_id = experiment.experiment_id if experiment else None
    if file is None:
        notes.append(f"no project file in {settings.projects_dir}: known from its MLflow experiment only")
    elif not file.valid:
        notes.append(f"{file.path.name} does not load ({len(file.errors)} error(s)): its DAGs are not built")
    if sources.mlflow_ok and experiment is None:
        notes.append("no MLflow experiment yet (the project never trained)")
    configured = file.config.evaluation.metric if file is not None and file.config is not None else None
    versions = _versions(base, name, state)
    metric, goal = tracking.quality_metric(state, configured) if state else (configured, None)
    latest = versions[-1] if versions else None
    serving = project_serving(settings, name, sources.gateway) if sources.gateway is not None else None
    lifecycle = project_runs(airflow, name, LIFECYCLE)
    evidently_id = sources.evidently.get(name)
    entry = {
        "name": name,
        **project_summary(file, dict(experiment.tags) if experiment else {}),
        "valid": bool(file is not None and file.valid),
        "errors": list(file.errors) if file is not None else [],
        "lifecycle": lifecycle[0] if lifecycle else None,
        "paused": airflow.paused.get(dag_id(name, LIFECYCLE)),
        "versions": {"count": len(versions), "metric": metric, "goal": goal, "latest": latest,
                     "best": tracking.best_of(versions, goal) if goal else None},
        "best_technique": tracking.best_technique(
            experiment, sources.here, state.runs.get(state.versions[-1].run_id) if state and state.versions else None
        ),
        "serving": serving,
        "monitoring": _monitoring(base, experiment_id, state.monitoring[-1]) if state and state.monitoring else None,
        "queue": project_queue(airflow, name),
        "links": {
            "airflow": dag_url(dag_id(name, LIFECYCLE)),
            "mlflow_experiment": links.experiment_url(base, experiment_id),
            "mlflow_model": links.model_url(base, name) if versions else None,
            "evidently": links.evidently_project_url(settings, evidently_id),
            "report": links.report_status(settings, name)["url"],
            "page": f"projects/{name}",
        },
        "notes": notes,
    }
    return entry, versions


def _versions(base: str, name: str, state: ProjectTracking | None) -> list[dict[str, Any]]:
    if state is None:
        return []
    return [tracking.version_dict(v, state.runs.get(v.run_id or ""), links.model_version_url(base, name, v.version))
            for v in state.versions]


def _monitoring(base: str, experiment_id: str | None, run: Run) -> dict[str, Any]:
    """The latest monitoring run: when, which version it watched, drift and accuracy."""
    from mlops.analytics.report_data import monitoring_point

    point = monitoring_point(run)
    status = run.data.tags.get(DRIFT_STATUS)
    retrain = run.data.tags.get(RETRAIN_REQUESTED)
    return {
        "last_run": tracking.moment(run.info.start_time),
        "version": point.version,
        "drift_share": point.drift_share,
        "drift_detected": {"drift": True, "no_drift": False}.get(status or ""),
        "drift_status": status,
        "accuracy": point.accuracy,
        "retrain_requested": {"true": True, "false": False}.get(retrain or ""),
        "p50_ms": point.p50_ms, "p99_ms": point.p99_ms, "requests": point.requests,
        "url": links.mlflow_run_url(base, experiment_id, run.info.run_id),
    }


def run_rows(sources: ProjectSources, experiment: Experiment | None, state: ProjectTracking | None) -> list[dict]:
    """The experiment's training runs (every status; monitoring and other kinds left out), oldest first."""
    from mlops.analytics.report_data import training_run

    if state is None or not state.history:
        return []
    experiment_id = experiment.experiment_id if experiment else None
    rows = []
    for run in state.history:
        if names.KIND in run.data.tags:
            continue
        figures = training_run(run)
        rows.append({"run_id": figures.run_id, "start": figures.start.isoformat(), "status": run.info.status,
                     "technique": figures.technique, "quality": figures.quality, "seconds": figures.seconds,
                     "machine": figures.machine,
                     "url": links.mlflow_run_url(sources.mlflow_base, experiment_id, figures.run_id)})
    return rows


def monitoring_history(sources: ProjectSources, experiment: Experiment | None, state: ProjectTracking | None) -> list[dict]:
    """Every monitoring run, oldest first: drift, accuracy and the serving window it saw."""
    if state is None:
        return []
    experiment_id = experiment.experiment_id if experiment else None
    rows = []
    for run in state.monitoring:
        row = _monitoring(sources.mlflow_base, experiment_id, run)
        row["start"] = row.pop("last_run")
        rows.append(row)
    return rows


def yaml_of(settings: Settings, name: str, file: ProjectFile | None) -> dict[str, Any]:
    """The project's YAML section; a project known only from MLflow names where its file would go."""
    from mlops.config.loader import project_file

    return yaml_section(file) or {"path": str(project_file(settings.projects_dir, name)), "text": "", "valid": False,
                                  "errors": []}
