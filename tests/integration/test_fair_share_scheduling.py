"""Fair share with a real scheduler: a low-priority project is not starved by a high-priority backlog.

Two projects queue many short tasks into a one-slot pool: `fsa` (priority 8, 12 runs) and
`fsb` (priority 2, 6 runs), each DAG run one 0.3 s task, at most 2 active runs per DAG.
The same workload runs twice at once, in two one-slot pools:

* control -- `ctla`/`ctlb` with Airflow's plain ``absolute`` weight rule in pool `fs_control`:
  whenever the slot frees, a priority-8 task is waiting, so every `ctlb` task waits for all
  of `ctla`'s;
* fair share -- `fsa`/`fsb` with ``weight_rule="mlops_airflow.fair_share.FairShareWeight"`` (the
  `mlops` plugin from plugins/) in pool `mlx_compute`: `fsb` runs tasks long before `fsa`
  has run all of its.

Airflow 3.3 computes a task instance's weight once, when the DAG run creates it (see
plugins/mlops_airflow/fair_share.py).  The workload is therefore realistic for that: DAG runs are
created over time (catch-up of an hourly schedule, at most 2 active runs per DAG, so a new
run -- and its weight -- is made each time one finishes), as recurring project runs are.

The `mlx_compute` pool is sized by the plugin's listener at scheduler start, on any machine
the same: MLOPS_COMPUTE_SLOTS=4 stands in for the hardware-derived base, and a fake sysfs
thermal zone (MLOPS_HARDWARE_ROOT) reads "critical", so the pool is 25 % of 4 = 1 slot. After
the workload the zone cools and a new DAG run's start re-reads it: the pool grows to 4 (the
scheduler's refresher thread is off, MLOPS_POOL_REFRESH_SECONDS=0, so only that hook can).
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from mlops_testing import airflow_cluster, fake_thermal_zone, set_zone_state, sqlite_rows, wait_for

from mlops.resources.names import COMPUTE_POOL

REPO = Path(__file__).resolve().parents[2]
RUNS = {"a": 12, "b": 6}
PRIORITY = {"a": 8, "b": 2}
BASE_SLOTS = 4  # MLOPS_COMPUTE_SLOTS: critical keeps 25 % of it, one slot

DAGS = f'''
import time
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, BaseOperator


class Work(BaseOperator):
    def execute(self, context):
        time.sleep(0.3)


START = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAIR = "mlops_airflow.fair_share.FairShareWeight"


def project(dag_id, priority, runs, pool, weight_rule):
    with DAG(
        dag_id,
        schedule=timedelta(hours=1),
        start_date=START,
        end_date=START + timedelta(hours=runs - 1),
        catchup=True,
        max_active_runs=2,
        is_paused_upon_creation=False,
    ) as dag:
        Work(task_id="work", pool=pool, priority_weight=priority, weight_rule=weight_rule)
    return dag


fsa = project("fsa__load", {PRIORITY["a"]}, {RUNS["a"]}, "{COMPUTE_POOL}", FAIR)
fsb = project("fsb__load", {PRIORITY["b"]}, {RUNS["b"]}, "{COMPUTE_POOL}", FAIR)
ctla = project("ctla__load", {PRIORITY["a"]}, {RUNS["a"]}, "fs_control", "absolute")
ctlb = project("ctlb__load", {PRIORITY["b"]}, {RUNS["b"]}, "fs_control", "absolute")

with DAG("tick", schedule=None, start_date=START, catchup=False, is_paused_upon_creation=False) as tick:
    Work(task_id="work")
'''


@pytest.fixture
def scheduler(tmp_path: Path):
    """api-server + scheduler + dag-processor on 127.0.0.1, fresh DB, the repo's plugins; stopped by PID."""
    dags, hw = tmp_path / "dags", tmp_path / "hw"
    dags.mkdir()
    (dags / "fair_share_dags.py").write_text(DAGS)
    fake_thermal_zone(hw, "critical")
    extra = {
        "MLOPS_HARDWARE_ROOT": str(hw),
        "MLOPS_COMPUTE_SLOTS": str(BASE_SLOTS),
        "MLOPS_POOL_REFRESH_SECONDS": "0",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    }

    def control_pool(env: dict[str, str], airflow: str) -> None:
        subprocess.run([airflow, "pools", "set", "fs_control", "1", "control: plain absolute priority"],
                       env=env, check=True, stdout=subprocess.DEVNULL)

    with airflow_cluster(tmp_path, extra, setup=control_pool) as cluster:
        yield {**cluster, "hw": hw}


