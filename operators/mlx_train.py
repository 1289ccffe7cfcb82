"""MLXTrainOperator: train a project's MLX model on a pinned data version, tracked in MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from operators.base import ProjectOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def retrain_reason(context: Context) -> str | None:
    """The reasons of the retrain-asset events that started this run (None for scheduled/manual runs)."""
    events = context.get("triggering_asset_events") or {}
    reasons = [
        str(event.extra["reason"]) for asset_events in events.values() for event in asset_events if (event.extra or {}).get("reason")
    ]
    return "; ".join(reasons) or None


class MLXTrainOperator(ProjectOperator):
    """:param data: the `pull_data` result (path + version), usually `pull_data.output`."""

    template_fields: Sequence[str] = ("data",)
    ui_color = "#fde9d9"

    def __init__(self, *, data: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = data

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        tags = {
            "airflow.dag_id": ti.dag_id,
            "airflow.run_id": ti.run_id,
            "airflow.try_number": str(ti.try_number),
        }
        reason = retrain_reason(context)
        if reason:  # the monitor asked for this run: say why on the MLflow run
            tags["mlops.retrain_reason"] = reason[:5000]
            self.log.info("retraining because: %s", reason)
        result = self.run_step(
            "mlops.training.isolated:train", data_path=self.data["path"], data_version=self.data["version"], run_tags=tags
        )
        self.log.info("MLflow run %s on %s: %s", result["run_id"], result["device"], result["metrics"])
        return result
