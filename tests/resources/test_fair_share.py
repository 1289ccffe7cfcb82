"""Fair-share weights: the pure formula, usage accounting, and the Airflow strategy around them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from mlops.resources.fair_share import MAX_BOOST, SCALE, fair_weight, project_of, usage_by_project

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


# ----------------------------------------------------------------- fair_weight


def test_at_its_share_a_project_keeps_its_priority():
    assert fair_weight(5, 50, 100, 2) == 5 * SCALE
    assert fair_weight(7, 10, 30, 3) == 7 * SCALE
    assert fair_weight(3, 100, 100, 1) == 3 * SCALE  # alone: all of it is its share


def test_over_its_share_the_weight_drops_in_proportion():
    assert fair_weight(8, 100, 100, 2) == 40  # twice its share -> half
    assert fair_weight(8, 75, 100, 2) == 53  # 1.5x -> 2/3
    assert fair_weight(9, 90, 100, 3) == round(90 / 2.7)


def test_under_its_share_the_weight_rises_capped():
    assert fair_weight(2, 25, 100, 2) == 40  # half its share -> double
    assert fair_weight(2, 0, 100, 2) == 2 * SCALE * MAX_BOOST  # used nothing
    assert fair_weight(2, 1, 1000, 2) == 2 * SCALE * MAX_BOOST  # below share / MAX_BOOST: capped
    assert fair_weight(4, 0, 0, 3) == 4 * SCALE * MAX_BOOST  # idle pool: everyone is below share


def test_priority_order_is_kept_at_equal_usage():
    for usage in (0, 10, 50, 90):
        assert fair_weight(8, usage, 100, 2) > fair_weight(2, usage, 100, 2)


def test_a_starved_low_priority_project_overtakes_a_hog():
    """Priority 8 took the whole pool, priority 2 waited: 2's tasks now come first.

    (With a drop-only factor, min(1, share / used), 8 would keep 40 against 2's 20.)"""
    assert fair_weight(2, 0, 100, 2) > fair_weight(8, 100, 100, 2)


def test_equilibrium_shares_follow_priorities():
    """Weights are equal when each project's used fraction is proportional to its priority."""
    a = fair_weight(8, 80, 100, 2)
    b = fair_weight(2, 20, 100, 2)
    assert a == b == 50
    # Away from equilibrium the one below its priority share wins the next slot.
    assert fair_weight(2, 10, 100, 2) > fair_weight(8, 90, 100, 2)
    assert fair_weight(8, 70, 100, 2) > fair_weight(2, 30, 100, 2)


def test_bounds_and_validation():
    assert fair_weight(1, 100, 100, 10) == 1  # never below 1
    assert fair_weight(0, 0, 0, 1) == 1
    assert fair_weight(5, 150, 100, 2) == fair_weight(5, 100, 100, 2)  # fraction clamped to 1
    assert fair_weight(5, 50, 100, 0) == fair_weight(5, 50, 100, 1)  # at least one project
    with pytest.raises(ValueError):
        fair_weight(5, -1, 100, 2)
    with pytest.raises(ValueError):
        fair_weight(5, 1, -100, 2)
    assert isinstance(fair_weight(5, 33.3, 100.0, 3), int)


# ----------------------------------------------------------------- usage accounting


def test_project_of():
    assert project_of("sentiment__lifecycle") == "sentiment"
    assert project_of("a__b__c") == "a"
    assert project_of("plain_dag") == "plain_dag"


def test_usage_is_slot_seconds_inside_the_window():
    since, now = T0, T0 + timedelta(minutes=30)
    rows = [
        ("p__lifecycle", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), 4),  # 60 s x 4 slots
        ("p__other", T0 + timedelta(minutes=5), T0 + timedelta(minutes=5, seconds=30), None),  # 30 s x 1
        ("q__lifecycle", T0 - timedelta(minutes=10), T0 + timedelta(seconds=20), 1),  # cut at the window start
        ("q__lifecycle", now - timedelta(seconds=15), None, 2),  # running: counted up to now
        ("r__lifecycle", None, None, 1),  # never started
        ("r__lifecycle", T0 + timedelta(minutes=3), T0 + timedelta(minutes=2), 1),  # negative span
        ("s__lifecycle", T0 - timedelta(minutes=20), T0 - timedelta(minutes=15), 1),  # before the window
    ]
    assert usage_by_project(rows, now, since) == {"p": 270.0, "q": 50.0}


