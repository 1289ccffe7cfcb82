"""Project configuration: the YAML contract (`schema`), loading with located errors (`loader`)."""

from mlops.config.errors import ConfigError, ProjectConfigError
from mlops.config.loader import load_project, load_projects, parse_project_text, project_file, project_files
from mlops.config.schema import ProjectConfig

__all__ = [
    "ConfigError",
    "ProjectConfig",
    "ProjectConfigError",
    "load_project",
    "load_projects",
    "parse_project_text",
    "project_file",
    "project_files",
]
