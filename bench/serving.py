"""Serving benchmarks: throughput and p50/p99 latency per serving path, at concurrency 1, 8 and 32.

Trains and registers small mlp_classifier projects in a throwaway MLOPS_HOME, then sends
REQUESTS predictions per concurrency level (threads, one keep-alive http.client connection
each) and prints four tables; every ratio is against a baseline measured in this run:

1. overhead: the tiny model called in-process, behind a bare FastAPI app, behind the gateway
   (in-process MLX path); the gateway's added p50 over the bare app.
2. backends: the same tiny model served by `bentoml serve` (its Bento) and by Ray Serve
   (`deploy_version`), each called directly and through the gateway (route table); what the
   gateway adds over each direct backend. A no-op HTTP backend (answers without a model, in
   this process) isolates the gateway's own forwarding cost.
3. batching: a batchable model (deep and narrow: one call is a few ms of per-layer overhead,
   32 rows cost little more than 1) through the gateway with adaptive batching on and off,
   and on Ray Serve (`@serve.batch`) with `max_batch_size` 32 and 1, called directly and
   through the gateway; batched/unbatched throughput, requests per model call.
4. swap: load through the gateway to Ray Serve at concurrency 8, a steady window, then 5
   blue/green deploys while the load runs, each of a version registered just before it (as
   the lifecycle does: the gateway's catalog has not seen it when the route switches):
   errors (all of them, and by window), p50/p99 of the requests that started during a
   deploy against the steady ones, and each deploy's times.

The gateway, the bare app and the load clients share this process (uvicorn in threads; the
gateway listens on MLOPS_GATEWAY_PORT, which the deployer's drain step calls). Deploys run
in a separate deployer process (as the deploy DAG's task would), so the Ray driver is not
in the gateway's process. A real Ray head (token auth) and `bentoml serve` are started on
free loopback ports and stopped by PID at the end; nothing asserts on speed. Progress and
library logs go to stderr, the tables to stdout.

    .venv/bin/python bench/serving.py [REQUESTS]        (default 400)
    .venv/bin/python bench/serving.py --smoke           (tests: 32 requests per level, 1 swap after a 1 s steady window)
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
TINY = "bench_serving"  # table 1, then routed to its Bento
RAY_TINY = "bench_ray"  # same tiny model: v1 (seed 0), then one version registered before each swap
BATCHABLE = "bench_batch"
# Deep and narrow: on this CPU a call costs ~3 us of MLX op overhead per op, so 1 row costs a
# few ms and 32 rows little more. (Wide layers do not batch here: the mlx[cpu] Linux wheel
# links the reference BLAS, whose sgemm costs ~32x for 32 rows; see `_model_costs`.)
BATCHABLE_HP = {"hidden": 32, "layers": 256}
SWAPS = 5
STEADY_S = 10.0
SWAP_CONCURRENCY = 8
REPLICA_MEMORY_GB = 0.5  # given, so deploys skip the one-off footprint probe of each version
T0 = time.perf_counter()


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _load_average() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(app, port: int | None = None) -> tuple[object, int]:
    import uvicorn

    port = port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    server.bench_thread = thread
    return server, port


def _stop_server(server) -> None:
    server.should_exit = True
    server.bench_thread.join(10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _run(call_factory, concurrency: int, requests: int) -> dict[str, float]:
    """`call_factory()` gives each worker its own callable (own connection); returns stats in ms."""
    per_worker = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        call = call_factory()
        call()  # warm the connection
        mine = []
        for _ in range(count):
            start = time.perf_counter()
            call()
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, per_worker))
    elapsed = time.perf_counter() - start
    return {
        "rps": len(latencies) / elapsed,
        "p50": 1000 * statistics.median(latencies),
        "p99": 1000 * _percentile(latencies, 0.99),
    }


def _http_caller(port: int, path: str, body: bytes, headers: dict[str, str]):
    def factory():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def call() -> bytes:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {payload[:200]!r}")
            return payload

        return call

    return factory


def _answer(factory) -> dict:
    return json.loads(factory()())


def _get_json(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def _table(title: str, rows: list[tuple[str, int, dict[str, float]]]) -> None:
    print(f"\n{title}" if title[0].isdigit() else title)
    print(f"{'target':>28} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, concurrency, r in rows:
        tail = f" {r['note']}" if "note" in r else ""
        print(f"{name:>28} {concurrency:>5} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}{tail}")
    sys.stdout.flush()


def _measure(targets: dict[str, Any], requests: int) -> dict[tuple[str, int], dict[str, float]]:
    results = {}
    for concurrency in LEVELS:
        for name, factory in targets.items():
            results[name, concurrency] = _run(factory, concurrency, requests)
    return results


NOOP_ANSWER = json.dumps({"outputs": {"probabilities": [[0.25, 0.25, 0.25, 0.25]], "label": [0]}}).encode()


async def _noop_backend(scope: dict, receive: Any, send: Any) -> None:
    """A raw ASGI app answering every POST like a Ray replica, without a model: isolates forwarding."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": NOOP_ANSWER})


