"""`mlops envs list|build|prune`: the logic behind the thin subcommand in `mlops.cli`.

* `list`: every environment under the state folder (key, state, the projects that use it, size
  on disk, what removing it frees, build time, packages), then the ones projects need that are not
  built yet ("missing").
* `build`: builds what is missing: the environments of the projects (`projects_environments`), or
  the ones of pinned requirement files given with `--requirements FILE` (one pinned requirement
  per line, as the resolver writes them, e.g. a project's `requirements.lock`; the key is
  `lock.env_hash` of the pins, the same key the lock records).
* `prune`: removes every environment no project uses (`--keep KEY` spares more; `--dry-run` only
  names them). Builds under way are never touched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mlops.environments.cache import (
    EnvironmentBuildError,
    ensure_environment,
    list_environments,
    prune_environments,
)
from mlops.settings import Settings


def projects_environments(settings: Settings) -> dict[str, tuple[list[str], str]]:
    """project name -> (pinned list, key) for every project that runs in an isolated environment
    (read from the projects' `requirements.lock` files, no uv); projects on the shared layer are absent."""
    from mlops.environments.project import projects_environments as locked

    return locked(settings)


def environment_key(pinned: Sequence[str]) -> str:
    """The cache key of a pinned list: the lock's `env_hash` (pins, interpreter version, platform)."""
    from mlops.environments.lock import env_hash

    return env_hash(list(pinned))


def read_pinned(path: Path) -> list[str]:
    """A pinned requirements file: one requirement a line; comments, blank lines and `\\` continuations handled."""
    text = path.read_text().replace("\\\n", " ")
    lines = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(" ".join(line.split()))
    return lines


def run(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.envs_command == "list":
        return cmd_list(settings, out)
    if args.envs_command == "build":
        return cmd_build(settings, args.requirements or [], out)
    return cmd_prune(settings, set(args.keep or ()), args.dry_run, out)


def cmd_list(settings: Settings, out: TextIO) -> int:
    wanted = projects_environments(settings)
    users: dict[str, list[str]] = {}
    for project, (_, key) in sorted(wanted.items()):
        users.setdefault(key, []).append(project)
    rows = []
    for env in list_environments(settings):
        rows.append((env.key, env.state, ",".join(users.pop(env.key, [])) or "-", _size(env.size_bytes),
                     _size(env.own_bytes), (env.built_at or "-").replace("+00:00", "Z"),
                     f"{env.build_seconds:.1f}" if env.build_seconds is not None else "-", str(len(env.pinned))))
    for key, projects in sorted(users.items()):
        pinned = next(p for p, k in wanted.values() if k == key)
        rows.append((key, "missing", ",".join(projects), "-", "-", "-", "-", str(len(pinned))))
    if not rows:
        print("no isolated environments (projects on the shared layer only)", file=out)
        return 0
    header = ("key", "state", "projects", "size", "frees", "built (UTC)", "build s", "packages")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
    return 0


def cmd_build(settings: Settings, requirements: Sequence[Path], out: TextIO) -> int:
    todo: list[tuple[str, list[str], str]] = []  # (what, pinned, key)
    for path in requirements:
        pinned = read_pinned(Path(path))
        todo.append((str(path), pinned, environment_key(pinned)))
    if not requirements:
        todo = [(project, pinned, key) for project, (pinned, key) in sorted(projects_environments(settings).items())]
        if not todo:
            print("no project needs an isolated environment (give pinned lists with --requirements FILE)", file=out)
            return 0
    failed = 0
    for what, pinned, key in todo:
        try:
            python = ensure_environment(settings, pinned, key)
        except (EnvironmentBuildError, ValueError) as exc:
            print(f"{what}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{what}: {key} ready ({python})", file=out)
    return 1 if failed else 0


def cmd_prune(settings: Settings, keep: set[str], dry_run: bool, out: TextIO) -> int:
    keep = keep | {key for _, key in projects_environments(settings).values()}
    removed = prune_environments(settings, keep, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    print(f"{verb}: {', '.join(removed)}" if removed else "nothing to prune", file=out)
    return 0


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
