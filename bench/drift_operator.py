"""The whole DriftCheckOperator (window from Parquet, reference from DVC, Evidently, report saved) against bare Evidently.

bench/drift.py times `check_drift` alone on in-memory frames; this times what the monitor DAG's
task really does, end to end, on a real project:

* set-up (once, not timed): a throwaway MLOPS_HOME; an mlp_classifier with 20 input features is
  trained on REFERENCE seeded samples, its data versioned by DVC and the model registered in
  MLflow (the drift reference is that version's training split); then, per size, the prediction
  log is rewritten with ROWS served rows (Hive Parquet, through `PredictionLogWriter`), drawn from
  the same distribution with 4 of the 20 columns shifted by 0.5 sd.
* `operator`: `DriftCheckOperator.execute` on that project, its own monitoring defaults
  (max_rows 100,000: larger windows are sampled, seeded, while the log is read). The first run
  also materialises the reference from DVC and imports everything: shown as "first s"; then the
  median of REPEAT runs (1 at 1M rows), with the time split into its steps, save_report's too
  (serialize: the HTML and the workspace's JSON document; _log_mlflow_run; add_snapshot).
* `bare`: `Report([DataDriftPreset()]).run(current, reference)` on the same reference and the
  whole window (read before the clock starts, no sampling): Evidently alone on those rows.
  `bare+html`: the same, and its HTML report saved to a file, the least a user keeps of a check
  (the operator keeps the HTML, logs it to MLflow and adds the snapshot to Evidently's workspace).
  `bare+paths`: bare, with plotly's path parser memoized as `check_drift` does
  (`mlops.monitoring.plotly_paths`): operator / bare+paths is the operator's own overhead.

Each variant runs in its own fresh subprocess; memory is the peak RSS (VmHWM) of that process,
reset after the warm-up. The operator's peak includes reading the window; bare's frames are in
memory before its reset, so compare the absolute peaks.

    .venv/bin/python bench/drift_operator.py [--rows 10000,100000,1000000] [--reference 10000] [--repeat 3]
    .venv/bin/python bench/drift_operator.py --smoke    (tests: 2,000 rows and reference samples, 1 run; failures fatal)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO), str(REPO / "bench")]

from drift import _cpu, _status_kb, run_case_subprocess  # noqa: E402 - bench/drift.py: the same clocks

PROJECT = "bench_drift"
FEATURES = 20
SHIFTED = 4
STEPS = ("load_reference", "read_predictions", "check_drift", "save_report", "serialize", "_log_mlflow_run", "add_snapshot")


def _yaml(reference: int) -> str:
    return (
        f"name: {PROJECT}\ndata:\n  num_samples: {reference}\nmodel:\n  family: mlp_classifier\n"
        f"  hyperparameters: {{features: {FEATURES}}}\ntraining:\n  epochs: 1\nmonitoring:\n  enabled: true\n"
    )


def _config():
    import yaml

    from mlops.config.schema import ProjectConfig

    return ProjectConfig.model_validate(yaml.safe_load((Path(os.environ["MLOPS_PROJECTS_DIR"]) / f"{PROJECT}.yaml").read_text()))


def set_up(reference: int) -> None:
    """Train and register the project (its data in DVC): the reference every size shares."""
    from mlops.data.project_data import ensure_project_data
    from mlops.settings import get_settings
    from mlops.tracking.registry import register_run_model, version_tags
    from mlops.training.trainer import train_project

    settings, config = get_settings(), _config()
    data = ensure_project_data(
        settings, PROJECT, config.model.family, config.data.num_samples, config.data.seed, config.model.hyperparameters
    )
    training = train_project(settings, config, data["path"], data["version"])
    register_run_model(settings, PROJECT, training["run_id"], training["model_uri"], version_tags(config, training))


def write_log(rows: int) -> None:
    """The project's prediction log holds exactly `rows` served rows, 4 columns shifted."""
    import numpy as np

    from mlops.monitoring.prediction_log import PredictionLogWriter, log_root
    from mlops.settings import get_settings
    from mlops.training.families import get_family

    settings = get_settings()
    shutil.rmtree(log_root(settings) / "predictions" / f"project={PROJECT}", ignore_errors=True)
    # the reference's own generator (same seed: same class centers), `rows` samples, train and val rows alike
    data = get_family("mlp_classifier").make_dataset(_config().data.seed, rows, {"features": FEATURES})
    x = np.concatenate([data["train_x"], data["val_x"]]).astype(np.float32)
    x[:, :SHIFTED] += 0.5 * x[:, :SHIFTED].std(axis=0)
    writer = PredictionLogWriter(log_root(settings), flush_seconds=3600)
    now, chunk = time.time(), 1000
    for start in range(0, rows, chunk):
        part = x[start:start + chunk]
        label = np.zeros(len(part), dtype=np.int32)
        writer.record(PROJECT, f"{start:032x}", 1, "mlx", "cpu", 1.0, {"x": part}, {"label": label}, len(part), ts=now)
    writer.close()


