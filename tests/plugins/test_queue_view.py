"""`mlops queue` against a real migrated Airflow DB: real DAGs, DAG runs, pools and a trigger row."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = """\
name: {name}
owner: test-team
priority: {priority}
model:
  family: mlp_classifier
training:
  memory_gb: {memory_gb}
scheduling:
  thermal_threshold: serious
"""
DAGS = {"q_alpha": (8, 4), "q_beta": (3, 2), "q_gamma": (5, 2)}  # name: (priority, memory_gb)
POOLS = {"mlx_memory": 6, "mlx_compute": 1}


def _serious_tree(root: Path) -> Path:
    """A fake /sys with one zone above its passive trip: thermal state "serious"."""
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("91000\n")
    (zone / "trip_point_0_temp").write_text("85000\n")
    (zone / "trip_point_0_type").write_text("passive\n")
    return root


@pytest.fixture
def queue_db(airflow_db, tmp_path, monkeypatch):
    """Three lifecycle DAGs synced to the DB, one or two runs each, task states set; all removed after."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.models.dagbag import DBDagBag
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import delete, select, update

    projects = tmp_path / "projects"
    projects.mkdir()
    for name, (priority, memory_gb) in DAGS.items():
        (projects / f"{name}.yaml").write_text(PROJECT.format(name=name, priority=priority, memory_gb=memory_gb))
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))
    hot = _serious_tree(tmp_path / "hot")

    previous_pools = {}
    with create_session() as session:
        for name in POOLS:
            pool = Pool.get_pool(name, session=session)
            if pool is not None:
                previous_pools[name] = (pool.slots, pool.description, pool.include_deferred)
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py"))
    dag_ids = [f"{name}__lifecycle" for name in DAGS]
    assert set(dag_ids) <= set(bag.dag_ids), bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)

    base = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    runs: dict[tuple[str, int], str] = {}
    trigger_ids: list[int] = []
    try:
        with create_session() as session:
            session.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=False))
            for i, dag_id in enumerate(dag_ids):
                dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
                for n in (1, 2):
                    when = base + timedelta(minutes=10 * n + i)
                    run = dag.create_dagrun(
                        run_id=f"queue_test_{n}",
                        logical_date=when,
                        data_interval=(when, when),
                        run_after=when,
                        run_type=DagRunType.MANUAL,
                        triggered_by=DagRunTriggeredByType.TEST,
                        state=DagRunState.RUNNING,
                        session=session,
                    )
                    runs[(dag_id, n)] = run.run_id
            session.flush()

            def set_ti(dag_id, n, task_id, state, **values):
                ti = session.scalar(
                    select(TaskInstance).where(
                        TaskInstance.dag_id == dag_id, TaskInstance.run_id == runs[(dag_id, n)],
                        TaskInstance.task_id == task_id,
                    )
                )
                ti.state = state
                for key, value in values.items():
                    setattr(ti, key, value)
                return ti

            # Two trains want memory: alpha (prio 8, 4 GB) and beta (prio 3, 2 GB); gamma trains (2 GB held).
            set_ti("q_alpha__lifecycle", 1, "train", TaskInstanceState.SCHEDULED, pool_slots=4, priority_weight=8,
                   scheduled_dttm=now - timedelta(minutes=1), try_number=1)
            set_ti("q_beta__lifecycle", 1, "train", TaskInstanceState.SCHEDULED, pool_slots=2, priority_weight=3,
                   scheduled_dttm=now - timedelta(minutes=5), try_number=1)
            set_ti("q_gamma__lifecycle", 1, "train", TaskInstanceState.RUNNING, pool_slots=2, priority_weight=5)
            # alpha's second run: evaluate holds the single compute slot and waits for an executor.
            set_ti("q_alpha__lifecycle", 2, "evaluate", TaskInstanceState.QUEUED, priority_weight=8,
                   queued_dttm=now - timedelta(seconds=30), try_number=1)
            # beta's second run: the thermal gate deferred to a real ThermalTrigger (on the hot fake tree).
            trigger = Trigger(
                classpath="operators.triggers.ThermalTrigger",
                kwargs={"threshold": "serious", "on_unknown": "proceed", "poll_interval": 30.0,
                        "deadline": now.timestamp() + 3600, "hardware_root": str(hot),
                        "started_at": now.timestamp()},
            )
            session.add(trigger)
            session.flush()
            trigger_ids.append(trigger.id)
            set_ti("q_beta__lifecycle", 2, "thermal_gate", TaskInstanceState.DEFERRED, trigger_id=trigger.id,
                   next_method="execute_complete", priority_weight=3, try_number=1,
                   trigger_timeout=now + timedelta(hours=1))
            # gamma's second run: pull_data failed once and waits for its retry.
            set_ti("q_gamma__lifecycle", 2, "pull_data", TaskInstanceState.UP_FOR_RETRY, try_number=1,
                   max_tries=2, priority_weight=5, end_date=now)
            # Pools are sized after the runs exist (a listener may size them when runs start).
            for name, slots in POOLS.items():
                Pool.create_or_update_pool(name, slots, "queue view test", False, session=session)
        yield {"runs": runs, "now": now, "trigger_id": trigger.id, "hot": hot}
    finally:
        with create_session() as session:
            session.execute(
                update(TaskInstance).where(TaskInstance.dag_id.in_(dag_ids)).values(state=TaskInstanceState.FAILED)
            )
            session.execute(update(TaskInstance).where(TaskInstance.dag_id.in_(dag_ids)).values(trigger_id=None))
            session.execute(delete(Trigger).where(Trigger.id.in_(trigger_ids)))
        for dag_id in dag_ids:
            with create_session() as session:
                delete_dag(dag_id, keep_records_in_log=False, session=session)
        with create_session() as session:
            for name in POOLS:
                if name in previous_pools:
                    slots, description, include_deferred = previous_pools[name]
                    Pool.create_or_update_pool(name, slots, description or "", include_deferred, session=session)
                else:
                    Pool.delete_pool(name, session=session)


