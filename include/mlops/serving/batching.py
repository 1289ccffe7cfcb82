"""Adaptive batching: requests that wait while the model is busy run as one model call.

`predict_many(session, requests)` is the pure part: requests whose inputs share trailing
shapes are concatenated along the batch axis, run once, and split back. `MicroBatcher` is
the gateway's asyncio queue in front of one model: the first request of an idle model runs
at once (no added latency at low load); requests that arrive while a call runs are taken
together for the next call, up to `max_batch_size` rows, waiting at most `wait_s` for more.
So the batch size adapts to the load. Ray Serve replicas use `@serve.batch` with the same
`predict_many` (see `ray_app.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

Arrays = dict[str, "np.ndarray"]


def _shape_key(arrays: Arrays) -> tuple:
    return tuple(sorted((name, a.shape[1:], str(a.dtype)) for name, a in arrays.items()))


def group_requests(requests: list[Arrays]) -> list[tuple[list[int], Arrays]]:
    """(request indexes, their inputs concatenated) per group of shape-compatible requests."""
    import numpy as np

    groups: dict[tuple, list[int]] = {}
    for i, arrays in enumerate(requests):
        groups.setdefault(_shape_key(arrays), []).append(i)
    joined = []
    for members in groups.values():
        if len(members) == 1:
            joined.append((members, requests[members[0]]))
        else:
            names = requests[members[0]].keys()
            joined.append((members, {name: np.concatenate([requests[i][name] for i in members]) for name in names}))
    return joined


def split_outputs(requests: list[Arrays], members: list[int], outputs: Arrays, results: list) -> None:
    """Hand each member request its rows of a joined call's outputs (in `results`, by request index)."""
    start = 0
    for i in members:
        rows = len(next(iter(requests[i].values())))
        results[i] = {name: value[start : start + rows] for name, value in outputs.items()}
        start += rows


def predict_many(predict: Callable[[Arrays], Arrays], requests: list[Arrays]) -> list[Arrays]:
    """One `predict` call per group of shape-compatible requests; outputs in request order."""
    results: list[Arrays | None] = [None] * len(requests)
    for members, joined in group_requests(requests):
        split_outputs(requests, members, predict(joined), results)
    return results  # type: ignore[return-value]


async def predict_many_async(predict: Callable[[Arrays], Awaitable[Arrays]], requests: list[Arrays]) -> list[Arrays]:
    """`predict_many` for an awaitable `predict` (a forward to a deployment): the groups run concurrently."""
    results: list[Arrays | None] = [None] * len(requests)
    groups = group_requests(requests)
    answers = await asyncio.gather(*(predict(joined) for _, joined in groups))
    for (members, _), outputs in zip(groups, answers):
        split_outputs(requests, members, outputs, results)
    return results  # type: ignore[return-value]


class MicroBatcher:
    """Queue in front of one model; `await submit(arrays)` gives that request's outputs.

    `run_batch(list_of_requests)` is awaited for each batch (it runs the model call off the
    event loop). `max_concurrent` batches run at once: 1 for a model on this process's single
    MLX thread; for a deployment, enough to keep every replica at its autoscaling target (so
    the aggregate load still shows Ray Serve when to scale).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Arrays]], Awaitable[list[Arrays]]],
        max_batch_size: int,
        wait_s: float,
        max_concurrent: int = 1,
    ):
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.max_concurrent = max(1, max_concurrent)
        self.running: set[asyncio.Task] = set()
        self.queue: asyncio.Queue[tuple[Arrays, asyncio.Future]] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.batches = 0
        self.requests = 0

    async def submit(self, arrays: Arrays) -> Arrays:
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((arrays, future))
        return await future

    def _rows(self, arrays: Arrays) -> int:
        return len(next(iter(arrays.values())))

    async def _next_batch(self) -> list[tuple[Arrays, asyncio.Future]]:
        batch = [await self.queue.get()]
        rows = self._rows(batch[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while rows < self.max_batch_size:
            if self.queue.empty():
                if len(batch) == 1 or self.wait_s <= 0 or loop.time() >= deadline:
                    break  # an idle model runs its first request at once
                await asyncio.sleep(min(0.0005, max(0.0, deadline - loop.time())))
                continue
            item = self.queue.get_nowait()
            batch.append(item)
            rows += self._rows(item[0])
        return batch

    async def _work(self) -> None:
        slots = asyncio.Semaphore(self.max_concurrent)
        while True:
            await slots.acquire()  # with one slot, the next batch gathers while this one runs
            batch = await self._next_batch()
            self.batches += 1
            self.requests += len(batch)
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self.running.add(task)
            task.add_done_callback(lambda t: (self.running.discard(t), slots.release()))

    async def _run(self, batch: list[tuple[Arrays, asyncio.Future]]) -> None:
        try:
            outputs = await self.run_batch([arrays for arrays, _ in batch])
        except Exception as exc:  # every waiting request gets the error, the worker goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, outputs):
            if not future.done():
                future.set_result(result)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        for task in list(self.running):
            task.cancel()


def as_arrays(inputs: dict[str, Any], signature: dict[str, Any]) -> Arrays:
    """Already-validated JSON inputs (the gateway checked them) as arrays of the signature's dtypes."""
    import numpy as np

    return {name: np.asarray(inputs[name], dtype=spec["dtype"]) for name, spec in signature["inputs"].items()}


__all__ = ["MicroBatcher", "as_arrays", "predict_many", "predict_many_async"]
