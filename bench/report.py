"""Cost of the history report (`mlops report`) on a seeded history: PROJECTS x RUNS (goal: 9 x 100 under 10 s).

A sqlite MLflow store in a temporary folder gets `seed_history` (RUNS training runs per project,
five techniques on two machines, a monitor run every 5, a failure every 10, a version every 10);
seeding is not timed. Then, each measured once, in this order:

* toolkit page, in process (first call): collect from MLflow + draw every chart + write every page;
* the same again (second call: plotly and MLflow already imported and warm);
* one project's page, in process (`only=`);
* `mlops report` and `mlops report --project p0` as whole processes (interpreter, imports, Airflow's
  DB looked for: absent here, so pool usage says "no data"), wall time.

    .venv/bin/python bench/report.py [PROJECTS RUNS]    (default 9 100)
    .venv/bin/python bench/report.py --smoke            (tests: 2 x 10)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO))


def main(projects: int, runs: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    try:
        run(tmp, projects, runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, projects: int, runs: int) -> None:
    env = {"MLOPS_HOME": str(tmp / "state"), "MLOPS_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "MLOPS_PROJECTS_DIR": str(tmp / "projects"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    os.environ.update(env)
    (tmp / "projects").mkdir()
    from mlflow import MlflowClient

    from mlops.analytics.report_files import generate_reports
    from mlops.analytics.seeding import seed_history
    from mlops.settings import Settings

    settings = Settings.from_env(env)
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    started = time.perf_counter()
    history = seed_history(client, [f"p{i}" for i in range(projects)], runs)
    seeded = time.perf_counter() - started
    rows = []
    for label, only in (("toolkit page, in process (first)", None), ("toolkit page, in process (again)", None),
                        ("one project page, in process", "p0")):
        started = time.perf_counter()
        written = generate_reports(settings, client, {}, only=only, pools=False)
        total = time.perf_counter() - started
        megabytes = sum(p.stat().st_size for p in written.paths) / 1e6
        rows.append((label, total, written.seconds["collect"], written.seconds["draw"], written.seconds["write"],
                     len(written.paths), megabytes))
    mlops = str(Path(sys.executable).with_name("mlops"))
    for label, argv in (("mlops report (whole process)", []),
                        ("mlops report --project p0 (process)", ["--project", "p0"])):
        started = time.perf_counter()
        subprocess.run([mlops, "report", *argv], env={**os.environ, **env}, check=True, capture_output=True)
        rows.append((label, time.perf_counter() - started, None, None, None, None, None))

    print(f"{projects} projects x {runs} training runs: {history.runs} runs, {history.monitoring_runs} monitor runs, "
          f"{history.failed_runs} failed, {history.versions} versions (seeding took {seeded:.1f} s, not timed below)")
    print(f"{'what':38} {'total s':>8} {'collect s':>9} {'draw s':>7} {'write s':>7} {'pages':>5} {'MB':>6}")
    for label, total, collect, draw, write, pages, megabytes in rows:
        cells = [f"{v:.2f}" if v is not None else "-" for v in (collect, draw, write)]
        print(f"{label:38} {total:>8.2f} {cells[0]:>9} {cells[1]:>7} {cells[2]:>7} "
              f"{pages if pages is not None else '-':>5} {f'{megabytes:.1f}' if megabytes is not None else '-':>6}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(2, 10)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 9, int(sys.argv[2]) if len(sys.argv) > 2 else 100)
