"""The project YAMLs as the dashboard lists them: valid and invalid files side by side, errors located."""

from __future__ import annotations

from mlops.dashboard.projects import project_summary, read_projects
from mlops.settings import Settings


def settings_with(tmp_path) -> Settings:
    return Settings.from_env({"MLOPS_HOME": str(tmp_path / "home"), "MLOPS_PROJECTS_DIR": str(tmp_path / "projects")})


def test_every_file_is_listed_valid_or_not(tmp_path):
    folder = tmp_path / "projects"
    (folder / "folder_proj").mkdir(parents=True)
    (folder / "good.yaml").write_text("name: good\nowner: me\ntags: [a]\nmodel:\n  family: mlp_classifier\n")
    (folder / "typo.yaml").write_text("name: typo\nmodel:\n  family: mlp_clasifier\n")
    (folder / "junk.yml").write_text("[unclosed\n")
    (folder / "folder_proj" / "project.yaml").write_text("model: {family: tiny_lm}\n")
    found, notes = read_projects(settings_with(tmp_path))
    assert notes == [] and set(found) == {"good", "typo", "junk", "folder_proj"}
    assert found["good"].valid and found["good"].errors == []
    assert project_summary(found["good"], {}) == {"family": "mlp_classifier", "owner": "me", "description": "",
                                                   "tags": {"a": "true"}}
    typo = found["typo"]
    assert not typo.valid and typo.text.startswith("name: typo")
    (error,) = typo.errors
    assert (error["field"], error["line"], error["column"]) == ("model.family", 3, 11)
    assert "mlp_classifier" in (error["suggestion"] or "") + error["message"]
    (yaml_error,) = found["junk"].errors
    assert yaml_error["line"] is not None and "YAML" in yaml_error["message"]
    assert found["folder_proj"].path.name == "project.yaml" and not found["folder_proj"].valid


def test_a_name_used_twice_keeps_both_files(tmp_path):
    folder = tmp_path / "projects"
    folder.mkdir()
    for file in ("a.yaml", "b.yaml"):
        (folder / file).write_text("name: twin\nmodel:\n  family: mlp_classifier\n")
    found, _ = read_projects(settings_with(tmp_path))
    assert set(found) == {"twin", "twin (b.yaml)"}
    assert found["twin"].valid and "already used" in found["twin (b.yaml)"].errors[0]["message"]


def test_a_missing_folder_is_a_note(tmp_path):
    found, notes = read_projects(settings_with(tmp_path))
    assert found == {} and "cannot list the projects folder" in notes[0]
