"""The train and evaluate steps with JSON in and out: what a project's own environment runs (issue 14).

The operators call them through `ProjectOperator.run_step`: in the task's process for a project on
the shared layer, or with `run_in_environment(python, "mlops.training.isolated:train", kwargs)` in a
child whose packages are the project's isolated environment's only. Settings travel as their
MLOPS_* variables (`Settings.to_env()`, connections' overrides included), so the run still tracks into the shared MLflow and reads the data `pull_data` versioned.
"""

from __future__ import annotations

import json
from typing import Any


def plain_json(value: Any) -> Any:
    """The result as JSON types (numpy scalars and paths become numbers and text)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def train(
    config: dict[str, Any], settings: dict[str, str], data_path: str, data_version: str, run_tags: dict[str, str]
) -> dict[str, Any]:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings
    from mlops.data.local_copies import data_folder
    from mlops.training.trainer import train_project

    project, here = ProjectConfig.model_validate(config), Settings.from_env(settings)
    data_path = str(data_folder(here, project.name, data_version))  # pulled here if pull_data ran elsewhere
    return plain_json(train_project(here, project, data_path, data_version, run_tags))


def evaluate(
    config: dict[str, Any], settings: dict[str, str], data_version: str, run_id: str, model_uri: str
) -> dict[str, Any]:
    """Evaluate run `run_id`'s model on data version `data_version`, both fetched here when the steps
    before ran on another machine (`mlops.data.local_copies`)."""
    from mlops.config.schema import ProjectConfig
    from mlops.data.local_copies import data_folder, model_folder
    from mlops.settings import Settings
    from mlops.training.evaluate import evaluate_model

    project, here = ProjectConfig.model_validate(config), Settings.from_env(settings)
    data_path = data_folder(here, project.name, data_version)
    model_path = model_folder(here, project.name, run_id, model_uri)
    return plain_json(evaluate_model(here, project, str(data_path), run_id, str(model_path)))