def _ours(rows):
    return {(r["dag_id"].split("__")[0], r["run_id"][-1], r["task_id"]): r for r in rows if r["dag_id"].startswith("q_")}


def test_waiting_tasks_rows_reasons_and_positions(queue_db):
    from mlops_airflow.queue_view import waiting_tasks

    rows = _ours(waiting_tasks())
    assert set(rows) == {
        ("q_alpha", "1", "train"), ("q_beta", "1", "train"), ("q_alpha", "2", "evaluate"),
        ("q_beta", "2", "thermal_gate"), ("q_gamma", "2", "pull_data"),
    }  # the running gamma train is not waiting

    alpha = rows[("q_alpha", "1", "train")]
    assert alpha["project"] == "q_alpha" and alpha["state"] == "scheduled" and alpha["pool"] == "mlx_memory"
    assert (alpha["pool_total"], alpha["pool_used"], alpha["pool_free"]) == (6, 2, 4)  # gamma's 2 slots run
    assert (alpha["position"], alpha["of"], alpha["priority_weight"]) == (1, 2, 8)
    assert alpha["waiting_for"] == "next for the scheduler: pool mlx_memory has 4 free slots, it needs 4"

    beta = rows[("q_beta", "1", "train")]
    assert (beta["position"], beta["of"]) == (2, 2)  # lower priority, although scheduled earlier
    assert beta["waiting_for"] == "pool mlx_memory: needs 2 slots, 0 free (4 more free slots go to tasks ahead of it)"

    evaluate = rows[("q_alpha", "2", "evaluate")]
    assert (evaluate["pool"], evaluate["pool_total"], evaluate["pool_used"], evaluate["pool_free"]) == ("mlx_compute", 1, 1, 0)
    assert evaluate["waiting_for"] == "queued for an executor slot" and evaluate["since"] is not None

    gate = rows[("q_beta", "2", "thermal_gate")]
    assert gate["state"] == "deferred" and gate["pool"] == "default_pool"
    assert gate["waiting_for"].startswith("thermal: state serious ≥ threshold serious (no triggerer has picked it up yet)")
    assert "times out at" in gate["waiting_for"]

    retry = rows[("q_gamma", "2", "pull_data")]
    assert retry["state"] == "up_for_retry"
    # The factory's retry policy: 10 s base delay, exponential backoff (Airflow adds up to 1x jitter).
    when = datetime.fromisoformat(retry["waiting_for"].split("retry at ")[1].split(" ")[0])
    assert queue_db["now"] + timedelta(seconds=9) <= when <= queue_db["now"] + timedelta(seconds=21)
    assert retry["waiting_for"].endswith("(try 2 of 3)")

    # Pools and positions are per pool: default_pool holds the gate and the retry.
    default_pool = sorted((r["position"], r["task_id"]) for r in rows.values() if r["pool"] == "default_pool")
    assert [p for p, _ in default_pool] == [1, 2]
    assert dict((t, p) for p, t in default_pool)["pull_data"] == 1  # gamma (5) ahead of beta (3)