def run_case(variant: str, repeat: int) -> dict:
    """In the subprocess: one variant's time, steps and peak RSS."""
    import gc
    import warnings

    warnings.simplefilter("ignore")  # Evidently/SciPy deprecation noise; both sides alike
    if variant in ("bare", "bare+html", "bare+paths"):
        from evidently import Report
        from evidently.presets import DataDriftPreset

        from mlops.monitoring.prediction_log import read_predictions
        from mlops.monitoring.reference import load_reference
        from mlops.settings import get_settings
        from operators.monitoring import window_start

        settings = get_settings()
        reference = load_reference(settings, PROJECT).frame
        current = read_predictions(settings, PROJECT, since=window_start(_config().monitoring.window_hours))
        current = current[[c for c in current.columns if c.startswith("in.")]]
        if variant == "bare+paths":
            from mlops.monitoring import plotly_paths

            plotly_paths.install()
        Report([DataDriftPreset()]).run(current.iloc[:2000], reference.iloc[:2000])  # warm-up
        html = Path(tempfile.mkdtemp()) / "report.html"

        def run():
            snapshot = Report([DataDriftPreset()]).run(current, reference)
            if variant == "bare+html":  # kept, as the operator keeps its report (it also logs it to MLflow and Evidently's workspace)
                snapshot.save_html(str(html))
            return snapshot

        first = None
        frame_rows = (len(reference), len(current))
    else:
        import mlops.monitoring.drift as drift
        import mlops.monitoring.evidently_workspace as workspace
        import mlops.monitoring.prediction_log as prediction_log
        import mlops.monitoring.reference as reference_module
        from operators.monitoring import DriftCheckOperator

        steps: dict[str, float] = {}
        for module, name in ((reference_module, "load_reference"), (prediction_log, "read_predictions"),
                             (drift, "check_drift"), (drift, "save_report"),
                             # save_report's parts: HTML + workspace document, MLflow run, workspace file
                             (workspace, "serialize"), (drift, "_log_mlflow_run"), (workspace, "add_snapshot")):
            setattr(module, name, _timed(getattr(module, name), name, steps))
        operator = DriftCheckOperator(task_id="check_drift", project=_config().model_dump(mode="json"))
        runs = iter(range(10**6))
        started = time.perf_counter()
        outcome = operator.execute({"run_id": f"bench-{next(runs)}"})  # warm-up: imports, DVC checkout
        first = time.perf_counter() - started
        expected = [f"in.x_{i}" for i in range(SHIFTED)]  # 4 of 20 < the default drift share: status "ok", 4 named
        assert outcome["drifted_columns"] == expected, (outcome["status"], outcome["drifted_columns"], outcome["messages"])
        frame_rows = (outcome["rows"]["reference"], outcome["rows"]["current"])
        run = lambda: operator.execute({"run_id": f"bench-{next(runs)}"})  # noqa: E731
        step_runs: list[dict[str, float]] = []
    gc.collect()
    rss_before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current RSS
    walls, cpus = [], []
    for _ in range(repeat):
        if variant == "operator":
            steps.clear()
        cpu_started, started = _cpu(), time.perf_counter()
        outcome = run()
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - cpu_started)
        if variant == "operator":
            step_runs.append(dict(steps))
        del outcome
        gc.collect()
    peak = _status_kb("VmHWM")
    result = {
        "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "first_s": first,
        "peak_rise_mb": (peak - rss_before) / 1024, "peak_mb": peak / 1024, "runs": repeat, "frame_rows": frame_rows,
    }
    if variant == "operator":
        result["steps"] = {name: statistics.median(run.get(name, 0.0) for run in step_runs) for name in STEPS}
    return result


