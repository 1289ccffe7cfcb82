"""MLflowRegisterOperator: register the evaluated model version, tagged for Apple Silicon."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class MLflowRegisterOperator(ProjectOperator):
    template_fields: Sequence[str] = ("training", "evaluation")

    def __init__(self, *, training: Any, evaluation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training = training
        self.evaluation = evaluation

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops.tracking.registry import evaluation_tags, register_run_model, version_tags

        if not self.evaluation["passed"]:
            raise AirflowSkipException(
                f"not registered: {self.evaluation['metric']} = {self.evaluation['value']:.4f} "
                f"does not meet the threshold {self.evaluation['threshold']} (goal: {self.evaluation['goal']})"
            )
        result = register_run_model(
            self.settings(),
            self.config.name,
            self.training["run_id"],
            self.training["model_uri"],
            {**version_tags(self.config, self.training), **evaluation_tags(self.evaluation)},
        )
        self.log.info("registered %s version %s (new: %s)", result["name"], result["version"], result["created"])
        return {**result, "metrics": self.evaluation["metrics"]}
