"""Isolated environments: what building one costs, and what running a task in one adds.

In a temporary state folder, for a pinned set taken from the shared venv's own versions
(numpy, pandas and their dependencies; `--smoke`: six alone):

* first build with an empty uv cache (a throwaway UV_CACHE_DIR: every wheel downloaded);
* first build with uv's shared cache (the shared venv's wheels: hard links, no download);
* the same without compiling bytecode at build time (`cache.COMPILE_BYTECODE` off), and the first
  run in it that imports numpy and pandas (which then compiles what it imports);
* `ensure_environment` once built (the ready check every task makes; median of REPEAT);
* per call, median of REPEAT, of a trivial function (`json:dumps` of a small list):
  called in-process; a bare `python -c pass` of the environment's interpreter (the floor of
  any subprocess); `run_in_environment` with the shared venv's python (the same mechanism on the
  shared layer); `run_in_environment` in the isolated environment;
* for scale, `run_in_environment` of a function that imports numpy and pandas, in either.

Goal (issue 14): the per-task overhead of the isolated environment, cached, under 1 s.

    .venv/bin/python bench/environments.py [REPEAT]      (default 20)
    .venv/bin/python bench/environments.py --smoke       (tests: six only, REPEAT 2)
"""

from __future__ import annotations

import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
GOAL_S = 1.0


def import_modules(names: list[str]) -> list[str]:
    """Target run inside the environments (this file is on the child's PYTHONPATH as `environments`)."""
    return [importlib.import_module(name).__name__ for name in names]


def median_s(fn, repeat: int) -> float:
    fn()  # warm-up: page cache, first imports
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def shared_pins(names: list[str]) -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in names]


def main(repeat: int, smoke: bool) -> None:
    sys.path[:0] = [str(REPO / "include"), str(REPO)]
    tmp = Path(tempfile.mkdtemp(prefix="envs-bench-"))
    try:
        run(tmp, repeat, smoke)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, repeat: int, smoke: bool) -> None:
    import json
    import logging

    from mlops.environments import cache
    from mlops.environments.cache import ensure_environment
    from mlops.environments.runner import child_environment, run_in_environment
    from mlops.settings import Settings

    logging.getLogger("mlops.environments").setLevel(logging.WARNING)
    quiet = logging.getLogger("bench.environments.child")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    settings = Settings.from_env({"MLOPS_HOME": str(tmp / "state")})
    packages = ["six"] if smoke else ["numpy", "pandas", "python-dateutil", "pytz", "tzdata", "six"]
    heavy = ["six"] if smoke else ["numpy", "pandas"]
    pinned = shared_pins(packages)

    saved = os.environ.get("UV_CACHE_DIR")
    os.environ["UV_CACHE_DIR"] = str(tmp / "empty-uv-cache")
    try:
        cold = timed(lambda: ensure_environment(settings, pinned, "cold-cache"))
    finally:
        os.environ.pop("UV_CACHE_DIR") if saved is None else os.environ.__setitem__("UV_CACHE_DIR", saved)
    python: list[Path] = []
    warm = timed(lambda: python.append(ensure_environment(settings, pinned, "shared-cache")))
    env_python = python[0]
    cache.COMPILE_BYTECODE = False
    try:
        lazy = timed(lambda: python.append(ensure_environment(settings, pinned, "no-bytecode")))
    finally:
        cache.COMPILE_BYTECODE = True
    lazy_python = python[1]
    cached = median_s(lambda: ensure_environment(settings, pinned, "shared-cache"), repeat)

    target, kwargs = "json:dumps", {"obj": [1, 2, 3]}
    in_process = median_s(lambda: json.dumps(**kwargs), repeat)
    bare_env = child_environment(env_python)
    bare = median_s(lambda: subprocess.run([str(env_python), "-c", "pass"], env=bare_env, check=True), repeat)
    shared_run = median_s(lambda: run_in_environment(sys.executable, target, kwargs, logger=quiet), repeat)
    isolated_run = median_s(lambda: run_in_environment(env_python, target, kwargs, logger=quiet), repeat)
    extra = {"PYTHONPATH": str(BENCH)}
    heavy_kwargs = {"names": heavy}
    lazy_first = timed(lambda: run_in_environment(lazy_python, "environments:import_modules", heavy_kwargs,
                                                  env=extra, logger=quiet))
    heavy_repeat = max(1, repeat // 4)
    shared_heavy = median_s(lambda: run_in_environment(sys.executable, "environments:import_modules", heavy_kwargs,
                                                       env=extra, logger=quiet), heavy_repeat)
    isolated_heavy = median_s(lambda: run_in_environment(env_python, "environments:import_modules", heavy_kwargs,
                                                         env=extra, logger=quiet), heavy_repeat)

    print(f"pinned: {', '.join(pinned)}; {os.cpu_count()} cores; median of {repeat} calls "
          f"({heavy_repeat} for the imports)")
    print()
    print(f"{'what':58} {'median s':>10}")
    print(f"{'first build, empty uv cache (downloads)':58} {cold:>10.3f}")
    print(f"{'first build, shared uv cache (hard links)':58} {warm:>10.3f}")
    print(f"{'first build, shared uv cache, no --compile-bytecode':58} {lazy:>10.3f}")
    print(f"{'  then its first run + import ' + '+'.join(heavy) + ' (compiles)':58} {lazy_first:>10.3f}")
    print(f"{'cached ensure_environment (ready check)':58} {cached:>10.6f}")
    print()
    print(f"{'per call, trivial function':58} {'median s':>10} {'x python -c pass':>16}")
    rows = [
        ("in-process call", in_process),
        ("python -c pass (environment's interpreter)", bare),
        ("run_in_environment, shared venv's python", shared_run),
        ("run_in_environment, isolated environment", isolated_run),
        (f"run_in_environment + import {'+'.join(heavy)}, shared venv", shared_heavy),
        (f"run_in_environment + import {'+'.join(heavy)}, isolated", isolated_heavy),
    ]
    for name, seconds in rows:
        print(f"{name:58} {seconds:>10.4f} {seconds / bare:>16.2f}")
    overhead = cached + isolated_run - in_process
    print()
    print(f"overhead per task (cached ensure + run_in_environment - in-process): {overhead:.3f} s; "
          f"vs the shared venv's python: {isolated_run - shared_run:+.3f} s; "
          f"goal < {GOAL_S:g} s: {'met' if overhead < GOAL_S else 'NOT met'}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(2, smoke=True)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 20, smoke=False)