def _timed(function, name: str, steps: dict[str, float]):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            steps[name] = steps.get(name, 0.0) + time.perf_counter() - started

    return timed


def measure(variant: str, repeat: int, timeout: float) -> dict:
    return run_case_subprocess(__file__, f"{variant}:{repeat}", timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--reference", type=int, default=10_000, help="training samples (the reference's source)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tests/bench: 2000 rows and reference, 1 run, failures fatal")
    args = parser.parse_args()
    if args.smoke:  # the same path end to end, in seconds; figures come from full runs
        args.rows, args.reference, args.repeat = "2000", 2000, 1
    if args.case:
        variant, repeat = args.case.split(":")
        print(json.dumps(run_case(variant, int(repeat))))
        return

    home = Path(tempfile.mkdtemp(prefix="mlops-bench-drift-op-"))
    (home / "projects").mkdir()
    (home / "projects" / f"{PROJECT}.yaml").write_text(_yaml(args.reference))
    os.environ.update(MLOPS_HOME=str(home / "state"), MLOPS_PROJECTS_DIR=str(home / "projects"), MLFLOW_DISABLE_TELEMETRY="true")
    os.environ.pop("MLOPS_TRACKING_URI", None)
    try:
        set_up(args.reference)
        print(f"{FEATURES} input columns ({SHIFTED} shifted by 0.5 sd); reference: the training split of {args.reference} samples")
        header = (
            f"{'rows':>9} {'variant':>10} {'runs':>4} {'compared':>15} {'first s':>8} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}"
            f" {'wall/bare':>9} {'peak/bare':>9}  steps (s)"
        )
        print(header)
        print("-" * len(header))
        failed = []
        for rows in (int(r) for r in args.rows.split(",")):
            write_log(rows)
            repeat = 1 if rows >= 1_000_000 else args.repeat
            bare = None
            for variant in ("bare", "bare+html", "bare+paths", "operator"):
                result = measure(variant, repeat, args.timeout)
                if "error" in result:
                    print(f"{rows:>9} {variant:>10} {repeat:>4}  {result['error']}", flush=True)
                    failed.append(f"{rows} {variant}: {result['error']}")
                    continue
                bare = result if variant == "bare" else bare
                ratios = f" {result['wall_s'] / bare['wall_s']:>9.2f} {result['peak_mb'] / bare['peak_mb']:>9.2f}" if bare else " " * 20
                compared = "x".join(str(n) for n in result["frame_rows"]) if result.get("frame_rows") else "?"
                first = f"{result['first_s']:>8.2f}" if result["first_s"] is not None else f"{'':>8}"
                steps = "  " + " ".join(f"{k}={v:.2f}" for k, v in result.get("steps", {}).items())
                print(
                    f"{rows:>9} {variant:>10} {result['runs']:>4} {compared:>15} {first} {result['wall_s']:>8.2f}"
                    f" {result['cpu_s']:>8.2f} {result['peak_mb']:>8.0f}{ratios}{steps if variant != 'bare' else ''}",
                    flush=True,
                )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.smoke and failed:
        sys.exit("failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
