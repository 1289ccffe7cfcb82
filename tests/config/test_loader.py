"""The project YAML contract: every kind of bad input gives a located, actionable error."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import ProjectConfigError, load_project, load_projects, parse_project_text

MINIMAL = """\
name: demo_project
model:
  family: mlp_classifier
"""


def errors_of(text: str) -> list:
    with pytest.raises(ProjectConfigError) as info:
        parse_project_text(text, "projects/x.yaml")
    return info.value.errors


def test_five_line_yaml_is_valid_with_defaults():
    config = parse_project_text(MINIMAL, "x.yaml")
    assert config.dag_id == "demo_project__lifecycle"
    assert config.priority == 5 and config.training.epochs >= 1 and config.data.source == "synthetic"


def test_unknown_key_names_line_column_and_suggests():
    (error,) = errors_of(MINIMAL + "training:\n  epocs: 3\n")
    assert (error.line, error.column, error.field) == (5, 3, "training.epocs")
    assert "did you mean 'epochs'" in error.format()
    assert error.format().startswith("projects/x.yaml:5:3: training.epocs: unknown field")


def test_wrong_type_and_out_of_range_are_located():
    errors = errors_of(MINIMAL + "priority: 11\ntraining:\n  batch_size: lots\n")
    by_field = {e.field: e for e in errors}
    assert by_field["priority"].line == 4 and "less than or equal to 10" in by_field["priority"].message
    assert by_field["training.batch_size"].line == 6


def test_bad_name():
    (error,) = errors_of(MINIMAL.replace("demo_project", "Demo-Project"))
    assert error.field == "name" and error.line == 1 and "not a valid project name" in error.message


def test_syntax_error_has_position():
    (error,) = errors_of("name: a\nmodel: [unclosed\n")
    assert error.line is not None and "YAML syntax error" in error.message


def test_duplicate_key_in_one_file():
    (error,) = errors_of(MINIMAL + "name: again\n")
    assert "duplicate key 'name'" in error.message and error.line == 4


def test_empty_file():
    (error,) = errors_of("")
    assert error.message == "empty file"


def test_missing_required_section():
    (error,) = errors_of("name: demo_project\n")
    assert error.field == "model" and "Field required" in error.message


def test_family_checks_use_the_registry():
    errors = errors_of(
        MINIMAL.replace("mlp_classifier", "mlp_clasifier")
    )
    assert "did you mean 'mlp_classifier'" in errors[0].format()
    errors = errors_of(MINIMAL + "  hyperparameters:\n    hiddenn: 3\ntraining:\n  techniques: [lora]\n")
    fields = {e.field for e in errors}
    assert "model.hyperparameters.hiddenn" in fields and "training.techniques.0" in fields


def test_every_error_reported_at_once():
    errors = errors_of("name: X\npriority: 0\nmodel:\n  family: mlp_classifier\n  extra: 1\n")
    assert {e.field for e in errors} == {"name", "priority", "model.extra"}


def test_duplicate_project_names_keep_the_first(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text(MINIMAL)
    configs, errors = load_projects(sorted(tmp_path.glob("*.yaml")))
    assert list(configs) == [tmp_path / "a.yaml"]
    (error,) = errors[tmp_path / "b.yaml"]
    assert error.field == "name" and "already used by" in error.message and error.line == 1


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(ProjectConfigError, match="cannot read file"):
        load_project(tmp_path / "missing.yaml")


def test_shipped_projects_are_valid():
    from mlops.config import project_files
    from mlops.settings import REPO_ROOT

    paths = project_files(REPO_ROOT / "projects")
    configs, errors = load_projects(paths)
    assert not errors, "\n".join(e.format() for es in errors.values() for e in es)
    assert len(configs) == 9


def test_schema_file_is_current():
    import json

    from mlops.config.schema import json_schema
    from mlops.settings import REPO_ROOT

    committed = json.loads((REPO_ROOT / "projects" / "schema.json").read_text())
    assert committed == json_schema(), "run `mlops schema` to refresh projects/schema.json"


def test_schedule_must_be_cron_or_preset():
    (error,) = errors_of(MINIMAL + "schedule: '@daly'\n")
    assert error.field == "schedule" and error.line == 4 and "neither a cron expression" in error.message
    assert parse_project_text(MINIMAL + "schedule: '0 3 * * 1'\n", "x.yaml").schedule == "0 3 * * 1"
