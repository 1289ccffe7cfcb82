"""DVC operators: pin a project's data version, version its model artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class DVCPullOperator(ProjectOperator):
    """Make the project's data present at `version` (latest when empty) and return its DVC version.

    :param version: DVC content hash to switch to (templated; the DAG passes the
        `data_version` run param, which defaults to the YAML's `data.version`).
    """

    template_fields: Sequence[str] = ("version",)

    def __init__(self, *, version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.data.project_data import ensure_project_data

        config = self.config
        result = ensure_project_data(
            self.settings(),
            config.name,
            family=config.model.family,
            num_samples=config.data.num_samples,
            seed=config.data.seed,
            hyperparameters=config.model.hyperparameters,
            version=(self.version or "").strip() or None,
            source=config.data.source,
            path=config.data.path,
        )
        self.log.info("data version %s at %s (remote %s)", result["version"], result["path"], result["remote"])
        return result


class DVCVersionArtifactsOperator(ProjectOperator):
    """`dvc add` + push the project's trained model folder; tag the MLflow run with its version."""

    template_fields: Sequence[str] = ("training",)

    def __init__(self, *, training: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training = training

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops.data.local_copies import model_folder
        from mlops.data.model_artifacts import version_model_artifacts
        from mlops.tracking.client import tag_run

        settings = self.settings()
        # train may have run on another machine: bring its model here first (no-op when it is here)
        model_folder(settings, self.config.name, self.training["run_id"], self.training["model_uri"])
        result = version_model_artifacts(settings, self.config.name)
        tag_run(settings, self.training["run_id"], {"mlops.model_dvc_version": result["version"]})
        self.log.info("model artifacts version %s pushed to %s", result["version"], result["remote"])
        return result
