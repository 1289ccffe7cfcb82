"""The evaluate step: re-score the saved model on the held-out split and gate registration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.training.families.base import ModelFamily
    from mlops.settings import Settings


def gate_metric(config: ProjectConfig, family: ModelFamily) -> tuple[str, str]:
    """(metric, goal) that decides registration: the YAML's, else the family's first."""
    metric = config.evaluation.metric or next(iter(family.metrics))
    return metric, family.metrics[metric]


def passes(value: float, threshold: float | None, goal: str) -> bool:
    if threshold is None:
        return True
    return value >= threshold if goal == "max" else value <= threshold


def evaluate_model(settings: Settings, config: ProjectConfig, data_path: str, run_id: str, model_path: str) -> dict[str, Any]:
    """Restore the model folder, score it on the validation split, log `eval_*` to the run."""
    from mlflow import MlflowClient

    from mlops.analytics.task_sampling import task_sampler
    from mlops.tracking.client import configure
    from mlops.training.artifacts import model_family, read_manifest, restore_session
    from mlops.training.device import select_device

    manifest = read_manifest(Path(model_path))
    if manifest["run_id"] != run_id:
        raise RuntimeError(
            f"{model_path} holds the model of run {manifest['run_id']}, not {run_id}: "
            "another train step replaced it; re-run train for this DAG run"
        )
    select_device()
    configure(settings)
    client = MlflowClient()
    with task_sampler(config, run_id, client):  # the samples follow the training task's on the run
        family = model_family(Path(model_path), manifest)
        data = family.load_dataset(Path(data_path), manifest["hyperparameters"], config.data.seed, config.data.val_fraction)
        metrics = restore_session(Path(model_path)).evaluate(data)
    metric, goal = gate_metric(config, family)
    threshold = config.evaluation.threshold
    passed = passes(metrics[metric], threshold, goal)

    for name, value in metrics.items():
        client.log_metric(run_id, f"eval_{name}", value)
    client.set_tag(run_id, "mlops.evaluation", "passed" if passed else "failed")
    return {"metric": metric, "goal": goal, "value": metrics[metric], "threshold": threshold, "passed": passed, "metrics": metrics}
