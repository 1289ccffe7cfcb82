"""Tracked training (what MLXTrainOperator runs) against the same MLX loop run bare.

Both train the same project config on the same data in this process, alternating,
REPEAT times each; the table gives the median wall time and the overhead ratio.
The tracked path adds per-epoch metric logging, the hardware probe, the model save
and MLflow's pyfunc log_model; the bare path is `family.create` + `run_epochs`.

    .venv/bin/python bench/train_overhead.py [NUM_SAMPLES] [EPOCHS] [REPEAT]     (defaults 20000, 5, 3)
    .venv/bin/python bench/train_overhead.py --smoke                             (tests: 256 samples, 1 epoch, 1 run)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

YAML = """\
name: bench_overhead
data:
  num_samples: {n}
model:
  family: mlp_classifier
training:
  epochs: {epochs}
"""


def main(num_samples: int = 20000, epochs: int = 5, repeat: int = 3) -> None:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOPS_HOME"] = tmp
        os.environ.pop("MLOPS_TRACKING_URI", None)
        from mlops.config import parse_project_text
        from mlops.data.project_data import ensure_project_data, load_arrays
        from mlops.settings import get_settings
        from mlops.training.families import get_family
        from mlops.training.loop import run_epochs
        from mlops.training.trainer import train_project

        settings = get_settings()
        config = parse_project_text(YAML.format(n=num_samples, epochs=epochs), "bench.yaml")
        data = ensure_project_data(settings, config.name, "mlp_classifier", num_samples, 0, {})
        family = get_family("mlp_classifier")
        hp = family.default_hyperparameters

        def bare() -> None:
            session = family.create(dict(hp), [], config.training.seed)
            run_epochs(session, load_arrays(data["path"]), epochs, config.training.batch_size)

        def tracked() -> None:
            train_project(settings, config, data["path"], data["version"])

        tracked()  # warm-up: MLflow DB creation, imports
        bare()
        times: dict[str, list[float]] = {"bare": [], "tracked": []}
        for _ in range(repeat):
            for name, fn in (("bare", bare), ("tracked", tracked)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    b, t = statistics.median(times["bare"]), statistics.median(times["tracked"])
    print(f"mlp_classifier, {num_samples} samples, {epochs} epochs, median of {repeat}")
    print(f"{'path':>8} {'median s':>9} {'runs':>30}")
    print(f"{'bare':>8} {b:>9.3f} {', '.join(f'{x:.2f}' for x in times['bare']):>30}")
    print(f"{'tracked':>8} {t:>9.3f} {', '.join(f'{x:.2f}' for x in times['tracked']):>30}")
    print(f"overhead: {100 * (t / b - 1):+.1f}%  ({t - b:+.2f} s per run)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(256, 1, 1)
    else:
        main(*[int(a) for a in sys.argv[1:]])
