"""The local Evidently workspace drift snapshots are kept in, one Evidently project per platform project.

Browse it with `mlops evidently-ui` (started by `mlops up`, behind a login). Evidently's local
workspace is plain JSON files with no locking of its own, so finding-or-creating a project runs
under an flock: two drift checks of one project never create it twice.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.settings import Settings


def workspace_dir(settings: Settings) -> Path:
    return settings.home / "monitoring" / "evidently"


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    # Not a UUID, so Evidently's project listing skips the lock file.
    with open(root / ".mlops.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def add_snapshot(settings: Settings, project: str, snapshot: Any, name: str) -> tuple[str, str]:
    """Store `snapshot` in the Evidently project named `project` (created on first use).

    Returns (Evidently project id, snapshot id). With several projects of that name (made by
    hand), the one with the smallest id is used, so every check lands in the same one.
    """
    from evidently.ui.workspace import Workspace

    root = workspace_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root):
        workspace = Workspace.create(str(root))
        existing = workspace.search_project(project)
        if existing:
            evidently_project = min(existing, key=lambda p: str(p.id))
        else:
            evidently_project = workspace.create_project(project, description=f"Drift checks of {project}")
        stored = workspace.add_run(evidently_project.id, snapshot, include_data=False, name=name)
    return str(evidently_project.id), str(stored.id)


__all__ = ["add_snapshot", "workspace_dir"]
