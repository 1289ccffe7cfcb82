"""Zero-downtime deploys: a registered version goes live on Ray Serve beside the old one, then traffic switches.

`deploy_version(settings, project, serving, version)`:

1. size it: memory per replica = the version's measured footprint (`footprint.py`, kept as
   a version tag) unless the YAML sets `serving.memory_gb`; `plan_replicas` lowers
   `max_replicas` so that every project's replicas together fit the serving memory budget
   (and refuses a plan whose `min_replicas` cannot fit);
2. start it as its own Serve application `<project>-v<N>` at `/<project>/v<N>`, with
   autoscaling and `ray_actor_options` memory from the plan, beside the old version;
3. health-check and warm it: GET answers with the right version, a predict of the
   signature's example batch answers 200 with finite outputs. If any of that fails within
   `serving.health_timeout_s`, the new application is deleted and `DeployError` says that
   the old version keeps serving (rollback: the route never moved);
4. announce: the gateway (if one runs on `gateway_port`) rescans the project's registered
   versions and must list the new one, so no request waits for a scan after the switch.
   A gateway that does not see the version would answer 404 to every request: the deploy is
   rolled back as in 3. (A gateway the deployer does not reach scans the project itself on
   the first request that names the version: `gateway.py`.);
5. switch: one atomic write of the route table (`routes.py`); the gateway sends every
   request it accepts afterwards to the new version;
6. drain: wait until the gateway reports the new generation and no request in flight to
   the old target (no gateway running: nothing can be in flight), then delete the old
   application (Serve lets its replicas finish what they hold).

Ray Serve's own in-place update is not used: for a single replica it stops the old replica
before the new one is ready. Replicas read the model folder from this machine's serving
cache; a replica Ray places on another node downloads the version from MLflow into that
node's own cache (`ray_app.model_folder_on_this_node`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from mlops.config.schema import ServingConfig
    from mlops.settings import Settings

log = logging.getLogger(__name__)
MEMORY_ROUND = 64 * 1024**2  # replica memory is reserved in 64 MiB steps


class DeployError(RuntimeError):
    """A deploy that did not go live; the message says what keeps serving."""


@dataclass(frozen=True)
class ReplicaPlan:
    min_replicas: int
    max_replicas: int
    memory_bytes: int
    budget_bytes: int
    others_bytes: int
    target_ongoing_requests: float = 2.0
    max_batch_size: int = 32

    def as_dict(self) -> dict[str, float]:
        """What the route carries: the gateway keeps max x target requests of up to max_batch_size rows
        in flight to the deployment."""
        return {
            "min": self.min_replicas,
            "max": self.max_replicas,
            "memory_bytes": self.memory_bytes,
            "target_ongoing_requests": self.target_ongoing_requests,
            "max_batch_size": self.max_batch_size,
        }


def plan_replicas(
    project: str, serving: ServingConfig, memory_bytes: int, budget_bytes: int, others: dict[str, int]
) -> ReplicaPlan:
    """Replica bounds within the budget; `others` = bytes the other projects' replicas may take at most."""
    memory_bytes = math.ceil(memory_bytes / MEMORY_ROUND) * MEMORY_ROUND
    others_bytes = sum(others.values())
    fit = max(0, budget_bytes - others_bytes) // memory_bytes
    if fit < serving.min_replicas:
        gib = 1024**3
        taken = ", ".join(f"{name} {size / gib:.2f} GiB" for name, size in sorted(others.items())) or "nothing"
        raise DeployError(
            f"{project}: serving.min_replicas={serving.min_replicas} replicas of {memory_bytes / gib:.2f} GiB do not fit "
            f"the serving memory budget of {budget_bytes / gib:.2f} GiB (other projects hold {taken}). "
            "Raise MLOPS_SERVING_MEMORY_GB, lower min_replicas, or undeploy a project."
        )
    return ReplicaPlan(
        serving.min_replicas, min(serving.max_replicas, fit), memory_bytes, budget_bytes, others_bytes,
        serving.target_ongoing_requests, serving.max_batch_size,
    )


