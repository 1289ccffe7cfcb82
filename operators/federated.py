"""Federated averaging operators: partition, start, one client per task and round, aggregate, publish.

Each calls one JSON step of `mlops.federated.steps` (through `ProjectOperator.run_step`, so a
project with its own environment runs it there). A round's aggregate is not downstream of its
client tasks: it waits for their results in MLflow, deferred to the triggerer
(`operators.triggers.RoundResultsTrigger`), up to the round's timeout, so a client whose machine
is gone delays a round by at most that long and never blocks it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

STEPS = "mlops.federated.steps"
CLIENT_SKIPS = {
    "not_sampled": "not sampled for this round",
    "round_closed": "the round already aggregated without this client (it reported too late)",
}


def run_tags(context: Context) -> dict[str, str]:
    """The Airflow run's tags for the MLflow runs a step creates (as `train` tags its run)."""
    from operators.mlx_train import retrain_reason

    ti = context["ti"]
    tags = {"airflow.dag_id": ti.dag_id, "airflow.run_id": ti.run_id, "airflow.try_number": str(ti.try_number)}
    reason = retrain_reason(context)
    if reason:
        tags["mlops.retrain_reason"] = reason[:5000]
    return tags


def triggers_run_inline() -> bool:
    """True under `dag.test()` / `airflow dags test`: they run a deferred task's trigger in line, before
    the tasks still to run, so a round waiting there would wait for clients that cannot start."""
    from airflow.sdk.execution_time import task_runner

    return type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "InProcessSupervisorComms"


def poll_interval(round_timeout_s: float) -> float:
    """Seconds between the trigger's reads of MLflow: a twentieth of the round, within 1-10 s."""
    return min(10.0, max(1.0, round_timeout_s / 20))


