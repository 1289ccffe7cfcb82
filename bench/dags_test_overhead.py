"""`airflow dags test` of one lifecycle against the same seven steps run as a plain script.

The steps of `<project>__lifecycle`: pull_data, thermal_gate (one reading and the gate's
decision), train, evaluate, register and build (only when the evaluation passes, as in the DAG),
version_artifacts. Both run as fresh processes on the same project (same state folder, so both
reuse the same DVC data version and only train + register anew; build makes a Bento once per
version); the table gives wall times and Airflow's overhead.

    .venv/bin/python bench/dags_test_overhead.py [PROJECT] [REPEAT]    (defaults quantized_optimization, 3)
    .venv/bin/python bench/dags_test_overhead.py --smoke               (tests: a tiny project, 1 run)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLAIN = r"""
import sys
from mlops.config import load_project
from mlops.settings import get_settings
from mlops.data.project_data import ensure_project_data
from mlops.data.model_artifacts import version_model_artifacts
from mlops.hardware.thermal import hardware_root, read_thermal
from mlops.hardware.thermal_gate import decide
from mlops.serving.bento import build_bento
from mlops.training.trainer import train_project
from mlops.training.evaluate import evaluate_model
from mlops.tracking.registry import register_run_model, version_tags
settings = get_settings()
config = load_project(settings.projects_dir / f"{sys.argv[1]}.yaml")
data = ensure_project_data(settings, config.name, config.model.family, config.data.num_samples, config.data.seed,
                           config.model.hyperparameters, config.data.version)
s = config.scheduling
decision = decide(read_thermal(hardware_root()), s.thermal_threshold, s.on_unknown_thermal)
assert decision.action == "proceed", decision  # the DAG would wait here; the bench needs a cool machine
training = train_project(settings, config, data["path"], data["version"])
evaluation = evaluate_model(settings, config, data["path"], training["run_id"], training["model_dir"])
if evaluation["passed"]:
    registered = register_run_model(settings, config.name, training["run_id"], training["model_uri"],
                                    version_tags(config, training))
    build_bento(settings, registered["name"], int(registered["version"]))
version_model_artifacts(settings, config.name)
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(project: str = "quantized_optimization", repeat: int = 3, project_yaml: str | None = None,
         warm_up: bool = True) -> None:
    """`project_yaml`: run this YAML as `project` (from a temporary projects folder) instead of the repo's.
    `warm_up`: False skips the untimed first plain run (its figures then include the data's creation)."""
    sys.path.insert(0, str(REPO / "include"))
    from mlops.airflow_env import airflow_environment
    from mlops.services import migrate
    from mlops.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"MLOPS_HOME": tmp}
        if project_yaml is not None:
            (Path(tmp) / "projects").mkdir()
            (Path(tmp) / "projects" / f"{project}.yaml").write_text(project_yaml)
            overrides["MLOPS_PROJECTS_DIR"] = str(Path(tmp) / "projects")
        settings = Settings.from_env(overrides)
        env = {**airflow_environment(settings), **overrides}
        migrate(settings)
        airflow = str(Path(sys.executable).with_name("airflow"))
        dags_test = [airflow, "dags", "test", f"{project}__lifecycle"]
        plain = [sys.executable, "-c", PLAIN, project]
        if warm_up:
            timed(plain, env)  # warm-up: data generated and pushed once, MLflow DB created
        times: dict[str, list[float]] = {"plain script": [], "airflow dags test": []}
        for _ in range(repeat):
            times["plain script"].append(timed(plain, env))
            times["airflow dags test"].append(timed(dags_test, env))
    base = statistics.median(times["plain script"])
    print(f"{project}, median of {repeat} (fresh process each)")
    print(f"{'how':>18} {'median s':>9} {'runs':>24}")
    for name, values in times.items():
        print(f"{name:>18} {statistics.median(values):>9.2f} {', '.join(f'{v:.1f}' for v in values):>24}")
    overhead = statistics.median(times["airflow dags test"]) - base
    print(f"Airflow overhead: {overhead:+.1f} s ({100 * overhead / base:+.0f}%)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        sys.path.insert(0, str(REPO / "tests"))
        from mlops_testing import tiny_project

        main("bench_smoke", 1, tiny_project("bench_smoke"), warm_up=False)
    else:
        main(*sys.argv[1:2], *[int(a) for a in sys.argv[2:3]])
