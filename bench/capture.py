"""Prediction capture's cost on gateway throughput: the same gateway with capture on and off.

Trains and registers a tiny mlp_classifier project in a throwaway MLOPS_HOME and starts two
gateways on it with uvicorn in this process (own threads): `capture=True` (every predict
recorded, Parquet written by the writer thread under the throwaway home) and
`capture=False`. For concurrency 1, 8 and 32 it sends REQUESTS single-row predictions per
run (threads, one keep-alive http.client connection each: bench/serving.py's load helpers),
alternating off/on for ROUNDS rounds. Every "on" run is charged with the writer's work: the
rows it captured are flushed right after it, and that flush's wall time and CPU count as the
run's. Printed per level: the median over rounds of throughput, p50/p99 and process CPU per
request (clients included, the same in both modes), and the median of the rounds' on/off
throughput ratios (target: capture costs <= 5 %). On a shared machine throughput is noisy;
the CPU per request is the steadier measure of what capture adds.

    .venv/bin/python bench/capture.py [REQUESTS] [ROUNDS]      (defaults 2000, 5)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
KEY = "bench-key"
PROJECT = "bench_capture"
TARGET_COST = 0.05


def main(requests: int = 2000, rounds: int = 5) -> None:
    sys.path.insert(0, str(REPO / "include"))
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    home = tempfile.mkdtemp(prefix="mlops-bench-capture-")
    os.environ["MLOPS_HOME"] = home
    os.environ.pop("MLOPS_TRACKING_URI", None)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import numpy as np
    from serving import _http_caller, _run, _start  # bench/serving.py: the same load and server helpers
    from serving_support import train_and_register

    from mlops.serving.gateway import create_app
    from mlops.settings import Settings

    settings = Settings.from_env()
    train_and_register(settings, PROJECT, "mlp_classifier")
    apps = {"off": create_app(settings, {KEY}, capture=False), "on": create_app(settings, {KEY}, capture=True)}
    servers = {mode: _start(app) for mode, app in apps.items()}
    writer = apps["on"].state.gateway.capture
    path = f"/v1/projects/{PROJECT}/models/latest/predict"
    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    body = json.dumps({"inputs": {"x": x.tolist()}}).encode()
    headers = {"Content-Type": "application/json", "X-API-Key": KEY}
    callers = {mode: _http_caller(port, path, body, headers) for mode, (_, port) in servers.items()}
    for caller in callers.values():
        caller()()  # loads the model in each gateway
    writer.flush()

    def measured(mode: str, concurrency: int) -> dict[str, float]:
        cpu = time.process_time()
        stats = _run(callers[mode], concurrency, requests)
        elapsed = requests / stats["rps"]
        if mode == "on":  # the writer's work for these rows belongs to this run
            flush_started = time.perf_counter()
            writer.flush()
            elapsed += time.perf_counter() - flush_started
        stats["rps"] = requests / elapsed
        stats["cpu_us"] = 1e6 * (time.process_time() - cpu) / requests
        return stats

    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for concurrency in LEVELS:
        for _ in range(rounds):
            for mode in ("off", "on"):
                runs.setdefault((mode, concurrency), []).append(measured(mode, concurrency))
    direct = _direct_costs(apps["on"].state.gateway, x)
    writer.close()
    counts = writer.snapshot()["counts"]
    files = len(list((Path(home) / "monitoring" / "predictions").rglob("part-*.parquet")))
    for server, _ in servers.values():
        server.should_exit = True
    for server, _ in servers.values():  # their lifespan shutdown stops the gateways' MLX threads before exit
        server.bench_thread.join(timeout=10)
    shutil.rmtree(home, ignore_errors=True)

    stats = ("rps", "p50", "p99", "cpu_us")
    median = {key: {s: statistics.median(r[s] for r in results) for s in stats} for key, results in runs.items()}
    print(f"mlp_classifier, 1-row predictions, {requests} requests x {rounds} rounds per cell (median), {os.cpu_count()} cores")
    print(f"{'conc':>5} {'capture':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'on/off req/s':>13}")
    worst = 0.0
    for concurrency in LEVELS:
        off, on = median["off", concurrency], median["on", concurrency]
        pairs = zip(runs["on", concurrency], runs["off", concurrency])
        ratio = statistics.median(a["rps"] / b["rps"] for a, b in pairs)
        worst = max(worst, 1 - ratio)
        for mode, r in (("off", off), ("on", on)):
            shown = f"{ratio:>13.3f}" if mode == "on" else ""
            print(f"{concurrency:>5} {mode:>8} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['cpu_us']:>11.0f} {shown}")
        added = on["cpu_us"] - off["cpu_us"]
        print(f"{'':>5} {'added':>8} {'':>9} {'':>8} {'':>8} {added:>+11.0f} ({100 * added / off['cpu_us']:+.1f} % CPU)")
    print(
        f"captured {counts['captured', 'predictions']} rows, wrote {counts['written', 'predictions']} in {files} files, "
        f"{counts['write_failures', 'predictions']} write failures, {counts['dropped', 'predictions']} dropped"
    )
    verdict = "within" if worst <= TARGET_COST else "above"
    print(f"largest throughput cost of capture (median of paired rounds): {100 * worst:.1f} % ({verdict} the {100 * TARGET_COST:.0f} % target)")
    work = direct["request_path_us"] + direct["writer_us_per_row"]
    baseline = min(median["off", c]["cpu_us"] for c in LEVELS)
    print(
        f"capture work per 1-row predict, timed directly: {direct['request_path_us']:.1f} us on the request path + "
        f"{direct['writer_us_per_row']:.1f} us in the writer thread = {work:.1f} us, "
        f"{100 * work / baseline:.1f} % of the least CPU per request without capture ({baseline:.0f} us)"
    )


def _direct_costs(gateway, x, count: int = 5_000, repeats: int = 5) -> dict[str, float]:
    """What capture does per 1-row predict, timed without HTTP: the request-path call (request
    id, buffer append, recent-id table) and the writer's flush per row; the best of `repeats`
    (other load on the machine only ever adds)."""
    import numpy as np

    outputs = {"label": np.array([1]), "probabilities": np.full((1, 4), 0.25, np.float32)}
    gateway.capture.flush()
    request_path, writer = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(count):
            gateway.captured(PROJECT, 1, "mlx", "cpu", started, {"x": x}, outputs)
        flush_started = time.perf_counter()
        gateway.capture.flush()
        request_path.append(flush_started - started)
        writer.append(time.perf_counter() - flush_started)
    return {"request_path_us": 1e6 * min(request_path) / count, "writer_us_per_row": 1e6 * min(writer) / count}


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:3]])
