"""check_drift (what DriftCheckOperator runs) against bare Evidently on the same frames: time and peak memory.

Frames: ROWS x 20 float64 columns, seeded; the reference is N(0, 1), the current window the same
with 4 columns shifted by 0.5 sd. Each variant runs in its own fresh subprocess:

  bare     Report([DataDriftPreset()]).run(current, reference)
  full     check_drift(reference, current, max_rows=None)   same rows as bare: the overhead
  sampled  check_drift(reference, current)                  default max_rows=100_000 (seeded sample)

Time: one warm-up on a 2,000-row slice (imports, Evidently's lazy set-up), then the median of
REPEAT runs (1 run at 1M rows and above); wall time and the process's CPU time (user + sys, less
sensitive to other load on the machine). "own cpu" is the CPU time check_drift spends outside
Evidently's Report (validation, sampling, statistics): its overhead, whatever the noise in Evidently's
share. Memory: Linux's peak RSS (VmHWM), reset through
/proc/self/clear_refs after the frames are built and the warm-up is done; shown as the rise over
the RSS just before the runs (the frames themselves are not counted) and as the absolute peak.
A subprocess that runs past TIMEOUT seconds is killed and its row says so.

    .venv/bin/python bench/drift.py [--rows 10000,100000,1000000] [--repeat 3] [--timeout 600]
    .venv/bin/python bench/drift.py --smoke      (tests: 2,000 rows, 1 run; a failed case fails the run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COLUMNS = 20
SHIFTED = 4
VARIANTS = ("bare", "full", "sampled")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _frames(rows: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    names = [f"in.x_{i}" for i in range(COLUMNS)]
    reference = pd.DataFrame(rng.normal(size=(rows, COLUMNS)), columns=names)
    current = rng.normal(size=(rows, COLUMNS))
    current[:, :SHIFTED] += 0.5
    return reference, pd.DataFrame(current, columns=names)


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _runner(variant: str, evidently_cpu: list[float]):
    """The variant as f(reference, current); check_drift's Evidently runs add their CPU time to `evidently_cpu`."""
    import warnings

    warnings.simplefilter("ignore")  # Evidently/SciPy deprecation noise; both sides alike
    if variant == "bare":
        from evidently import Report
        from evidently.presets import DataDriftPreset

        return lambda reference, current: Report([DataDriftPreset()]).run(current, reference)
    from mlops.monitoring import drift
    from mlops.monitoring.drift import check_drift

    evidently_report = drift._evidently_report

    def timed_report(*args, **kwargs):
        started = _cpu()
        try:
            return evidently_report(*args, **kwargs)
        finally:
            evidently_cpu.append(_cpu() - started)

    drift._evidently_report = timed_report

    if variant == "full":
        return lambda reference, current: check_drift(reference, current, max_rows=None)
    return lambda reference, current: check_drift(reference, current)


def run_case(rows: int, variant: str, repeat: int) -> dict:
    """In the subprocess: time and peak RSS of one variant on one size."""
    import gc

    evidently_cpu: list[float] = []
    run = _runner(variant, evidently_cpu)
    reference, current = _frames(rows)
    run(reference.iloc[:2000], current.iloc[:2000])  # warm-up
    evidently_cpu.clear()
    gc.collect()
    rss_before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current RSS
    walls, cpus, owns = [], [], []
    for _ in range(repeat):
        cpu_started, started = _cpu(), time.perf_counter()
        outcome = run(reference, current)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - cpu_started)
        owns.append(cpus[-1] - sum(evidently_cpu) if variant != "bare" else 0.0)
        evidently_cpu.clear()
        del outcome
        gc.collect()
    peak = _status_kb("VmHWM")
    return {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "own_cpu_s": statistics.median(owns),
        "peak_rise_mb": (peak - rss_before) / 1024,
        "peak_mb": peak / 1024,
        "runs": repeat,
    }


def measure(rows: int, variant: str, repeat: int, timeout: float) -> dict:
    return run_case_subprocess(__file__, f"{rows}:{variant}:{repeat}", timeout)


def run_case_subprocess(script: str, case: str, timeout: float) -> dict:
    """`script --case CASE` in a fresh interpreter: its last stdout line (JSON), or {"error": why}."""
    command = [sys.executable, script, "--case", case]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tests/bench: --rows 2000 --repeat 1, failures are fatal")
    args = parser.parse_args()
    if args.smoke:  # the same path end to end, in seconds; figures come from full runs
        args.rows, args.repeat = "2000", 1
    if args.case:
        rows, variant, repeat = args.case.split(":")
        print(json.dumps(run_case(int(rows), variant, int(repeat))))
        return

    print(f"{COLUMNS} float64 columns ({SHIFTED} shifted by 0.5 sd); median wall/CPU seconds; peak RSS rise over the frames")
    header = (
        f"{'rows':>9} {'variant':>8} {'runs':>4} {'wall s':>8} {'cpu s':>8} {'own cpu':>8} {'rise MB':>8} {'peak MB':>8}"
        f" {'wall/bare':>9} {'cpu/bare':>8} {'rise/bare':>9}"
    )
    print(header)
    print("-" * len(header))
    failed = []
    for rows in (int(r) for r in args.rows.split(",")):
        repeat = 1 if rows >= 1_000_000 else args.repeat
        bare = None
        for variant in VARIANTS:
            result = measure(rows, variant, repeat, args.timeout)
            if "error" in result:
                print(f"{rows:>9} {variant:>8} {repeat:>4}  {result['error']}", flush=True)
                failed.append(f"{rows} {variant}: {result['error']}")
                continue
            if variant == "bare":
                bare = result
            ratios = ""
            if bare is not None:
                ratios = (
                    f" {result['wall_s'] / bare['wall_s']:>9.2f} {result['cpu_s'] / bare['cpu_s']:>8.2f}"
                    f" {result['peak_rise_mb'] / max(bare['peak_rise_mb'], 1e-9):>9.2f}"
                )
            print(
                f"{rows:>9} {variant:>8} {result['runs']:>4} {result['wall_s']:>8.2f} {result['cpu_s']:>8.2f}"
                f" {result['own_cpu_s']:>8.2f}"
                f" {result['peak_rise_mb']:>8.0f} {result['peak_mb']:>8.0f}{ratios}",
                flush=True,
            )
    if args.smoke and failed:
        sys.exit("failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
