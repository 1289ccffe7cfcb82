"""Steps on different machines: each finds its input by version, not by the path the step before saw.

Two state folders stand for two Macs (different DVC workspaces and model folders); they share
what machines share: the DVC remote and the MLflow store.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from mlops_testing import tiny_project

from mlops.config.schema import ProjectConfig
from mlops.data.local_copies import data_folder, model_folder
from mlops.data.model_artifacts import model_dir, version_model_artifacts
from mlops.data.project_data import data_paths, ensure_project_data
from mlops.settings import Settings
from mlops.training import isolated


def machine(tmp_path: Path, name: str) -> Settings:
    return Settings.from_env({
        "MLOPS_HOME": str(tmp_path / name),
        "MLOPS_DVC_REMOTE": str(tmp_path / "shared-remote"),
        "MLOPS_TRACKING_URI": f"sqlite:///{tmp_path / 'shared-mlflow.db'}",
        "MLOPS_ARTIFACTS_URI": str(tmp_path / "shared-artifacts"),
    })


def test_train_and_evaluate_on_another_machine_than_the_step_before(tmp_path: Path):
    config = ProjectConfig.model_validate(yaml.safe_load(tiny_project("elsewhere")))
    coordinator, mac = machine(tmp_path, "coordinator"), machine(tmp_path, "mac")
    pulled = ensure_project_data(coordinator, config.name, config.model.family, config.data.num_samples,
                                 config.data.seed, config.model.hyperparameters)
    assert not data_paths(mac, config.name)[0].exists()

    # train on the Mac with the coordinator's path: the data comes from the remote by version
    project = config.model_dump(mode="json")
    trained = isolated.train(project, mac.to_env(), pulled["path"], pulled["version"], {})
    assert Path(trained["model_dir"]) == model_dir(mac, config.name)
    assert data_folder(mac, config.name, pulled["version"]) == data_paths(mac, config.name)[0]

    # evaluate and version the artifacts on the coordinator: the model comes from MLflow by run
    assert not model_dir(coordinator, config.name).exists()
    evaluation = isolated.evaluate(project, coordinator.to_env(), pulled["version"], trained["run_id"], trained["model_uri"])
    assert evaluation["metrics"] == trained["metrics"]
    assert version_model_artifacts(coordinator, config.name)["version"]

    # a folder holding another run's model is replaced, not trusted
    again = isolated.train(project, coordinator.to_env(), pulled["path"], pulled["version"], {})
    assert model_folder(mac, config.name, again["run_id"], again["model_uri"]) == model_dir(mac, config.name)
    assert isolated.evaluate(project, mac.to_env(), pulled["version"], again["run_id"], again["model_uri"])["metrics"] == again["metrics"]
