"""Pool sizing from hardware profiles, thermal scaling, and the pools written into a real Airflow DB."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from mlops_testing import fake_thermal_zone, set_zone_state, wait_for

from mlops.hardware import HardwareProfile, ThermalReading, probe, probe_from_dir
from mlops.resources.names import COMPUTE_POOL, MEMORY_POOL
from mlops.resources.pools import (
    GIB,
    UNKNOWN_MEMORY_SLOTS,
    accelerator,
    check_memory_fits,
    default_reserve_gb,
    pool_plan,
    thermal_scaled,
)

FIXTURES = Path(__file__).resolve().parents[1] / "hardware" / "fixtures"


def cpu_box(cores: int = 16, memory_gb: float = 64, **extra) -> HardwareProfile:
    fields = {"platform": "linux", "cpu_cores_physical": cores, "cpu_cores_logical": 2 * cores,
              "memory_total_bytes": int(memory_gb * GIB), "metal_available": False, "cuda_available": False}
    return HardwareProfile(**{**fields, **extra})


def slots(plan) -> dict[str, int]:
    return {name: size.slots for name, size in plan.items()}


# ----------------------------------------------------------------- recorded and real profiles


def test_m2_pro_bundle_pools():
    profile = probe_from_dir(FIXTURES / "m2pro_bundle")  # 32 GB unified memory, Metal
    plan = pool_plan(profile, profile.thermal.state)
    assert profile.thermal.state == "nominal"
    assert slots(plan) == {MEMORY_POOL: 24, COMPUTE_POOL: 2}  # 32 - max(2, 8) GB; Apple GPU -> 2
    assert "24 of 32.0 GB unified memory (8.0 GB reserved" in plan[MEMORY_POOL].description
    assert "Apple GPU (Apple M2 Pro)" in plan[COMPUTE_POOL].description
    assert accelerator(profile)[0] == "apple_gpu"


def test_intel_mac_with_metal_is_cpu_only_for_mlx():
    """Metal on an Intel Mac's AMD GPU is not an MLX accelerator: CPU sizing, and its serious state halves it."""
    profile = probe_from_dir(FIXTURES / "intel_throttled_bundle")
    assert accelerator(profile)[:2] == ("cpu", 4)  # 8 physical cores // 2
    plan = pool_plan(profile, profile.thermal.state)
    assert profile.thermal.state == "serious"
    assert slots(plan) == {MEMORY_POOL: 24, COMPUTE_POOL: 2}
    assert "thermal serious: 50% of 4" in plan[COMPUTE_POOL].description


def test_partial_bundle_apple_silicon_without_mlx_record():
    profile = probe_from_dir(FIXTURES / "partial_bundle")  # M1, 8 GB, Metal not recorded
    assert slots(pool_plan(profile, "unknown")) == {MEMORY_POOL: 6, COMPUTE_POOL: 2}  # 8 - 2 GB reserve


