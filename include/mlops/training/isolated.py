"""The train and evaluate steps with JSON in and out: what a project's own environment runs (issue 14).

The operators call them through `ProjectOperator.run_step`: in the task's process for a project on
the shared layer, or with `run_in_environment(python, "mlops.training.isolated:train", kwargs)` in a
child whose packages are the project's isolated environment's only. Settings travel as their
MLOPS_* variables (`Settings.to_env()`, connections' overrides included), so the run still tracks into the shared MLflow and reads the data `pull_data` versioned.
"""

from __future__ import annotations

import json
from typing import Any


def _plain(value: Any) -> Any:
    """The result as JSON types (numpy scalars and paths become numbers and text)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def train(
    config: dict[str, Any], settings: dict[str, str], data_path: str, data_version: str, run_tags: dict[str, str]
) -> dict[str, Any]:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings
    from mlops.training.trainer import train_project

    project = ProjectConfig.model_validate(config)
    return _plain(train_project(Settings.from_env(settings), project, data_path, data_version, run_tags))


def evaluate(config: dict[str, Any], settings: dict[str, str], data_path: str, run_id: str, model_path: str) -> dict[str, Any]:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings
    from mlops.training.evaluate import evaluate_model

    project = ProjectConfig.model_validate(config)
    return _plain(evaluate_model(Settings.from_env(settings), project, data_path, run_id, model_path))
