"""Model artifacts produced by training, versioned with DVC next to the project's data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.data.dvc_workspace import add_and_push, open_workspace, remote_url, workspace_lock

if TYPE_CHECKING:
    from mlops.settings import Settings


def model_dir(settings: Settings, project: str) -> Path:
    return settings.dvc_workspace / "models" / project


def version_model_artifacts(settings: Settings, project: str) -> dict[str, Any]:
    """`dvc add` + push the project's current model folder; the same content gives the same hash."""
    folder = model_dir(settings, project)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model artifacts at {folder}: run the train step first")
    with workspace_lock(settings.dvc_workspace):
        repo = open_workspace(settings)
        md5 = add_and_push(repo, folder)
        return {"version": md5, "path": str(folder), "remote": remote_url(repo)}
