"""Where prediction capture's cost goes: the gateway's CPU per request with and without capture, GC on and off.

The gateway runs in this process and is driven over ASGI (no sockets, no client threads), so the
CPU time per request is the gateway's own (its writer thread included). Rounds alternate capture
off/on; the table shows the mean of ROUNDS rounds of REQUESTS 1-row predictions each, once with Python's garbage collector
on and once with it off (`gc.disable()`): the difference between the two "added" columns is the
collector's share of capture's cost.

    .venv/bin/python bench/capture_gc.py [REQUESTS] [ROUNDS]     (defaults 2500, 6)
    .venv/bin/python bench/capture_gc.py --smoke                 (tests: 50 requests, 2 rounds)
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADERS = {"X-API-Key": "k", "Content-Type": "application/json"}


async def measure(apps: dict[bool, object], path: str, body: str, requests: int, rounds: int) -> dict[bool, float]:
    import httpx

    results: dict[bool, list[float]] = {False: [], True: []}
    async with apps[False].router.lifespan_context(apps[False]), apps[True].router.lifespan_context(apps[True]):
        clients = {c: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") for c, app in apps.items()}
        for client in clients.values():
            for _ in range(100):  # load the model, warm the paths
                await client.post(path, content=body, headers=HEADERS)
        for r in range(rounds):
            for capture in (False, True) if r % 2 == 0 else (True, False):
                start = time.process_time()
                for _ in range(requests):
                    await clients[capture].post(path, content=body, headers=HEADERS)
                results[capture].append(1e6 * (time.process_time() - start) / requests)
        for client in clients.values():
            await client.aclose()
    # the mean, not the median: the writer thread flushes every 5 s, into some rounds only
    return {capture: statistics.fmean(values) for capture, values in results.items()}


def main(requests: int = 2500, rounds: int = 6) -> None:
    sys.path.insert(0, str(REPO / "include"))
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    home = tempfile.mkdtemp(prefix="mlops-bench-capture-gc-")
    os.environ["MLOPS_HOME"] = home
    os.environ.pop("MLOPS_TRACKING_URI", None)
    import numpy as np
    from serving_support import train_and_register

    from mlops.serving.gateway import create_app
    from mlops.settings import Settings

    settings = Settings.from_env()
    train_and_register(settings, "bench_capture_gc", "mlp_classifier")
    path = "/v1/projects/bench_capture_gc/models/latest/predict"
    body = json.dumps({"inputs": {"x": np.zeros((1, 32)).tolist()}})
    rows = []
    for collector in ("on", "off"):
        apps = {capture: create_app(settings, {"k"}, capture=capture) for capture in (False, True)}
        if collector == "off":
            gc.collect()
            gc.disable()
        cpu = asyncio.run(measure(apps, path, body, requests, rounds))
        gc.enable()
        rows.append((collector, cpu[False], cpu[True]))
    shutil.rmtree(home, ignore_errors=True)
    print(f"gateway CPU per 1-row predict (in-process, over ASGI), mean of {rounds} rounds x {requests} requests")
    print(f"{'GC':>4} {'capture off us':>15} {'capture on us':>14} {'added us':>9} {'added %':>8}")
    for collector, off, on in rows:
        print(f"{collector:>4} {off:>15.1f} {on:>14.1f} {on - off:>+9.1f} {100 * (on - off) / off:>+7.1f}%")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(50, 2)
    else:
        main(*[int(a) for a in sys.argv[1:3]])