def test_paused_dag_frees_its_slots_for_the_next_task(queue_db):
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    from mlops_airflow.queue_view import waiting_tasks

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == "q_alpha__lifecycle").values(is_paused=True))
    rows = _ours(waiting_tasks())
    assert rows[("q_alpha", "1", "train")]["waiting_for"].startswith("DAG q_alpha__lifecycle is paused")
    assert rows[("q_beta", "1", "train")]["waiting_for"] == "next for the scheduler: pool mlx_memory has 4 free slots, it needs 2"


def test_cli_table_and_json(queue_db, capsys):
    from mlops_airflow.queue_view import main

    assert main([]) == 0
    table = capsys.readouterr().out.splitlines()
    header = table[0]
    assert header.split() [:4] == ["#", "PROJECT", "TASK", "STATE"] and "WAITING FOR" in header
    line = next(line for line in table if "q_beta" in line and "train" in line)
    # Columns are aligned: every cell starts where its header does.
    assert line.index("scheduled") == header.index("STATE") and line.index("2/2") == 0
    assert line[header.index("POOL USED/TOTAL"):].startswith("2/6")

    assert main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["task_id"] for r in rows if r["dag_id"] == "q_alpha__lifecycle"} == {"train", "evaluate"}
    assert main(["--bogus"]) == 2


def test_nothing_is_waiting(airflow_db, monkeypatch, capsys):
    from mlops_airflow import queue_view

    monkeypatch.setattr(queue_view, "waiting_tasks", lambda: [])
    assert queue_view.main([]) == 0
    assert capsys.readouterr().out.strip() == "nothing is waiting"
    assert queue_view.format_table([]) == "nothing is waiting"


def test_worker_demand_counts_queued_and_running_tasks_per_queue(queue_db, capsys):
    """All projects' tasks together, per queue: ceil((queued + running) / worker concurrency), the formula
    Airflow's Helm chart gives KEDA; scheduled, deferred and retrying tasks hold no worker and do not count."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    from mlops_airflow.queue_view import main
    from mlops_airflow.worker_demand import worker_demand

    runs = queue_db["runs"]
    moved = {("q_gamma__lifecycle", 1, "train"), ("q_alpha__lifecycle", 2, "evaluate"),  # running, queued
             ("q_beta__lifecycle", 1, "train"), ("q_beta__lifecycle", 2, "thermal_gate")}  # scheduled, deferred
    with create_session() as session:
        for dag_id, n, task_id in moved:
            session.execute(update(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == runs[(dag_id, n)], TaskInstance.task_id == task_id,
            ).values(queue="demand_test_gpu"))
    (row,) = [r for r in worker_demand(concurrency=1) if r["queue"] == "demand_test_gpu"]
    assert row == {"queue": "demand_test_gpu", "queued": 1, "running": 1, "worker_concurrency": 1, "workers_needed": 2}
    assert main(["--demand", "--json", "--concurrency", "16"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out)["queues"] if r["queue"] == "demand_test_gpu"]
    assert (row["worker_concurrency"], row["workers_needed"]) == (16, 1)
    assert main(["--demand"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["QUEUE", "QUEUED"] and "demand_test_gpu" in table
