"""Adaptive batching: shape-compatible requests share one call; outputs go back to their requests."""

from __future__ import annotations

import asyncio

import numpy as np

from mlops.serving.batching import MicroBatcher, predict_many


def test_predict_many_joins_compatible_requests_and_splits_outputs():
    calls = []

    def predict(arrays):
        calls.append({k: v.shape for k, v in arrays.items()})
        return {"double": arrays["x"] * 2}

    requests = [{"x": np.full((1, 3), 1.0)}, {"x": np.full((2, 3), 2.0)}, {"x": np.full((1, 5), 3.0)}]
    outputs = predict_many(predict, requests)
    assert sorted(calls, key=str) == sorted([{"x": (3, 3)}, {"x": (1, 5)}], key=str)  # two shapes, two calls
    for request, output in zip(requests, outputs):
        np.testing.assert_array_equal(output["double"], request["x"] * 2)


def test_micro_batcher_batches_waiting_requests_and_bounds_concurrent_batches():
    async def scenario(max_concurrent: int):
        running = peak = 0
        sizes = []

        async def run_batch(requests):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            sizes.append(len(requests))
            await asyncio.sleep(0.02)
            running -= 1
            return [{"y": r["x"] + 1} for r in requests]

        batcher = MicroBatcher(run_batch, max_batch_size=4, wait_s=0.0, max_concurrent=max_concurrent)
        inputs = [{"x": np.array([[float(i)]])} for i in range(20)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        batcher.close()
        assert [r["y"][0, 0] for r in results] == [i + 1.0 for i in range(20)]
        return peak, sizes

    peak, sizes = asyncio.run(scenario(1))
    assert peak == 1 and max(sizes) == 4 and sum(sizes) == 20  # one call at a time, up to 4 rows each
    peak, sizes = asyncio.run(scenario(3))
    assert peak == 3 and sum(sizes) == 20


def test_a_failing_batch_fails_its_requests_only():
    async def scenario():
        async def run_batch(requests):
            if any(r["x"][0, 0] < 0 for r in requests):
                raise ValueError("bad row")
            return [{"y": r["x"]} for r in requests]

        batcher = MicroBatcher(run_batch, max_batch_size=1, wait_s=0.0)
        bad = await asyncio.gather(batcher.submit({"x": np.array([[-1.0]])}), return_exceptions=True)
        good = await batcher.submit({"x": np.array([[2.0]])})
        batcher.close()
        return bad, good

    bad, good = asyncio.run(scenario())
    assert isinstance(bad[0], ValueError) and good["y"][0, 0] == 2.0
