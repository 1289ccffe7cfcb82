"""Generated secrets (tokens, UI passwords) kept in `<state>/secrets/`, never in YAML or git.

Each secret is one file (mode 600, folder 700), made with a fresh random value the first time
it is asked for and read back afterwards, so restarts keep working credentials.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings


def secret_file(settings: Settings, name: str) -> Path:
    return settings.home / "secrets" / name


def ensure_secret(settings: Settings, name: str) -> str:
    """The secret `name`, created (random, 0600) when absent or empty."""
    path = secret_file(settings, name)
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    os.chmod(path, 0o600)
    return value
