"""The local Ray cluster that runs Ray Serve: its head's command line, its token, a driver connection.

`mlops up` starts the head as a service (`head_argv`): `ray start --head --block` on
127.0.0.1:`settings.ray_port`, with the serving memory budget as the node's `memory`
resource, so Ray itself never places more replicas than the budget holds. More machines
join with `ray start --address 127.0.0.1:<port>` run on them (with the same token).

Security: Ray 2.60's core gRPC servers (GCS, raylet, workers, agents) listen on every
interface whatever `--node-ip-address` says (ray-project/ray#55484 moves them, not released
in 2.60), so the cluster runs with Ray's token authentication: `RAY_AUTH_MODE=token` and a
token generated under `<state>/secrets/ray_token` (outside git, mode 0600). Nothing answers a
client without it. Serve's HTTP proxy binds `settings.bind_host` (127.0.0.1); the public
entry point stays the gateway, which requires API keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings

NAMESPACE = "mlops"


def ensure_ray_token(settings: Settings) -> Path:
    """The cluster's token file, created (0600) with a fresh random token when absent."""
    from mlops.secrets import ensure_secret, secret_file

    ensure_secret(settings, "ray_token")
    return secret_file(settings, "ray_token")


def ray_environment(settings: Settings) -> dict[str, str]:
    """Variables every Ray process of ours needs: token auth on, no usage stats."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(ensure_ray_token(settings)),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Serve's HTTP proxy runs on the head and by default sends every request to a replica on its own
        # node while that one has room (up to 64 in flight): a second Mac's replicas would stand idle behind
        # the gateway. Off, requests spread over every node's replicas (bench/ray_two_nodes.py).
        "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
    }


def ray_temp_dir(settings: Settings) -> Path:
    """Ray's session folder: short (unix socket paths must stay under 108 bytes), one per state folder."""
    digest = hashlib.sha1(str(settings.home).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"mlops-ray-{digest}"


def ray_address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.ray_port}"


def head_argv(settings: Settings, num_cpus: int | None = None) -> list[str]:
    """`ray start --head --block ...`: stays in the foreground, so its PID is the service's.

    Ray gives workers ports 10002-19999: MLOPS_RAY_PORT (and the two ports after it) must lie outside.
    """
    ray = str(Path(sys.executable).with_name("ray"))
    return [
        ray, "start", "--head", "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={settings.ray_port}",
        # Fixed defaults (10001, 52365) would collide between two heads on one machine.
        f"--ray-client-server-port={settings.ray_port + 1}",
        f"--dashboard-agent-listen-port={settings.ray_port + 2}",
        f"--num-cpus={num_cpus or os.cpu_count() or 1}",
        f"--memory={settings.serving_memory_bytes}",
        "--include-dashboard=false",
        f"--temp-dir={ray_temp_dir(settings)}",
        "--disable-usage-stats",
    ]


def _accepts(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def head_reachable(settings: Settings, timeout: float = 1.0) -> bool:
    """A head's GCS answers (it may still be starting its raylet)."""
    return _accepts(settings.ray_port, timeout)


def head_ready_url(settings: Settings) -> str:
    """The port that answers once the head has fully started: the dashboard agent's.

    Measured on 2 cores: the GCS port opens at 1.8 s, the raylet's
    socket at 3.1 s, the agent's port at 4.1 s, "Ray runtime started" at 4.2 s. The raylet
    starts the agents, so the agent's port (fixed by `head_argv`) answering means the whole
    head is up. A driver that connected on the GCS port alone once died in CI inside Ray's C++
    core ("Failed to register worker to Raylet: ... End of file"), which its process cannot catch.
    """
    return f"tcp://127.0.0.1:{settings.ray_port + 2}"


def head_ready(settings: Settings, timeout: float = 1.0) -> bool:
    """The head's GCS, raylet and agents are all up: a driver may connect now."""
    return _accepts(settings.ray_port, timeout) and _accepts(settings.ray_port + 2, timeout)


@contextlib.contextmanager
def connected(settings: Settings, ready_timeout: float = 60.0) -> Iterator[None]:
    """A driver connection to the head for the duration of the block (Serve's HTTP proxy started).

    A head that answers but is still starting gets `ready_timeout` seconds to finish.
    """
    if not head_reachable(settings):
        raise ConnectionError(
            f"no Ray head at {ray_address(settings)}: start the platform with `mlops up` "
            "(or set MLOPS_RAY_PORT to the head's port)"
        )
    deadline = time.monotonic() + ready_timeout
    while not head_ready(settings):  # a head still starting: its raylet would kill this driver
        if time.monotonic() > deadline:
            raise ConnectionError(
                f"the Ray head at {ray_address(settings)} answers but its agents (port {settings.ray_port + 2}) "
                f"never came up: see the head's log {settings.run_dir / 'ray-head.log'}"
            )
        time.sleep(0.2)
    os.environ.update(ray_environment(settings))
    import ray
    from ray import serve
    from ray._raylet import AuthenticationTokenLoader

    # Ray reads the token once per process and caches it: a process that talks to a second
    # cluster (tests, a rotated token) must make it read this cluster's token file again.
    AuthenticationTokenLoader.instance().reset_cache()

    ray.init(
        address=ray_address(settings),
        namespace=NAMESPACE,
        log_to_driver=False,
        logging_level="WARNING",
        configure_logging=False,
    )
    try:
        serve.start(http_options={"host": settings.bind_host, "port": settings.serve_port}, proxy_location="HeadOnly")
        yield
    finally:
        ray.shutdown()


def serve_url(settings: Settings, route_prefix: str) -> str:
    return f"http://{settings.bind_host}:{settings.serve_port}{route_prefix}"
