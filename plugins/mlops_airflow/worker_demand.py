"""How many Celery workers each queue needs now, for all projects together: what an autoscaler scales on.

The formula is the one Airflow's Helm chart gives KEDA for its Celery workers: the task instances that are
queued or running on a queue, over one worker's concurrency, rounded up (`ceil(count / concurrency)`;
the concurrency is what `mlops worker` starts its workers with, `mlops.resources.names.WORKER_CONCURRENCY`,
unless told). Every project's tasks count together, so one worker pool per hardware queue serves the whole
toolkit (`mlops worker` starts one on the queues its machine qualifies for). Read from Airflow's metadata DB in one grouped query; `mlops queue --demand [--json]` prints it.
"""

from __future__ import annotations

import math
from typing import Any

DEMAND_STATES = ("queued", "running")  # the Helm chart's KEDA query counts these


def worker_demand(concurrency: int | None = None) -> list[dict[str, Any]]:
    """Per queue with queued or running tasks: the counts, the concurrency and the workers needed."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from mlops.resources.names import WORKER_CONCURRENCY

    per_worker = max(1, concurrency or WORKER_CONCURRENCY)
    counts: dict[str, dict[str, int]] = {}
    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.queue, TaskInstance.state, func.count())
            .where(TaskInstance.state.in_(DEMAND_STATES))
            .group_by(TaskInstance.queue, TaskInstance.state)
        ).all()
    for queue, state, count in rows:
        counts.setdefault(queue or "default", {"queued": 0, "running": 0})[str(state)] += count
    return [
        {"queue": queue, **found, "worker_concurrency": per_worker,
         "workers_needed": math.ceil((found["queued"] + found["running"]) / per_worker)}
        for queue, found in sorted(counts.items())
    ]


def format_demand(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no task is queued or running: no worker is needed"
    header = ("QUEUE", "QUEUED", "RUNNING", "PER WORKER", "WORKERS NEEDED")
    cells = [header] + [(r["queue"], str(r["queued"]), str(r["running"]), str(r["worker_concurrency"]),
                         str(r["workers_needed"])) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)
