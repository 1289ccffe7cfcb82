"""Airflow's metadata DB read into the dashboard library's ``AirflowState``, in the api-server's process.

A handful of bounded queries per read, whatever the number of DAGs: the newest runs of every DAG in one
window query (``row_number() over (partition by dag_id)``, SQLite and PostgreSQL both have it), the paused
flags in one, the pools through ``Pool.slots_stats`` (what the scheduler itself uses), the import errors in
one, and the waiting tasks through ``mlops_airflow.queue_view`` (the same rows ``mlops queue`` prints).
A part that cannot be read is left empty and named in ``note``; the dashboard still answers.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from mlops.dashboard.airflow_state import AirflowState

log = logging.getLogger(__name__)

RUNS_PER_DAG = 50  # the project page's history; the overview uses the first
IMPORT_ERROR_CHARS = 4000  # a stack trace is long; the page shows the located error at its end


def read_airflow_state(runs_per_dag: int = RUNS_PER_DAG) -> AirflowState:
    """Everything the dashboard shows from Airflow, read now (the app caches it for a few seconds)."""
    from airflow.utils.session import create_session

    from mlops.dashboard.airflow_state import AirflowState

    state = AirflowState()
    notes: list[str] = []
    with create_session() as session:
        for part, read in (
            ("DAG runs", lambda: _dag_runs(session, runs_per_dag)),
            ("paused flags", lambda: _paused(session)),
            ("pools", lambda: _pools(session)),
            ("import errors", lambda: _import_errors(session)),
        ):
            _read_part(state, part, read, notes, session)
    _read_part(state, "waiting tasks", _waiting, notes, None)
    state.note = "; ".join(notes) or None
    return state


_FIELDS = {"DAG runs": "dag_runs", "paused flags": "paused", "pools": "pools",
           "import errors": "import_errors", "waiting tasks": "waiting"}


def _read_part(state: AirflowState, part: str, read: Callable[[], Any], notes: list[str], session: Any) -> None:
    try:
        setattr(state, _FIELDS[part], read())
    except Exception as error:  # one unreadable table must not blank the whole dashboard
        log.warning("toolkit dashboard: could not read Airflow's %s", part, exc_info=True)
        notes.append(f"Airflow's {part} could not be read: {type(error).__name__}: {error}")
        if session is not None:
            session.rollback()


def _dag_runs(session: Any, per_dag: int) -> dict[str, list]:
    """The newest ``per_dag`` runs of every DAG, newest first, in one query."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import func, select

    from mlops.dashboard.airflow_state import DagRunInfo

    table = DagRun.__table__
    rank = func.row_number().over(
        partition_by=table.c.dag_id, order_by=(table.c.run_after.desc(), table.c.id.desc())
    ).label("rank")
    newest = select(
        table.c.dag_id, table.c.run_id, table.c.state, table.c.run_type,
        table.c.start_date, table.c.end_date, rank,
    ).subquery()
    rows = session.execute(
        select(newest).where(newest.c.rank <= per_dag).order_by(newest.c.dag_id, newest.c.rank)
    ).all()
    runs: dict[str, list] = {}
    for row in rows:
        runs.setdefault(row.dag_id, []).append(
            DagRunInfo(
                dag_id=row.dag_id, run_id=row.run_id, state=_text(row.state), run_type=_text(row.run_type),
                start=_utc(row.start_date), end=_utc(row.end_date),
            )
        )
    return runs


def _paused(session: Any) -> dict[str, bool]:
    """Every DAG Airflow knows (stale ones too: their runs still show), with its paused flag."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    return {dag_id: bool(paused) for dag_id, paused in session.execute(select(DagModel.dag_id, DagModel.is_paused))}


def _pools(session: Any) -> list[dict[str, Any]]:
    """Each pool's slots and use as the scheduler counts them; unlimited pools (-1 slots) have open None."""
    from airflow.models.pool import Pool

    pools = []
    for name, stats in sorted(Pool.slots_stats(session=session).items()):
        unlimited = stats["total"] == float("inf")
        pools.append({
            "name": name,
            "slots": -1 if unlimited else int(stats["total"]),
            "running": int(stats["running"]),
            "queued": int(stats["queued"]),
            "open": None if unlimited else int(stats["open"]),
        })
    return pools


def _import_errors(session: Any) -> list[dict[str, Any]]:
    """DAG files Airflow could not import (a broken project YAML shows here with its located error)."""
    from airflow.models.errors import ParseImportError
    from sqlalchemy import select

    rows = session.execute(
        select(ParseImportError.filename, ParseImportError.bundle_name, ParseImportError.stacktrace,
               ParseImportError.timestamp).order_by(ParseImportError.filename)
    ).all()
    return [
        {
            "file": row.filename or "",
            "bundle": row.bundle_name,
            "message": (row.stacktrace or "")[-IMPORT_ERROR_CHARS:],
            "timestamp": row.timestamp.isoformat() if row.timestamp else None,
        }
        for row in rows
    ]


def _waiting() -> list[dict[str, Any]]:
    """``mlops queue``'s rows, as that command prints them."""
    from mlops_airflow.queue_view import waiting_tasks

    return waiting_tasks()


def _text(value: Any) -> str:
    """Airflow hands states and run types back as str enums on some paths, plain text on others."""
    return str(getattr(value, "value", value)) if value is not None else ""


def _utc(moment: datetime | None) -> datetime | None:
    """UtcDateTime columns come back aware; a raw SQLite read may not: treat naive as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    from datetime import timezone

    return moment.replace(tzinfo=timezone.utc)
