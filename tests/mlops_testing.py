"""Helpers the tests share: free loopback ports, polling, SQLite reads, fake sysfs thermal zones."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Millidegrees giving each state for a zone whose trips are passive 85 °C, hot 95 °C, critical 105 °C.
ZONE_TRIPS = ((85000, "passive"), (95000, "hot"), (105000, "critical"))
ZONE_TEMPS = {"nominal": 40000, "fair": 80000, "serious": 90000, "critical": 96000}


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def sqlite_rows(db: Path, sql: str, *args: Any) -> list[tuple]:
    """Rows of a query on a SQLite file; [] while the table does not exist yet or is locked."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []


def fake_thermal_zone(root: Path, state: str, n: int = 0) -> Path:
    """A fake /sys/class/thermal zone under `root` reading `state` (see ZONE_TEMPS); returns `root`."""
    zone = root / f"sys/class/thermal/thermal_zone{n}"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "type").write_text("x86_pkg_temp\n")
    for i, (trip, kind) in enumerate(ZONE_TRIPS):
        (zone / f"trip_point_{i}_temp").write_text(f"{trip}\n")
        (zone / f"trip_point_{i}_type").write_text(f"{kind}\n")
    set_zone_state(root, state, n)
    return root


def set_zone_state(root: Path, state: str, n: int = 0) -> None:
    """Atomically rewrite the zone's temperature (a reader never sees a half-written file)."""
    temp = root / f"sys/class/thermal/thermal_zone{n}/temp"
    scratch = temp.with_name(".temp.tmp")
    scratch.write_text(f"{ZONE_TEMPS[state]}\n")
    os.replace(scratch, temp)
