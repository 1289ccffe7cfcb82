"""Prediction capture's cost on serving: two real gateways (`mlops serve` and `mlops serve --no-capture`) under the same load.

Trains and registers a tiny mlp_classifier project in a throwaway MLOPS_HOME and starts both
gateways as their own processes on 127.0.0.1 (what `mlops up` runs), so the load generator's
threads never share a GIL with a server. For concurrency 1, 8 and 32 it sends REQUESTS
single-row predictions per run (threads, one keep-alive http.client connection each:
bench/serving.py's load helpers) to each gateway in turn for ROUNDS rounds, rotating which goes
first. A third gateway, also without capture (`off2`), is the A/A control: what off2 - off
shows is the measurement's noise, not capture. Per level it prints:

* server CPU per request: the gateway process's own CPU time (/proc/<pid>/stat: event loop,
  model thread and, with capture, the writer thread) over the whole level divided by the
  requests it served. The level ends after the writer's flush interval, so every Parquet write
  of those rows is charged. This is what capture costs a CPU-bound server: its throughput
  ceiling is 1 / (CPU per request). Target: <= 5 % more.
* req/s, p50/p99 as the clients saw them (median over rounds) and the median of the rounds'
  on/off throughput ratios: on 2 cores the clients and the server share the CPU, so this is
  noisier than the CPU figure.

Then capture's own work, timed directly in this process (request path: request id, buffer
append, recent-id table; the writer's flush per row).

    .venv/bin/python bench/capture.py [REQUESTS] [ROUNDS]      (defaults 2000, 7)
    .venv/bin/python bench/capture.py --smoke                  (tests: 32 requests, 1 round, 0.5 s flushes)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
KEY = "bench-key"
PROJECT = "bench_capture"
TARGET_COST = 0.05
MODES = ("off", "on", "off2")  # off2: a second gateway without capture, the A/A control (the noise floor)
FLUSH_SECONDS = 5.0  # PredictionLogWriter's default interval: a level ends after one more


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_gateway(port: int, capture: bool, log: Path) -> subprocess.Popen:
    argv = [str(REPO / ".venv" / "bin" / "mlops"), "serve", "--port", str(port)] + ([] if capture else ["--no-capture"])
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # noqa: S310 - loopback
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.3)
    raise RuntimeError(f"gateway on {port} not healthy after 120 s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def main(requests: int = 2000, rounds: int = 7, flush_seconds: float | None = None, direct_count: int = 5_000,
         direct_repeats: int = 5) -> None:
    """`flush_seconds`: the gateways' capture flush interval (None: their default, FLUSH_SECONDS)."""
    sys.path.insert(0, str(REPO / "include"))
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    sys.path.insert(0, str(REPO / "tests"))
    home = tempfile.mkdtemp(prefix="mlops-bench-capture-")
    os.environ.update(MLOPS_HOME=home, MLOPS_API_KEYS=KEY, MLFLOW_DISABLE_TELEMETRY="true")
    os.environ.pop("MLOPS_TRACKING_URI", None)
    if flush_seconds is not None:
        os.environ["MLOPS_CAPTURE_FLUSH_SECONDS"] = str(flush_seconds)
    flush_wait = (FLUSH_SECONDS if flush_seconds is None else flush_seconds) + 1

    import numpy as np
    from mlops_testing import free_port
    from serving import _http_caller, _run  # bench/serving.py: the same load helpers
    from serving_support import train_and_register

    from mlops.settings import Settings

    settings = Settings.from_env()
    train_and_register(settings, PROJECT, "mlp_classifier")
    ports = {mode: free_port() for mode in MODES}
    servers = {mode: _start_gateway(port, mode == "on", Path(home) / f"gateway-{mode}.log") for mode, port in ports.items()}
    try:
        path = f"/v1/projects/{PROJECT}/models/latest/predict"
        x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
        body = json.dumps({"inputs": {"x": x.tolist()}}).encode()
        headers = {"Content-Type": "application/json", "X-API-Key": KEY}
        callers = {mode: _http_caller(port, path, body, headers) for mode, port in ports.items()}
        for caller in callers.values():
            caller()()  # loads the model in each gateway
        time.sleep(flush_wait)

        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        cpu_per_request: dict[tuple[str, int], float] = {}
        for concurrency in LEVELS:
            cpu_before = {mode: _cpu_seconds(p.pid) for mode, p in servers.items()}
            served = dict.fromkeys(servers, 0)
            for r in range(rounds):
                for mode in MODES[r % 3:] + MODES[:r % 3]:  # each gateway first, second and third in turn
                    # each worker warms its connection with one extra request
                    runs.setdefault((mode, concurrency), []).append(_run(callers[mode], concurrency, requests))
                    served[mode] += requests + concurrency
            time.sleep(flush_wait)  # the writer flushes this level's rows: their cost is charged here
            for mode, process in servers.items():
                cpu_per_request[mode, concurrency] = 1e6 * (_cpu_seconds(process.pid) - cpu_before[mode]) / served[mode]
        captured = _metric(ports["on"], 'mlops_gateway_capture_rows_total{kind="predictions",state="written"}')
        collections = {
            mode: [_metric(port, f'mlops_gateway_gc_collections_total{{generation="{g}"}}') for g in range(3)] for mode, port in ports.items()
        }
    finally:
        for process in servers.values():
            _stop(process)
    files = len(list((Path(home) / "monitoring" / "predictions").rglob("part-*.parquet")))
    direct = _direct_costs(settings, x, direct_count, direct_repeats)
    shutil.rmtree(home, ignore_errors=True)

    print(f"mlp_classifier, 1-row predictions, {requests} requests x {rounds} rounds per cell, gateways in their own processes, {os.cpu_count()} cores")
    print(f"{'conc':>5} {'gateway':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server CPU us/req':>18} {'x/off req/s':>13}")
    worst_cpu = worst_rps = worst_noise = 0.0
    for concurrency in LEVELS:
        ratios = {
            mode: [a["rps"] / b["rps"] for a, b in zip(runs[mode, concurrency], runs["off", concurrency])] for mode in ("on", "off2")
        }
        ratio = statistics.median(ratios["on"])
        worst_rps = max(worst_rps, 1 - ratio)
        for mode in MODES:
            stats = {s: statistics.median(r[s] for r in runs[mode, concurrency]) for s in ("rps", "p50", "p99")}
            shown = f"{statistics.median(ratios[mode]):>13.3f}" if mode != "off" else ""
            print(
                f"{concurrency:>5} {mode:>8} {stats['rps']:>9.0f} {stats['p50']:>8.2f} {stats['p99']:>8.2f}"
                f" {cpu_per_request[mode, concurrency]:>18.0f} {shown}"
            )
        off, on, off2 = (cpu_per_request[mode, concurrency] for mode in MODES)
        worst_cpu = max(worst_cpu, (on - off) / off)
        worst_noise = max(worst_noise, abs(off2 - off) / off)
        for label, value in (("on-off", on - off), ("off2-off", off2 - off)):
            print(f"{'':>5} {label:>8} {'':>9} {'':>8} {'':>8} {value:>+12.0f} ({100 * value / off:+.1f} %)")
    print(f"the capturing gateway wrote {captured} rows in {files} Parquet files")
    print("garbage collections by generation 0/1/2 (2 = full): " + ", ".join(f"{m} {'/'.join(map(str, c))}" for m, c in collections.items()))
    verdict = "within" if worst_cpu <= TARGET_COST else "above"
    print(
        f"capture's largest cost in server CPU per request: {100 * worst_cpu:+.1f} % ({verdict} the {100 * TARGET_COST:.0f} % target); "
        f"in client-seen throughput (median of paired rounds): {100 * worst_rps:.1f} %; "
        f"A/A noise (two gateways without capture): up to {100 * worst_noise:.1f} %"
    )
    work = direct["request_path_us"] + direct["writer_us_per_row"]
    baseline = min(cpu_per_request["off", c] for c in LEVELS)
    print(
        f"capture work per 1-row predict, timed directly: {direct['request_path_us']:.1f} us on the request path + "
        f"{direct['writer_us_per_row']:.1f} us in the writer thread = {work:.1f} us, "
        f"{100 * work / baseline:.1f} % of the least server CPU per request without capture ({baseline:.0f} us)"
    )


