"""Which Python runs a project's code: the shared layer's, or its own isolated environment's.

A project without `environment.requirements`, or whose requirements the shared layer satisfies,
runs in the shared layer (None). A project whose requirements conflict with it runs in the
environment its recorded lock pins (`requirements.lock` beside its YAML, written by
`mlops validate`): built once per lock under the state folder (`mlops.environments.cache`).
A task that finds no current lock resolves and records it first, under a lock, so every later
task and worker builds the same thing.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


class ProjectEnvironmentError(RuntimeError):
    """A project whose environment cannot be had; the message names the project and what to do."""


@contextlib.contextmanager
def _resolving(settings: Settings, project: str) -> Iterator[None]:
    """One resolution of a project's lock at a time on this machine."""
    folder = settings.home / "envs" / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"resolve-{project}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def project_lock(settings: Settings, config: ProjectConfig) -> tuple[list[str], str] | None:
    """(pinned requirements, environment key) of an isolated project; None for one on the shared layer."""
    from mlops.config import project_file
    from mlops.environments.lock import lock_environment, read_lock

    requirements = list(config.environment.requirements)
    if not requirements:
        return None
    yaml = project_file(settings.projects_dir, config.name)
    with _resolving(settings, config.name):
        plan = lock_environment(yaml, config.name, requirements)  # a current lock: read, nothing resolved
    if plan.errors:
        problems = "; ".join(p.message for p in plan.errors)
        raise ProjectEnvironmentError(
            f"project {config.name}: environment.requirements cannot run: {problems} (run `mlops validate {yaml}`)"
        )
    if plan.kind != "isolated":
        return None
    from mlops.environments.lock import lock_path

    lock = read_lock(lock_path(yaml))
    assert lock is not None
    return list(lock.pinned), lock.env


def project_python(settings: Settings, config: ProjectConfig) -> Path | None:
    """The interpreter of the project's isolated environment (built now if missing); None: the shared layer."""
    locked = project_lock(settings, config)
    if locked is None:
        return None
    from mlops.environments.cache import ensure_environment

    pinned, key = locked
    return ensure_environment(settings, pinned, key)


def python_of_project(settings: Settings, project: str) -> Path | None:
    """`project_python` for a project known by name (its YAML read from the projects folder); None
    when it runs on the shared layer, or when its YAML is gone (its saved models still have their code)."""
    from mlops.config import ProjectConfigError, load_project, project_file

    try:
        config = load_project(project_file(settings.projects_dir, project))
    except ProjectConfigError:
        return None
    return project_python(settings, config)


def projects_environments(settings: Settings) -> dict[str, tuple[list[str], str]]:
    """project -> (pinned, key) for every project of the projects folder whose lock isolates it (no uv)."""
    from mlops.config import load_projects, project_files
    from mlops.environments.lock import LockError, lock_path, read_lock

    if not settings.projects_dir.is_dir():
        return {}
    configs, _ = load_projects(project_files(settings.projects_dir))
    found = {}
    for path, config in configs.items():
        if not config.environment.requirements:
            continue
        try:
            lock = read_lock(lock_path(path))
        except (LockError, OSError):
            continue
        if lock is not None:
            found[config.name] = (list(lock.pinned), lock.env)
    return found
