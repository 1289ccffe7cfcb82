"""Register a run's model under the project's name, once per run, with compatibility tags; the registered
model itself carries the project's description and filing tags (`mlops.tracking.metadata`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings
    from mlops.tracking.metadata import ProjectMetadata


def register_run_model(
    settings: Settings, project: str, run_id: str, model_uri: str, tags: dict[str, str]
) -> dict[str, Any]:
    """Register `model_uri` as a version of model `project`; a retry returns the version already made.

    The registered model gets the description and filing tags of the run's experiment, which training
    brought in step with the project's YAML (`ensure_project_experiment`): one source, the same values.
    A run of another experiment (not filed as this project's) leaves the registered model's metadata alone.
    """
    import mlflow
    from mlflow import MlflowClient

    from mlops.tracking.client import configure
    from mlops.tracking.metadata import metadata_of

    configure(settings)
    client = MlflowClient()
    metadata = metadata_of(client.get_experiment(client.get_run(run_id).info.experiment_id).tags)
    if metadata.belongs_to(project):
        sync_registered_model(client, project, metadata)
    existing = client.search_model_versions(f"name = '{project}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
        return {"name": project, "version": int(version.version), "created": False, "run_id": run_id}
    version = mlflow.register_model(model_uri, project, tags=tags)
    return {"name": project, "version": int(version.version), "created": True, "run_id": run_id}


def sync_registered_model(client: MlflowClient, name: str, metadata: ProjectMetadata) -> None:
    """Create registered model `name` with the metadata, or bring it to it: write only what differs (an empty
    description leaves the model's), remove filing tags the metadata no longer has."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ALREADY_EXISTS, RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode

    from mlops.tracking.metadata import is_filing_key, tag_changes

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        try:
            client.create_registered_model(name, tags=metadata.tags, description=metadata.description or None)
            return
        except MlflowException as again:
            if again.error_code not in (ErrorCode.Name(RESOURCE_ALREADY_EXISTS), ErrorCode.Name(ALREADY_EXISTS)):
                raise
        model = client.get_registered_model(name)  # registered by a concurrent task meanwhile
    if metadata.description and (model.description or "") != metadata.description:
        client.update_registered_model(name, description=metadata.description)
    to_set, to_delete = tag_changes(model.tags, metadata.tags, is_filing_key)
    for key, value in to_set.items():
        client.set_registered_model_tag(name, key, value)
    for key in to_delete:
        client.delete_registered_model_tag(name, key)


#: Version tag prefix of the evaluation's figures (`mlops.eval.accuracy`): with the gate's metric and goal
#: beside them (`mlops.quality_metric`, `mlops.quality_goal`, the run tags' names), a registry reader ranks
#: the versions without reading their runs (the toolkit dashboard's overview, `mlops.dashboard.tracking`).
EVAL_TAG = "mlops.eval."


def evaluation_tags(evaluation: dict[str, Any]) -> dict[str, str]:
    """Tags of a registered version from its evaluation: every figure `evaluate` returned, and the gate."""
    from mlops.analytics import names

    return {
        names.QUALITY_METRIC: str(evaluation["metric"]),
        names.QUALITY_GOAL: str(evaluation["goal"]),
        **{f"{EVAL_TAG}{name}": repr(float(value)) for name, value in evaluation["metrics"].items()},
    }


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

