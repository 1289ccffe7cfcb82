"""What the thermal gate costs: one `read_thermal()` poll, and the delay the gate adds when cool.

Rows (median of REPEAT calls each, same process):
* `os.stat` of one file -- the baseline: the cheapest possible look at the filesystem;
* `read_thermal()` on this machine (macOS: pmset + notifyutil; Linux: live sysfs zones + NVML);
* `read_thermal()` against a fake sysfs tree with 8 zones (MLOPS_HARDWARE_ROOT);
* `ThermalSensor.execute()` at nominal -- returns without deferring: the scheduling delay
  the gate adds to a cool machine, compared with one poll interval (30 s);
* `ThermalSensor.execute()` at serious -- the time to decide to defer (raise TaskDeferred).
The first (cold) `execute()` includes the lazy imports of the thermal readers.

    .venv/bin/python bench/thermal_poll.py [REPEAT]      (default 200)
    .venv/bin/python bench/thermal_poll.py --smoke       (tests: REPEAT 3)
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

POLL_INTERVAL_S = 30.0
TRIPS = [(85000, "passive"), (95000, "hot"), (105000, "critical")]


def fake_tree(root: Path, zones: int, temp_milli: int) -> Path:
    for n in range(zones):
        zone = root / f"sys/class/thermal/thermal_zone{n}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "type").write_text(f"zone{n}\n")
        (zone / "temp").write_text(f"{temp_milli - 1000 * n}\n")
        for i, (trip, kind) in enumerate(TRIPS):
            (zone / f"trip_point_{i}_temp").write_text(f"{trip}\n")
            (zone / f"trip_point_{i}_type").write_text(f"{kind}\n")
    return root


def median_us(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples), max(samples)


@contextlib.contextmanager
def quiet():
    """Silence stdout/stderr at the fd level (the gate's log lines are still formatted and written)."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1), os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def main(repeat: int = 200) -> None:
    from airflow.sdk.bases.operator import ExecutorSafeguard
    from airflow.sdk.exceptions import TaskDeferred

    from operators.thermal import ThermalSensor

    ExecutorSafeguard.test_mode = True  # calling execute() outside a task runner, on purpose
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp, quiet():
        cool = fake_tree(Path(tmp) / "cool", 8, 45000)  # all zones nominal
        hot = fake_tree(Path(tmp) / "hot", 8, 90000)  # zone0 serious
        stat_file = cool / "sys/class/thermal/thermal_zone0/temp"

        gate = ThermalSensor(task_id="thermal_gate", threshold="serious", poll_interval=POLL_INTERVAL_S, timeout=3600,
                             on_unknown="proceed", hardware_root=str(cool))
        start = time.perf_counter()
        event = gate.execute({})
        cold_us = (time.perf_counter() - start) * 1e6
        assert event["state"] == "nominal" and event["deferred"] is False, event

        from mlops.hardware.thermal import read_thermal

        live = read_thermal()
        rows.append(("os.stat(one file)  [baseline]", *median_us(lambda: os.stat(stat_file), repeat), ""))
        rows.append(("read_thermal() this machine", *median_us(lambda: read_thermal(), max(repeat // 10, 10)),
                     f"{live.state} via {live.source}"))
        rows.append(("read_thermal(fake sysfs, 8 zones)", *median_us(lambda: read_thermal(cool), repeat),
                     read_thermal(cool).state))
        rows.append(("ThermalSensor.execute() nominal, cold", cold_us, cold_us, "first call: lazy imports"))
        rows.append(("ThermalSensor.execute() nominal", *median_us(lambda: gate.execute({}), repeat), "returns, no deferral"))

        hot_gate = ThermalSensor(task_id="thermal_gate", threshold="serious", poll_interval=POLL_INTERVAL_S,
                                 timeout=3600, on_unknown="proceed", hardware_root=str(hot))

        def defer() -> None:
            try:
                hot_gate.execute({})
            except TaskDeferred:
                return
            raise AssertionError("a serious machine must defer")

        rows.append(("ThermalSensor.execute() serious", *median_us(defer, repeat), "raises TaskDeferred"))

    base = rows[0][1]
    print(f"thermal gate poll cost (median of {repeat}; µs)  python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"{'what':40} {'median µs':>11} {'max µs':>11} {'x os.stat':>10}  note")
    for name, med, worst, note in rows:
        print(f"{name:40} {med:11.1f} {worst:11.1f} {med / base:10.1f}  {note}")
    nominal = rows[4][1] / 1e6
    print(
        f"\ndelay the gate adds at nominal: {nominal * 1e3:.3f} ms = {nominal / POLL_INTERVAL_S:.2e} of one "
        f"{POLL_INTERVAL_S:g} s poll interval (cold first call {cold_us / 1e3:.1f} ms) -> "
        f"{'OK: under one poll interval' if nominal < POLL_INTERVAL_S else 'OVER one poll interval'}"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(3)
    else:
        main(*(int(a) for a in sys.argv[1:2]))