class PartitionDataOperator(ProjectOperator):
    """Split `pull_data`'s training rows among the clients; each partition gets its DVC version.

    :param data: the `pull_data` result (path + version).
    """

    template_fields: Sequence[str] = ("data",)
    ui_color = "#e3f2e1"

    def __init__(self, *, data: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = data

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.run_step(f"{STEPS}:partition", data_path=self.data["path"], data_version=self.data["version"])
        for client, part in result["clients"].items():
            self.log.info("%s: %s examples, partition version %s", client, part["examples"], part["version"])
        return result


class StartFederationOperator(ProjectOperator):
    """Open the federation's MLflow run with the initial global weights; draw every round's sample.

    :param data: the `pull_data` result; :param partitions: the `partition_data` result.
    """

    template_fields: Sequence[str] = ("data", "partitions")
    ui_color = "#e3f2e1"

    def __init__(self, *, data: Any, partitions: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = data
        self.partitions = partitions

    def execute(self, context: Context) -> dict[str, Any]:
        federation = self.run_step(
            f"{STEPS}:start", data_version=self.data["version"], partitions=self.partitions, run_tags=run_tags(context)
        )
        self.log.info(
            "federation run %s: %s rounds over %s", federation["run_id"], federation["rounds"], ", ".join(federation["clients"])
        )
        for number, sampled in sorted(federation["sampled"].items(), key=lambda item: int(item[0])):
            self.log.info("round %s samples %s", number, ", ".join(sampled))
        return federation


class FederatedClientOperator(ProjectOperator):
    """Client `client`'s training in round `round`: local epochs from the last global weights.

    Skipped (not failed) when the client is not in the round's sample, or the round already
    aggregated without it. Its result is in MLflow, where the round's aggregate reads it.

    :param federation: the `start_federation` result; :param partitions: the `partition_data` result.
    """

    template_fields: Sequence[str] = ("federation", "partitions")
    ui_color = "#fde9d9"

    def __init__(self, *, client: str, round: int, federation: Any, partitions: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.round = int(round)
        self.federation = federation
        self.partitions = partitions

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if not self.federation:
            raise AirflowSkipException("no federation was started (start_federation gave no result)")
        result = self.run_step(
            f"{STEPS}:train_client",
            federation=self.federation,
            partitions=self.partitions,
            round=self.round,
            client=self.client,
            attempt=context["ti"].try_number,
            run_tags=run_tags(context),
        )
        status = result.get("status")
        if status in CLIENT_SKIPS:
            raise AirflowSkipException(f"{self.client}, round {self.round}: {CLIENT_SKIPS[status]}")
        self.log.info(
            "%s trained round %s on %s: %s examples, train_loss %s (MLflow run %s)",
            self.client, self.round, result.get("host"), result.get("examples"), result.get("train_loss"),
            result.get("run_id"),
        )
        return result


class FederatedAggregateOperator(ProjectOperator):
    """Round `round`'s FedAvg: once every sampled client reported, or at the round's timeout.

    Aggregates at once when the results are already in MLflow; otherwise defers to
    `RoundResultsTrigger`, which holds no worker slot while the clients train. The step fails the
    round (and so the run) when fewer than `min_clients` reported.

    :param federation: the `start_federation` result; :param data: the `pull_data` result.
    """

    template_fields: Sequence[str] = ("federation", "data")
    ui_color = "#dbe9f6"

    def __init__(self, *, round: int, federation: Any, data: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.round = int(round)
        self.federation = federation
        self.data = data

    def _expected(self) -> list[str]:
        return sorted(self.federation["sampled"][str(self.round)])

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.federated.steps import round_results

        from operators.triggers import RoundResultsTrigger

        settings = self.settings().to_env()
        expected = self._expected()
        reported = sorted(set(expected) & set(round_results(settings, self.federation["run_id"], self.round)))
        if reported == expected:
            return self._aggregate(waited_s=0.0)
        timeout = float(self.federation["round_timeout_s"])
        interval = poll_interval(timeout)
        started = time.time()
        if triggers_run_inline():
            return self._poll_by_rescheduling(context, started, timeout, reported)
        self.log.info(
            "round %s: %d of %d sampled clients reported (%s); waiting up to %g s for %s",
            self.round, len(reported), len(expected), ", ".join(reported) or "none", timeout,
            ", ".join(sorted(set(expected) - set(reported))),
        )
        self.defer(
            trigger=RoundResultsTrigger(
                settings=settings,
                federation_run_id=self.federation["run_id"],
                round_number=self.round,
                expected=expected,
                deadline=started + timeout,
                poll_interval=interval,
                started_at=started,
            ),
            method_name="execute_complete",
            # Backstop only: the trigger fires its own event at the deadline.
            timeout=timedelta(seconds=timeout + 2 * interval + 60),
        )

    def _poll_by_rescheduling(self, context: Context, now: float, timeout: float, reported: list[str]) -> dict[str, Any]:
        """The wait under `dag.test()`: give the round's clients their turn (a reschedule), until the deadline."""
        from datetime import datetime, timezone

        from airflow.sdk.exceptions import AirflowRescheduleException

        first = context["ti"].get_first_reschedule_date(context)
        waited = now - first.timestamp() if first is not None else 0.0
        if waited < timeout:
            # one second is enough: the round's clients run before the next check, in the same pass of the test loop
            self.log.info("round %s: %s reported; checking again in 1 s", self.round, reported or "none")
            raise AirflowRescheduleException(datetime.fromtimestamp(now + 1.0, tz=timezone.utc))
        return self._aggregate(waited_s=waited)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException

        if not isinstance(event, dict) or "reported" not in event:
            raise AirflowException(f"round results trigger returned no usable event: {event!r}")
        if not event.get("complete"):
            self.log.warning(
                "round %s timed out after %s s with %s of %s sampled clients: %s",
                self.round, event.get("waited_s"), len(event["reported"]), len(self._expected()),
                event.get("error") or "aggregating what arrived",
            )
        return self._aggregate(waited_s=float(event.get("waited_s") or 0.0))

    def _aggregate(self, waited_s: float) -> dict[str, Any]:
        result = self.run_step(
            f"{STEPS}:aggregate",
            federation=self.federation, round=self.round, data_path=self.data["path"], waited_s=waited_s,
        )
        self.log.info(
            "round %s aggregated %s (%s examples); missing: %s; global metrics %s",
            self.round, ", ".join(result["clients"]), result.get("examples"), ", ".join(result["missing"]) or "none",
            result.get("metrics"),
        )
        return result


class PublishFederatedModelOperator(ProjectOperator):
    """The last round's global model, finished and saved as `train` saves its model (same result shape).

    :param federation: the `start_federation` result; :param data: the `pull_data` result.
    """

    template_fields: Sequence[str] = ("federation", "data")
    ui_color = "#fde9d9"

    def __init__(self, *, federation: Any, data: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.federation = federation
        self.data = data

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.run_step(
            f"{STEPS}:publish_model",
            federation=self.federation,
            data_path=self.data["path"],
            data_version=self.data["version"],
        )
        self.log.info("federated model of run %s: %s", result["run_id"], result.get("metrics"))
        return result


class ParticipationOperator(ProjectOperator):
    """Which client trained which round. Runs whatever the client tasks' outcome (`all_done`):
    a client that failed or never ran does not fail a run whose rounds met their quorum.

    :param federation: the `start_federation` result.
    """

    template_fields: Sequence[str] = ("federation",)
    ui_color = "#eeeeee"

    def __init__(self, *, federation: Any, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.federation = federation

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops.federated.steps import participation

        if not self.federation:
            raise AirflowSkipException("no federation was started (start_federation gave no result)")
        # Reads MLflow only: on the shared layer, whatever environment the project trains in.
        result = participation(self.settings().to_env(), self.federation)
        rows = [("round", "sampled", "reported", "missing", "hosts")]
        for number, r in sorted(result["rounds"].items(), key=lambda item: int(item[0])):
            hosts = ", ".join(f"{c}@{h}" for c, h in sorted((r.get("hosts") or {}).items())) or "-"
            reported, missing = ", ".join(r["reported"]) or "-", ", ".join(r["missing"]) or "-"
            rows.append((number, ", ".join(r["sampled"]), reported, missing, hosts))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        table = "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) for row in rows)
        self.log.info("participation of federation %s:\n%s", self.federation["run_id"], table)
        return result
