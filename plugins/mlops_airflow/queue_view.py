"""``mlops queue``: what is waiting, for what, and in which order.

Reads Airflow's metadata DB through its ORM (the scheduler's own tables, nothing
cached): every task instance that is scheduled, queued, deferred, up for
reschedule or up for retry, with its pool's slots and the reason it waits:

- scheduled: the DAG is paused / its run is not running, or the pool has too few
  free slots ("pool mlx_memory: needs 4 slots, 2 free"), else it is next for the
  scheduler.  Free slots are handed out like the scheduler does: in priority
  order, a task that does not fit is skipped and smaller ones behind it may run.
- queued: it holds its pool slots and waits for an executor slot.
- deferred: for the thermal gate, the current thermal state against the gate's
  threshold (read once); otherwise the trigger it waits on.
- up_for_reschedule / up_for_retry: when it will be tried again.

Order within a pool is the scheduler's: priority weight (desc), then the DAG run's
logical date (run_after when it has none), then when the task was scheduled/queued.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

WAITING_STATES = ("scheduled", "queued", "deferred", "up_for_reschedule", "up_for_retry")
THERMAL_TRIGGER = "ThermalTrigger"
THERMAL_TASK = "thermal_gate"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

COLUMNS = (
    ("#", "position"),
    ("PROJECT", "project"),
    ("TASK", "task_id"),
    ("STATE", "state"),
    ("POOL", "pool"),
    ("SLOTS", "slots"),
    ("POOL USED/TOTAL", "pool_usage"),
    ("PRIO", "priority_weight"),
    ("WAITING FOR", "waiting_for"),
    ("RUN", "run_id"),
)


def waiting_tasks() -> list[dict[str, Any]]:
    """Every waiting task instance, grouped by pool in the scheduler's order (see module doc)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return _waiting_tasks(session)


def _waiting_tasks(session: Any) -> list[dict[str, Any]]:
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import and_, select

    rows = session.execute(
        select(TI, DagRun, DagModel.is_paused)
        .join(DagRun, and_(DagRun.dag_id == TI.dag_id, DagRun.run_id == TI.run_id))
        .outerjoin(DagModel, DagModel.dag_id == TI.dag_id)
        .where(TI.state.in_(WAITING_STATES))
    ).all()
    pools = Pool.slots_stats(session=session)
    thermal = _ThermalReader()

    entries = []
    for ti, dag_run, paused in rows:
        stats = pools.get(ti.pool)
        total, used, free = _pool_numbers(stats)
        since = ti.queued_dttm if ti.state == "queued" else ti.scheduled_dttm
        entries.append(
            {
                "dag_id": ti.dag_id,
                "project": ti.dag_id.split("__", 1)[0],
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "run_id": ti.run_id,
                "try_number": ti.try_number,
                "state": str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                "pool": ti.pool,
                "pool_slots": ti.pool_slots,
                "pool_total": total,
                "pool_used": used,
                "pool_free": free,
                "priority_weight": ti.priority_weight or 0,
                "queue": ti.queue,
                "since": _iso(since),
                "waiting_for": "",
                "position": 0,
                "of": 0,
                "_ti": ti,
                "_run": dag_run,
                "_paused": bool(paused),
                "_sort": (
                    -(ti.priority_weight or 0),
                    dag_run.logical_date or dag_run.run_after or _EPOCH,
                    since or _EPOCH,
                    ti.map_index,
                ),
            }
        )

    by_pool: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(entries, key=lambda e: (e["pool"], e["_sort"])):
        by_pool.setdefault(entry["pool"], []).append(entry)
    result = []
    for pool_name, group in by_pool.items():
        open_slots = group[0]["pool_free"]  # what the scheduler may still hand out, in this order
        for position, entry in enumerate(group, 1):
            entry["position"], entry["of"] = position, len(group)
            if entry["state"] == "scheduled":
                entry["waiting_for"], open_slots = _scheduled_reason(entry, pool_name, open_slots)
            else:
                entry["waiting_for"] = _other_reason(entry, session, thermal)
            for key in ("_ti", "_run", "_paused", "_sort"):
                entry.pop(key)
            result.append(entry)
    return result