def _metric(port: int, name: str, kind: type = int) -> float:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"X-API-Key": KEY})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return kind(float(line.split()[-1]))
    return -1


def _direct_costs(settings, x, count: int = 5_000, repeats: int = 5) -> dict[str, float]:
    """What capture does per 1-row predict, timed without HTTP: the request-path call (request
    id, buffer append, recent-id table) and the writer's flush per row; the best of `repeats`
    (other load on the machine only ever adds)."""
    import numpy as np

    from mlops.serving.gateway import Gateway

    gateway = Gateway(settings, {KEY}, max_body_bytes=1_000_000, rescan_seconds=60)
    outputs = {"label": np.array([1]), "probabilities": np.full((1, 4), 0.25, np.float32)}
    request_path, writer = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(count):
            gateway.captured(PROJECT, 1, "mlx", "cpu", started, {"x": x}, outputs)
        flush_started = time.perf_counter()
        gateway.capture.flush()
        request_path.append(flush_started - started)
        writer.append(time.perf_counter() - flush_started)
    gateway.capture.close()
    return {"request_path_us": 1e6 * min(request_path) / count, "writer_us_per_row": 1e6 * min(writer) / count}


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(32, 1, flush_seconds=0.5, direct_count=200, direct_repeats=1)
    else:
        main(*[int(a) for a in sys.argv[1:3]])
