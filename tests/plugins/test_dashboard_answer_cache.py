"""The dashboard's answer cache: one build for many askers, no failure kept, stale answers served at once
while the next one is built, and waited for only when too old (the clock is injected: no sleeps)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mlops_airflow.dashboard.answer_cache import AnswerCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_many_tabs_asking_at_once_cost_one_build():
    cache, gate, calls = AnswerCache(fresh=60), threading.Event(), []

    def build():
        calls.append(1)
        gate.wait(30)
        return len(calls)

    async def many_tabs():
        asks = [asyncio.ensure_future(cache.aget("overview", build)) for _ in range(5)]
        await asyncio.sleep(0)  # every ask has claimed the key (each runs up to its first await)
        gate.set()
        return await asyncio.gather(*asks)

    assert asyncio.run(many_tabs()) == [1] * 5 and cache.get("overview", build) == 1 and len(calls) == 1


def test_a_failed_build_is_not_kept():
    cache = AnswerCache()

    def broken():
        raise RuntimeError("MLflow is down")

    with pytest.raises(RuntimeError, match="MLflow is down"):
        cache.get("project", broken)
    assert cache.get("project", lambda: "read again") == "read again"


def test_a_stale_answer_comes_back_at_once_while_the_next_is_built():
    clock, calls, gate, rebuilding = Clock(), [], threading.Event(), threading.Event()
    cache = AnswerCache(fresh=5, stale=60, clock=clock)

    def build():
        calls.append(1)
        if len(calls) > 1:
            rebuilding.set()
            gate.wait(30)  # the rebuild is slow: the asker must not wait for it
        return len(calls)

    assert asyncio.run(cache.aget("overview", build)) == 1
    clock.now += 4
    assert asyncio.run(cache.aget("overview", build)) == 1 and len(calls) == 1  # fresh: no build
    clock.now += 2
    assert asyncio.run(cache.aget("overview", build)) == 1  # stale: the old answer, a rebuild started
    assert rebuilding.wait(30)  # the rebuild runs on the cache's own thread
    assert asyncio.run(cache.aget("overview", build)) == 1 and len(calls) == 2  # still one rebuild in flight
    gate.set()
    cache._executor.shutdown(wait=True)
    assert cache.get("overview", build) == 2 and len(calls) == 2  # the rebuilt answer, fresh again


def test_an_answer_older_than_stale_is_waited_for():
    clock, calls = Clock(), []
    cache = AnswerCache(fresh=5, stale=60, clock=clock)
    build = lambda: len(calls.append(1) or calls)  # noqa: E731
    assert asyncio.run(cache.aget("k", build)) == 1
    clock.now += 61
    assert asyncio.run(cache.aget("k", build)) == 2  # too old to show: the asker gets the new build
