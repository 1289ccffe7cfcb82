"""The federated operators' Airflow side: the round trigger on a real MLflow store, deferral, skips.

The steps themselves (`mlops.federated.steps`) are tested in tests/federated/; here the operators'
calls to them are recorded, and the trigger reads client runs written to a real MLflow store with
the tags a client's run carries.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlops_testing import free_port

from mlops.settings import Settings

PROJECT = {"name": "fed_ops", "model": {"family": "federated_mlp"}, "federated": {"rounds": 2, "clients": 3}}
FEDERATION = {
    "run_id": "parent", "experiment_id": "1", "clients": ["client_1", "client_2", "client_3"],
    "sampled": {"1": ["client_1", "client_3"], "2": ["client_1", "client_2", "client_3"]},
    "rounds": 2, "min_clients": 1, "round_timeout_s": 300.0,
}


# ----------------------------------------------------------------- a real MLflow store


class Store:
    """A sqlite MLflow store with one federation (parent run) and the client runs a test adds."""

    def __init__(self, root: Path):
        from mlflow import MlflowClient

        self.settings = Settings.from_env({"MLOPS_HOME": str(root), "MLOPS_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})
        self.client = MlflowClient(self.settings.tracking_uri)
        self.experiment_id = self.client.create_experiment(f"fed_{root.name}", artifact_location=str(root / "artifacts"))
        self.parent = self.client.create_run(self.experiment_id, tags={"mlops.federated": "true"}).info.run_id

    def client_run(self, round_number: int, client: str, attempt: int = 1, status: str = "FINISHED", examples: int = 50):
        run = self.client.create_run(self.experiment_id, tags={
            "mlflow.parentRunId": self.parent, "mlflow.runName": f"round {round_number} · {client}",
            "mlops.federated.round": str(round_number), "mlops.federated.client": client,
            "mlops.federated.attempt": str(attempt), "mlops.federated.host": "test-host", "mlops.project": "fed_ops",
        })
        self.client.log_metric(run.info.run_id, "examples", examples)
        if status != "RUNNING":
            self.client.set_terminated(run.info.run_id, status)
        return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("fedstore"))


# ----------------------------------------------------------------- trigger


def first_event(trigger):
    async def consume():
        async for event in trigger.run():
            return event

    return asyncio.run(consume())


def round_trigger(settings: Settings, run_id: str, round_number: int, expected, deadline: float, poll: float = 2.0):
    from operators.triggers import RoundResultsTrigger

    return RoundResultsTrigger(
        settings=settings.to_env(), federation_run_id=run_id, round_number=round_number, expected=expected,
        deadline=deadline, poll_interval=poll,
    )


def test_trigger_fires_once_every_sampled_client_finished(store, manual_clock):
    store.client_run(1, "client_1")
    store.client_run(1, "client_2", status="FAILED")  # a failed try is no result
    store.client_run(2, "client_3")  # another round's result is not this round's

    def clients_report(sleeps: int) -> None:
        if sleeps == 1:
            store.client_run(1, "client_2", status="RUNNING")  # still uploading: not yet a result
        if sleeps == 2:
            store.client_run(1, "client_2", attempt=2)

    clock = manual_clock(on_sleep=clients_report)
    event = first_event(round_trigger(store.settings, store.parent, 1, ["client_2", "client_1"], clock.now + 60))
    assert event.payload == {
        "reported": ["client_1", "client_2"], "complete": True, "expected": ["client_1", "client_2"],
        "waited_s": 4.0, "polls": 3, "error": None,
    }
    assert clock.sleeps == [2.0, 2.0]


def test_trigger_fires_at_the_deadline_with_the_clients_that_reported(store, manual_clock):
    store.client_run(3, "client_1")
    clock = manual_clock(on_sleep=lambda n: store.client_run(3, "client_2") if n == 2 else None)
    event = first_event(round_trigger(store.settings, store.parent, 3, ["client_1", "client_2", "client_3"],
                                      clock.now + 25, poll=10))
    assert (event.payload["reported"], event.payload["complete"]) == (["client_1", "client_2"], False)
    assert clock.sleeps == [10.0, 10.0, 5.0]  # never sleeps past the deadline: the event fires on time
    assert (event.payload["waited_s"], event.payload["polls"], event.payload["error"]) == (25.0, 4, None)


def test_trigger_keeps_reading_while_mlflow_is_down_and_says_so_at_the_deadline(manual_clock, tmp_path):
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    clock = manual_clock()
    event = first_event(round_trigger(settings, "parent", 1, ["client_1"], clock.now + 5, poll=2))
    assert (event.payload["reported"], event.payload["complete"], event.payload["polls"]) == ([], False, 4)
    assert "reading round 1's results failed" in event.payload["error"] and "unreachable" in event.payload["error"]


def test_trigger_serializes_to_json_kwargs_and_back():
    import json

    from operators.triggers import RoundResultsTrigger

    trigger = RoundResultsTrigger(settings={"MLOPS_HOME": "/x"}, federation_run_id="abc", round_number=2,
                                  expected=["b", "a"], deadline=123.0, poll_interval=5, started_at=100.0)
    path, kwargs = trigger.serialize()
    assert path == "operators.triggers.RoundResultsTrigger" and json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["expected"] == ["a", "b"] and RoundResultsTrigger(**kwargs).serialize() == (path, kwargs)


# ----------------------------------------------------------------- operators (steps recorded)


class Recorder:
    def __init__(self, result):
        self.calls, self.result = [], result

    def __call__(self, target, **kwargs):
        self.calls.append((target, kwargs))
        return self.result(kwargs) if callable(self.result) else self.result


def context(try_number: int = 1) -> dict:
    ti = SimpleNamespace(dag_id="fed_ops__lifecycle", run_id="manual__1", try_number=try_number)
    return {"ti": ti}


def test_client_task_trains_or_skips_with_the_reason(monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    from operators.federated import FederatedClientOperator

    op = FederatedClientOperator(task_id="train_client_2", client="client_2", round=1, federation=FEDERATION,
                                 partitions={"clients": {}}, project=PROJECT)
    trained = {"status": "trained", "run_id": "r", "examples": 10, "train_loss": 0.5, "host": "h"}
    record = Recorder(trained)
    monkeypatch.setattr(op, "run_step", record)
    assert op.execute(context(try_number=2)) == trained
    ((target, kwargs),) = record.calls
    assert target == "mlops.federated.steps:train_client"
    assert (kwargs["client"], kwargs["round"], kwargs["attempt"], kwargs["federation"]) == ("client_2", 1, 2, FEDERATION)
    assert kwargs["run_tags"] == {"airflow.dag_id": "fed_ops__lifecycle", "airflow.run_id": "manual__1", "airflow.try_number": "2"}
    for status, reason in (("not_sampled", "not sampled"), ("round_closed", "already aggregated without this client")):
        record.result = {"status": status}
        with pytest.raises(AirflowSkipException, match=f"client_2, round 1: .*{reason}"):
            op.execute(context())


def aggregate_operator(monkeypatch, store: Store, round_number: int, federation: dict):
    from operators.federated import FederatedAggregateOperator

    op = FederatedAggregateOperator(task_id="aggregate", round=round_number, federation=federation,
                                    data={"path": "/data", "version": "v1"}, project=PROJECT)
    monkeypatch.setattr(op, "settings", lambda: store.settings)
    record = Recorder(lambda kw: {"round": kw["round"], "clients": ["client_1"], "missing": [], "examples": 50, "metrics": {}})
    monkeypatch.setattr(op, "run_step", record)
    return op, record


def test_aggregate_runs_at_once_when_every_sampled_client_already_reported(monkeypatch, store):
    federation = {**FEDERATION, "run_id": store.parent, "sampled": {"5": ["client_1", "client_3"]}}
    store.client_run(5, "client_1")
    store.client_run(5, "client_3")
    op, record = aggregate_operator(monkeypatch, store, 5, federation)
    assert op.execute(context())["round"] == 5
    ((target, kwargs),) = record.calls
    assert target == "mlops.federated.steps:aggregate"
    assert kwargs == {"federation": federation, "round": 5, "data_path": "/data", "waited_s": 0.0}


def test_aggregate_defers_to_the_round_trigger_until_the_deadline(monkeypatch, store):
    from airflow.sdk.exceptions import TaskDeferred

    from operators.triggers import RoundResultsTrigger

    federation = {**FEDERATION, "run_id": store.parent, "sampled": {"6": ["client_3", "client_1"]}, "round_timeout_s": 100}
    store.client_run(6, "client_1")
    op, record = aggregate_operator(monkeypatch, store, 6, federation)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, RoundResultsTrigger) and deferred.value.method_name == "execute_complete"
    assert (trigger.federation_run_id, trigger.round_number, trigger.expected) == (store.parent, 6, ["client_1", "client_3"])
    assert before + 100 <= trigger.deadline <= time.time() + 100 and trigger.poll_interval == 5.0  # 100 s / 20
    assert trigger.settings == store.settings.to_env() and record.calls == []
    assert deferred.value.timeout.total_seconds() == 100 + 2 * 5 + 60  # backstop after the trigger's own deadline

    # The triggerer's event resumes the task: it aggregates what arrived (the step checks the quorum).
    op.execute_complete(context(), {"reported": ["client_1"], "complete": False, "waited_s": 100.2, "error": None})
    ((target, kwargs),) = record.calls
    assert target == "mlops.federated.steps:aggregate" and kwargs["waited_s"] == 100.2 and kwargs["round"] == 6


def test_poll_interval_is_a_twentieth_of_the_round_within_1_to_10_s():
    from operators.federated import poll_interval

    assert [poll_interval(t) for t in (5, 60, 100, 600, 86400)] == [1.0, 3.0, 5.0, 10.0, 10.0]


def test_participation_runs_whatever_the_clients_did_and_skips_without_a_federation():
    from airflow.sdk.exceptions import AirflowSkipException

    from operators.federated import ParticipationOperator

    op = ParticipationOperator(task_id="participation", federation=None, project=PROJECT)
    assert op.trigger_rule == "all_done"
    with pytest.raises(AirflowSkipException, match="no federation was started"):
        op.execute(context())


def test_participation_reads_the_rounds_from_mlflow(monkeypatch, store):
    from operators.federated import ParticipationOperator

    federation = {**FEDERATION, "run_id": store.parent, "rounds": 1, "sampled": {"1": ["client_1", "client_2"]}}
    op = ParticipationOperator(task_id="participation", federation=federation, project=PROJECT)
    monkeypatch.setattr(op, "settings", lambda: store.settings)
    rounds = op.execute(context())["rounds"]
    assert rounds["1"]["sampled"] == ["client_1", "client_2"]
    assert set(rounds["1"]["reported"]) | set(rounds["1"]["missing"]) == {"client_1", "client_2"}
