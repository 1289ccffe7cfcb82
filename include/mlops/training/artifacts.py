"""Write and read a trained model folder: `model.safetensors` + `model.json`.

The folder is what DVC versions, what MLflow logs as the model artifact and what
the evaluate step restores, so all three agree on one format.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.training.families.base import TrainingSession

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "model.json"


def save_model(folder: Path, session: TrainingSession, manifest: dict[str, Any]) -> dict[str, Any]:
    """Replace `folder` with the session's weights and manifest (staged, then swapped in)."""
    import mlx.core as mx

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
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


def restore_session(folder: Path) -> TrainingSession:
    """Rebuild the model described by the manifest and load its saved weights."""
    from mlops.training.families import get_family

    manifest = read_manifest(folder)
    family = get_family(manifest["family"])
    return family.restore(
        manifest["hyperparameters"], manifest["techniques"], manifest["seed"], Path(folder) / WEIGHTS_FILE
    )
