"""Peak memory (Linux /proc) while a 1 GB data set reaches MLX: memory-mapped batches vs a full load.

Each way runs in its own process over the same `.npy` file (written once, 1 GiB of
float32 by default); the table gives the peak RSS against the data set's size.

    .venv/bin/python bench/data_load_rss.py [GIB]        (default 1)
    .venv/bin/python bench/data_load_rss.py --smoke      (tests: 0.01 GiB)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

READ = r"""
import json, resource, sys, time
import numpy as np
import mlx.core as mx
from mlops.data.project_data import load_arrays
mode = sys.argv[2]
start = time.perf_counter()
arrays = load_arrays(sys.argv[1], mmap=(mode == "mmap"))
x = arrays["train_x"]
total = mx.array(0.0)
for i in range(0, len(x), 8192):              # what a training epoch does: batch by batch
    total = total + mx.array(x[i:i + 8192]).sum()
    mx.eval(total)
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
kib = lambda k: int(status[k].split()[0]) * 1024
print(json.dumps({"peak_rss": kib("VmHWM"), "rss_anon": kib("RssAnon"), "rss_file": kib("RssFile"),
                  "seconds": time.perf_counter() - start}))
"""

BASELINE = r"""
import json
import numpy as np, mlx.core as mx
from mlops.data.project_data import load_arrays
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
print(json.dumps({"peak_rss": int(status["VmHWM"].split()[0]) * 1024}))
"""


def run(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(gib: float = 1.0) -> None:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        rows = int(gib * 2**30 / (64 * 4))
        array = np.lib.format.open_memmap(Path(tmp) / "train_x.npy", mode="w+", dtype=np.float32, shape=(rows, 64))
        for i in range(0, rows, 1 << 20):
            array[i : i + (1 << 20)] = np.random.default_rng(i).standard_normal((min(1 << 20, rows - i), 64), dtype=np.float32)
        array.flush()
        size = array.nbytes
        del array
        base = run(BASELINE)["peak_rss"]
        results = {mode: run(READ, tmp, mode) for mode in ("mmap", "full")}
    print(f"data set: {size / 2**30:.2f} GiB; interpreter + numpy + mlx alone: {base / 2**20:.0f} MiB")
    print("peak = VmHWM (includes mapped file pages, which the kernel can drop); anon = private memory at the end")
    print(f"{'load':>6} {'peak MiB':>9} {'peak-base MiB':>13} {'x size':>7} {'anon MiB':>9} {'file MiB':>9} {'seconds':>8}")
    for mode, r in results.items():
        extra = r["peak_rss"] - base
        print(f"{mode:>6} {r['peak_rss'] / 2**20:>9.0f} {extra / 2**20:>13.0f} {extra / size:>7.2f}"
              f" {r['rss_anon'] / 2**20:>9.0f} {r['rss_file'] / 2**20:>9.0f} {r['seconds']:>8.2f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(0.01)
    else:
        main(*[float(a) for a in sys.argv[1:]])
