"""A project's own family that breaks at run time fails its `train` task with who, where and what.

The family is `mlops new-project`'s, edited the way a user's bug would: a step that raises, a
`predict` that answers another dtype than its signature declares. Real MLflow store (SQLite),
real DVC workspace; the MLflow run is marked failed and nothing reaches registration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BREAKS = {
    "train_epoch raises": (
        '        x, y = data["train_x"], data["train_y"]\n',
        '        x, y = data["train_x"], data["train_y"]\n        raise ValueError("batch of 0 rows")\n',
        r"project 'own_broken': model family 'model:OwnBrokenFamily' \({model}\) failed in training "
        r"\(train_epoch / evaluate\): ValueError: batch of 0 rows",
    ),
    "predict breaks its signature": (
        '"label": probabilities.argmax(axis=-1).astype(np.int32)}',
        '"label": probabilities.argmax(axis=-1).astype(np.float32)}',
        r"project 'own_broken': model family 'model:OwnBrokenFamily' \({model}\): predict\(\) breaks its "
        r"declared signature: output 'label' has dtype float32, the signature declares int32",
    ),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_a_broken_own_family_fails_train_with_its_project_family_and_file(kind, tmp_path: Path, monkeypatch):
    import mlflow

    from mlops.config import load_project
    from mlops.data.model_artifacts import model_dir
    from mlops.data.project_data import ensure_project_data
    from mlops.project_template import create_project
    from mlops.settings import Settings
    from mlops.tracking.client import configure
    from mlops.training.families.contract import FamilyCodeError
    from mlops.training.trainer import train_project

    projects = tmp_path / "projects"
    created = create_project("own_broken", projects)
    model = created.folder / "model.py"
    old, new, message = BREAKS[kind]
    assert old in model.read_text()
    model.write_text(model.read_text().replace(old, new))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))
    monkeypatch.delenv("MLOPS_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    config = load_project(created.folder / "project.yaml")
    config = config.model_copy(update={"training": config.training.model_copy(update={"epochs": 1})})
    data = ensure_project_data(
        settings, config.name, config.model.family, config.data.num_samples, config.data.seed,
        config.model.hyperparameters, source=config.data.source, path=config.data.path,
    )
    with pytest.raises(FamilyCodeError, match=message.format(model=model)):
        train_project(settings, config, data["path"], data["version"])
    configure(settings)
    (run,) = mlflow.search_runs(experiment_names=["own_broken"], output_format="list")
    assert run.info.status == "FAILED"
    assert not model_dir(settings, "own_broken").exists()  # nothing saved for `evaluate` / `register` to pick up