def test_real_linux_probe():
    profile = probe()
    plan = pool_plan(profile, profile.thermal.state)
    total_gb = profile.memory_total_bytes / GIB
    # Whole GB of the OS's own memory figure (not the probe's) after the reserve: max(2 GB, a quarter).
    from mlops_testing import memory_total_bytes, physical_cores

    os_gb = memory_total_bytes() / GIB
    assert plan[MEMORY_POOL].slots == max(1, math.floor(os_gb - max(2.0, os_gb / 4))) and total_gb == os_gb
    kind, base, _ = accelerator(profile)
    if kind == "cpu":
        assert base == max(1, profile.cpu_cores_physical // 2)
    # On a CPU-only machine: half its physical cores as the OS lists them, scaled for heat.
    expected_base = max(1, physical_cores() // 2) if kind == "cpu" else base
    assert plan[COMPUTE_POOL].slots == thermal_scaled(expected_base, profile.thermal.state)
    assert all(size.slots >= 1 for size in plan.values())


# ----------------------------------------------------------------- synthetic profiles


@pytest.mark.parametrize(
    ("profile", "memory", "compute"),
    [
        (cpu_box(16, 64), 48, 8),
        (cpu_box(2, 4), 2, 1),  # reserve 2 GB; 2 cores // 2
        (cpu_box(1, 1), 1, 1),  # never below one slot
        (cpu_box(3, 7.9), 5, 1),  # whole GB, rounded down
        (cpu_box(8, 32, cuda_available=True, gpu_name="NVIDIA A100 + NVIDIA A100"), 24, 2),
        (cpu_box(8, 32, cuda_available=True), 24, 1),  # CUDA, GPU count unknown
        (HardwareProfile(platform="linux", cpu_cores_logical=6), UNKNOWN_MEMORY_SLOTS, 3),
        (HardwareProfile(), UNKNOWN_MEMORY_SLOTS, 1),
        (HardwareProfile(platform="macos", is_apple_silicon=True, metal_available=True,
                         memory_total_bytes=128 * GIB, unified_memory=True), 96, 2),
    ],
)
def test_synthetic_profiles(profile, memory, compute):
    assert slots(pool_plan(profile, "nominal")) == {MEMORY_POOL: memory, COMPUTE_POOL: compute}


def test_reserve_default_and_override():
    assert default_reserve_gb(4) == 2.0 and default_reserve_gb(64) == 16.0
    assert pool_plan(cpu_box(memory_gb=64), "nominal", reserve_gb=4)[MEMORY_POOL].slots == 60
    assert pool_plan(cpu_box(memory_gb=64), "nominal", reserve_gb=0)[MEMORY_POOL].slots == 64
    with pytest.raises(ValueError):
        pool_plan(cpu_box(), "nominal", reserve_gb=-1)


def test_unknown_memory_says_so():
    description = pool_plan(HardwareProfile(), "nominal")[MEMORY_POOL].description
    assert "could not be read" in description and "fallback" in description


# ----------------------------------------------------------------- thermal scaling


def test_thermal_rise_shrinks_compute_then_restores_it():
    box = cpu_box(16, 64)  # base 8 compute slots
    states = ["nominal", "fair", "serious", "critical", "serious", "nominal"]
    plans = [pool_plan(box, s) for s in states]
    assert [p[COMPUTE_POOL].slots for p in plans] == [8, 6, 4, 2, 4, 8]
    assert {p[MEMORY_POOL].slots for p in plans} == {48}  # heat never changes the memory pool
    mac = probe_from_dir(FIXTURES / "m2pro_bundle")
    assert [pool_plan(mac, s)[COMPUTE_POOL].slots for s in ("nominal", "serious", "critical", "nominal")] == [2, 1, 1, 2]


def test_thermal_scaling_floor_and_unknown():
    assert [thermal_scaled(1, s) for s in ("nominal", "fair", "serious", "critical", "unknown")] == [1, 1, 1, 1, 1]
    assert [thermal_scaled(4, s) for s in ("nominal", "fair", "serious", "critical", "unknown")] == [4, 3, 2, 1, 4]
    assert "thermal state unknown: not scaled" in pool_plan(cpu_box(), "unknown")[COMPUTE_POOL].description
    with pytest.raises(ValueError):
        thermal_scaled(4, "hot")


# ----------------------------------------------------------------- memory check (mlops validate)


def test_check_memory_fits():
    mac = probe_from_dir(FIXTURES / "m2pro_bundle")  # 24 slots
    assert check_memory_fits(2.0, mac) is None
    assert check_memory_fits(24, mac) is None
    message = check_memory_fits(24.5, mac)
    assert message is not None
    assert "needs 25 slot(s) of pool `mlx_memory`" in message and "has 24" in message and "at most 24" in message
    assert check_memory_fits(64, HardwareProfile()) is None  # unknown memory: no verdict


# ----------------------------------------------------------------- the Airflow DB (real, migrated)


def _rows() -> dict[str, tuple[int, str, bool]]:
    from sqlalchemy import select

    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            p.pool: (p.slots, p.description, p.include_deferred)
            for p in session.scalars(select(Pool).where(Pool.pool.in_([MEMORY_POOL, COMPUTE_POOL])))
        }


@pytest.fixture
def restore_pools(airflow_db):
    """The session-wide test DB is shared: put the MLX pool rows back as they were."""
    from sqlalchemy import delete

    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    before = _rows()
    yield
    with create_session() as session:
        session.execute(delete(Pool).where(Pool.pool.in_([MEMORY_POOL, COMPUTE_POOL])))
        for name, (slots, description, include_deferred) in before.items():
            Pool.create_or_update_pool(name, slots, description, include_deferred, session=session)


@pytest.fixture
def count_pool_writes():
    from sqlalchemy import event

    from airflow import settings

    writes: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("INSERT INTO SLOT_POOL", "UPDATE SLOT_POOL")):
            writes.append(statement)

    event.listen(settings.engine, "before_cursor_execute", record)
    yield writes
    event.remove(settings.engine, "before_cursor_execute", record)


