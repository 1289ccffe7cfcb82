"""The thermal gate's policy: given one reading, proceed, wait or fail.  Pure, no Airflow.

Rule: heavy work proceeds while the state is milder than the threshold
(nominal < fair < serious < critical) and waits when it is at the threshold or
worse.  An "unknown" state (no sensor could be read) does what ``on_unknown``
says; "proceed" proceeds with a message that says the state is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlops.hardware.model import UNKNOWN, ThermalReading
from mlops.hardware.thermal import STATE_ORDER, at_least

#: Thresholds a project may set (``scheduling.thermal_threshold``).
THRESHOLDS = ("fair", "serious", "critical")
ON_UNKNOWN = ("proceed", "wait", "fail")
Action = Literal["proceed", "wait", "fail"]


@dataclass(frozen=True)
class GateDecision:
    action: Action
    message: str
    state: str
    #: True when proceeding although the state is unknown (callers log a warning).
    warning: bool = False


def decide(reading: ThermalReading, threshold: str, on_unknown: str) -> GateDecision:
    """What the gate does with ``reading``; raises ``ValueError`` for a bad threshold/on_unknown."""
    if threshold not in THRESHOLDS:
        raise ValueError(f"thermal threshold {threshold!r} not in {THRESHOLDS}")
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown {on_unknown!r} not in {ON_UNKNOWN}")
    evidence = f"{reading.detail} [source: {reading.source}]"
    state = reading.state
    if state == UNKNOWN or state not in STATE_ORDER:
        if on_unknown == "proceed":
            return GateDecision(
                "proceed",
                f"thermal state is unknown ({evidence}); proceeding anyway (on_unknown=proceed, threshold {threshold})",
                UNKNOWN,
                warning=True,
            )
        if on_unknown == "wait":
            return GateDecision(
                "wait", f"thermal state is unknown ({evidence}); waiting (on_unknown=wait, threshold {threshold})", UNKNOWN
            )
        return GateDecision(
            "fail", f"thermal state is unknown ({evidence}); failing (on_unknown=fail, threshold {threshold})", UNKNOWN
        )
    if at_least(state, threshold):
        return GateDecision("wait", f"thermal state {state} is at or above threshold {threshold} ({evidence}); waiting", state)
    return GateDecision("proceed", f"thermal state {state} is below threshold {threshold} ({evidence}); proceeding", state)