def start_order(db: Path, dag_ids: tuple[str, str]) -> list[tuple[str, int]]:
    """(project letter, stored priority_weight) of each task instance, by start time."""
    rows = sqlite_rows(
        db,
        "select dag_id, priority_weight from task_instance where dag_id in (?, ?) and start_date is not null "
        "order by start_date",
        *dag_ids,
    )
    return [("a" if dag_id == dag_ids[0] else "b", weight) for dag_id, weight in rows]


def before_a_done(order: list[tuple[str, int]]) -> int:
    """How many of b's tasks started before a's last task started."""
    last_a = max(i for i, (who, _) in enumerate(order) if who == "a")
    return sum(1 for who, _ in order[:last_a] if who == "b")


def test_fair_share_lets_the_low_priority_project_progress(scheduler):
    db, env = scheduler["db"], scheduler["env"]
    logs = scheduler["logs"]

    def compute_pool() -> tuple[int, str]:
        return sqlite_rows(db, "select slots, description from slot_pool where pool = ?", COMPUTE_POOL)[0]

    wait_for(lambda: sqlite_rows(db, "select 1 from slot_pool where pool = ?", COMPUTE_POOL),
             90, "the scheduler's listener to create the mlx_compute pool")
    slots, description = compute_pool()
    assert slots == 1, (slots, description)  # the workload below is sized for one slot
    assert f"MLOPS_COMPUTE_SLOTS={BASE_SLOTS}" in description and f"thermal critical: 25% of {BASE_SLOTS}" in description
    wait_for(lambda: "mlops pools synced at scheduler start (thermal critical)" in (logs / "scheduler.log").read_text(),
             10, "the on_starting listener's log line")

    total = sum(RUNS.values())
    dag_ids = ("fsa__load", "fsb__load", "ctla__load", "ctlb__load")

    def finished() -> bool:
        rows = sqlite_rows(db, "select dag_id, count(*) from task_instance where state = 'success' and dag_id != 'tick' "
                         "group by dag_id")
        done = dict(rows)
        return sum(done.get(d, 0) for d in dag_ids) == 2 * total

    try:
        wait_for(finished, 240, "all 36 tasks to succeed", interval=2)
    except AssertionError:
        states = sqlite_rows(db, "select dag_id, state, count(*) from task_instance group by dag_id, state")
        tail = (logs / "scheduler.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"not finished: {states}\n{tail}") from None

    fair = start_order(db, ("fsa__load", "fsb__load"))
    control = start_order(db, ("ctla__load", "ctlb__load"))
    summary = (f"fair:    {''.join(w for w, _ in fair)}  weights {[p for _, p in fair]}\n"
               f"control: {''.join(w for w, _ in control)}  weights {[p for _, p in control]}")
    print(summary)

    # Plain priority: b waits for (nearly) all of a's backlog (1 allowed for a start-up race).
    assert before_a_done(control) <= 1, summary
    # Fair share: b's weight rises while a uses the pool; b runs most of its tasks before a is done.
    assert before_a_done(fair) >= RUNS["b"] // 2, summary
    assert [w for w, _ in fair].index("b") <= 4, summary
    # The weights are the strategy's, not the plain priorities.
    assert {p for _, p in fair} - set(PRIORITY.values()), summary

    # The pool held one slot throughout: never two of its tasks running at once.
    rows = sqlite_rows(db, "select start_date, end_date from task_instance where dag_id in (?, ?) order by start_date",
                       "fsa__load", "fsb__load")
    spans = [(datetime.fromisoformat(start), datetime.fromisoformat(end)) for start, end in rows]
    assert len(spans) == total and all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), rows
    assert compute_pool()[0] == 1

    # A DAG run start re-reads the thermal state: the zone cooled, the pool grows back to its base.
    set_zone_state(scheduler["hw"], "nominal")
    time.sleep(6)  # not an assertion: the listener reuses a reading for THERMAL_MAX_AGE (5 s), let it age
    subprocess.run([scheduler["airflow"], "dags", "trigger", "tick"], env=env, check=True, stdout=subprocess.DEVNULL)
    wait_for(lambda: compute_pool()[0] == BASE_SLOTS, 60, "the DAG-run listener to resize mlx_compute for the nominal state")
    assert f"thermal nominal: 100% of {BASE_SLOTS}" in compute_pool()[1]
    wait_for(lambda: sqlite_rows(db, "select 1 from dag_run where dag_id = 'tick' and state in ('success', 'failed')"),
             60, "the tick run to finish")
