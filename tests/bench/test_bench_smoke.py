"""Every benchmark still runs: each bench/ script at its tiny `--smoke` size, end to end, as its own process.

A benchmark that breaks (an API it calls changed, an assertion about the DAGs no longer holds)
fails here instead of on the day someone needs its figures. Figures come only from full runs:
nothing here asserts a number, only that the script exits 0 and prints its table (the headers).

The tests are parametrized over the bench/ folder, so a new script fails until it has a
`--smoke` size and its headers are listed in SMOKE. The selected scripts run two at a time
(most of their time is servers starting and subprocesses importing), heaviest first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))
JOBS = 2
TIMEOUT = 420  # per script; a smoke run takes seconds to a minute on 2 cores

# script -> what its table prints (headers, row labels); listed heaviest first (started first).
# Scripts too slow for the suite's 20 minutes, and what covers their path instead.
MANUAL = {
    "ray_two_nodes.py": "two Ray nodes and a node-loss failover take ~60 s on 2 cores; tests/serving/test_ray_deploy.py::"
    "test_a_second_node_joins_the_head_and_runs_one_of_two_replicas runs the same join, placement and requests",
}
SMOKE: dict[str, tuple[str, ...]] = {
    "serving.py": ("1. overhead", "2. backends", "3. batching", "4. swap", "req/s", "p99 ms"),
    "drift_operator.py": ("variant", "compared", "first s", "steps (s)", "bare+paths", "operator"),
    "dags_test_overhead.py": ("median s", "plain script", "airflow dags test", "Airflow overhead"),
    "drift.py": ("variant", "wall/bare", "cpu/bare", "sampled"),
    "environments.py": ("what", "median s", "first build", "cached ensure_environment", "run_in_environment", "overhead per task"),
    "capture.py": ("conc", "gateway", "req/s", "server CPU us/req", "x/off req/s", "off2"),
    "thermal_gate_delay.py": ("hop", "median s", "thermal_gate task duration", "delay the gate adds"),
    "parse_dags.py": ("projects", "dags", "tasks", "ours (s)", "floor (s)", "ratio", "cpu ratio", "warm", "cold"),
    "pool_sync.py": ("operation", "median ms", "x baseline", "sync_pools"),
    "report.py": ("what", "total s", "collect s", "draw s", "toolkit page", "one project page", "mlops report"),
    "train_overhead.py": ("path", "median s", "tracked", "overhead"),
    "sampler.py": ("sampler", "median s", "own s", "wall time on/off", "sampler's own time"),
    "dashboard.py": ("what", "median s", "x round trip", "build_overview", "build_project"),
    "capture_gc.py": ("GC", "capture off us", "capture on us", "added us"),
    "mlx_blas.py": ("configuration", "MLX GFLOP/s", "numpy GFLOP/s", "train samples/s"),
    "thermal_poll.py": ("what", "median µs", "x os.stat", "ThermalSensor.execute()"),
    "data_load_rss.py": ("load", "peak MiB", "peak-base MiB", "mmap", "full"),
}


def _run(script: str) -> dict:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(BENCH / script), "--smoke"], cwd=REPO, env=os.environ.copy(),
            capture_output=True, text=True, timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return {"returncode": None, "stdout": out, "stderr": f"killed after {TIMEOUT} s", "seconds": TIMEOUT}
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
            "seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def smoke_runs(request) -> dict[str, Future]:
    """Starts every selected script that has a smoke size (two at a time, heaviest first)."""
    selected = {
        item.callspec.params["script"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_bench_script_runs_at_smoke_size" and hasattr(item, "callspec")
    }
    pool = ThreadPoolExecutor(JOBS, thread_name_prefix="bench-smoke")
    futures = {script: pool.submit(_run, script) for script in SMOKE if script in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_every_smoke_entry_is_a_bench_script():
    assert set(SMOKE) <= set(SCRIPTS), f"SMOKE names scripts bench/ no longer has: {sorted(set(SMOKE) - set(SCRIPTS))}"


@pytest.mark.timeout(1800)  # waits for its script in the shared pool, not only for its own run (TIMEOUT each)
@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_runs_at_smoke_size(script: str, smoke_runs: dict[str, Future]):
    if script in MANUAL:
        pytest.skip(MANUAL[script])
    assert script in SMOKE, (
        f"bench/{script} has no smoke size: give it a `--smoke` option (the same path at a tiny size, "
        f"seconds) and list the headers of its table in SMOKE ({__file__})"
    )
    result = smoke_runs[script].result()
    where = f"bench/{script} --smoke ({result['seconds']:.0f} s)"
    print(where)  # shown with -rP: what each smoke run costs
    assert result["returncode"] == 0, f"{where} failed:\n{result['stdout'][-2000:]}\n--- stderr:\n{result['stderr'][-4000:]}"
    missing = [h for h in SMOKE[script] if h not in result["stdout"]]
    assert not missing, f"{where} printed no {missing}:\n{result['stdout'][-3000:]}"
