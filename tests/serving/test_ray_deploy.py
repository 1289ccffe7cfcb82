"""Ray Serve deploys for real: a Ray head (token auth), the gateway over HTTP, a real MLflow registry.

One head and one gateway for the module; three registered versions of one project (seeds 0, 1,
2) and a second project for autoscaling. Checks: a deploy serves through the gateway with the
registered model's predictions; 5 version swaps under continuous load lose no request, each new
version registered while the gateway runs (as the lifecycle does); a second gateway the deployer
does not talk to learns a new version from one scan (and a route to a missing one costs one
scan, not a storm); a version that fails its health check is rolled back while the old one keeps serving;
replicas scale up under load and back down; replica memory comes from the measured
footprint and the plan stays within the serving memory budget.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from mlops_testing import free_port, free_port_run, ray_head, wait_for
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


def _start_gateway(settings, key: str, port: int | None = None, **options):
    import uvicorn

    from mlops.serving.gateway import create_app

    app = create_app(settings, {key}, **options)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port or settings.gateway_port, log_level="warning", access_log=False)
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
        "MLOPS_RAY_PORT": str(free_port_run(3)),  # the head binds it and the next two
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
    """Counts and order, not speed: every phase between swaps serves only the version just deployed,
    requests are in flight across every swap, and none of them fails.

    As the lifecycle does it: each new version is registered while the gateway serves, just before its
    deploy, so the route switches to a version the gateway's first scan (the load's first requests) did
    not list; the third swap goes back to a version it knows."""
    from mlops.serving.deploy import deploy_version

    settings = cluster.settings
    serving = ServingConfig(enabled=True, min_replicas=1, max_replicas=1)
    deploy_version(settings, PROJECT, serving, cluster.versions[0])
    v1 = cluster.versions[0]
    per_phase = 20  # answers each version gives the load between two swaps
    load = Load(settings.gateway_port, cluster.key, PROJECT, concurrency=4)
    swaps = []  # (version, perf_counter before deploy_version, after it returned)

    def answered_since(since: float, version: int) -> int:
        return sum(1 for start, _, v in list(load.results) if start > since and v == version)

    try:
        wait_for(lambda: answered_since(0.0, v1) >= per_phase, 120, f"the load answered by v{v1}", interval=0.1)
        for step in range(5):
            # registered now, while the load runs (seeds differ from the fixture's)
            version = v1 if step == 2 else train_and_register(settings, PROJECT, "mlp_classifier", seed=20 + step)["version"]
            began = time.perf_counter()
            result = deploy_version(settings, PROJECT, serving, version)
            returned = time.perf_counter()
            assert result["changed"] and result["drain"]["gateway"] == "switched", result
            assert result["gateway"] == "knows it", result  # the gateway listed it before the route moved
            swaps.append((version, began, returned))
            wait_for(lambda: answered_since(returned, version) >= per_phase or load.failures, 120,
                     f"the load answered by v{version}", interval=0.1)
    finally:
        load.finish()
    assert load.failures == [], (len(load.failures), len(load.results), load.failures[:5])
    new = [version for version, _, _ in swaps if version != v1]
    assert len(new) == 4 and min(new) > max(cluster.versions), swaps  # registered after the gateway's first scan
    results = sorted(load.results)
    previous = [v1] + [version for version, _, _ in swaps[:-1]]
    next_began = [began for _, began, _ in swaps[1:]] + [float("inf")]
    for (version, began, returned), old, until in zip(swaps, previous, next_began):
        # Requests that overlap the swap (in flight while it ran) got the old or the new version.
        during = [v for start, seconds, v in results if start < returned and start + seconds > began]
        assert during and set(during) <= {old, version}, (version, during)
        # Started after the swap returned, finished before the next began: the new version only.
        after = [v for start, seconds, v in results if start > returned and start + seconds < until]
        assert len(after) >= per_phase and set(after) == {version}, (version, after)
    # Only the serving version's application is left; its route is the last deploy's.
    statuses = _app_statuses(settings)
    assert set(statuses) == {f"{PROJECT}-v{swaps[-1][0]}"}, statuses


def _http_get(port: int, path: str, key: str | None = None) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"X-API-Key": key} if key else {})
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 200, (path, response.status, body[:300])
    return body


def _scans(port: int, project: str) -> int:
    """How many times the gateway on `port` rescanned `project`'s versions (its /metrics)."""
    import re

    text = _http_get(port, "/metrics")
    found = re.findall(rf'mlops_gateway_registry_scans_total\{{scope="model",model="{project}"\}} (\d+)', text)
    return int(found[0]) if found else 0


