"""Fair-share priority weights: pure, no Airflow.

Projects share the MLX pools.  Plain priorities let a high-priority project with a deep
backlog starve every lower one; fair share makes a project's weight depend on how much of
the pools it used recently.

Formula (:func:`fair_weight`)::

    share         = 1 / active_projects            (equal shares of the pool)
    used_fraction = project_usage / total_usage    (0 when nothing ran; clamped to [0, 1])
    factor        = share / max(used_fraction, share / MAX_BOOST)
    weight        = max(1, round(priority * SCALE * factor))

* A project that used exactly its share gets ``priority * 10`` (plain priority, scaled).
* Above its share the weight drops in proportion (twice its share -> half the weight).
* Below its share it rises in proportion, capped at ``MAX_BOOST`` (10x) for a project that
  used nothing.  The rise matters: with only a drop (``min(1, share / used)``) a project
  can never fall below ``share`` x its weight, so with two projects a priority 8 vs 2
  backlog would still starve the priority-2 project.
* Equilibrium: weights equalise when ``priority_i / used_i`` is the same for every busy
  project, i.e. each project's share of recent slot-seconds converges to
  ``priority_i / sum(priorities)`` -- higher priority gets more, nobody gets nothing.

``usage`` is pool slot-seconds (task duration x pool_slots) inside a recent window; a
project is a DAG id's part before ``"__"`` (``<project>__lifecycle``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

#: Weight of a project at exactly its share, per priority point (priorities are 1..10).
SCALE = 10
#: Largest factor a project below its share gets (used nothing recently).
MAX_BOOST = 10


def fair_weight(priority: int, project_usage: float, total_usage: float, active_projects: int) -> int:
    """The fair-share weight of a task of a project (see the module docstring for the formula).

    :param priority: the project's priority (the task's ``priority_weight``).
    :param project_usage: the project's recent pool slot-seconds.
    :param total_usage: every project's recent pool slot-seconds.
    :param active_projects: projects competing now (recent usage or waiting work), at least 1.
    """
    if project_usage < 0 or total_usage < 0:
        raise ValueError(f"usage must be >= 0, got project={project_usage} total={total_usage}")
    share = 1.0 / max(1, int(active_projects))
    used = min(1.0, project_usage / total_usage) if total_usage > 0 else 0.0
    factor = share / max(used, share / MAX_BOOST)
    return max(1, round(priority * SCALE * factor))


def project_of(dag_id: str) -> str:
    """The project a DAG belongs to: its id before ``"__"`` (the whole id without one)."""
    return dag_id.split("__", 1)[0]


def usage_by_project(
    rows: Iterable[tuple[str, datetime | None, datetime | None, int | None]],
    now: datetime,
    since: datetime,
) -> dict[str, float]:
    """Slot-seconds per project inside ``[since, now]``.

    ``rows`` are ``(dag_id, start, end, pool_slots)`` of task instances; ``end`` None means
    still running (counted up to ``now``).  Time outside the window is cut off; rows that
    never started, or with negative spans (clock skew), count 0.
    """
    usage: dict[str, float] = {}
    for dag_id, start, end, slots in rows:
        if start is None:
            continue
        begin = max(start, since)
        finish = min(end or now, now)
        seconds = (finish - begin).total_seconds()
        if seconds <= 0:
            continue
        project = project_of(dag_id)
        usage[project] = usage.get(project, 0.0) + seconds * max(1, slots or 1)
    return usage