def test_sync_pools_writes_and_follows_thermal(restore_pools, count_pool_writes):
    from mlops_airflow.pools import sync_pools

    box = cpu_box(16, 64)
    assert sync_pools(box, "nominal") == {MEMORY_POOL: 48, COMPUTE_POOL: 8}
    rows = _rows()
    assert rows[MEMORY_POOL][:1] == (48,) and rows[COMPUTE_POOL][:1] == (8,)
    assert rows[COMPUTE_POOL][2] is False  # deferred tasks hold no slot
    assert "thermal nominal" in rows[COMPUTE_POOL][1]

    seen = []
    for state in ("serious", "critical", "nominal"):
        sync_pools(box, ThermalReading(state=state))
        seen.append(_rows()[COMPUTE_POOL][0])
    assert seen == [4, 2, 8]
    assert _rows()[MEMORY_POOL][0] == 48

    count_pool_writes.clear()
    sync_pools(box, "nominal")  # nothing changed: read only
    assert count_pool_writes == []
    sync_pools(box, "fair")
    assert len(count_pool_writes) == 1  # only mlx_compute


def test_sync_pools_joins_a_given_session(restore_pools):
    from airflow.utils.session import create_session
    from mlops_airflow.pools import sync_pools

    box = cpu_box(16, 64)
    sync_pools(box, "nominal")
    with create_session() as session:
        sync_pools(box, "critical", session=session)
        session.rollback()  # the caller's transaction decides
    assert _rows()[COMPUTE_POOL][0] == 8


def test_pools_follow_a_fake_sysfs_zone(restore_pools, tmp_path, monkeypatch):
    """MLOPS_HARDWARE_ROOT: `read_thermal` reads the fake tree, so does the sync (thermal=None)."""
    from mlops_airflow.pools import sync_pools

    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    box = cpu_box(16, 64)
    got = []
    for state in ("nominal", "fair", "serious", "critical", "nominal"):
        fake_thermal_zone(tmp_path, state)
        got.append(sync_pools(box)[COMPUTE_POOL])
    assert got == [8, 6, 4, 2, 8]
    assert _rows()[COMPUTE_POOL][0] == 8


def test_listener_resizes_at_dag_run_start(restore_pools, tmp_path, monkeypatch):
    """The plugin's hooks: a DAG-run start re-reads thermal; on_starting ignores non-scheduler components.

    A reading is reused for THERMAL_MAX_AGE seconds of the listener's clock, here one moved by hand.
    """
    from mlops_airflow import listeners, pools

    now = [1000.0]
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    monkeypatch.setattr(pools, "current_profile", lambda: cpu_box(16, 64))
    monkeypatch.setattr(listeners, "_thermal", [])
    monkeypatch.setattr(listeners, "clock", lambda: now[0])

    class Run:  # detached: no session, so the hook commits its own
        run_id = "manual__1"

    fake_thermal_zone(tmp_path, "critical")
    listeners.on_dag_run_running(dag_run=Run(), msg="started")
    assert _rows()[COMPUTE_POOL][0] == 2
    fake_thermal_zone(tmp_path, "nominal")
    now[0] += listeners.THERMAL_MAX_AGE - 0.25
    listeners.on_dag_run_running(dag_run=Run(), msg="started")
    assert _rows()[COMPUTE_POOL][0] == 2  # the reading is younger than THERMAL_MAX_AGE: reused
    now[0] += 0.25  # exact in binary floating point: the age is THERMAL_MAX_AGE
    listeners.on_dag_run_running(dag_run=Run(), msg="started")
    assert _rows()[COMPUTE_POOL][0] == 8  # THERMAL_MAX_AGE old: read again, the zone cooled
    fake_thermal_zone(tmp_path, "serious")
    listeners.on_dag_run_running(dag_run=Run(), msg="started")
    assert _rows()[COMPUTE_POOL][0] == 8  # the fresh reading is reused (the clock did not move)
    now[0] += 3600
    listeners.on_dag_run_running(dag_run=Run(), msg="started")
    assert _rows()[COMPUTE_POOL][0] == 4

    fake_thermal_zone(tmp_path, "critical")
    now[0] += 3600
    listeners.on_starting(component=object())  # e.g. a task process: ignored
    assert _rows()[COMPUTE_POOL][0] == 4


