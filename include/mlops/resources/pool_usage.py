"""How much of each pool each project used: slot-seconds (task duration x pool slots) from Airflow's DB.

Airflow 3 gives task code no access to its metadata DB, so the daily report task cannot read it.
The scheduler can: its pool refresher writes a snapshot (`<MLOPS_HOME>/reports/pool-usage.json`)
every `SNAPSHOT_SECONDS`, and a reader without the DB uses that, saying how old it is. `mlops
report` from a shell reads the DB directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings

#: How often the scheduler rewrites the snapshot, and the window it covers.
SNAPSHOT_SECONDS = 600.0
WINDOW = timedelta(days=30)


@dataclass
class PoolUsage:
    """Slot-seconds of finished task instances since `since`, per (pool, project)."""

    since: datetime
    slot_seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    tasks: dict[tuple[str, str], int] = field(default_factory=dict)
    note: str | None = None  # why it is empty, or where it came from


def snapshot_path(settings: Settings) -> Path:
    return settings.home / "reports" / "pool-usage.json"


def read_pool_usage(since: datetime) -> PoolUsage:
    """From Airflow's metadata DB of this process's configuration (read-only, its own connection).

    Where Airflow forbids it (task code under Airflow 3's supervisor) or there is no DB, the usage
    is empty and `note` says why."""
    usage = PoolUsage(since)
    try:
        from airflow import settings as airflow_settings

        engine = airflow_settings.engine
    except (ImportError, AttributeError, RuntimeError) as exc:
        usage.note = f"Airflow's metadata DB is not readable here ({exc})"
        return usage
    if engine is None:
        usage.note = "Airflow is not configured in this process"
        return usage
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and not Path(database).is_file():
        usage.note = f"no Airflow metadata DB at {database} (Airflow never ran here)"
        return usage
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from airflow.models.taskinstance import TaskInstance as TI
    from mlops.resources.fair_share import project_of

    query = select(TI.dag_id, TI.pool, TI.pool_slots, TI.duration).where(
        TI.start_date >= since, TI.end_date.is_not(None)
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        usage.note = f"Airflow's metadata DB could not be read: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        return usage
    for dag_id, pool, slots, duration in rows:
        key = (pool or "default_pool", project_of(dag_id))
        usage.slot_seconds[key] = usage.slot_seconds.get(key, 0.0) + float(duration or 0.0) * (slots or 1)
        usage.tasks[key] = usage.tasks.get(key, 0) + 1
    if not rows:
        usage.note = f"no task finished since {since:%Y-%m-%d}"
    return usage


def write_snapshot(settings: Settings, now: datetime | None = None) -> PoolUsage:
    """Read the DB (the scheduler can) and keep the result for readers that cannot; atomically replaced."""
    now = now or datetime.now(UTC)
    usage = read_pool_usage(now - WINDOW)
    path = snapshot_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "written": now.isoformat(),
        "since": usage.since.isoformat(),
        "note": usage.note,
        "rows": [{"pool": pool, "project": project, "slot_seconds": seconds, "tasks": usage.tasks[(pool, project)]}
                 for (pool, project), seconds in sorted(usage.slot_seconds.items())],
    }
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(document, indent=1))
    os.replace(scratch, path)
    return usage


def usage_for_report(settings: Settings, since: datetime) -> PoolUsage:
    """The DB when this process may read it; else the scheduler's latest snapshot, saying when it was taken."""
    usage = read_pool_usage(since)
    if usage.slot_seconds or usage.note is None or usage.note.startswith("no task finished"):
        return usage
    path = snapshot_path(settings)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        usage.note = f"{usage.note}; no snapshot from the scheduler at {path} yet (it writes one every " \
                     f"{SNAPSHOT_SECONDS / 60:.0f} min while it runs)"
        return usage
    snapshot = PoolUsage(datetime.fromisoformat(document["since"]))
    for row in document["rows"]:
        key = (row["pool"], row["project"])
        snapshot.slot_seconds[key] = float(row["slot_seconds"])
        snapshot.tasks[key] = int(row["tasks"])
    written = datetime.fromisoformat(document["written"])
    snapshot.note = f"as the scheduler read it at {written:%Y-%m-%d %H:%M} UTC" + (
        f" ({document['note']})" if document.get("note") else "")
    return snapshot
