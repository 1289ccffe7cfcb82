"""The thermal gate: heavy MLX steps wait while the machine runs hot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops.hardware.model import ThermalReading
    from mlops.hardware.thermal_gate import GateDecision

# The gate's choices, as in `mlops.hardware.thermal_gate` (THRESHOLDS, ON_UNKNOWN; a test keeps them
# equal): the constructor checks them at DAG-parse time without importing the hardware package.
THRESHOLDS = ("fair", "serious", "critical")
ON_UNKNOWN = ("proceed", "wait", "fail")


class ThermalSensor(BaseSensorOperator):
    """Proceed once the machine's thermal state is below ``threshold``.

    Reads the state once, synchronously: below the threshold the task succeeds
    at once (no deferral, so a cool machine adds no scheduling delay).  At or
    above it the task defers to :class:`operators.triggers.ThermalTrigger`,
    which re-reads every ``poll_interval`` s in the triggerer (no worker slot
    held) and fails the gate with :class:`AirflowSensorTimeout` after
    ``timeout`` s.  An unreadable ("unknown") state does what ``on_unknown``
    says: proceed (logged as a warning), wait, or fail (no retry).

    The XCom value is the event it proceeded on: ``status``, ``state``,
    ``message``, ``threshold``, ``waited_seconds``, ``polls``, ``deferred``.

    :param threshold: "fair" | "serious" | "critical" (templated).
    :param on_unknown: "proceed" | "wait" | "fail" (templated).
    :param poll_interval: seconds between reads while waiting.
    :param timeout: seconds of waiting before the gate fails.
    :param hardware_root: fake /sys tree for the Linux reader; None = ``$MLOPS_HARDWARE_ROOT`` or live.
    :param deferrable: wait in the triggerer (default); False = ``poke()`` in ``mode`` (default "reschedule").
    """

    template_fields: Sequence[str] = ("threshold", "on_unknown")
    ui_color = "#fde7d9"

    def __init__(
        self,
        *,
        threshold: str = "serious",
        poll_interval: float = 30,
        timeout: float = 3600,
        on_unknown: str = "proceed",
        hardware_root: str | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        if not deferrable:
            kwargs.setdefault("mode", "reschedule")
        super().__init__(poke_interval=poll_interval, timeout=timeout, **kwargs)
        self.threshold = threshold
        self.on_unknown = on_unknown
        self.poll_interval = float(poll_interval)
        self.hardware_root = str(hardware_root) if hardware_root else None
        self.deferrable = deferrable
        self._validate_policy(check_templates=False)

    # ------------------------------------------------------------------ helpers

    def _validate_policy(self, check_templates: bool = True) -> None:
        for name, value, allowed in (("threshold", self.threshold, THRESHOLDS), ("on_unknown", self.on_unknown, ON_UNKNOWN)):
            if not check_templates and isinstance(value, str) and "{{" in value:
                continue  # rendered at run time; checked again in execute()
            if value not in allowed:
                raise ValueError(f"{self.task_id}: {name} {value!r} not in {allowed}")

    def _root(self) -> str | None:
        from mlops.hardware.thermal import hardware_root

        if self.hardware_root:
            return self.hardware_root
        root = hardware_root()
        return str(root) if root else None

    def _read(self) -> tuple[ThermalReading, GateDecision]:
        from mlops.hardware.thermal import read_thermal
        from mlops.hardware.thermal_gate import decide

        reading = read_thermal(self._root())
        return reading, decide(reading, self.threshold, self.on_unknown)

    def _proceed(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("state") == "unknown":
            self.log.warning("thermal gate proceeding on UNKNOWN thermal state: %s", event.get("message"))
        else:
            self.log.info("thermal gate open: %s", event.get("message"))
        return event

    def _event(self, status: str, decision: GateDecision, waited: float, polls: int, deferred: bool) -> dict[str, Any]:
        return {
            "status": status,
            "state": decision.state,
            "message": decision.message,
            "threshold": self.threshold,
            "waited_seconds": round(waited, 3),
            "polls": polls,
            "deferred": deferred,
        }

    def _timeout_message(self, waited: float, state: str) -> str:
        return f"waited {waited:.0f} s; thermal state still {state} (threshold {self.threshold})"

    # ------------------------------------------------------------------ deferrable path

    def execute(self, context: Context) -> Any:
        self._validate_policy()
        if not self.deferrable:
            return self._execute_poking(context)
        from airflow.sdk.exceptions import AirflowFailException

        from operators.triggers import ThermalTrigger

        reading, decision = self._read()
        if decision.action == "proceed":
            return self._proceed(self._event("proceed", decision, 0.0, 1, deferred=False))
        if decision.action == "fail":
            raise AirflowFailException(decision.message)
        now = time.time()
        self.log.info("%s; deferring, re-reading every %g s for up to %g s", decision.message, self.poll_interval, self.timeout)
        self.defer(
            trigger=ThermalTrigger(
                threshold=self.threshold,
                on_unknown=self.on_unknown,
                poll_interval=self.poll_interval,
                deadline=now + self.timeout,
                hardware_root=self._root(),
                started_at=now,
            ),
            method_name="execute_complete",
            # Backstop only: the trigger fires its own "timeout" event at the deadline.
            timeout=timedelta(seconds=self.timeout + 2 * self.poll_interval + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

        if not isinstance(event, dict) or "status" not in event:
            raise AirflowException(f"thermal trigger returned no usable event: {event!r}")
        status = event["status"]
        if status == "proceed":
            return self._proceed({**event, "deferred": True})
        if status == "timeout":
            raise AirflowSensorTimeout(
                self._timeout_message(float(event.get("waited_seconds") or 0), event.get("state", "unknown"))
                + f"; last reading: {event.get('message')}"
            )
        if status == "fail":
            raise AirflowFailException(event.get("message") or "thermal gate failed")
        raise AirflowException(f"thermal trigger returned unknown status {status!r}: {event!r}")

    # ------------------------------------------------------------------ poke path (deferrable=False)

    def _execute_poking(self, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowSensorTimeout

        self._started = time.monotonic()
        self._polls = 0
        self._last_state = "unknown"
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(self._timeout_message(self._waited(context), self._last_state)) from exc

    def _waited(self, context: Context) -> float:
        ti = context.get("ti")
        if self.reschedule and ti is not None:
            from airflow.sdk import timezone

            first = ti.get_first_reschedule_date(context)
            if first is not None:
                return (timezone.utcnow() - first).total_seconds()
        return time.monotonic() - getattr(self, "_started", time.monotonic())

    def poke(self, context: Context) -> Any:
        from airflow.sdk.bases.sensor import PokeReturnValue
        from airflow.sdk.exceptions import AirflowFailException

        reading, decision = self._read()
        self._polls = getattr(self, "_polls", 0) + 1
        self._last_state = decision.state
        self.log.info("thermal poll: state %s (threshold %s) -> %s", reading.state, self.threshold, decision.action)
        if decision.action == "fail":
            raise AirflowFailException(decision.message)
        if decision.action == "wait":
            self.log.info(decision.message)
            return False
        event = self._event("proceed", decision, self._waited(context), self._polls, deferred=False)
        return PokeReturnValue(is_done=True, xcom_value=self._proceed(event))
