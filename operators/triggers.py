"""Triggers: async waits that run in Airflow's triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

# The trigger's clock and its wait between reads (a test replaces both with a clock it moves itself).
now = time.time
sleep = asyncio.sleep


class ThermalTrigger(BaseTrigger):
    """Re-read the machine's thermal state every ``poll_interval`` s until the gate may proceed.

    Fires exactly one event, ``{"status", "state", "message", "threshold", "waited_seconds"}``:
    ``proceed`` (state below ``threshold``, or unknown with ``on_unknown="proceed"``),
    ``fail`` (unknown with ``on_unknown="fail"``) or ``timeout`` (still waiting at
    ``deadline``, epoch seconds).  It reads the thermal state of the host the
    triggerer runs on (on the one-laptop setup: the training machine).

    :param hardware_root: fake /sys tree for the Linux reader (tests, simulations); None = live.
    """

    def __init__(
        self,
        *,
        threshold: str,
        on_unknown: str,
        poll_interval: float,
        deadline: float,
        hardware_root: str | None = None,
        started_at: float | None = None,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.on_unknown = on_unknown
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline)
        self.hardware_root = str(hardware_root) if hardware_root else None
        self.started_at = float(started_at) if started_at is not None else now()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "operators.triggers.ThermalTrigger",
            {
                "threshold": self.threshold,
                "on_unknown": self.on_unknown,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "hardware_root": self.hardware_root,
                "started_at": self.started_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from mlops.hardware.thermal import read_thermal
        from mlops.hardware.thermal_gate import decide

        polls = 0
        while True:
            reading = await asyncio.to_thread(read_thermal, self.hardware_root)
            decision = decide(reading, self.threshold, self.on_unknown)
            polls += 1
            at = now()
            self.log.info(
                "thermal poll %d: state %s (threshold %s) -> %s; %s",
                polls, reading.state, self.threshold, decision.action, reading.detail,
            )
            event = {
                "state": decision.state,
                "message": decision.message,
                "threshold": self.threshold,
                "waited_seconds": round(at - self.started_at, 3),
                "polls": polls,
            }
            if decision.action in ("proceed", "fail"):
                yield TriggerEvent({"status": decision.action, **event})
                return
            if at >= self.deadline:
                yield TriggerEvent({"status": "timeout", **event})
                return
            # Never sleep past the deadline: the timeout event fires on time.
            await sleep(max(0.0, min(self.poll_interval, self.deadline - at)))


class RoundResultsTrigger(BaseTrigger):
    """Re-read a federated round's client results in MLflow every ``poll_interval`` s.

    Fires exactly one event, ``{"reported", "complete", "expected", "waited_s", "polls", "error"}``,
    as soon as every client in ``expected`` has a finished result for round ``round_number``
    (``complete`` true), or at ``deadline`` (epoch seconds) with those that did. A failed read
    (MLflow restarting) is logged and retried until the deadline; ``error`` holds the last one.

    :param settings: the MLOPS_* variables (`Settings.to_env()`: addresses, no secrets) to reach MLflow.
    """

    def __init__(
        self,
        *,
        settings: dict[str, str],
        federation_run_id: str,
        round_number: int,
        expected: list[str],
        deadline: float,
        poll_interval: float,
        started_at: float | None = None,
    ) -> None:
        super().__init__()
        self.settings = dict(settings)
        self.federation_run_id = federation_run_id
        self.round_number = int(round_number)
        self.expected = sorted(expected)
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.started_at = float(started_at) if started_at is not None else now()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "operators.triggers.RoundResultsTrigger",
            {
                "settings": self.settings,
                "federation_run_id": self.federation_run_id,
                "round_number": self.round_number,
                "expected": self.expected,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "started_at": self.started_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        polls, reported, error = 0, [], None
        while True:
            try:
                results = await asyncio.to_thread(_round_results, self.settings, self.federation_run_id, self.round_number)
                reported, error = sorted(set(self.expected) & set(results)), None
            except Exception as exc:  # noqa: BLE001 - MLflow may be restarting: read again until the deadline
                error = f"reading round {self.round_number}'s results failed: {type(exc).__name__}: {exc}"
                self.log.warning("%s", error)
            polls += 1
            at = now()
            complete = reported == self.expected
            self.log.info(
                "round %d poll %d: %d of %d clients reported (%s)",
                self.round_number, polls, len(reported), len(self.expected), ", ".join(reported) or "none",
            )
            if complete or at >= self.deadline:
                yield TriggerEvent({
                    "reported": reported,
                    "complete": complete,
                    "expected": self.expected,
                    "waited_s": round(at - self.started_at, 3),
                    "polls": polls,
                    "error": error,
                })
                return
            await sleep(max(0.0, min(self.poll_interval, self.deadline - at)))


def _round_results(settings: dict[str, str], federation_run_id: str, round_number: int) -> dict[str, Any]:
    """`round_results`, imported on the reading thread: the first import (MLflow's) takes 0.3-0.6 s,
    which on the event loop would hold every other trigger of the triggerer."""
    from mlops.federated.steps import round_results

    return round_results(settings, federation_run_id, round_number)
