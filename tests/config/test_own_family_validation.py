"""A project with its own family: DAG parsing never imports its code, `mlops validate` does and says what is wrong.

Each broken kind is a located error (file:line:column, field, reason) on that project only: the
other projects in the folder keep validating and keep their DAGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from training.test_family_sources import FAMILY_CODE

from mlops.cli import main
from mlops_airflow.dag_factory import collect_project_dags

GOOD_BUILT_IN = "name: built_in_one\nmodel:\n  family: mlp_classifier\n"


def _project(projects: Path, name: str, code: str | None, yaml_tail: str = "", family: str = "model:OwnFamily") -> Path:
    folder = projects / name
    folder.mkdir(parents=True)
    if code is not None:
        (folder / "model.py").write_text(code)
    path = folder / "project.yaml"
    path.write_text(f"name: {name}\nmodel:\n  family: '{family}'\n{yaml_tail}")
    return path


def test_dag_parsing_never_imports_project_code_and_validate_reports_the_import_error(tmp_path: Path, capsys):
    projects = tmp_path / "projects"
    marker = tmp_path / "imported"
    broken = _project(projects, "broken_one", f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('no GPU found')\n")
    good = _project(projects, "good_one", FAMILY_CODE.format(name="good", cls="OwnFamily"))
    (projects / "built_in_one.yaml").write_text(GOOD_BUILT_IN)

    result = collect_project_dags(projects)
    assert set(result.dags) == {"broken_one__lifecycle", "good_one__lifecycle", "built_in_one__lifecycle"}
    assert result.errors == {} and not marker.exists()  # parsing found the family, imported nothing

    assert main(["validate", "--no-hardware", str(projects)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{broken}:3:11: model.family: model family 'model:OwnFamily' ({broken.parent / 'model.py'}): "
        "importing it failed: RuntimeError: no GPU found" in out
    )
    assert f"{good}: ok (good_one__lifecycle)" in out
    assert f"{projects / 'built_in_one.yaml'}: ok (built_in_one__lifecycle)" in out
    marker.unlink()
    assert main(["validate", "--no-hardware", "--no-import", str(projects)]) == 0  # the checks parsing makes
    assert not marker.exists()


def test_validate_checks_a_project_family_like_a_built_in_one(tmp_path: Path, capsys):
    """Unknown hyperparameter, unsupported technique, unknown metric, broken signature: each located."""
    projects = tmp_path / "projects"
    code = FAMILY_CODE.format(name="own", cls="OwnFamily") + (
        "\n    def signature(self, hyperparameters):\n"
        "        return {'inputs': {'x': {'dtype': 'float64', 'shape': [1]}}, 'outputs': {}}\n"
    )
    path = _project(
        projects, "checked_one", code,
        "  hyperparameters:\n    widht: 8\ntraining:\n  techniques: [lora]\nevaluation:\n  metric: accuracy\n"
        "serving:\n  enabled: true\n",
    )
    assert main(["validate", "--no-hardware", str(projects)]) == 1
    out = capsys.readouterr().out
    origin = path.parent / "model.py"
    expected = [
        f"{path}:5:5: model.hyperparameters.widht: unknown hyperparameter for family 'model:OwnFamily' (did you mean 'width'?)",
        f"{path}:7:16: training.techniques.0: family 'model:OwnFamily' does not support 'lora' (supported: none)",
        f"{path}:9:11: evaluation.metric: family 'model:OwnFamily' does not report metric 'accuracy' (model:OwnFamily reports: mse)",
        f"{path}:11:12: serving.enabled: family 'model:OwnFamily' ({origin}): signature inputs.x.dtype must be "
        "'float32' or 'int32', not 'float64' (serving and drift checks need a valid signature)",
        f"{path}:11:12: serving.enabled: family 'model:OwnFamily' ({origin}): signature inputs.x.shape must start "
        "with -1 (the batch axis) (serving and drift checks need a valid signature)",
        f"{path}:11:12: serving.enabled: family 'model:OwnFamily' ({origin}): signature outputs must map at least "
        "one name to a spec (serving and drift checks need a valid signature)",
    ]
    assert [line for line in out.splitlines() if line.startswith(str(path))] == expected


def test_a_project_folder_is_named_after_its_project(tmp_path: Path, capsys):
    projects = tmp_path / "projects"
    path = _project(projects, "folder_name", FAMILY_CODE.format(name="x", cls="OwnFamily"))
    path.write_text(path.read_text().replace("name: folder_name", "name: other_name"))
    assert main(["validate", "--no-hardware", str(projects)]) == 1
    assert (
        f"{path}:1:7: name: project 'other_name' lives in folder 'folder_name' "
        "(rename the folder to 'other_name' or the project to 'folder_name')" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("family", "message"),
    [
        ("mlp_clasifier", "unknown model family 'mlp_clasifier' (did you mean 'mlp_classifier'?; or give your own as `module:Class`)"),
        ("model:Own Family", "neither a family name nor a `package.module:Class` path"),
    ],
)
def test_a_family_that_cannot_be_found_is_an_error_even_when_parsing(tmp_path: Path, family: str, message: str):
    projects = tmp_path / "projects"
    path = _project(projects, "lost_one", None, family=family)
    (projects / "built_in_one.yaml").write_text(GOOD_BUILT_IN)
    result = collect_project_dags(projects)
    assert set(result.dags) == {"built_in_one__lifecycle"}
    [error] = result.errors[path]
    assert error.startswith(f"{path}:3:11: model.family: ") and message in error


def test_validate_checks_a_local_data_path_and_parsing_does_not(tmp_path: Path, capsys):
    """Missing folder, a glob matching nothing, mixed formats: each located on data.path, only by `mlops validate`."""
    projects = tmp_path / "projects"
    projects.mkdir()
    cases = {
        "missing_one": ("projects/missing_one/data", "does not exist; create it or fix data.path"),
        "empty_glob": ("projects/empty_glob/*.parquet", "the glob '*.parquet' matches no file"),
        "mixed_one": ("projects/mixed_one", "data files of several formats"),
    }
    for name, (path, _) in cases.items():
        _project(projects, name, None, f"data:\n  source: files\n  path: {path}\n", family="mlp_classifier")
    (projects / "mixed_one" / "a.csv").write_text("x,label\n1,0\n")
    (projects / "mixed_one" / "b.jsonl").write_text('{"x": 1, "label": 0}\n')
    (projects / "empty_glob" / "rows.csv").write_text("x,label\n1,0\n")
    good = _project(projects, "good_files", None, "data:\n  source: files\n  path: projects/good_files/rows.csv\n",
                    family="mlp_classifier")
    (projects / "good_files" / "rows.csv").write_text("x,label\n1,0\n")

    assert collect_project_dags(projects).errors == {}  # parsing never lists data
    assert main(["validate", "--no-hardware", str(projects)]) == 1
    out = capsys.readouterr().out
    for name, (path, message) in cases.items():
        line = next(l for l in out.splitlines() if l.startswith(str(projects / name / "project.yaml")))
        assert line.startswith(f"{projects / name / 'project.yaml'}:6:9: data.path: project {name}: data.path {path!r}: ")
        assert message in line, line
    assert f"{good}: ok (good_files__lifecycle)" in out