# --- processes this bench starts ---------------------------------------------------------


@contextlib.contextmanager
def _bentoml_serve(settings, tag: str, log: Path):
    """`bentoml serve TAG` on a free port; yields the port once /predict can be called. Stopped by PID."""
    import psutil

    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": str(settings.home / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    cli = Path(sys.executable).with_name("bentoml")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(cli), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=settings.home,
        )
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):  # noqa: S310
                    break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bentoml serve not ready after 90 s: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        family = {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
        yield port
    finally:
        # The circus arbiter stops its workers on TERM (they run in their own sessions).
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        with contextlib.suppress(psutil.Error):
            family |= {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
        for pid in family:  # any worker the arbiter left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _deployer_init(include: str, log: str) -> None:
    """The deployer process: library on the path, its (and Ray's driver) output to a log file."""
    sys.path.insert(0, include)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)


def _deploy(project: str, version: int, serving: dict[str, Any]) -> dict[str, Any]:
    """In the deployer process: `deploy_version` with the environment's settings."""
    from mlops.config.schema import ServingConfig
    from mlops.serving.deploy import deploy_version
    from mlops.settings import Settings

    return deploy_version(Settings.from_env(), project, ServingConfig(enabled=True, **serving), version)


def _undeploy(project: str) -> bool:
    from mlops.serving.deploy import undeploy
    from mlops.settings import Settings

    return undeploy(Settings.from_env(), project)


# --- continuous load for the swap table --------------------------------------------------


@dataclass
class _Load:
    """Clients calling `path` on the gateway until stopped; every answer and failure timed."""

    port: int
    path: str
    body: bytes
    headers: dict[str, str]
    concurrency: int
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, float, int]] = field(default_factory=list)  # (start, seconds, version)
    failures: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.concurrency)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        connect = _http_caller(self.port, self.path, self.body, self.headers)
        call = connect()
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                version = json.loads(call())["version"]
                self.results.append((start, time.perf_counter() - start, version))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.failures.append((start, f"{type(exc).__name__}: {exc}"))
                call = connect()  # a fresh connection

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _window_stats(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "n": len(latencies),
        "p50": 1000 * statistics.median(latencies),
        "p99": 1000 * _percentile(latencies, 0.99),
        "max": 1000 * max(latencies),
    }


# --- the bench ---------------------------------------------------------------------------


def _model_costs(session, mlx: ThreadPoolExecutor, features: int) -> dict[int, float]:
    """ms per direct `session.predict` of 1 and 32 rows (on the MLX thread)."""
    import numpy as np

    costs = {}
    for rows in (1, 32):
        x = np.random.default_rng(1).standard_normal((rows, features)).astype(np.float32)
        for _ in range(3):
            mlx.submit(session.predict, {"x": x}).result()
        n = 30
        start = time.perf_counter()
        for _ in range(n):
            mlx.submit(session.predict, {"x": x}).result()
        costs[rows] = 1000 * (time.perf_counter() - start) / n
    return costs


