"""The drift reference: the training data of the serving version, from DVC, as prediction-log columns.

Which version: the one the route table says serves the project (`serving/routes.py`), else the
highest registered. Its MLflow run names the DVC data version it trained on
(`mlops.data_version`); that content is materialised under `<dvc workspace>/reference/<project>/`
from the DVC cache or remote without touching the project's own data folder (training may be
using it), and read by the family (`load_dataset`, with the run's data seed and split). The family
turns the training split into serving inputs (`reference_inputs`), and
`features.flatten` into the same `in.*` columns the prediction log has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlops.settings import Settings


@dataclass
class Reference:
    frame: pd.DataFrame
    project: str
    model_version: int
    data_version: str
    run_id: str
    signature: dict[str, Any]


def serving_version(settings: Settings, project: str, client: Any) -> int:
    """The deployed version (route table), else the highest registered one."""
    from mlops.serving.routes import read_routes, routes_file

    _, routes = read_routes(routes_file(settings))
    if project in routes:
        return routes[project].version
    versions = [int(mv.version) for mv in client.search_model_versions(f"name = '{project}'")]
    if not versions:
        raise LookupError(f"{project} has no registered model version: nothing serves, nothing to compare with")
    return max(versions)


def materialise_data_version(settings: Settings, project: str, data_version: str) -> Path:
    """The folder holding DVC content `data_version` (fetched once; the project's data folder is untouched)."""
    from mlops.data.dvc_workspace import checkout_version, open_workspace, workspace_lock

    root = settings.dvc_workspace / "reference" / project
    name = data_version.replace(".dir", "")[:16]
    target = root / name
    with workspace_lock(settings.dvc_workspace):
        if not target.is_dir():
            repo = open_workspace(settings)
            checkout_version(repo, root / f"{name}.dvc", target, data_version)
    return target


def load_reference(settings: Settings, project: str, version: int | None = None) -> Reference:
    """The reference frame (`in.*` columns) of `version` (default: the serving one)."""
    import pandas as pd
    from mlflow import MlflowClient

    from mlops.config.schema import DataConfig
    from mlops.monitoring.features import flatten, prefixed
    from mlops.serving.registry_models import download_model_dir
    from mlops.tracking.client import configure
    from mlops.training.artifacts import model_signature, read_manifest

    configure(settings)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    version = int(version) if version is not None else serving_version(settings, project, client)
    model_version = client.get_model_version(project, str(version))
    run = client.get_run(model_version.run_id)
    data_version = run.data.tags.get("mlops.data_version")
    if not data_version:
        raise LookupError(f"{project} v{version}: its run {run.info.run_id} has no mlops.data_version tag")
    folder = download_model_dir(client, project, version, settings.home / "serving")
    manifest = read_manifest(folder)
    # The split the run trained with: its logged data seed (and share held out, when logged).
    params, split = run.data.params, DataConfig.model_fields
    seed = int(params.get("data.seed", split["seed"].default))
    val_fraction = float(params.get("data.val_fraction", split["val_fraction"].default))
    data_folder = materialise_data_version(settings, project, data_version)
    inputs = _reference_inputs(settings, project, folder, data_folder, seed, val_fraction)
    frame = pd.DataFrame(prefixed("in", flatten(inputs)))
    return Reference(frame, project, version, data_version, run.info.run_id, model_signature(folder, manifest))


def reference_inputs_file(model_folder: str, data_folder: str, seed: int, val_fraction: float, out: str) -> str:
    """The model's reference inputs (its family's `reference_inputs` of the training split) saved to
    `out` (.npz): what a project's own environment computes for the drift check (issue 14)."""
    import numpy as np

    from mlops.training.artifacts import model_family, read_manifest

    manifest = read_manifest(Path(model_folder))
    family = model_family(Path(model_folder), manifest)
    hyperparameters = manifest["hyperparameters"]
    data = family.load_dataset(Path(data_folder), hyperparameters, seed, val_fraction)
    np.savez(out, **{name: np.asarray(value) for name, value in family.reference_inputs(data, hyperparameters).items()})
    return out


def _reference_inputs(
    settings: Settings, project: str, model_folder: Path, data_folder: Path, seed: int, val_fraction: float
) -> dict[str, Any]:
    """Reference inputs computed where the project's code runs: here, or in its own environment."""
    import tempfile

    import numpy as np

    from mlops.environments.project import python_of_project

    python = python_of_project(settings, project)
    with tempfile.TemporaryDirectory(prefix="mlops-reference-") as scratch:
        out = str(Path(scratch) / "reference.npz")
        arguments = {"model_folder": str(model_folder), "data_folder": str(data_folder), "seed": seed,
                     "val_fraction": val_fraction, "out": out}
        if python is None:
            reference_inputs_file(**arguments)
        else:
            from mlops.environments.runner import run_in_environment

            run_in_environment(python, "mlops.monitoring.reference:reference_inputs_file", arguments)
        with np.load(out) as saved:
            return {name: saved[name] for name in saved.files}
