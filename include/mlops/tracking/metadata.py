"""How a project is filed in MLflow: the same description and tags on its experiment and its registered model.

MLflow filters on tags, in the API and the UI alike: `tags.mlops.owner = 'llm-team'` lists that owner's
experiments (`search_experiments`; the UI's Experiments page: tag filter `mlops.owner` is `llm-team`)
and registered models (`search_registered_models`; the UI's Models search box takes the filter as
written), `tags.mlops.project = 'lora_finetuning'` one project's, `tags.tag.peft = 'true'` every project
tagged `peft`. So a project's experiment and its registered model (both named after the project) carry:

- `mlops.project`, `mlops.owner`, `mlops.family`: the YAML's `name`, `owner` and `model.family`;
- `mlops.tags`: the YAML's `tags` as a comma list (absent when there are none), and one `tag.<t> = true`
  per tag (in `<t>`, characters other than letters, digits, `_`, `.` and `-` become `_`);
- the YAML's `description`: the experiment's description (MLflow's `mlflow.note.content` tag, what the
  UI's experiments table shows as Description) and the registered model's description. An empty one
  leaves what is there, e.g. a note written in the UI.

The YAML is the source: each training run brings the experiment in step with it (writing only what
differs; `tag.*` and `mlops.tags` keys the YAML no longer has are removed), and each registration
copies the experiment's to the registered model the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig

DESCRIPTION_TAG = "mlflow.note.content"  # MLflow's experiment description (its UI reads and writes this tag)
PROJECT = "mlops.project"
OWNER = "mlops.owner"
FAMILY = "mlops.family"
TAGS = "mlops.tags"
TAG_PREFIX = "tag."
FILING_KEYS = (PROJECT, OWNER, FAMILY, TAGS)


def tag_key(tag: str) -> str:
    """The `tag.<t>` key of a YAML tag (`peft` -> `tag.peft`; `team:vision` -> `tag.team_vision`)."""
    return TAG_PREFIX + re.sub(r"[^\w.\-]", "_", tag)


def is_filing_key(key: str) -> bool:
    """A tag this module writes (and so may remove when the YAML no longer has it)."""
    return key in FILING_KEYS or key.startswith(TAG_PREFIX)


@dataclass(frozen=True)
class ProjectMetadata:
    """A project's description and filing tags, as its experiment and registered model carry them."""

    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def belongs_to(self, project: str) -> bool:
        """Project `project`'s metadata, complete (name, owner, family: as a training run writes it)."""
        return self.tags.get(PROJECT) == project and OWNER in self.tags and FAMILY in self.tags

    def experiment_tags(self) -> dict[str, str]:
        """The tags to set on the experiment: the filing tags and, when there is one, the description."""
        return {**self.tags, DESCRIPTION_TAG: self.description} if self.description else dict(self.tags)


def project_metadata(config: ProjectConfig) -> ProjectMetadata:
    """The metadata a project's YAML gives its experiment and registered model."""
    tags = {PROJECT: config.name, OWNER: config.owner, FAMILY: config.model.family}
    if config.tags:
        tags[TAGS] = ",".join(config.tags)
        tags.update({tag_key(tag): "true" for tag in config.tags})
    return ProjectMetadata(config.description.strip(), tags)


def metadata_of(tags: Mapping[str, str]) -> ProjectMetadata:
    """The project metadata an experiment's tags carry (what its registered model gets)."""
    return ProjectMetadata(
        tags.get(DESCRIPTION_TAG, ""), {key: value for key, value in tags.items() if is_filing_key(key)}
    )


def tag_changes(
    current: Mapping[str, str], desired: Mapping[str, str], owned: Callable[[str], bool] | None = None
) -> tuple[dict[str, str], list[str]]:
    """What to write to turn `current` into `desired`: the tags to set (missing or different) and the keys
    to delete (in `current`, not in `desired`, and `owned`; nothing is deleted without `owned`)."""
    to_set = {key: value for key, value in desired.items() if current.get(key) != value}
    to_delete = sorted(key for key in current if key not in desired and owned is not None and owned(key))
    return to_set, to_delete