def main(requests: int = 400, swaps: int = SWAPS, steady_s: float = STEADY_S) -> None:
    sys.path.insert(0, str(REPO / "include"))
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    home = Path(tempfile.mkdtemp(prefix="mlops-bench-serving-"))
    from mlops_testing import bench_serving_environment

    bench_serving_environment(home, memory_gb=4)

    from mlops.settings import Settings

    settings = Settings.from_env()
    try:
        with contextlib.ExitStack() as stack:
            _bench(settings, home, requests, stack, swaps, steady_s)
    finally:
        from mlops.serving.ray_cluster import ray_temp_dir

        shutil.rmtree(ray_temp_dir(settings), ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    _log("done, everything stopped and removed")


def _bench(settings, home: Path, requests: int, stack: contextlib.ExitStack, swap_count: int = SWAPS,
           steady_s: float = STEADY_S) -> None:
    import numpy as np
    from serving_support import train_and_register

    from mlops.serving.api_keys import ensure_api_key
    from mlops.serving.gateway import create_app
    from mlops.serving.routes import Route, write_route
    from mlops.training.artifacts import restore_session

    start_load = _load_average()
    _log(f"training {TINY}, {RAY_TINY}, {BATCHABLE} ({BATCHABLE_HP}) in {home}")
    train_and_register(settings, TINY, "mlp_classifier")
    ray_versions = [train_and_register(settings, RAY_TINY, "mlp_classifier", seed=0)["version"]]  # more in table 4
    train_and_register(settings, BATCHABLE, "mlp_classifier", hyperparameters=BATCHABLE_HP)

    key = ensure_api_key(settings)
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    gateway = create_app(settings, {key})  # adaptive batching on (the default)
    unbatched = create_app(settings, {key}, batching=False)
    gateway_server, gateway_port = _start(gateway, settings.gateway_port)
    unbatched_server, unbatched_port = _start(unbatched)

    stack.callback(_stop_server, gateway_server)
    stack.callback(_stop_server, unbatched_server)

    def gateway_path(project: str) -> str:
        return f"/v1/projects/{project}/models/latest/predict"

    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    body = json.dumps({"inputs": {"x": x.tolist()}}).encode()
    json_only = {"Content-Type": "application/json"}
    _http_caller(gateway_port, gateway_path(TINY), body, headers)()()  # loads the model, fills the download cache

    # MLX streams are per thread: like the gateway, restore and predict on one dedicated thread.
    mlx = ThreadPoolExecutor(1, thread_name_prefix="mlx")
    stack.callback(mlx.shutdown)
    session = mlx.submit(restore_session, settings.home / "serving" / TINY / "1").result()
    expected = mlx.submit(session.predict, {"x": x}).result()["probabilities"]

    def in_process():
        def call() -> None:
            mlx.submit(session.predict, {"x": x}).result()

        return call

    bare = FastAPI()

    @bare.post("/predict")
    async def bare_predict(request: Request) -> dict:
        payload = json.loads(await request.body())
        inputs = {"x": np.asarray(payload["inputs"]["x"], dtype=np.float32)}
        out = await asyncio.get_running_loop().run_in_executor(mlx, session.predict, inputs)
        return {"outputs": {k: v.tolist() for k, v in out.items()}}

    bare_server, bare_port = _start(bare)
    stack.callback(_stop_server, bare_server)

    # --- 1. overhead -------------------------------------------------------------------------
    _log("table 1: in-process / bare FastAPI / gateway")
    targets = {
        "in-process": in_process,
        "bare FastAPI": _http_caller(bare_port, "/predict", body, json_only),
        "gateway": _http_caller(gateway_port, gateway_path(TINY), body, headers),
    }
    results = _measure(targets, requests)
    capture = getattr(gateway.state.gateway, "capture", None) is not None
    print(
        f"mlp_classifier (default: 2 x 64 hidden), 1-row predictions, {requests} requests per level, "
        f"{os.cpu_count()} cores, load average {start_load} at the start; gateway prediction capture "
        f"{'on' if capture else 'off'}"
    )
    _table("1. overhead", [(n, c, results[n, c]) for c in LEVELS for n in targets])
    print("gateway added p50 over the bare app:")
    for concurrency in LEVELS:
        added = results["gateway", concurrency]["p50"] - results["bare FastAPI", concurrency]["p50"]
        print(f"  concurrency {concurrency:>2}: {added:+.2f} ms   (target <= +1 ms)")
    sys.stdout.flush()

    # --- 3a. batching in the gateway's own MLX path (before Ray and BentoML take CPU) ---------
    _log(f"table 3: gateway batching on/off for {BATCHABLE}")
    batch_path = gateway_path(BATCHABLE)
    for port in (gateway_port, unbatched_port):
        _http_caller(port, batch_path, body, headers)()()  # load the model in both gateways
    deep = mlx.submit(restore_session, settings.home / "serving" / BATCHABLE / "1").result()
    costs = _model_costs(deep, mlx, 32)
    batcher = gateway.state.gateway.batchers[BATCHABLE, 1]
    batch_targets = {
        "gateway, batching": _http_caller(gateway_port, batch_path, body, headers),
        "gateway, no batching": _http_caller(unbatched_port, batch_path, body, headers),
    }
    batch_results = {}
    for concurrency in LEVELS:
        for name, factory in batch_targets.items():
            before = (batcher.batches, batcher.requests)
            r = batch_results[name, concurrency] = _run(factory, concurrency, requests)
            if name == "gateway, batching":
                calls, served = batcher.batches - before[0], batcher.requests - before[1]
                r["note"] = f"{served / max(calls, 1):5.1f} req/model call"

    # --- 2a. forwarding alone: the gateway in front of a no-op backend (same process) ---------
    _log("table 2: no-op backend")
    noop_server, noop_port = _start(_noop_backend)
    stack.callback(_stop_server, noop_server)
    write_route(settings, Route(project=TINY, version=1, url=f"http://127.0.0.1:{noop_port}/", backend="ray"))
    time.sleep(0.3)  # the gateway re-reads the route table at most every 0.1 s
    noop_targets = {
        "no-op backend direct": _http_caller(noop_port, "/", body, json_only),
        "gateway -> no-op backend": _http_caller(gateway_port, gateway_path(TINY), body, headers),
    }
    assert _answer(noop_targets["gateway -> no-op backend"])["outputs"]["label"] == [0]
    backend_results = _measure(noop_targets, requests)

    # --- 2b. BentoML -----------------------------------------------------------------------
    from mlops.serving.bento import build_bento
    from mlops.serving.ray_cluster import ray_temp_dir

    _log("building the Bento")
    built = build_bento(settings, TINY, 1)
    _log("starting bentoml serve")
    with _bentoml_serve(settings, built["tag"], home / "bentoml-serve.log") as bento_port:
        write_route(settings, Route(project=TINY, version=1, url=f"http://127.0.0.1:{bento_port}/predict", backend="bentoml"))
        time.sleep(0.3)
        bento_targets = {
            "BentoML direct": _http_caller(bento_port, "/predict", body, json_only),
            "gateway -> BentoML": _http_caller(gateway_port, gateway_path(TINY), body, headers),
        }
        direct, routed = _answer(bento_targets["BentoML direct"]), _answer(bento_targets["gateway -> BentoML"])
        np.testing.assert_allclose(direct["probabilities"], expected, rtol=1e-5)  # a Bento answers the columns
        np.testing.assert_allclose(routed["outputs"]["probabilities"], expected, rtol=1e-5)
        _log("table 2: BentoML")
        backend_results.update(_measure(bento_targets, requests))
        write_route(settings, None, TINY)

    # --- Ray Serve: 2b, 3b, 4 ----------------------------------------------------------------
    from mlops_testing import ray_head

    _log("starting the Ray head")
    stack.enter_context(ray_head(settings, home / "ray-head.log"))
    deployer = ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_deployer_init,
        initargs=(str(REPO / "include"), str(home / "deployer.log")),
    )
    stack.callback(deployer.shutdown)  # runs before the head stops (LIFO)

    def deploy(project: str, version: int, **serving: Any) -> dict[str, Any]:
        serving = {"min_replicas": 1, "max_replicas": 1, "memory_gb": REPLICA_MEMORY_GB, **serving}
        started = time.perf_counter()
        try:
            result = deployer.submit(_deploy, project, version, serving).result()
        except Exception as exc:
            raylet = ray_temp_dir(settings) / "session_latest" / "logs" / "raylet.out"
            raylet_tail = raylet.read_text(errors="replace")[-3000:] if raylet.exists() else "(none)"
            raise RuntimeError(
                f"{exc}\n--- deployer log:\n{(home / 'deployer.log').read_text()[-3000:]}\n--- raylet log:\n{raylet_tail}"
            ) from exc
        result["wall_s"] = time.perf_counter() - started
        return result

    _log(f"deploying {RAY_TINY} v{ray_versions[0]} on Ray Serve")
    first = deploy(RAY_TINY, ray_versions[0])
    serve_port, serve_path = settings.serve_port, first["url"].split(str(settings.serve_port), 1)[1]
    ray_targets = {
        "Ray Serve direct": _http_caller(serve_port, serve_path, body, json_only),
        "gateway -> Ray Serve": _http_caller(gateway_port, gateway_path(RAY_TINY), body, headers),
    }
    direct, routed = _answer(ray_targets["Ray Serve direct"]), _answer(ray_targets["gateway -> Ray Serve"])
    np.testing.assert_allclose(routed["outputs"]["probabilities"], direct["outputs"]["probabilities"], rtol=1e-5)
    assert routed["version"] == ray_versions[0], routed
    _log("table 2: Ray Serve")
    backend_results.update(_measure(ray_targets, requests))
    _table(
        f"2. backends (tiny model; gateway routes by the route table; Ray Serve: 1 replica, ready in {first['ready_s']} s)",
        [(n, c, backend_results[n, c]) for c in LEVELS for n in (*noop_targets, *bento_targets, *ray_targets)],
    )
    print("gateway added p50 / throughput ratio over each direct backend:")
    for backend in ("no-op backend", "BentoML", "Ray Serve"):
        for concurrency in LEVELS:
            d, g = backend_results[f"{backend} direct", concurrency], backend_results[f"gateway -> {backend}", concurrency]
            print(f"  {backend:>13} concurrency {concurrency:>2}: {g['p50'] - d['p50']:+.2f} ms p50, {g['rps'] / d['rps']:.2f}x req/s")
    sys.stdout.flush()

    # 3b. batching at the Ray Serve replica (@serve.batch), through the gateway.
    for size in (32, 1):
        _log(f"table 3: gateway -> Ray Serve, {BATCHABLE} with max_batch_size {size}")
        deployed = deploy(BATCHABLE, 1, max_batch_size=size)
        path = deployed["url"].split(str(serve_port), 1)[1]
        ray_batch_targets = {
            f"Ray direct, max_batch {size}": _http_caller(serve_port, path, body, json_only),
            f"gateway -> Ray, max_batch {size}": _http_caller(gateway_port, batch_path, body, headers),
        }
        for concurrency in LEVELS:
            for name, target in ray_batch_targets.items():
                before = _get_json(deployed["url"])
                r = batch_results[name, concurrency] = _run(target, concurrency, requests)
                after = _get_json(deployed["url"])
                calls, served = after["batches"] - before["batches"], after["requests"] - before["requests"]
                r["note"] = f"{served / max(calls, 1):5.1f} req/model call"
        deployer.submit(_undeploy, BATCHABLE).result()
    batch_names = [*batch_targets, *(f"{via}, max_batch {size}" for size in (32, 1) for via in ("Ray direct", "gateway -> Ray"))]
    print(
        f"\n3. batching: {BATCHABLE} = mlp_classifier {BATCHABLE_HP}, 1-row requests; one direct predict: "
        f"1 row {costs[1]:.2f} ms, 32 rows {costs[32]:.2f} ms ({costs[32] / costs[1]:.1f}x for 32x the rows)"
    )
    _table(
        "gateway: batch_wait 1 ms, max 32 rows; Ray Serve: @serve.batch, batch_wait 1 ms, 1 replica",
        [(n, c, batch_results[n, c]) for c in LEVELS for n in batch_names],
    )
    print("throughput batched / unbatched:   (target >= 3x at concurrency 32)")
    for concurrency in LEVELS:
        local = batch_results["gateway, batching", concurrency]["rps"] / batch_results["gateway, no batching", concurrency]["rps"]
        ray = [
            batch_results[f"{via}, max_batch 32", concurrency]["rps"] / batch_results[f"{via}, max_batch 1", concurrency]["rps"]
            for via in ("Ray direct", "gateway -> Ray")
        ]
        print(
            f"  concurrency {concurrency:>2}: gateway in-process {local:.2f}x, "
            f"Ray Serve direct {ray[0]:.2f}x, gateway -> Ray Serve {ray[1]:.2f}x"
        )
    sys.stdout.flush()

    # --- 4. swaps under load -----------------------------------------------------------------
    _log(f"table 4: steady {steady_s:.0f} s, then {swap_count} swaps of {RAY_TINY} under load")
    load = _Load(gateway_port, gateway_path(RAY_TINY), body, headers, SWAP_CONCURRENCY)
    stack.callback(load.finish)
    time.sleep(1.0)  # connections warm
    steady = (time.perf_counter(), time.perf_counter() + steady_s)
    time.sleep(steady_s)
    swaps = []
    for i in range(swap_count):
        # As the lifecycle does: register a new version while the gateway serves, then deploy it.
        registering = time.perf_counter()
        version = train_and_register(settings, RAY_TINY, "mlp_classifier", seed=i + 1)["version"]
        start = time.perf_counter()
        result = deploy(RAY_TINY, version)
        result["register_s"] = start - registering
        swaps.append((start, time.perf_counter(), result))
    time.sleep(1.0)
    load.finish()

    def started_in(windows: list[tuple[float, float]], at: float) -> bool:
        return any(a <= at < b for a, b in windows)

    windows = [(a, b) for a, b, _ in swaps]
    steady_stats = _window_stats([s for t, s, _ in load.results if started_in([steady], t)])
    swap_stats = _window_stats([s for t, s, _ in load.results if started_in(windows, t)])
    served = {}
    for _, _, v in load.results:
        served[v] = served.get(v, 0) + 1
    print(
        f"\n4. swap: gateway -> Ray Serve, concurrency {SWAP_CONCURRENCY}, tiny model, {swap_count} deploys under load, "
        "each of a version registered just before it (while the gateway serves)"
    )
    print(f"{'window':>22} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, stats, errors in (
        (f"steady ({steady_s:.0f} s)", steady_stats, sum(started_in([steady], t) for t, _ in load.failures)),
        (f"during deploys ({sum(b - a for a, b in windows):.0f} s)", swap_stats, sum(started_in(windows, t) for t, _ in load.failures)),
    ):
        print(f"{label:>22} {stats['n']:>9} {errors:>7} {stats['p50']:>8.2f} {stats['p99']:>8.2f} {stats['max']:>8.2f}")
    print(
        f"p99 during deploys / steady p99: {swap_stats['p99'] / steady_stats['p99']:.2f}x   (target <= 2x, 0 errors); "
        f"all requests {len(load.results)}, errors {len(load.failures)}; answered by version {dict(sorted(served.items()))}"
    )
    print(f"errors: {len(load.failures)} of {len(load.results) + len(load.failures)} requests (target 0), registrations included")
    for message in sorted({m for _, m in load.failures})[:5]:
        print(f"  error: {message[:200]}")
    print(f"{'deploy':>8} {'register s':>10} {'wall s':>7} {'ready_s':>8} {'gateway':>9} {'drain':>9} {'waited_s':>9}")
    for (start, end, result) in swaps:
        print(
            f"{'v%s->v%s' % (result['previous'], result['version']):>8} {result['register_s']:>10.1f} {end - start:>7.1f} "
            f"{result['ready_s']:>8.2f} {result.get('gateway', '-'):>9} {result['drain']['gateway']:>9} "
            f"{result['drain']['waited_s']:>9.3f}"
        )
    print(f"\nload average {_load_average()} at the end (1, 5, 15 min; other work on the machine skews the figures)")
    sys.stdout.flush()
    _log("stopping everything")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, as small as it gets; figures from full runs
        main(32, swaps=1, steady_s=1.0)
    else:
        main(*[int(a) for a in sys.argv[1:2]])
