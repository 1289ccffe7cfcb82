"""Helpers of the serving tests: train + register a tiny project through the library (no Airflow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MLP, DIFFUSION = "serve_mlp", "serve_diffusion"


@dataclass
class Served:
    settings: Any
    home: Path
    versions: dict[str, list[int]]


def train_and_register(settings, name: str, family: str, seed: int = 0, hyperparameters: dict | None = None) -> dict:
    from mlops.config.schema import ProjectConfig
    from mlops.data.project_data import ensure_project_data
    from mlops.tracking.registry import register_run_model, version_tags
    from mlops.training.trainer import train_project

    config = ProjectConfig(
        name=name,
        model={"family": family, "hyperparameters": hyperparameters or {}},
        data={"num_samples": 256},
        training={"epochs": 1, "seed": seed},
    )
    data = ensure_project_data(
        settings, name, family, config.data.num_samples, config.data.seed, config.model.hyperparameters
    )
    training = train_project(settings, config, data["path"], data["version"])
    return register_run_model(settings, name, training["run_id"], training["model_uri"], version_tags(config, training))

