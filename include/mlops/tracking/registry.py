"""Register a run's model under the project's name, once per run, with compatibility tags."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


def register_run_model(
    settings: Settings, project: str, run_id: str, model_uri: str, tags: dict[str, str]
) -> dict[str, Any]:
    """Register `model_uri` as a version of model `project`; a retry returns the version already made."""
    import mlflow
    from mlflow import MlflowClient

    from mlops.tracking.client import configure

    configure(settings)
    client = MlflowClient()
    existing = client.search_model_versions(f"name = '{project}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
        return {"name": project, "version": int(version.version), "created": False, "run_id": run_id}
    version = mlflow.register_model(model_uri, project, tags=tags)
    return {"name": project, "version": int(version.version), "created": True, "run_id": run_id}


def version_tags(config: ProjectConfig, training: dict[str, Any]) -> dict[str, str]:
    """Tags of a registered version: project, family, techniques and Apple Silicon compatibility."""
    return {
        "project": config.name,
        "model_family": config.model.family,
        "techniques": ",".join(config.training.techniques) or "none",
        "mlx_version": training["mlx_version"],
        "dtype": training["dtype"],
        "quantization": training["dtype"] if training["dtype"].startswith("int") else "none",
        "memory_footprint_bytes": str(training["weights_bytes"]),
        "peak_training_memory_bytes": str(training["peak_memory_bytes"]),
        "device_trained_on": training["device"],
        "weights_format": "safetensors",  # what mx.load reads on Metal and CPU alike
        "data_version": training["data_version"],
    }

