"""Write and read a trained model folder: `model.safetensors` + `model.json` (+ `code/`).

The folder is what DVC versions, what MLflow logs as the model artifact and what
the evaluate step restores, so all three agree on one format. A family from the
project's own code travels with its model: its Python files are copied to `code/`,
and every reader (evaluation, serving, monitoring) imports the family from there, so a
registered version keeps serving with the code it was trained with whatever the
project folder holds later (like MLflow's `code_paths`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.training.families import FamilySource
    from mlops.training.families.base import ModelFamily, TrainingSession

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "model.json"
CODE_DIR = "code"


def copy_project_code(code_dir: Path, target: Path) -> list[str]:
    """Copy the project's Python code (top-level `*.py` files and packages) from `code_dir` to `target`."""
    copied = []
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for entry in sorted(code_dir.iterdir()):
        if entry.is_file() and entry.suffix == ".py":
            shutil.copy2(entry, target / entry.name)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            shutil.copytree(entry, target / entry.name, ignore=ignore)
        else:
            continue
        copied.append(entry.name)
    return copied


def save_model(
    folder: Path, session: TrainingSession, manifest: dict[str, Any], family_source: FamilySource | None = None
) -> dict[str, Any]:
    """Replace `folder` with the session's weights and manifest (staged, then swapped in).

    A family from project code (`family_source.kind == "project code"`) is copied into `code/`.
    """
    import mlx.core as mx

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    if family_source is not None and family_source.code_dir is not None:
        manifest = {**manifest, "family_code": copy_project_code(family_source.code_dir, staging / CODE_DIR)}
    weights = session.weights()
    mx.save_safetensors(str(staging / WEIGHTS_FILE), weights, metadata={"family": manifest["family"]})
    manifest = {**manifest, "weights_bytes": int(sum(w.nbytes for w in weights.values()))}
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())


def model_family(folder: Path, manifest: dict[str, Any] | None = None) -> ModelFamily:
    """The family of a saved model: from the code saved with it when there is some (see the module docstring)."""
    from mlops.training.families import get_family

    manifest = manifest if manifest is not None else read_manifest(folder)
    code = Path(folder) / CODE_DIR
    return get_family(manifest["family"], code if code.is_dir() else None)


def model_signature(folder: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The serving signature recorded at training; models saved before it was recorded ask their family."""
    manifest = manifest if manifest is not None else read_manifest(folder)
    if manifest.get("signature"):
        return manifest["signature"]
    return model_family(folder, manifest).signature(manifest["hyperparameters"])


def restore_session(folder: Path) -> TrainingSession:
    """Rebuild the model described by the manifest and load its saved weights."""
    manifest = read_manifest(folder)
    family = model_family(folder, manifest)
    return family.restore(
        manifest["hyperparameters"], manifest["techniques"], manifest["seed"], Path(folder) / WEIGHTS_FILE
    )