def _http_json(url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback URLs
        return json.loads(response.read())


def check_health(url: str, version: int, signature: dict, rows: int) -> dict[str, Any]:
    """GET reports `version`; a predict of `rows` example rows gives finite outputs of that many rows.

    Returns the GET answer (device, pid, rss_bytes of the replica that answered).
    """
    import numpy as np

    from mlops.serving.footprint import example_inputs

    status = _http_json(url)
    if status.get("status") != "ok" or int(status.get("version", -1)) != version:
        raise DeployError(f"{url} reports {status}, expected version {version}")
    inputs = {name: a.tolist() for name, a in example_inputs(signature, rows).items()}
    outputs = _http_json(url, json.dumps({"inputs": inputs}).encode())["outputs"]
    for name, value in outputs.items():
        array = np.asarray(value, dtype=np.float64)
        if len(array) != rows or not np.isfinite(array).all():
            raise DeployError(f"{url}: output {name!r} of the warm-up batch is not {rows} finite rows")
    return status


def _wait_running(app: str, timeout: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout
    while True:
        status = serve.status().applications.get(app)
        state = getattr(getattr(status, "status", None), "value", str(getattr(status, "status", "")))
        if state == "RUNNING":
            return
        if state in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise DeployError(f"Ray Serve application {app} is {state}: {status.message[-1500:]}")
        if time.monotonic() > deadline:
            raise DeployError(f"Ray Serve application {app} not running after {timeout:.0f} s (state {state})")
        time.sleep(0.25)


def _gateway_headers(settings: Settings) -> dict[str, str]:
    from mlops.serving.api_keys import load_api_keys

    keys = sorted(load_api_keys(settings))
    return {"X-API-Key": keys[0]} if keys else {}


def announce(settings: Settings, project: str, version: int, timeout: float = 60.0) -> str:
    """Have the gateway rescan `project` and check it lists `version`: "knows it" or "not running".

    Raises DeployError when the gateway refuses the call or does not list the version.
    """
    from urllib.parse import quote

    url = f"http://{settings.bind_host}:{settings.gateway_port}/v1/reload?project={quote(project)}"
    try:
        seen = _http_json(url, b"", _gateway_headers(settings), timeout=timeout)
    except (urllib.error.URLError, ConnectionError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            raise DeployError(f"the gateway at {url} refused the rescan: {exc}") from None
        return "not running"
    listed = seen.get("models", {}).get(project, [])
    if version not in listed:
        raise DeployError(
            f"the gateway at {url} does not see {project} v{version} in its registry (it lists {listed}): "
            "switching the route would leave it unable to serve the project"
        )
    return "knows it"


def drain(settings: Settings, generation: int, old_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the gateway uses `generation` and has nothing in flight to `old_url`."""
    url = f"http://{settings.bind_host}:{settings.gateway_port}/v1/routes"
    headers = _gateway_headers(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = _http_json(url, headers=headers, timeout=5)
        except (urllib.error.URLError, ConnectionError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                raise DeployError(f"the gateway at {url} refused the drain check: {exc}") from None
            return {"gateway": "not running", "waited_s": 0.0}
        if seen["generation"] >= generation and not seen["inflight"].get(old_url):
            return {"gateway": "switched", "waited_s": round(timeout - (deadline - time.monotonic()), 3)}
        if time.monotonic() > deadline:
            log.warning("gateway still has requests in flight to %s after %.0f s; removing it anyway", old_url, timeout)
            return {"gateway": "timeout", "waited_s": timeout}
        time.sleep(0.05)


def replica_runtime_env(python: Path) -> dict[str, Any]:
    """Ray's runtime_env that starts a replica under a project's own interpreter, the library from source."""
    from mlops.environments.runner import child_environment

    child = child_environment(python)
    return {"py_executable": str(python), "env_vars": {"PYTHONPATH": child["PYTHONPATH"], "PYTHONNOUSERSITE": "1"}}


def replica_memory(
    settings: Settings, client: Any, project: str, version: int, folder: Any, serving: ServingConfig,
    python: Path | None = None,
) -> int:
    """Bytes per replica: the YAML's override, else the version's measured footprint (measured once)."""
    from mlops.serving.footprint import TAG, measure_replica_memory

    if serving.memory_gb is not None:
        return int(serving.memory_gb * 1024**3)
    tags = client.get_model_version(project, str(version)).tags or {}
    if TAG in tags:
        return int(tags[TAG])
    measured = measure_replica_memory(folder, serving.max_batch_size, python=python)
    client.set_model_version_tag(project, str(version), TAG, str(measured))
    return measured


def deploy_version(
    settings: Settings, project: str, serving: ServingConfig, version: int | None = None, python: Path | None = None
) -> dict[str, Any]:
    """Make `version` (default: the highest registered) the one serving `project`; see the module docstring.

    `python`: the project's own environment's interpreter (issue 14): its replicas run there
    (Ray's `runtime_env` `py_executable`), with the platform's library from source.
    """
    from mlflow import MlflowClient

    from mlops.serving.ray_cluster import connected, serve_url
    from mlops.serving.registry_models import download_model_dir
    from mlops.serving.routes import Route, read_routes, routes_file, write_route
    from mlops.tracking.client import configure
    from mlops.training.artifacts import model_signature, read_manifest

    configure(settings)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    if version is None:
        versions = [int(mv.version) for mv in client.search_model_versions(f"name = '{project}'")]
        if not versions:
            raise DeployError(f"{project} has no registered version to deploy")
        version = max(versions)
    version = int(version)
    _, routes = read_routes(routes_file(settings))
    current = routes.get(project)
    app, prefix = f"{project}-v{version}", f"/{project}/v{version}"
    url = serve_url(settings, prefix)

    folder = download_model_dir(client, project, version, settings.home / "serving")
    manifest = read_manifest(folder)
    signature = model_signature(folder, manifest)
    memory = replica_memory(settings, client, project, version, folder, serving, python)
    others = {name: r.replicas.get("max", 0) * r.replicas.get("memory_bytes", 0) for name, r in routes.items() if name != project}
    plan = plan_replicas(project, serving, memory, settings.serving_memory_bytes, others)
    started = time.monotonic()

    with connected(settings):
        from ray import serve

        from mlops.serving.ray_app import MLXReplica

        if current is not None and current.app == app:
            running = serve.status().applications.get(app)
            if running is not None and getattr(running.status, "value", "") == "RUNNING":
                return {"project": project, "version": version, "changed": False, "url": url, "replicas": current.replicas}
        deployment = MLXReplica.options(
            autoscaling_config={
                "min_replicas": plan.min_replicas,
                "initial_replicas": plan.min_replicas,
                "max_replicas": plan.max_replicas,
                "target_ongoing_requests": serving.target_ongoing_requests,
                "upscale_delay_s": serving.upscale_delay_s,
                "downscale_delay_s": serving.downscale_delay_s,
                "look_back_period_s": 12.0,  # above Serve's 10 s metrics push interval
            },
            ray_actor_options={
                "num_cpus": serving.cpus_per_replica,
                "memory": plan.memory_bytes,
                **({"runtime_env": replica_runtime_env(python)} if python is not None else {}),
            },
        )
        try:
            serve._run(  # _blocking=False: serve.run would wait forever for a replica Ray cannot place
                deployment.bind(str(folder), project, version, serving.max_batch_size, serving.batch_wait_ms / 1000),
                name=app,
                route_prefix=prefix,
                _blocking=False,
            )
            _wait_running(app, serving.health_timeout_s)
            health = check_health(url, version, signature, min(serving.max_batch_size, 8))
            gateway = announce(settings, project, version)
        except Exception as exc:
            with _quiet():
                serve.delete(app)
            keeps = f"v{current.version} keeps serving" if current else "nothing was serving it before"
            raise DeployError(f"{project} v{version} was rolled back ({type(exc).__name__}: {exc}); {keeps}") from exc
        ready_s = time.monotonic() - started
        generation = write_route(
            settings,
            Route(
                project=project,
                version=version,
                url=url,
                backend="ray",
                app=app,
                device=str(health.get("device", "unknown")),
                replicas=plan.as_dict(),
                deployed_at=time.time(),
            ),
        )
        drained = {"gateway": "nothing to drain", "waited_s": 0.0}
        if current is not None and current.app != app:
            drained = drain(settings, generation, current.url)
            with _quiet():
                serve.delete(current.app)
    return {
        "project": project,
        "version": version,
        "changed": True,
        "previous": current.version if current else None,
        "url": url,
        "app": app,
        "generation": generation,
        "replicas": plan.as_dict(),
        "budget_bytes": plan.budget_bytes,
        "ready_s": round(ready_s, 2),
        "gateway": gateway,
        "drain": drained,
    }


def undeploy(settings: Settings, project: str) -> bool:
    """Remove the project's route, then its Serve application; False when it had none."""
    from mlops.serving.ray_cluster import connected
    from mlops.serving.routes import read_routes, routes_file, write_route

    _, routes = read_routes(routes_file(settings))
    current = routes.get(project)
    if current is None:
        return False
    generation = write_route(settings, None, project)
    drain(settings, generation, current.url)
    with connected(settings):
        from ray import serve

        serve.delete(current.app)
    return True


class _quiet:
    """Swallow (and log) errors of best-effort cleanup."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if exc is not None:
            log.warning("cleanup failed: %s: %s", kind.__name__, exc)
        return True