def _burst(port: int, key: str, project: str, model: str = "latest", clients: int = 8) -> list[tuple[int, dict]]:
    """`clients` predicts sent at once (connected first, then released by a barrier): (status, body) of each."""
    barrier = threading.Barrier(clients)
    answers: list[tuple[int, dict]] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        barrier.wait()
        conn.request(
            "POST", f"/v1/projects/{project}/models/{model}/predict", body=json.dumps({"inputs": {"x": X.tolist()}}),
            headers={"Content-Type": "application/json", "X-API-Key": key},
        )
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read())))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == clients, answers
    return answers


def test_a_gateway_the_deployer_does_not_reach_learns_a_new_version_from_one_scan(cluster):
    """A second gateway on its own port (the deployer neither announces to it nor drains it) scanned the
    registry before a version was registered and deployed; once the route table names that version, a
    burst of requests is served by it after exactly one scan of the project: every request that missed
    waits on that scan, none is refused.

    A route naming a version that does not exist costs one scan per route-table generation, every request
    a 404 naming the version; an unknown version asked for directly is answered from the last scan.
    """
    from mlops.serving.deploy import deploy_version
    from mlops.serving.routes import read_routes, routes_file, write_route

    settings = cluster.settings
    serving = ServingConfig(enabled=True, min_replicas=1, max_replicas=1, memory_gb=0.5)
    deploy_version(settings, PROJECT, serving, cluster.versions[0])
    port = free_port()
    second = _start_gateway(settings, cluster.key, port, rescan_seconds=3600)  # negative cache: an hour
    try:
        assert _predict(port, cluster.key, PROJECT)["version"] == cluster.versions[0]  # its first scan
        new = train_and_register(settings, PROJECT, "mlp_classifier", seed=40)["version"]
        result = deploy_version(settings, PROJECT, serving, new)
        assert result["changed"] and result["gateway"] == "knows it", result  # the first gateway knew it
        before = _scans(port, PROJECT)
        answers = _burst(port, cluster.key, PROJECT)
        assert [status for status, _ in answers] == [200] * 8, answers
        assert {body["version"] for _, body in answers} == {new}
        assert _scans(port, PROJECT) == before + 1

        # The route table names a version nobody registered (a hand edit, a deployer of another registry).
        _, routes = read_routes(routes_file(settings))
        serving_route = routes[PROJECT]
        missing = new + 100
        generation = write_route(settings, dataclasses.replace(serving_route, version=missing))
        try:
            wait_for(
                lambda: json.loads(_http_get(port, "/v1/routes", cluster.key))["generation"] >= generation,
                30, "the second gateway to read the route table", interval=0.05,
            )
            before = _scans(port, PROJECT)
            for _ in range(2):
                answers = _burst(port, cluster.key, PROJECT)
                assert [status for status, _ in answers] == [404] * 8, answers
                assert all(f"has no version {missing} (the route table" in body["detail"] for _, body in answers), answers
            assert _scans(port, PROJECT) == before + 1
        finally:
            write_route(settings, serving_route)
        before = _scans(port, PROJECT)
        answers = _burst(port, cluster.key, PROJECT, model=str(missing + 1))
        assert [status for status, _ in answers] == [404] * 8, answers
        assert all(f"has no version {missing + 1};" in body["detail"] for _, body in answers), answers
        assert _scans(port, PROJECT) == before
    finally:
        second.should_exit = True


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


def test_ray_refuses_a_driver_without_the_right_token_and_admits_it_with(cluster, tmp_path):
    """One driver, one address: no token and a wrong token are refused by the head's authentication;
    the cluster's token connects (to this head: its `memory` resource is the serving budget)."""
    import secrets
    import subprocess
    import sys

    from mlops.serving.ray_cluster import ensure_ray_token, ray_environment

    settings = cluster.settings
    code = (
        f"import ray; ray.init(address='127.0.0.1:{settings.ray_port}'); "
        "print('CONNECTED', int(ray.cluster_resources()['memory']))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    base["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    right = ray_environment(settings)
    token = ensure_ray_token(settings).read_text().strip()
    wrong_token = secrets.token_urlsafe(24)
    assert wrong_token != token and len(wrong_token) == len(token)
    wrong_file = tmp_path / "wrong_token"
    wrong_file.write_text(wrong_token)
    envs = {
        "no token": base,
        "wrong token": {**base, **right, "RAY_AUTH_TOKEN_PATH": str(wrong_file)},  # differs from `right` only here
        "the token": {**base, **right},
    }
    drivers = {
        name: subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, env in envs.items()
    }
    done = {name: (proc.communicate(timeout=180), proc.returncode) for name, proc in drivers.items()}

    # Ray 2.60's GCS answers UNAUTHENTICATED; the driver raises it as AuthenticationError (ray/exceptions.py).
    refusal = "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token is missing or incorrect"
    for name in ("no token", "wrong token"):
        (out, err), code_ = done[name]
        assert code_ != 0 and "CONNECTED" not in out, (name, out, err[-2000:])
        assert refusal in err, (name, err[-2000:])
        assert "Unauthenticated" in err, (name, err[-2000:])  # the GCS client's own log of the server's answer
    (out, err), code_ = done["the token"]
    assert code_ == 0, err[-2000:]
    assert out.split() == ["CONNECTED", str(settings.serving_memory_bytes)], (out, err[-2000:])
    assert "AuthenticationError" not in err and "InvalidAuthToken" not in err


def test_a_process_that_read_another_clusters_token_connects_with_this_ones(cluster, tmp_path, monkeypatch):
    """Ray caches the token it read once per process: `connected` makes it read this cluster's file again
    (a worker or test process that met another cluster, or a rotated token, is not refused)."""
    import secrets

    import ray
    from ray._raylet import AuthenticationTokenLoader

    from mlops.serving.ray_cluster import connected

    other = tmp_path / "other_cluster_token"
    other.write_text(secrets.token_urlsafe(24))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(other))
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    assert loader.has_token(ignore_auth_mode=True)  # the other cluster's token is now the cached one
    with connected(cluster.settings):
        assert ray.is_initialized()
        assert int(ray.cluster_resources()["memory"]) == cluster.settings.serving_memory_bytes


