"""Listener hookimpls of the ``mlops`` plugin: keep the MLX pools sized to the machine.

* ``on_starting``: when the scheduler's job starts, size both pools from a fresh probe.
* ``on_starting`` also starts a `PoolRefresher` thread in the scheduler (every
  ``MLOPS_POOL_REFRESH_SECONDS``, default 30; 0 turns it off); ``before_stopping`` stops it.
* ``on_dag_run_running``: every DAG run start re-reads the thermal state (at most once per
  :data:`THERMAL_MAX_AGE` s) and resizes the compute pool -- a hotter machine runs fewer
  MLX tasks at once, a cooled one gets its slots back.  The write joins the scheduler's
  own transaction (the DAG run's session), so it commits with it and never waits on it.

Plugins are also loaded in task processes (which have no DB): the hooks ignore anything
that is not the scheduler.  A failure is logged, never raised into Airflow.
"""

from __future__ import annotations

import logging
import sys
import time

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

#: A DAG-run start reuses a thermal reading younger than this.
THERMAL_MAX_AGE = 5.0
#: The clock a reading's age is measured on (seconds; a test sets one it moves by hand).
clock = time.monotonic
_thermal: list = []  # [(clock() at the reading, ThermalReading)]


def _is_scheduler_job(component: object) -> bool:
    """The scheduler's ``Job`` (``on_starting`` runs in ``Job.__init__``, before its job_type is set)."""
    if type(component).__module__ != "airflow.jobs.job":
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") in ("airflow.cli.commands.scheduler_command", "airflow.jobs.scheduler_job_runner"):
            return True
        frame = frame.f_back
    return False


def _recent_thermal():
    from mlops_airflow.pools import current_thermal

    now = clock()
    if _thermal and now - _thermal[0][0] < THERMAL_MAX_AGE:
        return _thermal[0][1]
    reading = current_thermal()
    _thermal[:] = [(now, reading)]
    return reading


def _session_of(obj: object):
    """The SQLAlchemy session ``obj`` is attached to (the scheduler's), or None."""
    from sqlalchemy.orm import object_session
    from sqlalchemy.orm.exc import UnmappedInstanceError

    try:
        return object_session(obj)
    except UnmappedInstanceError:
        return None


@hookimpl
def on_starting(component) -> None:
    if not _is_scheduler_job(component):
        return
    try:
        from mlops_airflow.pools import current_profile, sync_pools

        current_profile.cache_clear()
        profile = current_profile()  # fresh probe, cached for the DAG-run hook
        thermal = _recent_thermal()
        slots = sync_pools(profile, thermal)
        log.info("mlops pools synced at scheduler start (thermal %s): %s", thermal.state, slots)
    except Exception:  # noqa: BLE001
        log.exception("mlops: syncing the pools at scheduler start failed")
    _start_refresher()


_refresher: list = []  # the scheduler's PoolRefresher, if running


def _start_refresher() -> None:
    from mlops.settings import get_settings
    from mlops_airflow.pool_refresher import PoolRefresher

    interval = get_settings().pool_refresh_seconds
    if interval > 0 and not _refresher:
        _refresher.append(PoolRefresher(interval))
        _refresher[0].start()
        log.info("mlops pools follow the thermal state every %.0f s", interval)


@hookimpl
def before_stopping(component) -> None:
    while _refresher:
        _refresher.pop().stop()


@hookimpl
def on_dag_run_running(dag_run, msg) -> None:
    try:
        from mlops_airflow.pools import sync_pools

        thermal = _recent_thermal()
        slots = sync_pools(thermal=thermal, session=_session_of(dag_run))
        log.debug("mlops pools at start of %s (thermal %s): %s", dag_run.run_id, thermal.state, slots)
    except Exception:  # noqa: BLE001
        log.exception("mlops: resizing the pools at a DAG run start failed")
