"""`mlops new-project`: the folder it writes validates, imports, and its lifecycle runs as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.cli import main
from mlops.project_template import family_class_name, sample_tables

REPO = Path(__file__).resolve().parents[1]


def _new(projects: Path, name: str, *extra: str) -> int:
    return main(["new-project", name, "--dir", str(projects), *extra])


def test_the_generated_project_validates_with_its_family_imported(tmp_path: Path, capsys):
    from mlops.config import load_project
    from mlops.training.families import find_family, load_family_class
    from mlops.training.families.contract import signature_problems

    projects = tmp_path / "projects"
    assert _new(projects, "shop_churn") == 0
    out = capsys.readouterr().out
    folder = projects / "shop_churn"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["data/part-0.csv", "data/part-1.csv", "model.py", "project.yaml"]
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 200_000
    assert [p.name for p in projects.iterdir()] == ["shop_churn"]  # no staging folder left behind
    for path in files:
        assert str(Path("projects/shop_churn") / path) in out or str(folder / path) in out
    assert "mlops validate" in out and "shop_churn__lifecycle" in out

    text = (folder / "project.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../schema.json\n")
    model = (folder / "model.py").read_text()
    assert "_common" not in model and "_models" not in model  # the user owns all of it

    # `mlops validate` imports model.py (the deep check) and checks the class against the contract.
    assert main(["validate", "--no-hardware", str(folder / "project.yaml")]) == 0
    assert f"{folder / 'project.yaml'}: ok (shop_churn__lifecycle)" in capsys.readouterr().out
    config = load_project(folder / "project.yaml", deep=True)
    assert config.model.family == f"model:{family_class_name('shop_churn')}" == "model:ShopChurnFamily"
    assert (config.data.source, config.data.path) == ("files", "projects/shop_churn/data")
    assert config.serving.enabled and config.monitoring.enabled
    source = find_family(config.model.family, folder)
    assert (source.kind, source.origin) == ("project code", str(folder / "model.py"))
    family = load_family_class(source)()
    assert signature_problems(family.signature(config.model.hyperparameters)) == []


def test_the_sample_data_is_made_from_a_fixed_seed():
    first, second = sample_tables(), sample_tables()
    assert all(a.equals(b) for a, b in zip(first, second))
    table = first[0]
    assert list(table.columns) == [f"feature_{i}" for i in range(8)] + ["label"]
    assert sorted(table["label"].unique()) == [0, 1, 2]
    assert not sample_tables(seed=1)[0].equals(table)


def test_the_generated_family_loads_its_files_trains_and_predicts(tmp_path: Path):
    """Without Airflow: load_dataset on the sample files, a few epochs, predict against the signature."""
    from mlops.config import load_project
    from mlops.training.families import get_family
    from mlops.training.families.contract import check_predict

    projects = tmp_path / "projects"
    assert _new(projects, "quick_check") == 0
    folder = projects / "quick_check"
    config = load_project(folder / "project.yaml")
    family = get_family(config.model.family, folder)
    hp = {**family.default_hyperparameters, **config.model.hyperparameters}
    data = family.load_dataset(folder / "data", hp, config.data.seed, config.data.val_fraction)
    assert set(data) == {"train_x", "train_y", "val_x", "val_y"}
    assert data["train_x"].shape == (960, 8) and data["val_x"].shape == (240, 8)
    session = family.create(hp, [], config.training.seed)
    for epoch in range(config.training.epochs):
        session.train_epoch(data, config.training.batch_size, epoch)
    assert session.evaluate(data)["accuracy"] >= config.evaluation.threshold + 0.05  # reached with a margin
    assert check_predict(session, family, data, hp) == []


def test_the_generated_project_runs_its_lifecycle(airflow_db, tmp_path: Path, monkeypatch):
    """pull_data -> thermal_gate -> train -> evaluate -> register -> build -> version_artifacts, as written."""
    from airflow.dag_processing.dagbag import DagBag
    from mlflow import MlflowClient

    from mlops.settings import get_settings
    from mlops.training.artifacts import read_manifest

    projects = tmp_path / "projects"
    assert _new(projects, "own_tabular") == 0
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))
    monkeypatch.chdir(tmp_path)
    dag = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py")).get_dag("own_tabular__lifecycle")
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {
        "pull_data": "success", "thermal_gate": "success", "train": "success", "evaluate": "success",
        "register": "success", "build": "success", "version_artifacts": "success",
    }
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    evaluation = tis["evaluate"].xcom_pull(task_ids="evaluate")
    assert evaluation["passed"] and evaluation["metric"] == "accuracy" and evaluation["value"] >= 0.8
    registered = tis["register"].xcom_pull(task_ids="register")
    version = MlflowClient(get_settings().tracking_uri).get_model_version("own_tabular", str(registered["version"]))
    assert version.tags["model_family"] == "model:OwnTabularFamily"
    training = tis["train"].xcom_pull(task_ids="train")
    model_dir = Path(training["model_dir"])
    assert (model_dir / "code" / "model.py").read_text() == (projects / "own_tabular" / "model.py").read_text()
    assert read_manifest(model_dir)["family_code"] == ["model.py"]

    # The registered version serves with the code it was trained with, even once the project's is gone;
    # the gateway checks requests against the family's signature.
    from fastapi.testclient import TestClient

    from mlops.serving.gateway import create_app

    (projects / "own_tabular" / "model.py").rename(tmp_path / "model.py.moved")
    url = f"/v1/projects/own_tabular/models/{registered['version']}/predict"
    rows = sample_tables()[0].drop(columns="label").to_numpy()[:3].tolist()
    with TestClient(create_app(get_settings(), {"k"}, capture=False)) as client:
        answer = client.post(url, json={"inputs": {"x": rows}}, headers={"X-API-Key": "k"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["outputs"]["label"]) == 3
        wrong = client.post(url, json={"inputs": {"x": [row[:5] for row in rows]}}, headers={"X-API-Key": "k"})
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["detail"] == [
            {"loc": ["body", "inputs", "x"], "msg": "expected shape [B, 8], got [3, 5]", "type": "shape"}
        ]


@pytest.mark.parametrize(
    "name, setup, expected",
    [
        ("Shop", None, "'Shop' is not a valid project name: use lowercase letters, digits and _"),
        ("x", None, "'x' is not a valid project name"),
        ("2fast", None, "'2fast' is not a valid project name"),
        ("taken", lambda p: (p / "taken").mkdir(), "already exists: choose another name"),
        ("flat", lambda p: (p / "flat.yaml").write_text("name: flat\nmodel: {family: mlp_classifier}\n"),
         "flat.yaml already defines a project of that name"),
        ("renamed", lambda p: (p / "other.yaml").write_text("name: renamed\nmodel: {family: mlp_classifier}\n"),
         "project name 'renamed' is already used by"),
        ("broken", lambda p: (p / "b.yaml").write_text("name: broken\nmodel: {family: no_such}\n"),
         "project name 'broken' is already used by"),
    ],
)
def test_refusals_name_what_to_do(tmp_path: Path, capsys, name, setup, expected):
    projects = tmp_path / "projects"
    projects.mkdir()
    if setup is not None:
        setup(projects)
    before = sorted(projects.iterdir())
    assert _new(projects, name) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlops new-project: ") and expected in err
    assert sorted(projects.iterdir()) == before  # nothing written


def test_an_unsupported_like_lists_what_is_supported(tmp_path: Path, capsys):
    assert _new(tmp_path / "projects", "lm_project", "--like", "tiny_lm") == 1
    err = capsys.readouterr().err
    assert "--like 'tiny_lm' is not supported" in err and "mlp_classifier" in err
    assert not (tmp_path / "projects").exists()
    assert _new(tmp_path / "projects", "mlp_project", "--like", "mlp_classifier") == 0
