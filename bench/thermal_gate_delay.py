"""The scheduling delay the thermal gate adds at nominal, as a whole task in a real DAG run.

Runs a tiny project's lifecycle with `airflow dags test` (state folder in a temp dir, a
fake nominal thermal zone) and reads the task instances back: the hop pull_data → train
goes through the gate, the hop train → evaluate has none; their difference is what the
gate costs. Compared against one 30 s poll interval (the target: under one interval).

    .venv/bin/python bench/thermal_gate_delay.py [REPEAT]     (default 3)
    .venv/bin/python bench/thermal_gate_delay.py --smoke      (tests: 1 run)
"""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO / "tests"))

POLL_INTERVAL = 30.0


def hops(db: Path, dag_id: str) -> list[tuple[float, float, float]]:
    """Per run: (gate hop s, plain hop s, gate task duration s)."""
    rows = sqlite3.connect(db).execute(
        "select run_id, task_id, start_date, end_date from task_instance where dag_id = ?", (dag_id,)
    ).fetchall()
    runs: dict[str, dict[str, tuple[datetime, datetime]]] = {}
    for run_id, task, start, end in rows:
        runs.setdefault(run_id, {})[task] = (datetime.fromisoformat(start), datetime.fromisoformat(end))
    out = []
    for t in runs.values():
        gate_hop = (t["train"][0] - t["pull_data"][1]).total_seconds()
        plain_hop = (t["evaluate"][0] - t["train"][1]).total_seconds()
        out.append((gate_hop, plain_hop, (t["thermal_gate"][1] - t["thermal_gate"][0]).total_seconds()))
    return out


def main(repeat: int = 3) -> None:
    from mlops.airflow_env import airflow_environment
    from mlops.settings import Settings
    from mlops_testing import fake_thermal_zone, tiny_project

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        projects = tmp / "projects"
        projects.mkdir()
        (projects / "gate_bench.yaml").write_text(tiny_project("gate_bench"))
        settings = Settings.from_env({"MLOPS_HOME": str(tmp / "state")})
        env = airflow_environment(settings)
        env.update(MLOPS_HOME=str(settings.home), MLOPS_PROJECTS_DIR=str(projects),
                   MLOPS_HARDWARE_ROOT=str(fake_thermal_zone(tmp / "hw", "nominal")))
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        for _ in range(repeat):
            subprocess.run([airflow, "dags", "test", "gate_bench__lifecycle"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = hops(settings.home / "airflow" / "airflow.db", "gate_bench__lifecycle")
    gate = statistics.median(r[0] for r in results)
    plain = statistics.median(r[1] for r in results)
    task = statistics.median(r[2] for r in results)
    print(f"airflow dags test, fake nominal zone, median of {len(results)} runs")
    print(f"{'hop':<34} {'median s':>9}")
    print(f"{'pull_data -> train (via the gate)':<34} {gate:>9.3f}")
    print(f"{'train -> evaluate (no gate)':<34} {plain:>9.3f}")
    print(f"{'thermal_gate task duration':<34} {task:>9.3f}")
    added = gate - plain
    print(f"delay the gate adds: {added:.3f} s = {added / POLL_INTERVAL:.3f} of a {POLL_INTERVAL:.0f} s poll interval "
          f"({'under' if added < POLL_INTERVAL else 'OVER'} one interval)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(1)
    else:
        main(*[int(a) for a in sys.argv[1:]])
