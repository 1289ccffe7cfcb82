"""What one step hands the next as a local path, made present on the machine running the next step.

With Celery workers on several Macs, `pull_data` may run on the coordinator and `train` on a
Mac that serves the `apple_silicon` queue, and `version_artifacts` back on the coordinator. A
path is only a hint: each step finds its input in this machine's workspace by version, and
fetches it when absent or different: data by its DVC content hash from the remote, a trained
model folder by its MLflow run from the tracking server. On one machine both are already there
and nothing is fetched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings

log = logging.getLogger(__name__)


def data_folder(settings: Settings, project: str, version: str) -> Path:
    """The project's data folder in this machine's DVC workspace, at content hash `version`."""
    from mlops.data.dvc_workspace import checkout_version, open_workspace, tracked_hash, workspace_lock
    from mlops.data.project_data import data_paths

    folder, dvc_file = data_paths(settings, project)
    if folder.is_dir() and tracked_hash(dvc_file) == version:
        return folder
    with workspace_lock(settings.dvc_workspace):
        if not (folder.is_dir() and tracked_hash(dvc_file) == version):
            log.info("data version %s of %s is not on this machine: pulling it from the DVC remote", version, project)
            checkout_version(open_workspace(settings), dvc_file, folder, version)
    return folder


def model_folder(settings: Settings, project: str, run_id: str, model_uri: str) -> Path:
    """The model folder trained by MLflow run `run_id` in this machine's workspace (`model_dir`),
    downloaded from the model the run logged (`model_uri`) when the folder holds another run's model."""
    from mlops.data.model_artifacts import model_dir
    from mlops.training.artifacts import MANIFEST_FILE, read_manifest

    folder = model_dir(settings, project)
    try:
        if read_manifest(folder)["run_id"] == run_id:
            return folder
    except (OSError, ValueError, KeyError):
        pass
    from mlops.serving.registry_models import _download_to_cache, _model_dir_path, fetch_mlmodel
    from mlops.tracking.client import configure

    configure(settings)
    base = _artifact_base(model_uri)
    log.info("the model of run %s is not on this machine: downloading it from MLflow (%s)", run_id, base)
    _download_to_cache(f"{base}/{_model_dir_path(fetch_mlmodel(base))}", folder, MANIFEST_FILE)
    if read_manifest(folder)["run_id"] != run_id:
        raise RuntimeError(f"{model_uri} holds the model of run {read_manifest(folder)['run_id']}, not {run_id}")
    return folder


def _artifact_base(model_uri: str) -> str:
    """Where a logged model's files are: `models:/<model id>` resolves to its artifact location."""
    if model_uri.startswith("models:/") and "/" not in model_uri[len("models:/"):]:
        from mlflow import MlflowClient

        return MlflowClient().get_logged_model(model_uri[len("models:/"):]).artifact_location.rstrip("/")
    return model_uri.rstrip("/")
