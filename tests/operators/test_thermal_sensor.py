"""The thermal gate for real: the trigger's async loop, the sensor's paths, and `dag.test()` end to end."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlops_testing import fake_thermal_zone, set_zone_state

REPO = Path(__file__).resolve().parents[2]

def switch_later(root: Path, state: str, delay: float, when: Callable[[], bool] | None = None) -> dict:
    """Thread: (once ``when()`` holds) sleep ``delay`` s, then switch the tree to ``state``; records the time."""
    record: dict = {}

    def run():
        deadline = time.monotonic() + 180
        while when is not None and not when() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(delay)
        record["switched_at"] = time.time()
        set_zone_state(root, state)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    record["thread"] = thread
    return record


# ----------------------------------------------------------------- trigger


def first_event(trigger):
    async def consume():
        async for event in trigger.run():
            return event

    return asyncio.run(consume())


def test_trigger_waits_then_proceeds_after_switch(tmp_path, manual_clock):
    from operators.triggers import ThermalTrigger

    root = fake_thermal_zone(tmp_path, "serious")
    # The machine cools down during the trigger's third wait: the fourth read proceeds.
    clock = manual_clock(on_sleep=lambda n: set_zone_state(root, "nominal") if n == 3 else None)
    trigger = ThermalTrigger(
        threshold="serious", on_unknown="wait", poll_interval=0.25, deadline=clock.now + 30, hardware_root=str(root)
    )
    event = first_event(trigger)
    assert event.payload["status"] == "proceed" and event.payload["state"] == "nominal"
    assert clock.sleeps == [0.25, 0.25, 0.25]
    assert event.payload["polls"] == 4 and event.payload["waited_seconds"] == 0.75
    assert "below threshold serious" in event.payload["message"]


def test_trigger_waits_on_the_real_clock_until_the_zone_cools(tmp_path):
    """The same wait without the manual clock: real sleeps, a real switch from another thread (order only)."""
    from operators.triggers import ThermalTrigger

    root = fake_thermal_zone(tmp_path, "serious")
    trigger = ThermalTrigger(
        threshold="serious", on_unknown="wait", poll_interval=0.1, deadline=time.time() + 120, hardware_root=str(root)
    )
    switch = switch_later(root, "nominal", 0.5)
    event = first_event(trigger)
    assert event.payload["status"] == "proceed" and event.payload["state"] == "nominal"
    assert time.time() >= switch["switched_at"] and event.payload["polls"] >= 2


def test_trigger_times_out_at_deadline(tmp_path, manual_clock):
    from operators.triggers import ThermalTrigger

    root = fake_thermal_zone(tmp_path, "critical")
    clock = manual_clock()
    trigger = ThermalTrigger(
        threshold="serious", on_unknown="wait", poll_interval=5, deadline=clock.now + 1, hardware_root=str(root)
    )
    event = first_event(trigger)
    assert event.payload["status"] == "timeout" and event.payload["state"] == "critical"
    assert clock.sleeps == [1.0]  # the 5 s poll is cut short by the deadline, and nothing sleeps past it
    assert event.payload["polls"] == 2 and event.payload["waited_seconds"] == 1.0


def test_trigger_fails_on_unknown_when_asked(tmp_path):
    from operators.triggers import ThermalTrigger

    trigger = ThermalTrigger(threshold="serious", on_unknown="fail", poll_interval=1, deadline=time.time() + 10, hardware_root=str(tmp_path))
    event = first_event(trigger)
    assert event.payload["status"] == "fail" and "unknown" in event.payload["message"]


def test_trigger_serialize_round_trips(tmp_path):
    from airflow.sdk._shared.module_loading import import_string

    from operators.triggers import ThermalTrigger

    trigger = ThermalTrigger(threshold="fair", on_unknown="proceed", poll_interval=7, deadline=1234.5, hardware_root=str(tmp_path))
    classpath, kwargs = trigger.serialize()
    assert classpath == "operators.triggers.ThermalTrigger"
    clone = import_string(classpath)(**kwargs)
    assert isinstance(clone, ThermalTrigger) and clone.serialize() == (classpath, kwargs)
    assert kwargs["deadline"] == 1234.5 and kwargs["hardware_root"] == str(tmp_path)


# ----------------------------------------------------------------- sensor, called directly


def sensor(**kwargs):
    from operators.thermal import ThermalSensor

    defaults = dict(task_id="thermal_gate", threshold="serious", poll_interval=1, timeout=10, on_unknown="proceed")
    return ThermalSensor(**{**defaults, **kwargs})


def test_sensor_proceeds_at_once_without_deferring(tmp_path):
    event = sensor(hardware_root=str(fake_thermal_zone(tmp_path, "fair"))).execute({})
    assert event["status"] == "proceed" and event["state"] == "fair" and event["deferred"] is False


def test_sensor_defers_with_a_serialisable_trigger(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(fake_thermal_zone(tmp_path, "serious")))
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(timeout=60, poll_interval=5).execute({})
    after = time.time()
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "operators.triggers.ThermalTrigger"
    assert kwargs["hardware_root"] == str(tmp_path) and kwargs["poll_interval"] == 5.0
    assert before + 60 <= kwargs["deadline"] <= after + 60  # the timeout counts from the moment it deferred


def test_sensor_fails_without_retry_on_unknown_fail(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="unknown"):
        sensor(on_unknown="fail", hardware_root=str(tmp_path)).execute({})


def test_sensor_warns_when_proceeding_on_unknown(tmp_path):
    gate = sensor(hardware_root=str(tmp_path))
    seen = []
    gate.log.warning = lambda msg, *args: seen.append(msg % args)  # structlog: no caplog
    event = gate.execute({})
    assert event["state"] == "unknown" and event["status"] == "proceed"
    assert any("proceeding on UNKNOWN thermal state" in m for m in seen)


def test_execute_complete_paths():
    from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

    gate = sensor()
    ok = gate.execute_complete({}, {"status": "proceed", "state": "nominal", "message": "m", "waited_seconds": 3.0})
    assert ok["state"] == "nominal" and ok["deferred"] is True
    with pytest.raises(AirflowSensorTimeout, match=r"waited 10 s; thermal state still critical \(threshold serious\)"):
        gate.execute_complete({}, {"status": "timeout", "state": "critical", "message": "m", "waited_seconds": 10.2})
    with pytest.raises(AirflowFailException, match="nope"):
        gate.execute_complete({}, {"status": "fail", "state": "unknown", "message": "nope"})


def test_bad_policy_is_rejected_at_parse_time():
    with pytest.raises(ValueError, match="threshold"):
        sensor(threshold="hot")
    with pytest.raises(ValueError, match="on_unknown"):
        sensor(on_unknown="ignore")
    sensor(threshold="{{ params.threshold }}")  # templated: checked after rendering


def test_parse_time_choices_are_the_gates_own():
    """The constructor checks against copies (no hardware import at parse time): they must not drift."""
    from mlops.hardware import thermal_gate
    from operators import thermal

    assert thermal.THRESHOLDS == thermal_gate.THRESHOLDS
    assert thermal.ON_UNKNOWN == thermal_gate.ON_UNKNOWN


def test_poke_mode_same_decision(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    root = fake_thermal_zone(tmp_path, "serious")
    gate = sensor(deferrable=False, hardware_root=str(root))
    assert gate.mode == "reschedule"
    assert not gate.poke({})
    set_zone_state(root, "nominal")
    done = gate.poke({})
    assert done and done.xcom_value["state"] == "nominal"
    with pytest.raises(AirflowFailException):
        sensor(deferrable=False, on_unknown="fail", hardware_root=str(tmp_path / "none")).poke({})


# ----------------------------------------------------------------- dag.test() end to end


PROJECT = """\
name: {name}
retries: 0
model: {{family: mlp_classifier}}
data: {{num_samples: 256}}
training: {{epochs: 1}}
scheduling: {{thermal_threshold: serious, thermal_poll_seconds: 1, thermal_timeout_seconds: {timeout}}}
"""


def task_state(dag_id: str, task_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id=task_id).one_or_none()
            return ti.state if ti else None
    except Exception:  # noqa: BLE001 - SQLite busy while dag.test() writes: ask again
        return None


def load_dag(name: str, timeout: int, projects: Path, hardware: Path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    (projects / f"{name}.yaml").write_text(PROJECT.format(name=name, timeout=timeout))
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))
    monkeypatch.setenv("MLOPS_HARDWARE_ROOT", str(hardware))
    return DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag(f"{name}__lifecycle")


def test_lifecycle_waits_at_serious_and_trains_once_nominal(airflow_db, tmp_path, monkeypatch):
    projects, hardware = tmp_path / "projects", fake_thermal_zone(tmp_path / "hw", "serious")
    projects.mkdir()
    dag = load_dag("thermal_e2e", 60, projects, hardware, monkeypatch)
    # Cool down 3 s after the gate started waiting (pull_data done -> the gate runs next).
    switch = switch_later(hardware, "nominal", 3.0, when=lambda: task_state(dag.dag_id, "pull_data") == "success")
    run = dag.test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {t: ti.state for t, ti in tis.items()} == dict.fromkeys(
        ["pull_data", "thermal_gate", "train", "evaluate", "register", "build", "version_artifacts"], "success"
    )
    gate = tis["thermal_gate"].xcom_pull(task_ids="thermal_gate")
    assert gate["status"] == "proceed" and gate["state"] == "nominal" and gate["deferred"] is True
    assert gate["polls"] >= 2  # read serious once (so it deferred), then read again after the switch
    assert tis["thermal_gate"].end_date.timestamp() >= switch["switched_at"]
    assert tis["train"].start_date.timestamp() >= switch["switched_at"]


def test_lifecycle_gate_times_out_while_critical_and_training_never_runs(airflow_db, tmp_path, monkeypatch):
    projects, hardware = tmp_path / "projects", fake_thermal_zone(tmp_path / "hw", "critical")
    projects.mkdir()
    dag = load_dag("thermal_e2e_hot", 10, projects, hardware, monkeypatch)
    run = dag.test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert tis["pull_data"].state == "success" and tis["thermal_gate"].state == "failed"
    assert {tis[t].state for t in ("train", "evaluate", "register", "build", "version_artifacts")} == {"upstream_failed"}
    # never ran (Airflow stamps start/end dates on upstream_failed TIs, so check tries and XCom)
    assert tis["train"].try_number == 0 and tis["train"].xcom_pull(task_ids="train") is None
    assert tis["thermal_gate"].try_number == 1  # a thermal timeout is not retried
    # Order, not speed: the gate failed only once its 10 s deadline had passed.
    gate = tis["thermal_gate"]
    assert gate.end_date.timestamp() >= gate.start_date.timestamp() + 10
