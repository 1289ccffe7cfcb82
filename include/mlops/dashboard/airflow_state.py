"""What the dashboard needs from Airflow, as plain data (no Airflow import here).

The plugin fills it from Airflow's metadata DB; tests fill it by hand. The library never reads
Airflow itself, so it runs the same in the api-server, a test or a benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

LIFECYCLE, DEPLOY, MONITOR = "lifecycle", "deploy", "monitor"


@dataclass
class DagRunInfo:
    dag_id: str
    run_id: str
    state: str  # queued | running | success | failed ...
    run_type: str  # manual | scheduled | asset_triggered | backfill
    start: datetime | None
    end: datetime | None


@dataclass
class AirflowState:
    dag_runs: dict[str, list[DagRunInfo]] = field(default_factory=dict)  # dag_id -> newest first
    paused: dict[str, bool] = field(default_factory=dict)  # dag_id -> is_paused
    waiting: list[dict] = field(default_factory=list)  # mlops_airflow.queue_view.waiting_tasks() rows
    pools: list[dict] = field(default_factory=list)  # {"name","slots","running","queued","open"}
    import_errors: list[dict] = field(default_factory=list)  # {"file","message","timestamp"}
    note: str | None = None  # why part of it could not be read


def dag_id(project: str, kind: str) -> str:
    """`<project>__lifecycle`, `__deploy`, `__monitor`: the DAG ids the factory gives a project."""
    return f"{project}__{kind}"


def dag_url(dag: str) -> str:
    return f"/dags/{quote(dag, safe='')}"


def run_url(dag: str, run_id: str) -> str:
    return f"{dag_url(dag)}/runs/{quote(run_id, safe='')}"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def run_dict(run: DagRunInfo) -> dict[str, Any]:
    """A DAG run as the JSON shows it: its fields (times as ISO text) and its Airflow UI link."""
    return {"dag_id": run.dag_id, "run_id": run.run_id, "state": run.state, "run_type": run.run_type,
            "start": iso(run.start), "end": iso(run.end), "url": run_url(run.dag_id, run.run_id)}


def project_runs(airflow: AirflowState, project: str, kind: str) -> list[dict[str, Any]]:
    """The project's runs of one DAG kind, newest first, as dicts."""
    return [run_dict(r) for r in airflow.dag_runs.get(dag_id(project, kind), [])]


def project_queue(airflow: AirflowState, project: str) -> dict[str, Any]:
    """The project's waiting tasks (any of its DAGs): how many and which, with Airflow's reason."""
    prefix = f"{project}__"
    tasks = [{"dag_id": row.get("dag_id"), "task_id": row.get("task_id"), "reason": row.get("waiting_for")}
             for row in airflow.waiting if str(row.get("dag_id", "")).startswith(prefix)]
    return {"waiting": len(tasks), "tasks": tasks}