def _pool_numbers(stats: Any) -> tuple[int | None, int | None, int | None]:
    """(total, used, free) of a pool from ``Pool.slots_stats``; None for a pool that does not exist."""
    if stats is None:
        return None, None, None
    total, open_slots = stats["total"], stats["open"]
    if total == float("inf"):  # slots = -1: unlimited
        return -1, int(stats["running"] + stats["queued"]), -1
    return int(total), int(total - open_slots), int(open_slots)


def _scheduled_reason(entry: dict[str, Any], pool: str, open_slots: int | None) -> tuple[str, int | None]:
    dag_run = entry["_run"]
    if entry["_paused"]:
        return f"DAG {entry['dag_id']} is paused: the scheduler queues none of its tasks", open_slots
    run_state = getattr(dag_run.state, "value", dag_run.state)
    if run_state != "running":
        return f"its DAG run is {run_state}, not running", open_slots
    needed, total = entry["pool_slots"], entry["pool_total"]
    if total is None:
        return f"pool {pool}: does not exist (create it, or the task never runs)", open_slots
    if total == -1:
        return "next for the scheduler (pool unlimited)", open_slots
    if needed > total:
        return f"pool {pool}: needs {needed} slots but has only {total} in total: it can never run", open_slots
    assert open_slots is not None
    if needed > open_slots:
        held = entry["pool_free"] - open_slots
        ahead = f" ({held} more free slots go to tasks ahead of it)" if held > 0 else ""
        return f"pool {pool}: needs {needed} slots, {max(open_slots, 0)} free{ahead}", open_slots
    return f"next for the scheduler: pool {pool} has {open_slots} free slots, it needs {needed}", open_slots - needed


def _other_reason(entry: dict[str, Any], session: Any, thermal: _ThermalReader) -> str:
    ti, state = entry["_ti"], entry["state"]
    if state == "queued":
        queue = f" (queue {ti.queue})" if ti.queue and ti.queue != "default" else ""
        return f"queued for an executor slot{queue}"
    if state == "deferred":
        return _deferred_reason(ti, session, thermal)
    if state == "up_for_reschedule":
        when = _next_reschedule(ti, session)
        prefix = f"{thermal.describe(None, ti)}; " if ti.task_id == THERMAL_TASK else ""
        return prefix + (f"reschedule at {_iso(when)}" if when else "rescheduled sensor, waiting for its next poke")
    if state == "up_for_retry":
        when = _next_retry(ti, entry["_run"], session)
        return f"retry at {_iso(when)} (try {ti.try_number + 1} of {ti.max_tries + 1})" if when else "retry after its retry delay"
    return state


def _deferred_reason(ti: Any, session: Any, thermal: _ThermalReader) -> str:
    from airflow.models.trigger import Trigger

    trigger = session.get(Trigger, ti.trigger_id) if ti.trigger_id is not None else None
    kwargs: dict[str, Any] = {}
    if trigger is not None:
        try:
            kwargs = dict(trigger.kwargs)
        except Exception:  # noqa: BLE001 - undecryptable kwargs (e.g. another fernet key)
            kwargs = {}
    classpath = trigger.classpath if trigger is not None else ""
    if classpath.endswith(THERMAL_TRIGGER) or ti.task_id == THERMAL_TASK:
        reason = thermal.describe(kwargs, ti)
    else:
        reason = f"trigger {classpath.rsplit('.', 1)[-1] or 'unknown'}"
    if trigger is None:
        reason += " (no trigger row)"
    elif trigger.triggerer_id is None:
        reason += " (no triggerer has picked it up yet)"
    if ti.trigger_timeout is not None:
        reason += f"; times out at {_iso(ti.trigger_timeout)}"
    return reason


