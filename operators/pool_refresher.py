"""Keep the mlx pools following the thermal state while the scheduler runs.

DAG-run starts already re-read the thermal state (see `operators.listeners`); this thread
covers the time in between, so a machine that heats up while tasks are queued gets a
smaller compute pool within one interval, and its slots back when it cools. It lives in
the scheduler (the process that may write the metadata DB), started and stopped by the
plugin's listeners.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PoolRefresher(threading.Thread):
    """Every `interval` seconds: read the thermal state, resize the pools if it changed them."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="mlops-pool-refresher", daemon=True)
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        from operators.pools import current_thermal, sync_pools

        while not self.stopping.wait(self.interval):
            try:
                sync_pools(thermal=current_thermal())  # writes only rows whose size changed
            except Exception:  # noqa: BLE001 - a failed refresh must never stop the scheduler
                log.exception("mlops: refreshing the pools failed; retrying in %.0f s", self.interval)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.join(timeout)
