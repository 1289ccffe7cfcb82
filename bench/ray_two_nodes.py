"""Ray Serve across two nodes: a second node joins the platform's head, one replica runs on each, and
losing that node leaves the deployment serving from the head.

Both nodes run on this machine (a stand-in for a second Mac on the LAN):

1. the head, started as `mlops up` starts it (`ray_cluster.head_argv`, token auth from
   `ray_environment`, readiness from `head_ready`), in a throwaway MLOPS_HOME on free ports;
2. a second node joined with the README's command, `RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<copy of the
   head's token> ray start --address 127.0.0.1:<port> --node-ip-address 127.0.0.1 --block`, plus what
   two nodes on one machine need and two Macs do not: its own `--temp-dir` and a free
   `--dashboard-agent-listen-port` (the default 52365 could be taken). Join time = from `ray start` to
   the GCS listing the node alive (as a driver sees it). Ray replaces a loopback `--node-ip-address`
   with the machine's routable address (`services.resolve_ip_for_localhost`): the table prints
   what the GCS lists for both nodes;
3. one small registered mlp_classifier deployed by the platform's own `deploy_version` with
   min = max = 2 replicas. Placement is Ray Serve's default replica scheduling, SPREAD (best effort:
   a deployment's replicas go to different nodes while they fit), which the deploy path uses as is;
   the table says on which node (GCS node id) each replica runs (Serve's controller details);
4. latency through Serve's HTTP proxy (on the head, `proxy_location="HeadOnly"`), concurrency 1:
   GET by replica (the answer names the replica's pid, hence its node) and 1-row predicts, with
   how many each node served (the replicas' own counters, read through a deployment handle).
   Serve's proxy prefers replicas on its own node (RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING,
   on by default): node 2's replica only gets what the head's cannot take. The head inherits this
   process's environment, so `RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING=0 bench/ray_two_nodes.py`
   measures the proxy spreading requests over both;
5. node loss: predicts keep flowing at concurrency 2 while the second node's whole session
   (`ray start`, raylet, workers) gets SIGKILL, like a Mac losing power. Measured: errors and the
   slowest request, when the GCS declares the node dead, when Serve drops its replica and starts a
   replacement, when 2 replicas run again (both on the head), and the predict latency afterwards.

Everything is stopped by PID at the end (the node's and the head's sessions) and the temp folders go.
Nothing asserts on speed; progress goes to stderr, the tables to stdout.

    .venv/bin/python bench/ray_two_nodes.py [REQUESTS]     (default 300 per latency row)
    .venv/bin/python bench/ray_two_nodes.py --smoke        (tests: 20 requests per row; the same path)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROJECT = "bench_two_nodes"
REPLICAS = 2
REPLICA_MEMORY_GB = 0.5  # given, so the deploy skips the one-off footprint probe
FAILOVER_CONCURRENCY = 2
LOCAL_ROUTING = "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"  # read by Serve's proxy on the head (default 1)
T0 = time.perf_counter()


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> dict:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return json.loads(data)


# --- the second node ------------------------------------------------------------------------


def join_argv(settings: Any, temp_dir: Path, agent_port: int) -> list[str]:
    """The README's join command, plus the two flags that let a second node share this machine."""
    from mlops.serving.ray_cluster import ray_address

    return [
        str(Path(sys.executable).with_name("ray")), "start", "--block",
        "--address", ray_address(settings), "--node-ip-address", "127.0.0.1",
        f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={agent_port}",
        "--disable-usage-stats",
    ]


