"""The `toolkit__report` DAG: every day, the history report of the whole toolkit, and `mlops compare`'s verdicts.

One thin operator over `mlops.analytics.report_files`: it regenerates `<MLOPS_HOME>/reports/`
(the toolkit page and one page per project, which each monitor report links), refreshes the
best-technique tags `mlops compare` writes (from the same comparison the report drew), and logs
the pages to MLflow as a run of the `toolkit` experiment tagged `mlops.kind=report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class ReportOperator(BaseOperator):
    """Writes the report pages, tags the verdicts, logs the pages to MLflow; returns where they are."""

    template_fields: Sequence[str] = ("only",)
    ui_color = "#d9ead3"

    def __init__(self, *, only: str | None = None, mlflow_conn_id: str = "mlflow_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.only = only or None
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlflow import MlflowClient

        from mlops.analytics.cli import project_configs
        from mlops.analytics.compare import write_verdicts
        from mlops.analytics.report_files import generate_reports, log_reports
        from mlops.tracking.client import configure
        from operators.hooks import MLOpsHook

        settings = MLOpsHook(mlflow_conn_id=self.mlflow_conn_id).get_settings()
        configure(settings)
        client = MlflowClient()
        configs = project_configs(settings)
        written = generate_reports(settings, client, configs, only=self.only or None)
        for comparison in written.comparisons:
            write_verdicts(client, comparison)
        run_id = log_reports(settings, written, f"report-{context['run_id']}")
        self.log.info("report: %s and %d project page(s) in %s; MLflow run %s",
                      written.toolkit, len(written.projects), written.seconds, run_id)
        return {
            "toolkit": str(written.toolkit) if written.toolkit else None,
            "projects": {name: str(path) for name, path in written.projects.items()},
            "verdicts": {c.project: c.best_by_machine() for c in written.comparisons},
            "seconds": written.seconds,
            "mlflow_run_id": run_id,
        }
