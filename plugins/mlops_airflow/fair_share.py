"""`FairShareWeight`: a priority weight strategy that shares the MLX pools between projects.

Use it with ``weight_rule="mlops_airflow.fair_share.FairShareWeight"`` (registered by the
``mlops`` plugin in ``plugins/mlops_plugin.py``; Airflow serializes a strategy by its import
path, so it takes no constructor arguments -- tune it by subclassing the class attributes).
Until issue 16 it lived in ``operators/``: :data:`FormerPathWeight` keeps the DAG versions a
metadata DB holds from then readable.

When Airflow 3.3 calls it (checked in the 3.3.2 source): ``get_weight`` runs when a task
instance is *created* -- ``DagRun.verify_integrity`` at DAG-run creation (in the scheduler
for scheduled runs, in the api-server/CLI process for triggered ones), mapped-task
expansion -- and when a task instance is *cleared*.  The result is stored in
``task_instance.priority_weight``; the scheduler's loop only sorts by that column and
never calls the strategy again (retries keep the weight).  So fair share acts per DAG
run: each new run of a project is weighted by the project's usage at that moment.

Weight: :func:`mlops.resources.fair_share.fair_weight` of
  * the project's priority = the task's ``priority_weight`` (the factory sets the YAML's);
  * usage = pool slot-seconds (duration x pool_slots, running tasks up to now) of task
    instances in :attr:`FairShareWeight.pools` inside the last ``window_seconds``, per
    project (DAG id before ``"__"``) -- the latest try of each task instance;
  * active projects = projects with usage in the window or with unfinished task instances
    in those pools in queued/running DAG runs, plus the task's own project.
If the DB cannot be read the weight is ``priority * SCALE`` (fair share's neutral value).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from airflow.task.priority_strategy import PriorityWeightStrategy

from mlops.resources.fair_share import SCALE, fair_weight, project_of, usage_by_project
from mlops.resources.names import COMPUTE_POOL, MEMORY_POOL

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance

log = logging.getLogger(__name__)

_cache: dict[tuple, tuple[float, dict[str, float], set[str]]] = {}
_lock = threading.Lock()


def pool_usage(pools: tuple[str, ...], window_seconds: float) -> tuple[dict[str, float], set[str]]:
    """(slot-seconds per project in the window, projects with waiting or running work) from the DB.

    Reads on a connection of its own, never the caller's session: a strategy runs inside the
    scheduler's (or api-server's) DAG-run transaction and must neither flush nor end it.
    """
    from sqlalchemy import and_, or_, select

    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import DagRunState, TaskInstanceState

    now = datetime.now(timezone.utc)
    since = now - timedelta(seconds=window_seconds)
    used_query = select(TI.dag_id, TI.start_date, TI.end_date, TI.pool_slots).where(
        TI.pool.in_(pools),
        TI.start_date.is_not(None),
        or_(TI.end_date >= since, and_(TI.end_date.is_(None), TI.state == TaskInstanceState.RUNNING)),
    )
    waiting = [
        TaskInstanceState.SCHEDULED,
        TaskInstanceState.QUEUED,
        TaskInstanceState.RUNNING,
        TaskInstanceState.UP_FOR_RETRY,
        TaskInstanceState.UP_FOR_RESCHEDULE,
        TaskInstanceState.DEFERRED,
        TaskInstanceState.RESTARTING,
    ]
    demand_query = (
        select(TI.dag_id)
        .distinct()
        .join(DagRun, and_(DagRun.dag_id == TI.dag_id, DagRun.run_id == TI.run_id))
        .where(
            TI.pool.in_(pools),
            DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]),
            or_(TI.state.is_(None), TI.state.in_(waiting)),
        )
    )
    with settings.engine.connect() as conn:
        rows = conn.execute(used_query).all()
        demand = {project_of(dag_id) for (dag_id,) in conn.execute(demand_query)}
    usage = usage_by_project(rows, now, since)
    return usage, demand | set(usage)


def cached_pool_usage(
    pools: tuple[str, ...], window_seconds: float, max_age: float, clock: Callable[[], float] = time.monotonic
) -> tuple[dict[str, float], set[str]]:
    """:func:`pool_usage`, reused for ``max_age`` s (a DAG run creates its TIs in one go, each weighed twice).

    ``clock`` measures a reading's age (a test passes one it moves by hand).
    """
    key = (pools, window_seconds)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and clock() - hit[0] < max_age:
            return hit[1], hit[2]
    usage, active = pool_usage(pools, window_seconds)
    with _lock:
        _cache[key] = (clock(), usage, active)
    return usage, active


class FairShareWeight(PriorityWeightStrategy):
    """Priority = the task's ``priority_weight``, scaled by the project's recent share of the MLX pools."""

    #: Pools whose slot-seconds count as usage.
    pools: tuple[str, ...] = (MEMORY_POOL, COMPUTE_POOL)
    #: How far back usage counts.
    window_seconds: float = 30 * 60
    #: Reuse one DB reading for this long.
    cache_seconds: float = 1.0

    def get_weight(self, ti: TaskInstance) -> int:
        task = getattr(ti, "task", None)
        priority = int(getattr(task, "priority_weight", 1) or 1)
        project = project_of(ti.dag_id)
        try:
            usage, active = cached_pool_usage(tuple(self.pools), self.window_seconds, self.cache_seconds)
        except Exception:  # noqa: BLE001 - a weight must never stop a DAG run from being created
            log.warning("fair share: could not read pool usage; using the plain priority", exc_info=True)
            return max(1, priority * SCALE)
        weight = fair_weight(priority, usage.get(project, 0.0), sum(usage.values()), len(active | {project}))
        log.debug(
            "fair share %s.%s: priority %s, usage %.1f of %.1f slot-s, %d active -> %d",
            ti.dag_id, ti.task_id, priority, usage.get(project, 0.0), sum(usage.values()), len(active | {project}), weight,
        )
        return weight


#: The same strategy under its path before it moved here (``operators.fair_share.FairShareWeight``, until
#: issue 16), registered by the plugin too: Airflow keeps every DAG version it serialized (a DAG run stays
#: on its version) and reads a weight rule back by that path, so an existing metadata DB's runs would
#: otherwise fail to load. Nothing is importable from the old path; DAGs parsed now name the new one.
FormerPathWeight: type[FairShareWeight] = type(
    "FairShareWeight", (FairShareWeight,), {"__module__": "operators.fair_share", "__doc__": FairShareWeight.__doc__}
)
