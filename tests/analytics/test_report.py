"""`mlops report` on a seeded history: every project and view is on the page, the figures are the
seeded ones, views without data say so, and the page renders in a headless browser without errors.

The history: three trained projects x 20 runs (five techniques on two recorded machines, monitor
runs, diagnosed failures, registered versions), a served-prediction log for one of them, and a
configured project that never trained. The toolkit report is written by the real command in its own
process (so its Airflow DB, absent here, is looked for as `mlops report` would).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlops_testing import render_page

from mlops.analytics import names
from mlops.analytics.seeding import EXPECTED_BEST, FAILURE_CAUSES, MACHINES, seed_history, seed_predictions
from mlops.cli import main
from mlops.settings import Settings

M4, M3 = list(MACHINES)  # the M4 Max has a power reading, the M3 Max none
TRAINED = ("alpha_proj", "beta_proj", "gamma_proj")
NEVER_TRAINED = "empty_proj"
PROJECT_VIEWS = ("quality-over-time", "techniques-compared", "hardware-efficiency", "utilization-thermal", "serving",
                 "drift-accuracy", "failures")
TOOLKIT_VIEWS = ("runs-per-project", "pool-usage", "serving-load", "best-models")
SECTION = re.compile(r'<section data-plot="([^"]+)" data-project="([^"]+)" data-status="([^"]+)"><h3>[^<]*</h3>'
                     r'(?:<p class="no-data">([^<]*)</p>)?')
SERVED = {1: 2.0, 2: 6.0}  # beta_proj's logged versions: median latency in ms


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    from mlflow import MlflowClient

    home = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    seed_history(client, list(TRAINED), 20, seed=7, artifact_root=(home / "artifacts").as_uri())
    projects = home / "projects"
    projects.mkdir()
    for name in ("alpha_proj", "beta_proj", NEVER_TRAINED):  # gamma_proj is known by its experiment's tag alone
        (projects / f"{name}.yaml").write_text(f"name: {name}\nmodel:\n  family: mlp_classifier\n")
    env = {"MLOPS_HOME": str(home), "MLOPS_TRACKING_URI": uri, "MLOPS_PROJECTS_DIR": str(projects)}
    settings = Settings.from_env(env)
    assert seed_predictions(settings, "beta_proj", SERVED, 80, end=time.time()) > 0
    done = subprocess.run([str(Path(sys.executable).with_name("mlops")), "report"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"home": home, "uri": uri, "client": client, "env": env, "settings": settings, "stdout": done.stdout,
            "reports": home / "reports"}


def sections(page: Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(view, project) -> (status, the no-data reason) of every view on a page."""
    return {(m[1], m[2]): (m[3], m[4]) for m in SECTION.finditer(page.read_text())}


def test_the_toolkit_report_has_every_project_and_view(history):
    reports = history["reports"]
    toolkit = reports / "toolkit-report.html"
    assert str(toolkit) in history["stdout"]
    found = sections(toolkit)
    for project in (*TRAINED, NEVER_TRAINED):
        for view in PROJECT_VIEWS:
            assert (view, project) in found, (view, project)
    for view in TOOLKIT_VIEWS:
        assert (view, "toolkit-report") in found, view
    assert all(found[(view, p)][0] == "chart" for view in PROJECT_VIEWS for p in TRAINED)
    # a project that never trained keeps its sections, each saying why it is empty
    for view in PROJECT_VIEWS:
        status, why = found[(view, NEVER_TRAINED)]
        assert status == "no-data" and why.startswith("no data:"), (view, why)
    assert "never trained" in found[("quality-over-time", NEVER_TRAINED)][1]
    assert "no served predictions logged" in found[("serving", NEVER_TRAINED)][1]
    # no Airflow ever ran in this state folder: pool usage says so instead of showing zeros
    status, why = found[("pool-usage", "toolkit-report")]
    assert status == "no-data" and "no Airflow metadata DB" in why
    assert found[("runs-per-project", "toolkit-report")][0] == "chart"
    assert found[("best-models", "toolkit-report")][0] == "table"

    text = toolkit.read_text()
    assert text.count("* plotly.js v") == 1  # plotly.js inlined once, shared by every chart
    assert not re.search(r"<script[^>]+src=", text)  # nothing to fetch: self-contained
    for project in (*TRAINED, NEVER_TRAINED):  # each project's own page: its views, a link back
        page = reports / f"{project}.html"
        assert {key for key in sections(page)} == {(view, project) for view in PROJECT_VIEWS}
        assert 'href="toolkit-report.html"' in page.read_text()


