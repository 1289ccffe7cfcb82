"""Write the MLX pools into Airflow's metadata DB, sized by :func:`mlops.resources.pools.pool_plan`.

Called by the plugin's listener (scheduler start, every DAG run start), by `mlops pools sync`
and by the bench.  The hardware profile is probed once per process (it does not change under
a running scheduler) unless given; the thermal state is read fresh on every call (cheap: the
sysfs zones or `pmset`, never the full probe).  Rows that already hold the planned size are
not written, so a sync that changes nothing costs one SELECT.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from mlops.resources.pools import PoolSize, pool_plan

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mlops.hardware.model import HardwareProfile, ThermalReading

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def current_profile() -> HardwareProfile:
    """This machine's profile, probed once per process."""
    from mlops.hardware import probe

    return probe()


def current_thermal() -> ThermalReading:
    """The thermal state now (honours ``$MLOPS_HARDWARE_ROOT``)."""
    from mlops.hardware.thermal import read_thermal

    return read_thermal()


def _thermal_state(thermal: ThermalReading | str | None) -> str:
    if thermal is None:
        return current_thermal().state
    return thermal if isinstance(thermal, str) else thermal.state


def plan_now(
    profile: HardwareProfile | None = None, thermal: ThermalReading | str | None = None
) -> tuple[dict[str, PoolSize], str]:
    """(the pools this machine should have now, the thermal state used); honours ``$MLOPS_COMPUTE_SLOTS``."""
    from mlops.settings import get_settings

    state = _thermal_state(thermal)
    return pool_plan(profile or current_profile(), state, compute_slots=get_settings().compute_slots), state


def write_pools(plan: dict[str, PoolSize], session: Session | None = None) -> dict[str, int]:
    """Create or update the pools of ``plan``; rows already at the planned size are left alone.

    With ``session`` the changes join the caller's transaction (no commit here: the listener
    runs inside the scheduler's transaction, and a second SQLite writer would wait on it).
    """
    from sqlalchemy import select

    from airflow.models.pool import Pool

    def write(s: Session) -> None:
        rows = {p.pool: p for p in s.scalars(select(Pool).where(Pool.pool.in_(list(plan))))}
        for name, size in plan.items():
            row = rows.get(name)
            if row is not None and row.slots == size.slots and row.description == size.description:
                continue
            Pool.create_or_update_pool(
                name=name, slots=size.slots, description=size.description, include_deferred=False, session=s
            )
            log.info("pool %s: %s -> %s slots", name, row.slots if row is not None else "new", size.slots)

    if session is not None:
        write(session)
    else:
        from airflow.utils.session import create_session

        with create_session() as own:
            write(own)
    return {name: size.slots for name, size in plan.items()}


def sync_pools(
    profile: HardwareProfile | None = None,
    thermal: ThermalReading | str | None = None,
    *,
    session: Session | None = None,
) -> dict[str, int]:
    """Size both MLX pools for this machine now and write them; returns ``{pool: slots}``.

    :param profile: hardware profile; None = this machine's (probed once per process).
    :param thermal: a reading or a state name; None = read now.
    :param session: join this SQLAlchemy session's transaction instead of committing our own.
    """
    plan, _ = plan_now(profile, thermal)
    return write_pools(plan, session=session)


def read_pools(names: list[str] | None = None) -> dict[str, dict]:
    """Pools in the DB (all, or ``names``): slots, description and current use."""
    from sqlalchemy import select

    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        query = select(Pool)
        if names:
            query = query.where(Pool.pool.in_(names))
        stats = Pool.slots_stats(session=session)
        result = {}
        for pool in session.scalars(query.order_by(Pool.pool)):
            used = stats.get(pool.pool, {})
            result[pool.pool] = {
                "slots": pool.slots,
                "description": pool.description or "",
                "running": int(used.get("running", 0)),
                "queued": int(used.get("queued", 0)),
                "open": _count(used.get("open", 0)),
            }
    return result


def _count(value: float) -> int | str:
    return int(value) if value != float("inf") else "unlimited"
