"""Parse time of dags/ with N project YAMLs against the floor: N hand-written minimal DAGs.

The floor is what Airflow needs anyway: N small .py DAG files with the same five tasks
each (BaseOperator subclasses, no YAML). Both are parsed with DagBag in a fresh
interpreter; Airflow's own import is measured separately and excluded.

    .venv/bin/python bench/parse_dags.py [N ...]     (default: 9 100 500)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))

MEASURE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    import airflow.sdk
    t1 = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    t2 = time.perf_counter()
    assert not bag.import_errors, bag.import_errors
    print(json.dumps({"import_s": t1 - t0, "parse_s": t2 - t1, "dags": len(bag.dag_ids),
                      "tasks": sum(len(d.tasks) for d in bag.dags.values())}))
    """
)

HAND_WRITTEN = textwrap.dedent(
    '''
    """A hand-written minimal DAG (airflow floor for bench/parse_dags.py)."""
    from datetime import datetime, timezone
    from airflow.sdk import DAG, BaseOperator

    class Step(BaseOperator):
        def execute(self, context):
            return None

    with DAG(dag_id="{name}__lifecycle", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
             catchup=False, tags=["{name}"], default_args={{"owner": "team", "retries": 2}}) as dag:
        a = Step(task_id="pull_data")
        b = Step(task_id="train")
        c = Step(task_id="evaluate")
        d = Step(task_id="register")
        e = Step(task_id="version_artifacts")
        a >> b >> c >> d >> e
    '''
)


def measure(dag_folder: Path, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(dag_folder)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(counts: list[int]) -> None:
    from mlops.airflow_env import airflow_environment
    from mlops.settings import Settings

    template = (REPO / "projects" / "quantized_optimization.yaml").read_text()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = airflow_environment(Settings.from_env({"MLOPS_HOME": str(tmp / "state")}))
        env["MLOPS_HOME"] = str(tmp / "state")
        for n in counts:
            projects, floor = tmp / f"projects{n}", tmp / f"floor{n}"
            projects.mkdir()
            floor.mkdir()
            for i in range(n):
                name = f"project_{i:04d}"
                (projects / f"{name}.yaml").write_text(template.replace("name: quantized_optimization", f"name: {name}"))
                (floor / f"{name}.py").write_text(HAND_WRITTEN.format(name=name))
            ours = measure(REPO / "dags", {**env, "MLOPS_PROJECTS_DIR": str(projects)})
            base = measure(floor, env)
            assert ours["dags"] == base["dags"] == n and ours["tasks"] == base["tasks"]
            rows.append((n, ours, base))
    print(f"{'projects':>8} {'ours (s)':>9} {'floor (s)':>9} {'ratio':>6} {'ms/project':>10} {'floor ms/proj':>13} {'airflow import (s)':>18}")
    for n, ours, base in rows:
        print(
            f"{n:>8} {ours['parse_s']:>9.2f} {base['parse_s']:>9.2f} {ours['parse_s'] / base['parse_s']:>6.2f}"
            f" {1000 * ours['parse_s'] / n:>10.1f} {1000 * base['parse_s'] / n:>13.1f} {ours['import_s']:>18.2f}"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [9, 100, 500])