def test_the_figures_are_the_seeded_history(history):
    from mlops.analytics.cli import project_configs
    from mlops.analytics.report_data import collect
    from mlops.analytics.report_figures import hardware_efficiency, quality_over_time

    client, settings = history["client"], history["settings"]
    data = collect(client, project_configs(settings), settings, pools=False)
    projects = {p.name: p for p in data.projects}
    assert sorted(projects) == sorted((*TRAINED, NEVER_TRAINED))
    alpha = projects["alpha_proj"]
    assert alpha.comparison.best_by_machine() == EXPECTED_BEST  # the verdict `mlops compare` gives
    assert alpha.failures == {FAILURE_CAUSES[0]: 1, FAILURE_CAUSES[1]: 1}
    assert [v.version for v in alpha.versions] == [1, 2]
    assert len(alpha.training) == 20 and len(alpha.monitoring) == 4
    seconds = sum(client.get_run(r.run_id).data.metrics[names.TRAIN_SECONDS] for r in alpha.training)
    assert alpha.compute_seconds == pytest.approx(seconds + 2 * 30)  # seeded failures ran 30 s each

    # the M3 Max has no power reading: its energy is named as not recorded, not drawn as zero
    efficiency = hardware_efficiency(alpha)
    assert efficiency.title.endswith(f"(not recorded: energy per sample (J) on {M3})")
    energy = [trace for trace in efficiency.figure.data if trace.xaxis == "x3"]
    assert [trace.name for trace in energy if len(trace.y)] == [M4]

    figure = quality_over_time(alpha).figure
    assert sorted(trace.name for trace in figure.data) == ["distillation", "lora", "none", "pruning", "quantization"]
    assert all(len(trace.y) == 4 for trace in figure.data)

    # alpha was never served through the log: its serving figures come from the monitor's runs, by version
    assert alpha.serving.source.startswith("monitor runs")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("alpha_proj").experiment_id])
            if r.data.tags.get(names.KIND) == "monitoring"]
    by_version = {v.version: v.requests for v in alpha.serving.versions}
    assert sum(by_version.values()) == sum(int(r.data.metrics["serving_requests"]) for r in runs)
    assert set(by_version) == {"unknown", "1", "2"}  # the first monitor run came before any registration
    # beta's log wins over its monitor runs: 40 requests per version, the slower version slower
    beta = projects["beta_proj"]
    assert beta.serving.source.startswith("prediction log")
    served = {v.version: v for v in beta.serving.versions}
    assert {k: v.requests for k, v in served.items()} == {"1": 40, "2": 40}
    assert served["2"].p50_ms > 2 * served["1"].p50_ms

    empty = projects[NEVER_TRAINED]
    assert (empty.training, empty.versions, empty.comparison) == ([], [], None)


def test_a_monitor_report_links_its_project_report(history):
    from mlflow import MlflowClient

    from mlops.config import parse_project_text
    from mlops.monitoring.report import MODEL_VERSION_TAG, PROJECT_REPORT_TAG, build_report, log_report

    settings = history["settings"]
    config = parse_project_text("name: alpha_proj\nmodel:\n  family: mlp_classifier\n", "alpha_proj.yaml")
    report = build_report(config, {"status": "no_drift", "drift_share": 0.1, "model_version": 2},
                          {"accuracy": None}, {"status": "ok"}, settings)
    assert report["project_report_url"] == (history["reports"] / "alpha_proj.html").as_uri()
    run = MlflowClient(settings.tracking_uri).get_run(log_report(settings, report, "monitor-link"))
    assert run.data.tags[PROJECT_REPORT_TAG] == report["project_report_url"]
    assert run.data.tags[MODEL_VERSION_TAG] == "2"


def test_one_project_and_unknown_projects(history, tmp_path, monkeypatch, capsys):
    for key, value in history["env"].items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    assert main(["report", "--project", "gamma_proj", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "gamma_proj.html")]
    assert sorted(p.name for p in out.iterdir()) == ["gamma_proj.html"]
    assert main(["report", "--project", "nope_proj"]) == 1
    assert "no project 'nope_proj'" in capsys.readouterr().err


def test_the_toolkit_report_renders_in_a_headless_browser(history):
    toolkit = history["reports"] / "toolkit-report.html"
    charts = sum(status == "chart" for status, _ in sections(toolkit).values())
    assert charts == 3 * len(PROJECT_VIEWS) + 2  # runs-per-project and serving-load across projects
    seen = render_page(toolkit.as_uri(), timeout=120)
    assert seen["errors"] == [], seen["errors"]
    assert seen["charts"] == charts, seen
    assert seen["title"] == "MLOps toolkit report"
