"""Serving overhead: one mlp_classifier model called in-process, behind a bare FastAPI app, behind the gateway.

Trains and registers a tiny project in a throwaway MLOPS_HOME, then for concurrency 1, 8
and 32 sends REQUESTS single-row predictions per level (threads, one keep-alive
http.client connection each) and prints throughput and p50/p99 latency. Both servers run
uvicorn on 127.0.0.1 in this process (own threads); the gateway's added p50 is gateway
minus bare app.

    .venv/bin/python bench/serving.py [REQUESTS]
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI, Request

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
KEY = "bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(app) -> tuple[object, int]:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


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

        def call() -> None:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {payload[:200]!r}")

        return call

    return factory


def main(requests: int = 400) -> None:
    sys.path.insert(0, str(REPO / "include"))
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    home = tempfile.mkdtemp(prefix="mlops-bench-serving-")
    os.environ["MLOPS_HOME"] = home
    os.environ.pop("MLOPS_TRACKING_URI", None)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import numpy as np
    from serving_support import train_and_register

    from mlops.serving.gateway import create_app
    from mlops.settings import Settings
    from mlops.training.artifacts import restore_session

    settings = Settings.from_env()
    project = "bench_serving"
    train_and_register(settings, project, "mlp_classifier")
    gateway = create_app(settings, {KEY})
    gateway_server, gateway_port = _start(gateway)
    path = f"/v1/projects/{project}/models/latest/predict"
    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    body = json.dumps({"inputs": {"x": x.tolist()}}).encode()
    headers = {"Content-Type": "application/json", "X-API-Key": KEY}
    _http_caller(gateway_port, path, body, headers)()()  # loads the model, fills the download cache

    # MLX streams are per thread: like the gateway, restore and predict on one dedicated thread.
    mlx = ThreadPoolExecutor(1, thread_name_prefix="mlx")
    session = mlx.submit(restore_session, settings.home / "serving" / project / "1").result()

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
    targets = {
        "in-process": in_process,
        "bare FastAPI": _http_caller(bare_port, "/predict", body, {"Content-Type": "application/json"}),
        "gateway": _http_caller(gateway_port, path, body, headers),
    }
    results: dict[tuple[str, int], dict[str, float]] = {}
    for concurrency in LEVELS:
        for name, factory in targets.items():
            results[name, concurrency] = _run(factory, concurrency, requests)
    gateway_server.should_exit = bare_server.should_exit = True
    mlx.shutdown()
    shutil.rmtree(home, ignore_errors=True)

    print(f"mlp_classifier, 1-row predictions, {requests} requests per level, {os.cpu_count()} cores")
    print(f"{'target':>14} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency in LEVELS:
        for name in targets:
            r = results[name, concurrency]
            print(f"{name:>14} {concurrency:>5} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    print("gateway added p50 over the bare app:")
    for concurrency in LEVELS:
        added = results["gateway", concurrency]["p50"] - results["bare FastAPI", concurrency]["p50"]
        print(f"  concurrency {concurrency:>2}: {added:+.2f} ms")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:2]])