class _ThermalReader:
    """Reads the thermal state at most once per hardware root (the gate's trigger may name a fake one)."""

    def __init__(self) -> None:
        self._readings: dict[str | None, Any] = {}

    def read(self, root: str | None) -> Any:
        if root not in self._readings:
            try:
                from mlops.hardware.thermal import read_thermal
            except ImportError:
                from mlops.hardware import probe

                self._readings[root] = probe().thermal
            else:
                self._readings[root] = read_thermal(root)
        return self._readings[root]

    def describe(self, kwargs: dict[str, Any] | None, ti: Any) -> str:
        kwargs = kwargs or {}
        threshold = kwargs.get("threshold") or _project_threshold(ti.dag_id)
        state = self.read(kwargs.get("hardware_root")).state
        if not threshold:
            return f"thermal: state {state}"
        try:
            from mlops.hardware.thermal import at_least
        except ImportError:  # pragma: no cover - older tree
            return f"thermal: state {state}, threshold {threshold}"
        if state == "unknown":
            return f"thermal: state unknown (threshold {threshold}, on_unknown={kwargs.get('on_unknown', '?')})"
        if at_least(state, threshold):
            return f"thermal: state {state} ≥ threshold {threshold}"
        return f"thermal: state {state} < threshold {threshold} (opens at the next poll)"


def _project_threshold(dag_id: str) -> str | None:
    """The project's ``scheduling.thermal_threshold`` from its YAML (when the trigger does not say)."""
    try:
        from mlops.config import load_projects, project_files
        from mlops.settings import get_settings

        configs, _ = load_projects(project_files(get_settings().projects_dir))
        for config in configs.values():
            if config.dag_id == dag_id:
                return config.scheduling.thermal_threshold
    except Exception:  # noqa: BLE001
        return None
    return None


def _next_reschedule(ti: Any, session: Any) -> datetime | None:
    from airflow.models.taskreschedule import TaskReschedule
    from sqlalchemy import select

    return session.scalar(
        select(TaskReschedule.reschedule_date)
        .where(TaskReschedule.ti_id == ti.id)
        .order_by(TaskReschedule.id.desc())
        .limit(1)
    )


def _next_retry(ti: Any, dag_run: Any, session: Any) -> datetime | None:
    """Airflow's own ``next_retry_datetime`` with the task's retry settings from the serialized DAG."""
    try:
        from airflow.models.dagbag import DBDagBag

        dag = DBDagBag().get_dag_for_run(dag_run=dag_run, session=session)
        if dag is None:
            return None
        ti.task = dag.get_task(ti.task_id)
        return ti.next_retry_datetime()
    except Exception:  # noqa: BLE001 - a view must not fail on one odd row
        return None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- CLI


def format_table(rows: list[dict[str, Any]]) -> str:
    """Aligned text table, one line per waiting task; "nothing is waiting" when empty."""
    if not rows:
        return "nothing is waiting"
    cells = [[title for title, _ in COLUMNS]]
    for row in rows:
        view = {
            **row,
            "position": f"{row['position']}/{row['of']}",
            "slots": str(row["pool_slots"]),
            "pool_usage": _usage(row),
        }
        cells.append([str(view[key]) for _, key in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines)


def _usage(row: dict[str, Any]) -> str:
    if row["pool_total"] is None:
        return "missing"
    if row["pool_total"] == -1:
        return f"{row['pool_used']}/unlimited"
    return f"{row['pool_used']}/{row['pool_total']}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops queue",
        description="Show every waiting task (scheduled, queued, deferred, up for reschedule/retry): "
        "its pool's slots, what it waits for and its place in the pool's queue.",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--demand", action="store_true",
                        help="instead: Celery workers each queue needs for all projects' queued and running tasks "
                             "(the Helm chart's KEDA formula, mlops_airflow.worker_demand)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="with --demand: tasks one worker runs at once (default: `mlops worker`'s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``mlops queue``; returns the exit status (2 for usage errors, 1 if the DB cannot be read)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
    from mlops_airflow.worker_demand import format_demand, worker_demand

    try:
        rows = worker_demand(args.concurrency) if args.demand else waiting_tasks()
    except Exception as exc:  # noqa: BLE001 - e.g. DB not migrated: say so, no traceback
        print(f"{parser.prog}: error: cannot read Airflow's metadata DB: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"queues": rows} if args.demand else rows, indent=2))
    else:
        print(format_demand(rows) if args.demand else format_table(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
