"""The recorded resolution of an isolated project: a lock file next to its YAML.

`projects/<name>/requirements.lock` for a folder project (`projects/<name>/project.yaml`),
`projects/<name>.requirements.lock` for a flat one (`projects/<name>.yaml`). It is a pip requirements
file (`uv pip sync requirements.lock` installs it) whose comment header records what it was resolved
from, so a stale one is detected without resolving anything:

    # mlops environment lock: the isolated environment of project six_old.
    # Written by `mlops validate` from environment.requirements; do not edit (it is rewritten when an input changes).
    # format: 1
    # project: six_old
    # inputs: <sha256 of the inputs below>
    # env: <env_hash of the pins below: the environment cache's key>
    # requirements: ["six==1.16.0"]
    # shared-lock: <sha256 of uv.lock>
    # python: 3.11.13
    # platform: linux-x86_64
    # note: {"requirement": "six==1.16.0", "message": "runs isolated: six==1.16.0 conflicts with ..."}
    alembic==1.20.1
    ...

`lock_is_current` reads files and hashes only (no uv, no network): cheap enough for a task's start.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from mlops.environments.requirements import canonical, python_version
from mlops.environments.resolve import EnvironmentPlan, Problem, plan_environment
from mlops.environments.shared import RUNTIME_PACKAGES, UV_TIMEOUT_SECONDS, file_digest, repo_lock_file

FORMAT = 1
LOCK_SUFFIX = "requirements.lock"
_TITLE = "# mlops environment lock"
_FIELDS = ("format", "project", "inputs", "env", "requirements", "shared-lock", "python", "platform")


class LockError(ValueError):
    """A lock file that exists but is not one this module wrote (or was edited)."""


def platform_tag() -> str:
    """`linux-x86_64`, `darwin-arm64`: wheels, and so a resolution, differ between them."""
    return f"{sys.platform}-{platform.machine().lower()}"


def lock_path(project_file: str | Path) -> Path:
    """Where the lock of the project in `project_file` lives (folder project or flat YAML)."""
    from mlops.config.loader import PROJECT_FOLDER_FILES

    path = Path(project_file)
    if path.name in PROJECT_FOLDER_FILES:
        return path.with_name(LOCK_SUFFIX)
    return path.with_name(f"{path.stem}.{LOCK_SUFFIX}")


def _normalized(requirements: Sequence[str]) -> list[str]:
    return sorted(str(Requirement(text.strip())) for text in requirements)


def inputs_hash(requirements: Sequence[str], shared_digest: str, python: str | None = None,
                platform_name: str | None = None) -> str:
    """sha256 of what a resolution depends on: the requirements (order and spacing aside), the shared
    lock, the interpreter version, the platform, and the runtime package list of this code."""
    payload = {
        "format": FORMAT,
        "requirements": _normalized(requirements),
        "shared_lock": shared_digest,
        "python": python or python_version(),
        "platform": platform_name or platform_tag(),
        "runtime": sorted(RUNTIME_PACKAGES),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def env_hash(pinned: Sequence[str], python: str | None = None, platform_name: str | None = None) -> str:
    """The environment cache's key for `pinned` (name==version lines): sha256 of the normalized, sorted
    pins with the interpreter version and platform they are installed for (hex, 64 characters)."""
    lines = sorted(f"{canonical(n)}=={v.strip()}" for n, _, v in (p.strip().partition("==") for p in pinned))
    text = "\n".join([f"mlops-env {FORMAT}", python or python_version(), platform_name or platform_tag(), *lines])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LockFile:
    project: str
    inputs: str
    env: str
    requirements: tuple[str, ...]
    shared_lock: str
    python: str
    platform: str
    pinned: tuple[str, ...]
    notes: tuple[tuple[str | None, str], ...] = ()  # (requirement or None for the list, message)


def write_lock(path: Path, plan: EnvironmentPlan) -> LockFile:
    """Record an isolated plan at `path` (atomically: a reader never sees half a file)."""
    if plan.kind != "isolated" or not plan.pinned:
        raise ValueError(f"only an isolated plan is locked, not a {plan.kind!r} one")
    lock = LockFile(
        plan.project, inputs_hash(plan.requirements, plan.shared_digest), env_hash(plan.pinned),
        tuple(plan.requirements), plan.shared_digest, python_version(), platform_tag(), tuple(plan.pinned),
        tuple((plan.requirements[p.index] if p.index is not None else None, p.message) for p in plan.notes),
    )
    header = [
        f"{_TITLE}: the isolated environment of project {lock.project}.",
        "# Written by `mlops validate` from environment.requirements; do not edit (it is rewritten when an "
        "input changes).",
        f"# format: {FORMAT}", f"# project: {lock.project}", f"# inputs: {lock.inputs}", f"# env: {lock.env}",
        f"# requirements: {json.dumps(list(lock.requirements))}", f"# shared-lock: {lock.shared_lock}",
        f"# python: {lock.python}", f"# platform: {lock.platform}",
        *(f"# note: {json.dumps({'requirement': r, 'message': m})}" for r, m in lock.notes),
    ]
    text = "\n".join([*header, *lock.pinned]) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return lock


def read_lock(path: Path) -> LockFile | None:
    """The lock at `path`; None when there is none; `LockError` when it is not one of ours or is damaged."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"{path}: cannot read: {exc}") from None
    if not text.startswith(_TITLE):
        raise LockError(f"{path}: not an mlops environment lock (no '{_TITLE}' header)")
    fields: dict[str, str] = {}
    notes, pinned = [], []
    try:
        for line in text.splitlines()[1:]:
            if line.startswith("# "):
                key, sep, value = line[2:].partition(": ")
                if key == "note":
                    note = json.loads(value)
                    if not isinstance(note["requirement"], (str, type(None))) or not isinstance(note["message"], str):
                        raise ValueError(f"note {value!r}")
                    notes.append((note["requirement"], note["message"]))
                elif sep and key in _FIELDS:
                    fields[key] = value
            elif line.strip():
                pinned.append(line.strip())
        if fields.get("format") != str(FORMAT):
            raise LockError(f"{path}: lock format {fields.get('format')!r}, this code reads {FORMAT}")
        lock = LockFile(fields["project"], fields["inputs"], fields["env"], tuple(json.loads(fields["requirements"])),
                        fields["shared-lock"], fields["python"], fields["platform"], tuple(pinned), tuple(notes))
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, LockError):
            raise
        raise LockError(f"{path}: damaged lock ({type(exc).__name__}: {exc})") from None
    if env_hash(lock.pinned, lock.python, lock.platform) != lock.env:
        raise LockError(f"{path}: its pins were edited (env hash mismatch): re-run `mlops validate`")
    return lock


