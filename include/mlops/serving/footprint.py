"""Measure how much memory one serving replica of a model version needs.

A replica is a Python process with Ray Serve imported, the model restored and one batch of
`max_batch_size` rows predicted. `measure_replica_memory` runs exactly that in a fresh
subprocess (`python -m mlops.serving.footprint FOLDER BATCH`) and reads its peak resident
set (VmHWM), so the figure is measured, not estimated from weight sizes. The deployer
records it on the model version (tag `serving_memory_bytes`) and measures once per version.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TAG = "serving_memory_bytes"


def example_inputs(signature: dict, rows: int) -> dict:
    """Zeros shaped like the signature (variable axes = 1, or the largest allowed), `rows` rows."""
    import numpy as np

    arrays = {}
    for name, spec in signature["inputs"].items():
        limits = spec.get("max_shape", spec["shape"])
        shape = [rows] + [(limit if limit != -1 else 1) if dim == -1 else dim for dim, limit in zip(spec["shape"][1:], limits[1:])]
        arrays[name] = np.zeros(shape, dtype=spec["dtype"])
    return arrays


def _peak_rss_bytes() -> int:
    """VmHWM (peak resident set) on Linux; ru_maxrss elsewhere (bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _measure(folder: Path, batch: int) -> dict:
    import ray.serve  # noqa: F401 - a replica has Ray Serve loaded too

    from mlops.training.artifacts import model_family, read_manifest, restore_session

    manifest = read_manifest(folder)
    signature = model_family(folder, manifest).signature(manifest["hyperparameters"])
    session = restore_session(folder)
    session.predict(example_inputs(signature, batch))
    return {"peak_rss_bytes": _peak_rss_bytes()}


def measure_replica_memory(folder: Path, max_batch_size: int, timeout: float = 300, python: Path | None = None) -> int:
    """Peak RSS in bytes of a replica-like process serving the model folder (under `python`: the
    project's own environment's, when it has one, as its replicas run there)."""
    argv, env = [sys.executable, "-m", "mlops.serving.footprint"], None
    if python is not None:
        from mlops.environments.runner import child_environment

        argv, env = [str(python), "-P", "-m", "mlops.serving.footprint"], child_environment(python)
    result = subprocess.run(
        [*argv, str(folder), str(max_batch_size)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"measuring the serving footprint of {folder} failed: {result.stderr.strip()[-800:]}")
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_bytes"])


if __name__ == "__main__":
    print(json.dumps(_measure(Path(sys.argv[1]), int(sys.argv[2]))))
