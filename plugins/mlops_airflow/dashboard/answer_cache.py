"""The dashboard's answers, kept so that a reader never waits for a build someone else already paid for.

An answer is fresh for `fresh` seconds: asks get it as it is. After that the next ask starts one rebuild
in the background and, while the answer is younger than `stale` seconds, gets the previous answer at
once (stale-while-revalidate, as HTTP's Cache-Control names it); an older one waits for the rebuild.
Concurrent askers of one key share the one build in flight; a failed build is not kept (the previous
good answer keeps serving until it is `stale`). Builds started from the event loop (`aget`) run on a
small executor of this cache's own, so slow MLflow or DB reads hold at most `workers` threads however
many dashboards are open, and never the threadpool Airflow's own routes share.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

FRESH_SECONDS = 5.0
STALE_SECONDS = 60.0
WORKERS = 2
MAX_ENTRIES = 256  # one per project asked for; past it, answers older than `stale` are dropped


class AnswerCache:
    def __init__(self, fresh: float = FRESH_SECONDS, stale: float = STALE_SECONDS, workers: int = WORKERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh, self.stale = fresh, max(stale, fresh)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="toolkit-dashboard")
        self._answers: dict[Any, tuple[float, Any]] = {}  # key -> (when built, the answer)
        self._building: dict[Any, Future] = {}
        self._lock = threading.Lock()

    def _plan(self, key: Any) -> tuple[Future, Future | None]:
        """What the asker gets (a done future for a kept answer, else the build), and a build to start."""
        with self._lock:
            now = self._clock()
            kept = self._answers.get(key)
            age = now - kept[0] if kept is not None else float("inf")
            if age < self.fresh:
                return _done(kept[1]), None
            start = None
            building = self._building.get(key)
            if building is None:
                building = start = self._building[key] = Future()
                if len(self._answers) >= MAX_ENTRIES:
                    self._answers = {k: a for k, a in self._answers.items() if now - a[0] < self.stale}
            return (_done(kept[1]) if age < self.stale else building), start

    def _build(self, key: Any, future: Future, compute: Callable[[], Any]) -> None:
        try:
            value = compute()
        except BaseException as error:
            with self._lock:
                self._building.pop(key, None)
            future.set_exception(error)
        else:
            with self._lock:
                self._answers[key] = (self._clock(), value)  # fresh from when it is ready
                self._building.pop(key, None)
            future.set_result(value)

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        """From a worker thread: a build it has to start runs right here and is what it gets."""
        answer, start = self._plan(key)
        if start is not None:
            self._build(key, start, compute)
            return start.result()
        return answer.result()

    async def aget(self, key: Any, compute: Callable[[], Any]) -> Any:
        """From the event loop: awaits without holding a thread; a stale answer comes back at once."""
        answer, start = self._plan(key)
        if start is not None:
            self._executor.submit(self._build, key, start, compute)
        return await asyncio.wrap_future(answer)

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
