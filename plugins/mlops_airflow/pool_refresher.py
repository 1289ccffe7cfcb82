"""Keep the mlx pools following the thermal state while the scheduler runs.

DAG-run starts already re-read the thermal state (see `mlops_airflow.listeners`); this thread
covers the time in between, so a machine that heats up while tasks are queued gets a
smaller compute pool within one interval, and its slots back when it cools. It lives in
the scheduler (the process that may write the metadata DB), started and stopped by the
plugin's listeners. Being there, it also keeps the pool-usage snapshot the daily report reads
(`mlops.resources.pool_usage`: task code may not read the DB itself).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class PoolRefresher(threading.Thread):
    """Every `interval` seconds: read the thermal state, resize the pools if it changed them."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="mlops-pool-refresher", daemon=True)
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        from mlops.resources.pool_usage import SNAPSHOT_SECONDS
        from mlops_airflow.pools import current_thermal, sync_pools

        snapshot_due = time.monotonic()  # one at start, then every SNAPSHOT_SECONDS
        while True:
            if time.monotonic() >= snapshot_due:
                snapshot_due = time.monotonic() + SNAPSHOT_SECONDS
                self.snapshot_usage()
            if self.stopping.wait(self.interval):
                return
            try:
                sync_pools(thermal=current_thermal())  # writes only rows whose size changed
            except Exception:  # noqa: BLE001 - a failed refresh must never stop the scheduler
                log.exception("mlops: refreshing the pools failed; retrying in %.0f s", self.interval)

    @staticmethod
    def snapshot_usage() -> None:
        from mlops.resources.pool_usage import write_snapshot
        from mlops.settings import get_settings

        try:
            write_snapshot(get_settings())
        except Exception:  # noqa: BLE001 - the report says the snapshot is missing; the scheduler goes on
            log.exception("mlops: writing the pool-usage snapshot failed")

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)