# ----------------------------------------------------------------- the Airflow strategy


def _ti(dag_id: str, priority: int):
    return SimpleNamespace(dag_id=dag_id, task_id="train", task=SimpleNamespace(priority_weight=priority))


def test_strategy_weighs_with_the_db_usage(monkeypatch):
    from mlops_airflow import fair_share

    monkeypatch.setattr(
        fair_share, "cached_pool_usage", lambda pools, window, age: ({"hog": 90.0, "meek": 10.0}, {"hog", "meek"})
    )
    strategy = fair_share.FairShareWeight()
    assert strategy.get_weight(_ti("hog__lifecycle", 8)) == fair_weight(8, 90, 100, 2)
    assert strategy.get_weight(_ti("meek__lifecycle", 2)) == fair_weight(2, 10, 100, 2)
    # A newcomer is active too: three projects now share the pool.
    assert strategy.get_weight(_ti("new__lifecycle", 5)) == fair_weight(5, 0, 100, 3)


def test_strategy_falls_back_to_plain_priority_when_the_db_fails(monkeypatch):
    from mlops_airflow import fair_share

    def broken(*args):
        raise RuntimeError("no database")

    monkeypatch.setattr(fair_share, "cached_pool_usage", broken)
    assert fair_share.FairShareWeight().get_weight(_ti("p__lifecycle", 6)) == 6 * SCALE


