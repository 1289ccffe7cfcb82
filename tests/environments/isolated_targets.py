"""Functions tests/environments call inside isolated environments (standard library only at import).

Imported in the child as `tests.environments.isolated_targets` (the repo root is on its PYTHONPATH).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time


class BadData(ValueError):
    """A project's own exception type, raised inside the environment."""


def echo(**kwargs):
    return kwargs


def interpreter() -> dict:
    """Where the child runs and what it can see."""
    import site

    import mlops

    return {
        "sys_path": sys.path,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "user_site_enabled": bool(site.ENABLE_USER_SITE),
        "mlops_file": mlops.__file__,
        "virtual_env": os.environ.get("VIRTUAL_ENV"),
        "path": os.environ.get("PATH"),
        "pythonpath": os.environ.get("PYTHONPATH"),
    }


def importable(names: list[str]) -> dict:
    """name -> the file it imports from, or None when it does not import."""
    found = {}
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            found[name] = None
        else:
            found[name] = getattr(module, "__file__", None) or "namespace"
    return found


def fail(rows: int) -> None:
    _validate(rows)


def _validate(rows: int) -> None:
    raise BadData(f"expected at least 10 rows, got {rows}")


def chatty(lines: int) -> int:
    for i in range(lines):
        print(f"stdout line {i}")
    print("to stderr", file=sys.stderr)
    logging.getLogger("project.train").info("child logging reaches the caller")
    return lines


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def exit_hard(code: int) -> None:
    sys.stdout.flush()
    os._exit(code)


def exit_soft(code: int) -> None:
    sys.exit(code)


def unserializable() -> object:
    return object()


def env_var(name: str) -> str | None:
    return os.environ.get(name)
