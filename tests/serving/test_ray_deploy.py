"""Ray Serve deploys for real: a Ray head (token auth), the gateway over HTTP, a real MLflow registry.

One head and one gateway for the module; three registered versions of one project (seeds 0, 1,
2) and a second project for autoscaling. Checks: a deploy serves through the gateway with the
registered model's predictions; 5 version swaps under continuous load lose no request; a
version that fails its health check is rolled back while the old one keeps serving;
replicas scale up under load and back down; replica memory comes from the measured
footprint and the plan stays within the serving memory budget.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from mlops_testing import free_port, ray_head, wait_for
from serving_support import train_and_register

from mlops.config.schema import ServingConfig

pytestmark = pytest.mark.timeout(600)

PROJECT, SCALED = "ray_mlp", "ray_scaled"
X = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)


@dataclass
class Cluster:
    settings: object
    key: str
    versions: list[int]
    scaled_version: int
    server: object = None


def _start_gateway(settings, key: str):
    import uvicorn

    from mlops.serving.gateway import create_app

    app = create_app(settings, {key})
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.gateway_port, log_level="warning", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    wait_for(lambda: server.started, 30, "the gateway", interval=0.05)
    return server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from mlops.serving.api_keys import ensure_api_key
    from mlops.settings import Settings

    home = tmp_path_factory.mktemp("ray-home")
    env = {
        "MLOPS_HOME": str(home),
        "MLOPS_RAY_PORT": str(free_port()),
        "MLOPS_SERVE_PORT": str(free_port()),
        "MLOPS_GATEWAY_PORT": str(free_port()),
        "MLOPS_SERVING_MEMORY_GB": "4",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("MLOPS_TRACKING_URI", raising=False)
        mp.delenv("MLOPS_API_KEYS", raising=False)
        settings = Settings.from_env()
        versions = [train_and_register(settings, PROJECT, "mlp_classifier", seed=s)["version"] for s in (0, 1, 2)]
        scaled = train_and_register(settings, SCALED, "mlp_classifier", seed=3)["version"]
        key = ensure_api_key(settings)
        with ray_head(settings, home / "ray-head.log"):
            cluster = Cluster(settings, key, versions, scaled)
            cluster.server = _start_gateway(settings, key)
            try:
                yield cluster
            finally:
                cluster.server.should_exit = True
                time.sleep(0.3)


def _predict(port: int, key: str, project: str, connection: http.client.HTTPConnection | None = None) -> dict:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        f"/v1/projects/{project}/models/latest/predict",
        body=json.dumps({"inputs": {"x": X.tolist()}}),
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise AssertionError(f"{response.status}: {body[:300]!r}")
    return json.loads(body)


@dataclass
class Load:
    """Clients calling the gateway until stopped; every answer and failure recorded."""

    port: int
    key: str
    project: str
    concurrency: int
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, float, int]] = field(default_factory=list)  # (start, seconds, version)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.concurrency)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                body = _predict(self.port, self.key, self.project, conn)
                self.results.append((start, time.perf_counter() - start, body["version"]))
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _app_statuses(settings) -> dict:
    from ray import serve

    from mlops.serving.ray_cluster import connected

    with connected(settings):
        return {
            name: {
                "status": app.status.value if hasattr(app.status, "value") else str(app.status),
                "replicas": {d: dict(s.replica_states) for d, s in app.deployments.items()},
            }
            for name, app in serve.status().applications.items()
        }


def test_deploy_serves_registered_predictions_through_the_gateway(cluster):
    from mlops.serving.deploy import deploy_version
    from mlops.training.artifacts import restore_session

    settings = cluster.settings
    serving = ServingConfig(enabled=True, min_replicas=1, max_replicas=2)
    result = deploy_version(settings, PROJECT, serving, cluster.versions[0])
    assert result["changed"] and result["version"] == cluster.versions[0] and result["previous"] is None
    assert result["url"] == f"http://127.0.0.1:{settings.serve_port}/{PROJECT}/v{cluster.versions[0]}"

    # Replica memory is the footprint measured in a replica-like process, recorded on the version.
    from mlflow import MlflowClient

    tags = MlflowClient(settings.tracking_uri).get_model_version(PROJECT, str(cluster.versions[0])).tags
    measured = int(tags["serving_memory_bytes"])
    assert 50 * 1024**2 < measured < 4 * 1024**3
    assert result["replicas"]["memory_bytes"] >= measured
    assert result["replicas"]["max"] * result["replicas"]["memory_bytes"] <= settings.serving_memory_bytes

    body = _predict(settings.gateway_port, cluster.key, PROJECT)
    direct = restore_session(settings.home / "serving" / PROJECT / str(cluster.versions[0])).predict({"x": X})
    np.testing.assert_allclose(body["outputs"]["probabilities"], direct["probabilities"], rtol=1e-5)
    assert body["version"] == cluster.versions[0]

    import httpx

    listed = httpx.get(
        f"http://127.0.0.1:{settings.gateway_port}/v1/models", headers={"X-API-Key": cluster.key}
    ).json()["models"]
    mine = next(m for m in listed if m["name"] == PROJECT)
    assert mine["backend"] == "ray" and mine["serving_version"] == cluster.versions[0]
    assert mine["replicas"]["min"] == 1 and mine["device"] in ("cpu", "gpu")
    ready = httpx.get(f"http://127.0.0.1:{settings.gateway_port}/readyz", timeout=60)
    assert ready.status_code == 200 and ready.json()["models"][PROJECT] == cluster.versions[0], ready.text

    # Deploying the version that already serves changes nothing.
    assert deploy_version(settings, PROJECT, serving, cluster.versions[0])["changed"] is False


def test_five_swaps_under_load_lose_no_request(cluster):
    from mlops.serving.deploy import deploy_version

    settings = cluster.settings
    serving = ServingConfig(enabled=True, min_replicas=1, max_replicas=1)
    deploy_version(settings, PROJECT, serving, cluster.versions[0])
    v1, v2, v3 = cluster.versions
    load = Load(settings.gateway_port, cluster.key, PROJECT, concurrency=4)
    swaps = []
    try:
        time.sleep(2)
        for version in (v2, v3, v1, v2, v3):
            result = deploy_version(settings, PROJECT, serving, version)
            assert result["changed"] and result["drain"]["gateway"] == "switched", result
            swaps.append(result)
        time.sleep(1)
    finally:
        load.finish()
    assert load.failures == [], load.failures[:5]
    served_versions = {version for _, _, version in load.results}
    assert served_versions == {v1, v2, v3}, served_versions
    assert len(load.results) > 100
    # Only the serving version's application is left; its route is the last deploy's.
    statuses = _app_statuses(settings)
    assert set(statuses) == {f"{PROJECT}-v{v3}"}, statuses


def test_a_version_failing_its_health_check_is_rolled_back(cluster):
    from mlops.serving.deploy import DeployError, deploy_version
    from mlops.serving.routes import read_routes, routes_file

    settings = cluster.settings
    serving = ServingConfig(enabled=True, min_replicas=1, max_replicas=1, health_timeout_s=60)
    before = deploy_version(settings, PROJECT, serving, cluster.versions[0])["version"]
    broken = train_and_register(settings, PROJECT, "mlp_classifier", seed=9)["version"]
    from mlflow import MlflowClient

    from mlops.serving.registry_models import download_model_dir

    folder = download_model_dir(MlflowClient(settings.tracking_uri), PROJECT, broken, settings.home / "serving")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    serving_broken = serving.model_copy(update={"memory_gb": 0.5})  # the footprint probe would fail first

    load = Load(settings.gateway_port, cluster.key, PROJECT, concurrency=2)
    try:
        with pytest.raises(DeployError, match=rf"v{broken} was rolled back.*v{before} keeps serving"):
            deploy_version(settings, PROJECT, serving_broken, broken)
    finally:
        load.finish()
    assert load.failures == [], load.failures[:5]
    assert {v for _, _, v in load.results} == {before}
    _, routes = read_routes(routes_file(settings))
    assert routes[PROJECT].version == before
    assert f"{PROJECT}-v{broken}" not in _app_statuses(settings)


def test_replicas_scale_up_under_load_and_back_down(cluster):
    from mlops.serving.deploy import deploy_version

    settings = cluster.settings
    serving = ServingConfig(
        enabled=True,
        min_replicas=1,
        max_replicas=2,
        target_ongoing_requests=1,
        upscale_delay_s=1,
        downscale_delay_s=3,
        max_batch_size=1,  # every request its own model call: load shows as ongoing requests
    )
    deploy_version(settings, SCALED, serving, cluster.scaled_version)
    app = f"{SCALED}-v{cluster.scaled_version}"

    def running() -> int:
        return _app_statuses(settings)[app]["replicas"]["model"].get("RUNNING", 0)

    assert running() == 1
    load = Load(settings.gateway_port, cluster.key, SCALED, concurrency=8)
    try:
        wait_for(lambda: running() == 2, 90, "a second replica under load", interval=1)
    finally:
        load.finish()
    assert load.failures == [], load.failures[:5]
    wait_for(lambda: running() == 1, 90, "scaling back to one replica", interval=1)


def test_plan_keeps_every_project_within_the_budget():
    from mlops.serving.deploy import DeployError, plan_replicas

    gib = 1024**3
    serving = ServingConfig(min_replicas=1, max_replicas=8)
    plan = plan_replicas("p", serving, int(0.9 * gib), 4 * gib, {"other": 2 * gib})
    assert (plan.max_replicas, plan.memory_bytes) == (2, int(0.9 * gib) // (64 * 1024**2) * 64 * 1024**2 + 64 * 1024**2)
    with pytest.raises(DeployError, match=r"min_replicas=3 .* do not fit .* budget of 4.00 GiB .*other 2.00 GiB.*MLOPS_SERVING_MEMORY_GB"):
        plan_replicas("p", ServingConfig(min_replicas=3, max_replicas=3), gib, 4 * gib, {"other": 2 * gib})


def test_ray_refuses_a_driver_without_the_token(cluster, tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    result = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{cluster.settings.ray_port}'); print('CONNECTED')"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and "CONNECTED" not in result.stdout
