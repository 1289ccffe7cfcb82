"""MLXEvaluateOperator: re-score the trained model and decide whether it may be registered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class MLXEvaluateOperator(ProjectOperator):
    template_fields: Sequence[str] = ("data", "training")

    def __init__(self, *, data: Any, training: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = data
        self.training = training

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.run_step(
            "mlops.training.isolated:evaluate",
            data_version=self.data["version"], run_id=self.training["run_id"], model_uri=self.training["model_uri"],
        )
        verdict = "passes" if result["passed"] else "FAILS"
        self.log.info("%s = %.4f %s threshold %s", result["metric"], result["value"], verdict, result["threshold"])
        return result
