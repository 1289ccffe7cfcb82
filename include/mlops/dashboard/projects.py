"""The project YAMLs as the dashboard lists them: every file, valid or not, with its text and its
located errors (the same `ConfigError`s `mlops validate` prints and Airflow shows as import errors).

An invalid file still gets a row: named by its `name:` line when one can be read, else by its file
name, so a broken YAML is seen next to the working projects instead of vanishing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.errors import ConfigError
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings

_NAME_LINE = re.compile(r"^name:\s*['\"]?([A-Za-z0-9_.\-]+)['\"]?\s*(?:#.*)?$", re.MULTILINE)


@dataclass
class ProjectFile:
    name: str
    path: Path
    text: str
    config: ProjectConfig | None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.config is not None


def error_dict(error: ConfigError) -> dict[str, Any]:
    return {"file": error.file, "line": error.line, "column": error.column, "field": error.field,
            "message": error.message, "suggestion": error.suggestion}


def read_projects(settings: Settings) -> tuple[dict[str, ProjectFile], list[str]]:
    """Every project file of the projects folder by project name, and notes (a folder that cannot be
    listed; a name two files claim: the second is listed by its file name with its error)."""
    from mlops.config.loader import load_projects, project_files

    try:
        paths = project_files(settings.projects_dir)
    except OSError as exc:
        return {}, [f"cannot list the projects folder {settings.projects_dir}: {exc.strerror or exc}"]
    configs, errors = load_projects(paths)
    found: dict[str, ProjectFile] = {}
    notes = []
    for path in paths:
        text = _text(path)
        config = configs.get(path)
        name = config.name if config is not None else _name_of(path, text)
        entry = ProjectFile(name, path, text, config, [error_dict(e) for e in errors.get(path, [])])
        if name in found:  # a duplicate name, or an invalid file whose name: line repeats a project's
            name = f"{name} ({path.name})"
            entry.name = name
        found[name] = entry
    return found, notes


def _text(path: Path) -> str:
    """The file's text as the loader reads it (bounded, never blocking); "" when it cannot be read."""
    from mlops.config.errors import ProjectConfigError
    from mlops.config.reading import read_project_text

    try:
        return read_project_text(path)
    except ProjectConfigError:
        return ""


def _name_of(path: Path, text: str) -> str:
    """An invalid file's project name: its `name:` line, else its file (or folder) name."""
    match = _NAME_LINE.search(text)
    if match:
        return match.group(1)
    return path.parent.name if path.stem == "project" else path.stem


def project_summary(entry: ProjectFile | None, experiment_tags: dict[str, str]) -> dict[str, Any]:
    """family, owner, description, tags: from the YAML when it loads, else from the experiment's filing tags
    (what the last training run copied from the YAML)."""
    from mlops.tracking.metadata import DESCRIPTION_TAG, FAMILY, OWNER, TAG_PREFIX

    if entry is not None and entry.config is not None:
        config = entry.config
        return {"family": config.model.family, "owner": config.owner, "description": config.description.strip(),
                "tags": {tag: "true" for tag in config.tags}}
    return {
        "family": experiment_tags.get(FAMILY), "owner": experiment_tags.get(OWNER),
        "description": experiment_tags.get(DESCRIPTION_TAG, ""),
        "tags": {k.removeprefix(TAG_PREFIX): v for k, v in experiment_tags.items() if k.startswith(TAG_PREFIX)},
    }


def yaml_section(entry: ProjectFile | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"path": str(entry.path), "text": entry.text, "valid": entry.valid, "errors": entry.errors}
