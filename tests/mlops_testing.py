"""Helpers the tests share: loopback ports, polling, SQLite reads, fake thermal zones, a real Airflow."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def airflow_cluster(
    tmp_path: Path, extra_env: dict[str, str], setup: Callable[[dict[str, str], str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Real api-server + scheduler + dag-processor on 127.0.0.1 over a fresh SQLite DB; stopped by PID.

    `setup(env, airflow_binary)` runs after `airflow db migrate`, before the servers start.
    """
    from mlops.airflow_env import airflow_environment
    from mlops.settings import Settings

    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    env = airflow_environment(Settings.from_env({"MLOPS_HOME": str(state)}), base=dict(os.environ))
    env.update(
        MLOPS_HOME=str(state),
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        **extra_env,
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    if setup is not None:
        setup(env, airflow)
    procs = []
    try:
        for argv in (["api-server", "--host", "127.0.0.1", "--port", str(port)], ["scheduler", "--skip-serve-logs"], ["dag-processor"]):
            log = open(logs / f"{argv[0]}.log", "wb")
            procs.append(subprocess.Popen([airflow, *argv], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        yield {"env": env, "db": state / "airflow" / "airflow.db", "logs": logs, "airflow": airflow}
    finally:
        # dag-processor, scheduler, then the api-server: running tasks still reach the API while the scheduler stops.
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