def lock_is_current(path: Path, requirements: Sequence[str], lock_file: Path | None = None) -> bool:
    """Whether the lock at `path` was resolved from exactly these requirements, this uv.lock, this Python
    and platform (False when absent or damaged). No uv, no network."""
    try:
        lock = read_lock(path)
        return lock is not None and lock.inputs == inputs_hash(requirements, file_digest(lock_file or repo_lock_file()))
    except (ValueError, OSError):  # LockError, a requirement that does not parse, no uv.lock
        return False


def lock_environment(project_file: str | Path, project: str, requirements: Sequence[str],
                     lock_file: Path | None = None, timeout: float = UV_TIMEOUT_SECONDS) -> EnvironmentPlan:
    """`mlops validate`'s step: the project's plan, with its lock brought up to date.

    A current lock is the plan (nothing resolved). Otherwise the plan is made; an isolated one is
    written to the lock; a shared or missing one removes a lock left from before (a lock means isolated).
    """
    path = lock_path(project_file)
    requirements = tuple(requirements)
    if not requirements:
        _remove(path)
        return EnvironmentPlan(project, "shared", requirements)
    if lock_is_current(path, requirements, lock_file):
        lock = read_lock(path)
        assert lock is not None
        return EnvironmentPlan(project, "isolated", requirements, _notes(lock, requirements), lock.pinned,
                               lock.shared_lock)
    plan = plan_environment(project, requirements, lock_file, timeout)
    try:
        if plan.kind == "isolated":
            write_lock(path, plan)
        elif plan.kind in ("shared", "missing"):
            _remove(path)
    except OSError as exc:
        problem = Problem("unchecked", None, "", f"cannot record the resolution in {path}: {exc.strerror or exc}",
                          "make the project's folder writable")
        return EnvironmentPlan(project, plan.kind, requirements, (*plan.problems, problem), plan.pinned,
                               plan.shared_digest)
    return plan


def environment_notes(project_file: str | Path, requirements: Sequence[str], lock_file: Path | None = None) -> list[Problem]:
    """What `mlops validate` says about a project's recorded environment, from its lock alone (no uv):
    the conflicts that isolate it, or that the lock is out of date."""
    path = lock_path(project_file)
    if not requirements or not path.exists():
        return []
    if not lock_is_current(path, requirements, lock_file):
        return [Problem("stale", None, "", f"{path.name} is out of date (environment.requirements, uv.lock, "
                                              "Python or platform changed)", "`mlops validate` re-resolves it")]
    lock = read_lock(path)
    return list(_notes(lock, requirements)) if lock else []


def _notes(lock: LockFile, requirements: Sequence[str]) -> tuple[Problem, ...]:
    index_of = {_normal(text): i for i, text in enumerate(requirements) if _normal(text)}
    notes = []
    for requirement, message in lock.notes:
        index = index_of.get(_normal(requirement)) if requirement else None
        package = canonical(Requirement(requirements[index].strip()).name) if index is not None else ""
        notes.append(Problem("conflict", index, package, message))
    return tuple(notes)


def _normal(text: str) -> str | None:
    try:
        return str(Requirement(text.strip()))
    except ValueError:
        return None


def _remove(path: Path) -> None:
    """Remove a lock this module wrote (never another file that happens to have the name)."""
    try:
        if read_lock(path) is not None:
            path.unlink()
    except (LockError, OSError):
        pass