def _insert_runs(runs: list[tuple[str, str]], tis: list[tuple]) -> None:
    """Rows in the real Airflow DB: dag runs (dag_id, state) and task instances
    (dag_id, task_id, pool, pool_slots, state, start, end), each run's run_id = "fs_test"."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

    with settings.engine.begin() as conn:
        conn.execute(DagRun.__table__.insert(), [
            {"dag_id": dag_id, "run_id": "fs_test", "run_type": "manual", "state": state, "run_after": T0} for dag_id, state in runs
        ])
        conn.execute(TaskInstance.__table__.insert(), [
            {"dag_id": dag_id, "run_id": "fs_test", "task_id": task_id, "pool": pool, "pool_slots": slots,
             "state": state, "start_date": start, "end_date": end}
            for dag_id, task_id, pool, slots, state, start, end in tis
        ])


def _delete_runs(dag_ids: list[str]) -> None:
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

    with settings.engine.begin() as conn:
        for model in (TaskInstance, DagRun):
            conn.execute(model.__table__.delete().where(model.__table__.c.dag_id.in_(dag_ids)))


def test_pool_usage_on_a_real_db_equals_the_hand_computed_slot_seconds(airflow_db, monkeypatch):
    """Task instances with known pools, slots and times in Airflow's own DB; usage computed by hand."""
    import time

    from mlops_airflow import fair_share
    from mlops_airflow.fair_share import FairShareWeight, cached_pool_usage, pool_usage

    monkeypatch.setattr(fair_share, "_cache", {})  # readings stamped by this test's clock stay in this test

    pools, window = FairShareWeight.pools, FairShareWeight.window_seconds  # mlx_memory, mlx_compute; 30 min
    assert (set(pools), window) == ({"mlx_memory", "mlx_compute"}, 1800)
    base = datetime.now(timezone.utc)
    ago = lambda seconds: base - timedelta(seconds=seconds)  # noqa: E731
    dags = ["fsa__lifecycle", "fsb__lifecycle", "fsc__lifecycle", "fsd__lifecycle", "fse__lifecycle"]
    runs = [(dags[0], "running"), (dags[1], "success"), (dags[2], "queued"), (dags[3], "running"), (dags[4], "success")]
    tis = [
        (dags[0], "train", "mlx_memory", 2, "success", ago(600), ago(300)),  # 300 s x 2 slots = 600
        (dags[0], "evaluate", "mlx_compute", 1, "success", ago(290), ago(200)),  # 90 s x 1 = 90
        (dags[0], "pull_data", "default_pool", 1, "success", ago(800), ago(700)),  # not an MLX pool
        (dags[0], "register", "mlx_compute", 1, "running", ago(100), None),  # running: 100 s + the time until the query
        (dags[1], "train", "mlx_memory", 4, "success", ago(2400), ago(1500)),  # cut at the window start: 300 s x 4 = 1200
        (dags[1], "evaluate", "mlx_compute", 1, "success", ago(2100), ago(1900)),  # ended before the window
        (dags[2], "train", "mlx_memory", 2, "scheduled", None, None),  # waiting: active, no usage
        (dags[3], "pull_data", "default_pool", 1, "running", ago(50), None),  # other pool only: neither
        (dags[4], "train", "mlx_memory", 2, None, None, None),  # its run is over: not waiting
    ]
    _delete_runs(dags)
    _insert_runs(runs, tis)
    try:
        before = datetime.now(timezone.utc)
        usage, active = pool_usage(pools, window)
        after = datetime.now(timezone.utc)
        # The query's "now" lies between `before` and `after`: the running task and the window's start
        # (now - 30 min) move with it, by at most that much; by hand at now = base: fsa 790, fsb 1200.
        lo, hi = (before - base).total_seconds() - 1e-6, (after - base).total_seconds() + 1e-6
        assert 600 + 90 + (100 + lo) <= usage["fsa"] <= 600 + 90 + (100 + hi)
        assert 4 * (300 - hi) <= usage["fsb"] <= 4 * (300 - lo)
        assert {"fsc", "fsd", "fse"}.isdisjoint(usage)
        assert {"fsa", "fsb", "fsc"} <= active and {"fsd", "fse"}.isdisjoint(active)

        # Cached: the same reading for max_age seconds of the cache's clock (moved by hand here); a
        # fresh one after, where the running task has run on and the window's start has moved past
        # more of fsb's train (the sleep lets the DB's wall-clock "now" move).
        now = [1000.0]
        clock = lambda: now[0]  # noqa: E731
        first = cached_pool_usage(pools, window, 0.0, clock)  # max_age 0: read now (and keep it)
        time.sleep(0.05)
        now[0] += 60.0 - 0.25
        assert cached_pool_usage(pools, window, 60.0, clock) == first  # younger than 60 s: reused
        now[0] += 0.25
        fresh = cached_pool_usage(pools, window, 60.0, clock)  # 60 s old: read again
        assert fresh[0]["fsa"] > first[0]["fsa"] and fresh[0]["fsb"] < first[0]["fsb"]
        assert cached_pool_usage(pools, window, 60.0, clock) == fresh
    finally:
        _delete_runs(dags)


def test_plugin_registers_the_strategy_by_import_path():
    """What the dag-processor does when it serializes a task with this weight_rule."""
    from airflow.serialization.serialized_objects import (
        _encode_priority_weight_strategy,
        _get_registered_priority_weight_strategy,
    )
    from airflow.task.priority_strategy import validate_and_load_priority_weight_strategy
    from mlops_airflow.fair_share import FairShareWeight

    path = "mlops_airflow.fair_share.FairShareWeight"
    assert _get_registered_priority_weight_strategy(path) is FairShareWeight
    assert _encode_priority_weight_strategy(FairShareWeight()) == path
    assert _encode_priority_weight_strategy(path) == path
    assert isinstance(validate_and_load_priority_weight_strategy(path), FairShareWeight)
    assert FairShareWeight() == FairShareWeight()  # stateless: any two instances are the same strategy


def test_plugin_fields():
    from airflow import plugins_manager

    plugins = {p.name: p for p in plugins_manager._get_plugins()[0]}
    mlops = plugins["mlops"]
    assert [f"{c.__module__}.{c.__name__}" for c in mlops.priority_weight_strategies] == [
        "mlops_airflow.fair_share.FairShareWeight", "operators.fair_share.FairShareWeight"  # + its path before issue 16
    ]
    assert [m.__name__ for m in mlops.listeners] == ["mlops_airflow.listeners"]