def _replica_nodes(app: str) -> dict[str, str]:
    """replica id -> node id of the app's RUNNING replicas, as Serve's controller reports them."""
    from ray.serve.context import _get_global_client

    deployments = _get_global_client().get_serve_details()["applications"][app]["deployments"]
    return {r["replica_id"]: r["node_id"] for d in deployments.values() for r in d["replicas"] if r["state"] == "RUNNING"}


def test_a_second_node_joins_the_head_and_runs_one_of_two_replicas(cluster):
    """README "Several Macs" on loopback: a node joined with `ray start --address` and a copy of the head's
    token runs one of a 2-replica deployment's replicas (Serve's default SPREAD placement), and it answers.

    bench/ray_two_nodes.py measures the same path, and what losing the node costs (a SIGKILL under load:
    no failed request, 2 replicas on the head again 5-19 s later), which takes too long for the suite.
    Last in the module: the node is killed at the end and the GCS lists it alive ~15 s more, so a
    deploy right after could be placed on it."""
    import shutil
    import signal
    import sys
    import tempfile
    from pathlib import Path
    from types import SimpleNamespace

    from mlops_testing import _popen_logged, _stop

    from mlops.serving.deploy import deploy_version, undeploy
    from mlops.serving.ray_cluster import connected, ensure_ray_token, ray_address, ray_environment
    from mlops.serving.routes import read_routes, routes_file

    settings = cluster.settings
    node_dir = Path(tempfile.mkdtemp(prefix="mlops-ray2-"))  # short: Ray's unix sockets live under it
    token = node_dir / "ray_token"  # the second Mac's copy of the head's token
    shutil.copyfile(ensure_ray_token(settings), token)
    token.chmod(0o600)
    argv = [  # the README's join command; two nodes on one machine also need their own temp dir and agent port
        str(Path(sys.executable).with_name("ray")), "start", "--block", "--address", ray_address(settings),
        "--node-ip-address", "127.0.0.1", f"--temp-dir={node_dir / 'ray'}",
        f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats",
    ]
    node = _popen_logged(argv, node_dir / "node.log", env={**os.environ, **ray_environment(settings),
                                                           "RAY_AUTH_TOKEN_PATH": str(token)})
    _, routes = read_routes(routes_file(settings))
    serving_now = routes[PROJECT].version if PROJECT in routes else None
    version = next(v for v in cluster.versions if v != serving_now)  # a deploy that changes something
    try:
        with connected(settings):  # imports Ray once the token variables are set
            import ray

            head = ray.get_runtime_context().get_node_id()
            second = wait_for(
                lambda: node.poll() is None and next(
                    (n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head), None),
                60, "the second node alive in the GCS", interval=0.2,
            )
        serving = ServingConfig(enabled=True, min_replicas=2, max_replicas=2, memory_gb=0.5)
        assert deploy_version(settings, PROJECT, serving, version)["changed"]
        app = f"{PROJECT}-v{version}"
        with connected(settings):
            from ray import serve

            assert sorted(_replica_nodes(app).values()) == sorted([head, second]), (node_dir / "node.log").read_text()[-3000:]
            # Both answer, through a handle (what reaches a replica does not depend on the proxy's routing).
            handle = serve.get_deployment_handle("model", app_name=app)
            try:
                pids = {handle.remote(SimpleNamespace(method="GET")).result(timeout_s=30)["pid"] for _ in range(40)}
            finally:
                handle.shutdown()  # else its metrics pusher logs errors once the driver disconnects
            assert len(pids) == 2, pids
        assert _predict(settings.gateway_port, cluster.key, PROJECT)["version"] == version
    finally:
        undeploy(settings, PROJECT)
        _stop(node, sig=signal.SIGKILL, timeout=5)  # its whole session: ray start, raylet, workers
        shutil.rmtree(node_dir, ignore_errors=True)
