"""Shared by the operator tests: a clock the triggers' waits run on, so no test sleeps for real."""

from __future__ import annotations

from collections.abc import Callable

import pytest


class ManualClock:
    """The trigger's clock and sleep: time moves only when the trigger sleeps; `on_sleep` acts in between."""

    def __init__(self, start: float, on_sleep: Callable[[int], None] | None = None):
        self.now, self.sleeps, self.on_sleep = start, [], on_sleep

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


@pytest.fixture
def manual_clock(monkeypatch):
    import operators.triggers as triggers

    def install(on_sleep=None) -> ManualClock:
        clock = ManualClock(1_000_000.0, on_sleep)
        monkeypatch.setattr(triggers, "now", clock.time)
        monkeypatch.setattr(triggers, "sleep", clock.sleep)
        return clock

    return install
