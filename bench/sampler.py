"""The hardware sampler's cost: the same tracked training with `tracking.system_metrics` off and on.

Both train the same project config on the same data in this process, alternating, REPEAT times
each (the sampler at its default 5 s). The table gives the median wall time of each and their
ratio, and, from the sampled runs, the sampler's own time (reading and logging, summed over its
samples: tag `mlops.sampler.busy_seconds`) as a share of the run. On a shared 2-core machine the
wall-time ratio carries the machine's noise; the sampler's own share is the precise figure.
Goal (issue 15): at most 1 % of a 30 s training run.

    .venv/bin/python bench/sampler.py [NUM_SAMPLES] [EPOCHS] [REPEAT]     (defaults 270000, 6, 3: ~30 s a run here)
    .venv/bin/python bench/sampler.py --smoke                             (tests: 256 samples, 1 epoch, 1 run)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

GOAL = 0.01
YAML = """\
name: bench_sampler
data:
  num_samples: {n}
model:
  family: mlp_classifier
training:
  epochs: {epochs}
tracking:
  system_metrics: {on}
  sample_seconds: {every}
"""


def main(num_samples: int = 270000, epochs: int = 6, repeat: int = 3, every: float = 5.0) -> None:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOPS_HOME"] = tmp
        os.environ.pop("MLOPS_TRACKING_URI", None)
        from mlflow import MlflowClient

        from mlops.config import parse_project_text
        from mlops.data.project_data import ensure_project_data
        from mlops.settings import get_settings
        from mlops.tracking.client import configure
        from mlops.training.trainer import train_project

        settings = get_settings()
        configs = {
            on: parse_project_text(YAML.format(n=num_samples, epochs=epochs, on=on, every=every), "bench.yaml")
            for on in ("false", "true")
        }
        data = ensure_project_data(settings, "bench_sampler", "mlp_classifier", num_samples, 0, {})
        configure(settings)
        client = MlflowClient()

        def train(on: str) -> dict:
            return train_project(settings, configs[on], data["path"], data["version"])

        train("true")  # warm-up: MLflow DB creation, imports, MLX kernels
        times: dict[str, list[float]] = {"off": [], "on": []}
        busy: list[float] = []
        samples: list[int] = []
        for _ in range(repeat):
            for name, on in (("off", "false"), ("on", "true")):
                start = time.perf_counter()
                result = train(on)
                times[name].append(time.perf_counter() - start)
                if on == "true":
                    tags = client.get_run(result["run_id"]).data.tags
                    busy.append(float(tags["mlops.sampler.busy_seconds"]))
                    samples.append(int(tags["mlops.sampler.samples"]))
                    readers = sorted(k.rsplit(".", 1)[1] for k, v in tags.items()
                                     if k.startswith("mlops.sampler.") and v == "sampled")
    off, on_ = statistics.median(times["off"]), statistics.median(times["on"])
    share = statistics.median(b / t for b, t in zip(busy, times["on"]))
    print(f"mlp_classifier, {num_samples} samples, {epochs} epochs, sample every {every} s, median of {repeat}")
    print(f"readers that sampled here: {', '.join(readers)}")
    print(f"{'sampler':>8} {'median s':>9} {'samples':>8} {'own s':>7} {'runs':>26}")
    print(f"{'off':>8} {off:>9.3f} {'-':>8} {'-':>7} {', '.join(f'{x:.2f}' for x in times['off']):>26}")
    print(f"{'on':>8} {on_:>9.3f} {statistics.median(samples):>8.0f} {statistics.median(busy):>7.3f} "
          f"{', '.join(f'{x:.2f}' for x in times['on']):>26}")
    print(f"wall time on/off: {on_ / off:.4f} ({100 * (on_ / off - 1):+.2f}%, includes the machine's noise)")
    print(f"sampler's own time: {100 * share:.3f}% of the run (goal <= {100 * GOAL:.0f}%)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(256, 1, 1, 0.5)
    else:
        main(*[float(a) if i == 3 else int(a) for i, a in enumerate(sys.argv[1:])])
