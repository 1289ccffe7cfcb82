"""Start, stop and list the platform's services (`mlops up / down / status`).

Each service is a real server process (Airflow's api-server, scheduler, dag-processor,
triggerer; the MLflow tracking server; the Ray head that runs Ray Serve; the model-serving
gateway) started in its own session with its log and PID file under `<state>/run/`;
stopping sends TERM to its process group, then KILL, then KILL to whatever is left of its
session (Ray's actors move to process groups of their own).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlops import telemetry
from mlops.airflow_env import airflow_environment
from mlops.serving.ray_cluster import head_argv, head_ready_url, ray_environment
from mlops.settings import Settings


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    health_url: str | None  # http://... answers 200, or tcp://host:port accepts connections
    stop_timeout: float = 20.0


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def platform_services(settings: Settings) -> list[Service]:
    host = settings.bind_host
    mlflow_root = settings.home / "mlflow"
    return [
        Service(
            "mlflow",
            [
                # --app-name basic-auth: MLflow's own login (admin + the generated password).
                _bin("mlflow"), "server", "--app-name", "basic-auth", "--host", host, "--port", str(settings.mlflow_port),
                "--backend-store-uri", f"sqlite:///{mlflow_root / 'mlflow.db'}",
                "--artifacts-destination", str(mlflow_root / "artifacts"), "--workers", "1",
            ],
            f"http://{host}:{settings.mlflow_port}/health",
        ),
        Service(
            "api-server",
            [_bin("airflow"), "api-server", "--host", host, "--port", str(settings.airflow_port)],
            f"http://{host}:{settings.airflow_port}/api/v2/monitor/health",
        ),
        # The Ray head (token auth, see mlops.serving.ray_cluster), healthy once its agents answer
        # (its GCS port opens before the raylet takes drivers); `ray start --block` takes ~30 s
        # to exit on TERM once its children are gone, so it gets KILL after 5 s.
        Service("ray-head", head_argv(settings), head_ready_url(settings), stop_timeout=5.0),
        # --skip-serve-logs: the log server would listen on all interfaces.
        Service(
            "gateway",
            [_bin("mlops"), "serve", "--host", host, "--port", str(settings.gateway_port)],
            f"http://{host}:{settings.gateway_port}/healthz",
        ),
        # Evidently's UI behind HTTP Basic auth (its own only guards writes): health = the port answers.
        Service(
            "evidently-ui",
            [_bin("mlops"), "evidently-ui", "--host", host, "--port", str(settings.evidently_port)],
            f"tcp://{host}:{settings.evidently_port}",
        ),
        Service("scheduler", [_bin("airflow"), "scheduler", "--skip-serve-logs"], None),
        Service("dag-processor", [_bin("airflow"), "dag-processor"], None),
        Service("triggerer", [_bin("airflow"), "triggerer", "--skip-serve-logs"], None),
    ]


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    try:
        pid = int(_pid_file(settings, name).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(settings: Settings, service: Service, env: dict[str, str]) -> int:
    if (pid := running_pid(settings, service.name)) is not None:
        return pid
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.run_dir / f"{service.name}.log", "ab")
    process = subprocess.Popen(service.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _pid_file(settings, service.name).write_text(str(process.pid))
    return process.pid


def wait_healthy(url: str, timeout: float = 120.0, pid: int | None = None) -> bool:
    """True once `url` answers; False after `timeout` or as soon as process `pid` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not _alive(pid):
            return False
        if url.startswith("tcp://"):
            host, _, port = url[len("tcp://") :].rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                return True
            except OSError:
                time.sleep(0.5)
                continue
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def session_members(leader: int) -> list[int]:
    """PIDs of the live processes in `leader`'s session (Ray's actors move to their own process groups)."""
    import psutil

    members = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.pid != leader and os.getsid(process.pid) == leader and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (OSError, psutil.Error):
            continue
    return members


def kill_session(leader: int) -> None:
    """SIGKILL whatever is left of a service's session once its leader is gone."""
    for pid in session_members(leader):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop(settings: Settings, name: str, timeout: float = 20.0) -> bool:
    pid = running_pid(settings, name)
    _pid_file(settings, name).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            kill_session(pid)
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    kill_session(pid)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, e.g. children of the process that ran `up`, don't)."""
    import psutil

    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, os.WNOHANG)  # reap it when it is our child
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def migrate(settings: Settings) -> None:
    """Create or upgrade Airflow's metadata DB (idempotent)."""
    subprocess.run([_bin("airflow"), "db", "migrate"], env=airflow_environment(settings), check=True, stdout=subprocess.DEVNULL)


def sync_pools(settings: Settings) -> None:
    """Size the mlx pools from this machine (`mlops pools sync`: Airflow-side code, so a subprocess)."""
    subprocess.run([_bin("mlops"), "pools", "sync"], env=airflow_environment(settings), check=True, stdout=subprocess.DEVNULL)


def mlflow_auth_environment(settings: Settings) -> dict[str, str]:
    """MLflow's basic-auth app: its config (user store under the state folder) and the admin login."""
    from mlops.secrets import ensure_secret
    from mlops.tracking.client import MLFLOW_PASSWORD_SECRET, MLFLOW_USER

    password = ensure_secret(settings, MLFLOW_PASSWORD_SECRET)
    config = settings.home / "mlflow" / "basic_auth.ini"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{settings.home / 'mlflow' / 'basic_auth.db'}\n"
        f"admin_username = {MLFLOW_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A checked login is kept 60 s (MLflow's own cache, off by default): without it every request pays a
        # scrypt hash of the password, 0.1 s of CPU here (bench/dashboard.py). One worker: a password changed
        # through MLflow's API applies at once; one changed in the user DB by hand, within 60 s.
        "auth_cache_ttl_seconds = 60\n"
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,  # used once, when the user store is created
        "MLFLOW_FLASK_SERVER_SECRET_KEY": ensure_secret(settings, "mlflow_flask_secret_key"),  # CSRF tokens
        "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def service_environment(settings: Settings) -> dict[str, str]:
    """The environment every service of `up` gets: Airflow's, the Ray token, MLflow's login, telemetry off."""
    env = {**airflow_environment(settings), **ray_environment(settings), **mlflow_auth_environment(settings)}
    env["MLOPS_TRACKING_URI"] = f"http://{settings.bind_host}:{settings.mlflow_port}"
    return dict(telemetry.apply(env))  # no phoning home by default (mlops.telemetry; MLOPS_TELEMETRY=on opts in)


def up(settings: Settings) -> dict[str, int]:
    """Start every service (the MLflow server first) and wait for the HTTP ones to be healthy."""
    from mlops.serving.api_keys import ensure_api_key

    migrate(settings)
    sync_pools(settings)
    ensure_api_key(settings)  # the gateway never starts without a key
    env = service_environment(settings)
    pids = {}
    for service in platform_services(settings):
        pids[service.name] = start(settings, service, env)
        if service.health_url and not wait_healthy(service.health_url, pid=pids[service.name]):
            raise RuntimeError(f"{service.name} did not become healthy at {service.health_url}; see {settings.run_dir / (service.name + '.log')}")
    return pids


def down(settings: Settings) -> list[str]:
    return [s.name for s in reversed(platform_services(settings)) if stop(settings, s.name, s.stop_timeout)]


def status(settings: Settings) -> dict[str, int | None]:
    return {s.name: running_pid(settings, s.name) for s in platform_services(settings)}
