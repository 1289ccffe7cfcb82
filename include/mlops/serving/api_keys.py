"""API keys of the serving gateway: from `MLOPS_API_KEYS` or a private file, never from git/YAML.

* `MLOPS_API_KEYS`: comma-separated keys (wins when set and non-empty);
* otherwise `settings.home / "secrets" / "api_keys"`: one key per line (mode 600,
  `ensure_api_key` creates it with a fresh `secrets.token_urlsafe(32)` on first use).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings

ENV_VAR = "MLOPS_API_KEYS"


def api_keys_file(settings: Settings) -> Path:
    return settings.home / "secrets" / "api_keys"


def _parse(text: str, separator: str) -> list[str]:
    return [key.strip() for key in text.split(separator) if key.strip() and not key.strip().startswith("#")]


def load_api_keys(settings: Settings, env: dict[str, str] | None = None) -> set[str]:
    """Keys from the environment variable, else from the keys file; empty when neither has any."""
    env = os.environ if env is None else env
    from_env = _parse(env.get(ENV_VAR, ""), ",")
    if from_env:
        return set(from_env)
    path = api_keys_file(settings)
    if path.is_file():
        return set(_parse(path.read_text(), "\n"))
    return set()


def ensure_api_key(settings: Settings, env: dict[str, str] | None = None) -> str:
    """A usable key: an existing one, or a new one written to the keys file (chmod 600)."""
    env = os.environ if env is None else env
    from_env = _parse(env.get(ENV_VAR, ""), ",")
    if from_env:
        return from_env[0]
    path = api_keys_file(settings)
    if path.is_file():
        existing = _parse(path.read_text(), "\n")
        if existing:
            return existing[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)  # the file may have existed (empty) with looser bits
    return key