def _kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL the node's whole session: `ray start`, its raylet, agents and workers (a Mac losing power)."""
    from mlops.services import kill_session

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    kill_session(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# --- what the cluster says ------------------------------------------------------------------


def _alive_nodes() -> dict[str, bool]:
    import ray

    return {n["NodeID"]: bool(n["Alive"]) for n in ray.nodes()}


def _replicas(app: str) -> list[dict]:
    """Serve's controller view of the app's replicas: state, pid, node_id."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployments = details.get("applications", {}).get(app, {}).get("deployments", {})
    return [r for d in deployments.values() for r in d.get("replicas", [])]


def _running(app: str) -> list[dict]:
    return [r for r in _replicas(app) if r.get("state") == "RUNNING"]


# --- load -----------------------------------------------------------------------------------


@dataclass
class _Load:
    """Clients sending predicts to Serve's proxy until stopped; every answer and failure timed."""

    port: int
    path: str
    body: bytes
    concurrency: int
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # (start, seconds, error)

    def __post_init__(self) -> None:
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.concurrency)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                _call(conn, "POST", self.path, self.body)
                self.results.append((start, time.perf_counter() - start))
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                self.failures.append((start, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:200]))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _sequential(port: int, path: str, method: str, body: bytes | None, requests: int) -> tuple[list[float], list[dict]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    _call(conn, method, path, body)  # warm the connection
    latencies, answers = [], []
    for _ in range(requests):
        start = time.perf_counter()
        answers.append(_call(conn, method, path, body))
        latencies.append(time.perf_counter() - start)
    conn.close()
    return latencies, answers


# --- the run --------------------------------------------------------------------------------


def main(requests: int = 300) -> None:
    sys.path.insert(0, str(REPO / "include"))
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "tests" / "serving"))
    from mlops_testing import bench_serving_environment

    home = Path(tempfile.mkdtemp(prefix="mlops-bench-2n-"))
    node_dir = Path(tempfile.mkdtemp(prefix="mlops-ray2-"))  # short: Ray's unix sockets live under it
    bench_serving_environment(home, memory_gb=2)  # the deploy finds no gateway to announce to
    from mlops.serving.ray_cluster import ray_temp_dir
    from mlops.settings import Settings

    settings = Settings.from_env()
    try:
        with contextlib.ExitStack() as stack:
            _bench(settings, home, node_dir, requests, stack)
    finally:
        shutil.rmtree(ray_temp_dir(settings), ignore_errors=True)
        shutil.rmtree(node_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def _bench(settings: Any, home: Path, node_dir: Path, requests: int, stack: contextlib.ExitStack) -> None:
    import numpy as np
    from mlops_testing import _popen_logged, _stop, free_port, ray_head, wait_for
    from serving_support import train_and_register

    from mlops.config.schema import ServingConfig
    from mlops.serving.deploy import deploy_version
    from mlops.serving.ray_cluster import connected, ensure_ray_token, ray_environment

    load_start = "/".join(f"{v:.1f}" for v in os.getloadavg())
    _log("training and registering the model")
    version = train_and_register(settings, PROJECT, "mlp_classifier", seed=0)["version"]

    _log("starting the Ray head (head_argv, token auth)")
    began = time.perf_counter()
    head = stack.enter_context(ray_head(settings, home / "ray-head.log"))
    head_s = time.perf_counter() - began

    # The second node gets a copy of the head's token (mode 600), as a second Mac would.
    token = node_dir / "ray_token"
    shutil.copyfile(ensure_ray_token(settings), token)
    token.chmod(0o600)
    node_env = {**os.environ, **ray_environment(settings), "RAY_AUTH_TOKEN_PATH": str(token)}
    node_log = home / "ray-node2.log"
    timings: dict[str, float] = {"head": head_s}

    with connected(settings):
        import ray

        head_id = ray.get_runtime_context().get_node_id()
        _log("joining the second node (ray start --address)")
        began = time.perf_counter()
        node = _popen_logged(join_argv(settings, node_dir / "ray", free_port()), node_log, env=node_env)
        stack.callback(_stop, node, timeout=5)  # a no-op once the node was killed

        def joined() -> str | None:
            if node.poll() is not None:
                raise RuntimeError(f"ray start exited with {node.returncode}: {node_log.read_text()[-2000:]}")
            return next((n for n, alive in _alive_nodes().items() if alive and n != head_id), None)

        node_id = wait_for(joined, 120, "the second node in the GCS", interval=0.1)
        timings["join"] = time.perf_counter() - began
        resources = next(n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id)
        addresses = {n["NodeID"]: f"{n['NodeManagerAddress']}:{n['NodeManagerPort']}" for n in ray.nodes()}
    names = {head_id: "head", node_id: "node 2"}

    _log(f"deploying {PROJECT} v{version} with {REPLICAS} replicas (deploy_version)")
    serving = ServingConfig(enabled=True, min_replicas=REPLICAS, max_replicas=REPLICAS, memory_gb=REPLICA_MEMORY_GB)
    began = time.perf_counter()
    deployed = deploy_version(settings, PROJECT, serving, version)
    timings["deploy"] = time.perf_counter() - began
    app, url = deployed["app"], deployed["url"]
    path = url.split(str(settings.serve_port), 1)[1]
    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    body = json.dumps({"inputs": {"x": x.tolist()}}).encode()

    with connected(settings):
        placed = _running(app)
        by_pid = {r["pid"]: names.get(r["node_id"], r["node_id"][:8]) for r in placed}

        # GET through the proxy, attributed to the replica (its pid) that answered.
        _log(f"latency: {requests} GETs and {requests} predicts through Serve's proxy")
        get_latencies, get_answers = _sequential(settings.serve_port, path, "GET", None, requests)
        by_node: dict[str, list[float]] = {}
        for seconds, answer in zip(get_latencies, get_answers):
            by_node.setdefault(by_pid.get(answer["pid"], f"pid {answer['pid']}"), []).append(seconds)
        before = _replica_counters(app, len(placed))
        predict_two, _ = _sequential(settings.serve_port, path, "POST", body, requests)
        after = _replica_counters(app, len(placed))
        served = {by_pid.get(pid, f"pid {pid}"): after[pid] - before.get(pid, 0) for pid in after}

        _log("failover: SIGKILL the second node under load")
        load = _Load(settings.serve_port, path, body, FAILOVER_CONCURRENCY)
        stack.callback(load.finish)
        time.sleep(2.0)
        killed = time.perf_counter()
        _kill_node(node)
        first_ids = {r["replica_id"] for r in placed}
        lost_id = next((r["replica_id"] for r in placed if r["node_id"] == node_id), None)
        events: dict[str, float] = {}  # seconds after the kill: first seen

        def back() -> bool:
            """One poll of the GCS and of Serve's controller, noting when each event is first seen."""
            replicas = _replicas(app)
            dead = not _alive_nodes().get(node_id, False)
            now = time.perf_counter() - killed
            if dead:
                events.setdefault("dead", now)
            if not any(r["replica_id"] == lost_id and r.get("state") == "RUNNING" for r in replicas):
                events.setdefault("lost", now)
            for r in replicas:
                if r["replica_id"] not in first_ids:
                    events.setdefault("listed", now)
                    if r.get("state") == "RUNNING":
                        events.setdefault("running", now)
            running = [r for r in replicas if r.get("state") == "RUNNING"]
            return dead and len(running) == REPLICAS and all(r["node_id"] == head_id for r in running)

        wait_for(back, 180, f"node 2 dead and {REPLICAS} running replicas on the head", interval=0.1)
        events["done"] = time.perf_counter() - killed
        time.sleep(2.0)
        load.finish()
        recovered = _running(app)
        predict_head, _ = _sequential(settings.serve_port, path, "POST", body, requests)

    window = [s for t, s in load.results if t >= killed]
    slowest_at = max(((s, t - killed) for t, s in load.results if t >= killed), default=(0.0, float("nan")))[1]
    errors = [(t - killed, s, m) for t, s, m in load.failures]
    after_errors = [s for t, s in load.results if errors and t > killed + errors[-1][0]]
    load_end = "/".join(f"{v:.1f}" for v in os.getloadavg())

    # --- tables ---------------------------------------------------------------------------
    print(
        f"Ray {ray.__version__}, 2 nodes on this machine (head: head_argv; node 2: {int(resources.get('CPU', 0))} CPUs), "
        f"{os.cpu_count()} cores, load average {load_start} at the start; {PROJECT} mlp_classifier, "
        f"{REPLICAS} replicas (min = max), {REPLICA_MEMORY_GB} GiB each, 1-row predicts; "
        f"RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING={os.environ.get(LOCAL_ROUTING, '1 (default)')}"
    )
    print("\n1. cluster")
    print(f"{'step':<44} {'seconds':>8}")
    for label, key in (
        ("head ready (ray start --head, agents answer)", "head"),
        ("node 2 joined (ray start -> alive in the GCS)", "join"),
        (f"deploy_version, {REPLICAS} replicas (wall)", "deploy"),
    ):
        print(f"{label:<44} {timings[key]:>8.2f}")
    print(f"{'  of which ready_s (both RUNNING + health)':<44} {deployed['ready_s']:>8.2f}")
    print(f"node addresses (GCS): head {addresses[head_id]}, node 2 {addresses[node_id]}")

    print("\n2. placement (Serve's controller: replica -> node)")
    print(f"{'replica':<24} {'node':<8} {'node_id':<14} {'pid':>8} {'state':<8}")
    for r in placed:
        state = getattr(r["state"], "value", r["state"])
        print(f"{r['replica_id'][:24]:<24} {names.get(r['node_id'], '?'):<8} {r['node_id'][:12]:<14} {r['pid']:>8} {state:<8}")
    nodes_used = sorted({names.get(r["node_id"], "?") for r in placed})
    print(f"replicas on: {', '.join(nodes_used)} ({'one per node' if len(nodes_used) == REPLICAS else 'NOT spread'})")

    print(f"\n3. latency through Serve's proxy (on the head), concurrency 1, {requests} requests per row")
    print(f"{'what':<34} {'n':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for node_name in sorted(by_node):
        print(f"{'GET, replica on ' + node_name:<34} {len(by_node[node_name]):>5} {_ms(by_node[node_name], 0.5):>8.2f} "
              f"{_ms(by_node[node_name], 0.99):>8.2f}")
    share = ", ".join(f"{name} {count}" for name, count in sorted(served.items()))
    print(f"{'predict, 1 replica per node':<34} {len(predict_two):>5} {_ms(predict_two, 0.5):>8.2f} {_ms(predict_two, 0.99):>8.2f}"
          f"   served by (incl. 1 warm-up): {share}")
    print(f"{'predict, both on the head (after 4)':<34} {len(predict_head):>5} {_ms(predict_head, 0.5):>8.2f} "
          f"{_ms(predict_head, 0.99):>8.2f}")

    print(f"\n4. node 2 killed (SIGKILL of its session) under load, concurrency {FAILOVER_CONCURRENCY}")
    print(f"{'what':<66} {'value':>10}")
    nan = float("nan")
    for label, key in (
        ("GCS declares node 2 dead", "dead"),
        ("Serve no longer lists node 2's replica RUNNING", "lost"),
        ("replacement replica listed by Serve", "listed"),
        ("replacement replica RUNNING", "running"),
        ("node 2 dead, 2 replicas RUNNING on the head", "done"),
    ):
        print(f"{label + ' (s after the kill)':<66} {events.get(key, nan):>10.2f}")
    print(f"{'requests answered after the kill':<66} {len(window):>10}")
    print(f"{'errors':<66} {len(errors):>10}")
    if errors:
        print(f"{'  first / last error (s after the kill)':<66} {errors[0][0]:>5.2f}/{errors[-1][0]:<5.2f}")
    print(f"{'slowest answered request after the kill (ms)':<66} {_ms(window, 1.0):>10.1f}")
    print(f"{'  it started (s after the kill)':<66} {slowest_at:>10.2f}")
    print(f"{'p50 of answered requests after the kill (ms)':<66} {_ms(window, 0.5):>10.2f}")
    print(f"replicas after: {', '.join(names.get(r['node_id'], '?') for r in recovered)}; "
          f"answered after the last error: {len(after_errors)}")
    for message in sorted({m for _, _, m in errors})[:3]:
        print(f"  error: {message}")
    print(f"\nload average {load_end} at the end (1, 5, 15 min; other work on the machine skews the figures)")
    sys.stdout.flush()
    _log(f"stopping everything (node 2 pid {node.pid}, head pid {head.pid})")


def _replica_counters(app: str, replicas: int) -> dict[int, int]:
    """Predicts each replica (by pid) has served so far, read with GETs through a deployment handle.

    Not through the proxy: it prefers the replica on its own node, so a GET would never reach node 2's.
    A handle picks among all replicas; the replica's GET branch only reads `request.method`.
    """
    from types import SimpleNamespace

    from ray import serve

    handle = serve.get_deployment_handle("model", app_name=app)
    seen: dict[int, int] = {}
    try:
        for _ in range(100):
            answer = handle.remote(SimpleNamespace(method="GET")).result(timeout_s=30)
            seen[answer["pid"]] = answer["requests"]
            if len(seen) >= replicas:
                break
    finally:
        handle.shutdown()  # else its metrics pusher logs errors once the driver disconnects
    return seen


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, as small as it gets; figures from full runs
        main(20)
    else:
        main(*[int(a) for a in sys.argv[1:2]])
