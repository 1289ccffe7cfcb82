"""A project's training data: generated once with a fixed seed (or its own files), tracked and pushed by DVC.

`ensure_project_data` is what the `pull_data` step runs: it returns the DVC version
(content hash) the training step will read, switching the workspace to a requested
version when one is given. Arrays are stored as one `.npy` file each so training can
memory-map them (`load_arrays`) instead of reading whole files into memory. A project's own
files (`data.source: files`) are brought in by `mlops.data.file_source`; a family reads either
kind through `ModelFamily.load_dataset`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.data.dvc_workspace import (
    add_and_push,
    checkout_version,
    open_workspace,
    push,
    remote_url,
    tracked_hash,
    workspace_lock,
)

if TYPE_CHECKING:
    import numpy as np

    from mlops.settings import Settings

SPEC_FILE = "spec.json"


def data_paths(settings: Settings, project: str) -> tuple[Path, Path]:
    """(data folder, its .dvc file) of a project in the shared workspace."""
    folder = settings.dvc_workspace / "data" / project
    return folder, folder.with_name(project + ".dvc")


def write_dataset(folder: Path, arrays: dict[str, np.ndarray], spec: dict[str, Any]) -> None:
    """Write the arrays to a fresh folder, then swap it in (never a half-written data set)."""
    import numpy as np

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    for name, array in arrays.items():
        np.save(staging / f"{name}.npy", np.ascontiguousarray(array))
    (staging / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def read_spec(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None


def ensure_project_data(
    settings: Settings,
    project: str,
    family: str,
    num_samples: int,
    seed: int,
    hyperparameters: dict[str, Any],
    version: str | None = None,
    *,
    source: str = "synthetic",
    path: str | None = None,
) -> dict[str, Any]:
    """Make the project's data present and versioned; return its version, path, remote and source.

    - `version` given: switch the workspace to that content hash (pulling from the remote).
    - source 'files': bring in the files `path` (data.path) names, see `mlops.data.file_source`
      (family, num_samples, seed and hyperparameters are then unused).
    - otherwise: (re)generate when the spec (family, size, seed, hyperparameters) changed,
      track with `dvc add`, push; an unchanged spec reuses the current version.
    """
    if source == "files":
        from mlops.data.file_source import ensure_file_data

        if not path:
            raise ValueError(f"project {project}: data.source 'files' needs data.path")
        return ensure_file_data(settings, project, path, version)
    folder, dvc_file = data_paths(settings, project)
    spec = {"family": family, "num_samples": num_samples, "seed": seed, "hyperparameters": hyperparameters}
    with workspace_lock(settings.dvc_workspace):
        repo = open_workspace(settings)
        created = False
        if version:
            checkout_version(repo, dvc_file, folder, version)
            md5 = version
        elif dvc_file.exists() and read_spec(folder) == spec:
            md5 = tracked_hash(dvc_file)
            push(repo, dvc_file)  # no-op when the remote has it; heals a push that failed earlier
        else:
            from mlops.training.families import family_for

            arrays = family_for(settings, project, family).make_dataset(seed, num_samples, hyperparameters)
            write_dataset(folder, arrays, spec)
            md5 = add_and_push(repo, folder)
            created = True
        return {
            "version": md5,
            "path": str(folder),
            "remote": remote_url(repo),
            "created": created,
            "files": sorted(p.name for p in folder.iterdir()),
            "source": "synthetic",
        }


def load_arrays(folder: str | Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every `.npy` array in `folder`, memory-mapped: pages are read only when a batch touches them."""
    import numpy as np

    folder = Path(folder)
    return {p.stem: np.load(p, mmap_mode="r" if mmap else None) for p in sorted(folder.glob("*.npy"))}
