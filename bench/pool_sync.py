"""Cost of sizing and writing the MLX pools, against one trivial DB query in the same run.

The plugin's listener runs `sync_pools` at every DAG-run start, so it must cost about as
much as a query or two. Measured in one process against a fresh, migrated SQLite metadata
DB in a temporary state folder (median of REPEAT calls each):

* baseline: `SELECT 1` through a new Airflow session (create_session: connect, query, commit);
* `pool_plan`: the pure sizing;
* `read_thermal`: the fresh thermal reading the listener takes (sysfs / pmset);
* `sync_pools` unchanged: cached profile, given thermal, rows already right (one SELECT);
* `sync_pools` write: a 16-core CPU profile whose thermal state flips nominal/serious every call,
  so mlx_compute goes 8 <-> 4 slots (UPDATE + commit);
* listener path: `sync_pools()` with a fresh `read_thermal`, nothing changed;
* fair-share usage query: what `FairShareWeight.get_weight` reads (uncached);
* `probe()`: the full hardware probe, for scale (done once per scheduler process).

    .venv/bin/python bench/pool_sync.py [REPEAT]      (default 200; probe: REPEAT // 20)
    .venv/bin/python bench/pool_sync.py --smoke       (tests: REPEAT 3)
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))  # mlops_airflow


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up (imports, first connection)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(repeat: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pool-sync-bench-"))
    try:
        run(tmp, repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, repeat: int) -> None:
    from mlops.airflow_env import airflow_environment
    from mlops.settings import Settings

    env = airflow_environment(Settings.from_env({"MLOPS_HOME": str(tmp / "state")}))
    env["MLOPS_HOME"] = str(tmp / "state")
    os.environ.update(env)
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    from sqlalchemy import text

    from airflow.utils.session import create_session
    from mlops.hardware import HardwareProfile, probe
    from mlops.resources.pools import GIB, pool_plan
    from mlops_airflow.fair_share import FairShareWeight, pool_usage
    from mlops_airflow.pools import current_profile, current_thermal, sync_pools

    logging.getLogger("mlops_airflow.pools").setLevel(logging.WARNING)
    profile = current_profile()
    thermal = current_thermal()
    box = HardwareProfile(platform="linux", cpu_cores_physical=16, memory_total_bytes=64 * GIB,
                          metal_available=False, cuda_available=False)
    flip = ["serious", "nominal"]

    def baseline():
        with create_session() as session:
            session.execute(text("SELECT 1")).scalar()

    def write():
        flip.reverse()
        sync_pools(box, flip[0])

    rows = [
        ("baseline: SELECT 1 (new session)", median_ms(baseline, repeat)),
        ("pool_plan (pure)", median_ms(lambda: pool_plan(profile, "serious"), repeat)),
        ("read_thermal", median_ms(current_thermal, repeat)),
        ("sync_pools, write (UPDATE + commit)", median_ms(write, repeat)),
        ("sync_pools, unchanged (1 SELECT)", median_ms(lambda: sync_pools(profile, thermal), repeat)),
        ("listener path: sync_pools() + read_thermal", median_ms(sync_pools, repeat)),
        ("fair-share usage query (uncached)",
         median_ms(lambda: pool_usage(FairShareWeight.pools, FairShareWeight.window_seconds), repeat)),
        ("probe() (once per scheduler)", median_ms(probe, max(3, repeat // 20))),
    ]
    base = rows[0][1]
    print(f"thermal here: {thermal.state} ({thermal.source}); DB: SQLite; median of {repeat} calls")
    print(f"{'operation':44} {'median ms':>10} {'x baseline':>10}")
    for name, ms in rows:
        print(f"{name:44} {ms:>10.3f} {ms / base:>10.2f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(3)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
