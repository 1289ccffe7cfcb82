"""MLX's matmul rate against numpy's on this machine, and a sample project's training throughput.

On Linux the mlx-cpu wheel uses a reference BLAS; with Debian's OpenBLAS installed
(`apt-get install libopenblas0-pthread`), `./run` preloads it. Run this script both
ways to measure the gain, in one go:

    .venv/bin/python bench/mlx_blas.py            # runs itself with and without the preload
    .venv/bin/python bench/mlx_blas.py --smoke    # tests: 256² matmul, 1,024 samples, 1 epoch
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

MEASURE = r"""
import json, sys, time
import numpy as np
import mlx.core as mx
n, samples, epochs = (int(a) for a in sys.argv[1:4])
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
def rate(fn, reps=5):
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
x = mx.array(a)
mlx_rate = rate(lambda: mx.eval(x @ x))
np_rate = rate(lambda: a @ a)
from mlops.training.families import get_family
from mlops.training.loop import run_epochs
family = get_family("mlp_classifier")
data = family.make_dataset(0, samples, {})
session = family.create(dict(family.default_hyperparameters), [], 0)
reports = run_epochs(session, data, epochs, 64)
print(json.dumps({"mlx_gflops": mlx_rate, "numpy_gflops": np_rate,
                  "train_samples_per_s": reports[-1].throughput}))
"""


def run(preload: str | None, size: tuple[int, int, int]) -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    argv = [sys.executable, "-c", MEASURE, *map(str, size)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(size: tuple[int, int, int] = (1024, 8192, 2)) -> None:
    """`size`: (matmul n, training samples, epochs)."""
    libs = glob.glob("/usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0")
    rows = [("mlx-cpu wheel (reference BLAS)", run(None, size))]
    if libs:
        rows.append((f"preloaded {libs[0]}", run(libs[0], size)))
    print(f"{'configuration':<70} {'MLX GFLOP/s':>11} {'numpy GFLOP/s':>13} {'train samples/s':>15}")
    for name, r in rows:
        print(f"{name:<70} {r['mlx_gflops']:>11.1f} {r['numpy_gflops']:>13.1f} {r['train_samples_per_s']:>15.0f}")
    if len(rows) == 2:
        print(f"gain: matmul {rows[1][1]['mlx_gflops'] / rows[0][1]['mlx_gflops']:.1f}x, "
              f"training {rows[1][1]['train_samples_per_s'] / rows[0][1]['train_samples_per_s']:.1f}x")
    else:
        print("no OpenBLAS found: apt-get install libopenblas0-pthread to measure the preload")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main((256, 1024, 1))
    else:
        main()
