"""Where the history reports live, writing them, and logging them to MLflow.

`<MLOPS_HOME>/reports/toolkit-report.html` (every project) and `<MLOPS_HOME>/reports/<project>.html`,
rewritten in place by `mlops report` and the daily `toolkit__report` DAG (each page is written
beside and renamed over the old one, so a reader never opens half a page). Each monitor report
links its project's page (`mlops.monitoring.report`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.analytics.compare import ProjectComparison
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings

#: The MLflow experiment the reports are logged to (a run tagged mlops.kind=report per generation).
EXPERIMENT = "toolkit"
KIND = "report"


def reports_dir(settings: Settings) -> Path:
    return settings.home / "reports"


def project_report_path(settings: Settings, project: str) -> Path:
    return reports_dir(settings) / f"{project}.html"


def toolkit_report_path(settings: Settings) -> Path:
    return reports_dir(settings) / "toolkit-report.html"


@dataclass
class WrittenReports:
    toolkit: Path | None
    projects: dict[str, Path]
    seconds: dict[str, float] = field(default_factory=dict)  # collect, draw, write
    comparisons: list[ProjectComparison] = field(default_factory=list)  # what `mlops compare` would judge

    @property
    def paths(self) -> list[Path]:
        return ([self.toolkit] if self.toolkit else []) + list(self.projects.values())


def generate_reports(
    settings: Settings,
    client: MlflowClient,
    configs: dict[str, ProjectConfig],
    only: str | None = None,
    out_dir: Path | None = None,
    pools: bool = True,
) -> WrittenReports:
    """Collect the history once and write its pages: with `only`, that project's page alone;
    else the toolkit page (with pool usage when `pools`) and every project's page."""
    from mlops.analytics.report_data import collect
    from mlops.analytics.report_html import TOOLKIT, pages

    out = out_dir or reports_dir(settings)
    started = time.perf_counter()
    data = collect(client, configs, settings, only=only, pools=pools and only is None)
    seconds = {"collect": time.perf_counter() - started}
    started = time.perf_counter()
    html = pages(data, toolkit=only is None)
    seconds["draw"] = time.perf_counter() - started
    started = time.perf_counter()
    written = {name: _write(out / f"{name}.html", text) for name, text in html.items()}
    seconds["write"] = time.perf_counter() - started
    toolkit = written.pop(TOOLKIT, None)
    comparisons = [p.comparison for p in data.projects if p.comparison is not None]
    return WrittenReports(toolkit, written, seconds, comparisons)


def log_reports(settings: Settings, written: WrittenReports, run_name: str) -> str:
    """Log the pages as artifacts of a run of the toolkit experiment (tag mlops.kind=report); its id."""
    import mlflow

    from mlops.analytics import names
    from mlops.tracking.client import configure, ensure_experiment

    configure(settings)
    experiment_id = ensure_experiment(settings, EXPERIMENT, {"mlops.owner": "platform"})
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags({names.KIND: KIND, "mlops.report_projects": ",".join(sorted(written.projects))})
        mlflow.log_metrics({f"report_{k.replace(' ', '_')}_seconds": v for k, v in written.seconds.items()})
        mlflow.log_metric("report_projects", len(written.projects))
        for path in written.paths:
            mlflow.log_artifact(str(path), artifact_path="reports")
        return run.info.run_id


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)
    return path