def test_compute_slots_setting_replaces_the_hardware_base(restore_pools, tmp_path, monkeypatch):
    """MLOPS_COMPUTE_SLOTS: the compute pool's base whatever the cores; thermal scaling still applies."""
    from mlops.settings import Settings, SettingsError
    from mlops_airflow.pools import sync_pools

    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    monkeypatch.setenv("MLOPS_COMPUTE_SLOTS", "4")
    got = []
    for box in (cpu_box(64, 64), cpu_box(2, 64)):  # hardware bases 32 and 1
        for state in ("nominal", "serious", "critical"):
            fake_thermal_zone(tmp_path, state)
            got.append(sync_pools(box)[COMPUTE_POOL])
    assert got == [4, 2, 1] * 2
    description = _rows()[COMPUTE_POOL][1]
    assert "MLOPS_COMPUTE_SLOTS=4 (the hardware would give 1: CPU only: 2 physical cores // 2)" in description
    assert "thermal critical: 25% of 4" in description
    assert _rows()[MEMORY_POOL][0] == 48  # the memory pool is not affected
    monkeypatch.delenv("MLOPS_COMPUTE_SLOTS")
    fake_thermal_zone(tmp_path, "nominal")
    assert sync_pools(cpu_box(64, 64))[COMPUTE_POOL] == 32

    for bad in ("0", "-1", "1.5", "many"):
        with pytest.raises(SettingsError, match=rf"MLOPS_COMPUTE_SLOTS='{re.escape(bad)}': expected a number >= 1"):
            Settings.from_env({"MLOPS_COMPUTE_SLOTS": bad})
    with pytest.raises(ValueError, match="base_slots must be a whole number >= 1"):
        pool_plan(cpu_box(), "nominal", compute_slots=0)


def test_pool_refresh_zero_turns_the_refresher_off(monkeypatch):
    """MLOPS_POOL_REFRESH_SECONDS=0 is documented as "only at DAG-run starts": accepted, and no thread starts."""
    from mlops.settings import Settings, SettingsError
    from mlops_airflow import listeners

    assert Settings.from_env({"MLOPS_POOL_REFRESH_SECONDS": "0"}).pool_refresh_seconds == 0
    with pytest.raises(SettingsError, match="MLOPS_POOL_REFRESH_SECONDS='-1'"):
        Settings.from_env({"MLOPS_POOL_REFRESH_SECONDS": "-1"})
    monkeypatch.setenv("MLOPS_POOL_REFRESH_SECONDS", "0")
    monkeypatch.setattr(listeners, "_refresher", [])
    listeners._start_refresher()
    assert listeners._refresher == []
    monkeypatch.setenv("MLOPS_POOL_REFRESH_SECONDS", "3600")
    listeners._start_refresher()
    try:
        assert len(listeners._refresher) == 1 and listeners._refresher[0].is_alive()
        assert listeners._refresher[0].interval == 3600
    finally:
        listeners.before_stopping(component=object())
    assert listeners._refresher == []


# ----------------------------------------------------------------- CLI


def test_cli_sync_and_show(restore_pools, tmp_path, monkeypatch, capsys):
    from mlops_airflow.pools_cli import main

    fake_thermal_zone(tmp_path, "critical")
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    assert main(["sync", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["thermal"]["state"] == "critical"
    by_name = {p["name"]: p for p in out["pools"]}
    real = pool_plan(probe(), "critical")
    assert by_name[MEMORY_POOL]["slots"] == real[MEMORY_POOL].slots
    assert by_name[COMPUTE_POOL]["slots"] == real[COMPUTE_POOL].slots

    assert main(["show"]) == 0
    text = capsys.readouterr().out
    assert f"{COMPUTE_POOL:12} {real[COMPUTE_POOL].slots:4} slots" in text and "thermal critical" in text
    assert main(["sync"]) == 0
    assert "thermal state: critical" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["resize"])


def test_refresher_follows_the_thermal_state_between_dag_runs(restore_pools, tmp_path, monkeypatch):
    """The scheduler's refresher thread shrinks the compute pool when the machine heats up, and restores it."""
    import mlops_airflow.pools
    from mlops_airflow.pool_refresher import PoolRefresher

    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(tmp_path))
    monkeypatch.setattr(mlops_airflow.pools, "current_profile", lambda: cpu_box(16, 64))  # 8 compute slots when cool
    fake_thermal_zone(tmp_path, "nominal")
    refresher = PoolRefresher(interval=0.2)
    refresher.start()
    try:
        wait_for(lambda: _rows().get(COMPUTE_POOL, (0,))[0] == 8, 10, "the compute pool at nominal size")
        set_zone_state(tmp_path, "critical")
        wait_for(lambda: _rows()[COMPUTE_POOL][0] == 2, 10, "the compute pool to shrink (critical: 25 %)")
        set_zone_state(tmp_path, "nominal")
        wait_for(lambda: _rows()[COMPUTE_POOL][0] == 8, 10, "the compute pool to be restored")
    finally:
        refresher.stop()
    assert not refresher.is_alive()
