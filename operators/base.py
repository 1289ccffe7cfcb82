"""What every lifecycle operator shares: the project it works for and the hook it uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from operators.diagnostics import on_failure_diagnostics

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


class ProjectOperator(BaseOperator):
    """Base of the lifecycle operators: holds the project's validated config as a plain dict."""

    template_fields: Sequence[str] = ()
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        project: dict[str, Any],
        mlflow_conn_id: str = "mlflow_default",
        dvc_conn_id: str = "dvc_default",
        **kwargs: Any,
    ) -> None:
        # Every failed try (retried or final) gets a hardware diagnosis in its log and MLflow run.
        kwargs.setdefault("on_failure_callback", on_failure_diagnostics)
        kwargs.setdefault("on_retry_callback", on_failure_diagnostics)
        super().__init__(**kwargs)
        self.project = project
        self.mlflow_conn_id = mlflow_conn_id
        self.dvc_conn_id = dvc_conn_id

    @property
    def config(self) -> ProjectConfig:
        from mlops.config.schema import ProjectConfig

        return ProjectConfig.model_validate(self.project)

    def run_step(self, target: str, **kwargs: Any) -> Any:
        """Call the library step `target` ("module:function" of `mlops.training.isolated`) with the
        project's config: here on the shared layer, or inside the project's own environment when its
        `environment.requirements` conflict with it (issue 14). Same arguments, same JSON result."""
        import importlib

        from mlops.environments.project import project_python

        settings = self.settings()
        arguments = {"config": self.project, "settings": settings.to_env(), **kwargs}  # JSON: it may cross over
        python = project_python(settings, self.config)
        if python is None:
            module, _, function = target.partition(":")
            return getattr(importlib.import_module(module), function)(**arguments)
        from mlops.environments.runner import run_in_environment

        self.log.info("project %s runs in its own environment: %s", self.config.name, python.parent.parent)
        return run_in_environment(python, target, arguments, env=settings.to_env(), logger=self.log)

    def settings(self) -> Settings:
        from operators.hooks import MLOpsHook

        return MLOpsHook(mlflow_conn_id=self.mlflow_conn_id, dvc_conn_id=self.dvc_conn_id).get_settings()
