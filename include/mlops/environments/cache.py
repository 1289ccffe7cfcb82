"""Isolated environments: built once with uv from a fully pinned list, cached by the resolution's hash.

Layout, under the state folder (`$MLOPS_HOME/envs/`):

    envs/<key>/                    a ready environment (a venv); <key> is the resolution's hash
    envs/<key>/mlops-ready.json    its marker: key, pinned list, Python, build time (written last)
    envs/<key>/requirements.txt    the pinned list it was installed from
    envs/.build-<key>-<pid>/       an environment being built (or left by a build that died)
    envs/.locks/<key>.lock         the build lock of one key (fcntl.flock)

How an environment is built, and why:

* **Staging folder, then one rename.** The venv is created and filled under `.build-<key>-<pid>`
  and renamed to `<key>` only once complete, its marker written: a half-built environment never
  sits at the path tasks use, and a build that dies (killed, disk full) leaves only a staging
  folder the next build of that key removes. A venv is normally tied to its absolute path (uv
  writes `#!/abs/path/bin/python` into console scripts), so it is created with
  `uv venv --relocatable`: scripts start with a `/bin/sh` trampoline that finds `python` next
  to themselves, and `activate` computes its own location. Checked for real (uv 0.13.9): a plain
  venv's console script fails after a rename ("required file not found"), a relocatable one runs;
  `bin/python` itself works either way (it is a symlink to the base interpreter and finds
  `pyvenv.cfg` next to itself). Bytecode compiled in the staging folder stays valid after the
  rename (the import system rewrites a cached code object's file name to the source it loads).
* **Interpreter.** This process's Python (`sys.executable`; uv follows a venv's interpreter to its
  base installation, so the environment links to the same CPython as the shared venv), never a
  download (`UV_PYTHON_DOWNLOADS=never`). `include-system-site-packages = false` is uv's default
  (checked in the generated `pyvenv.cfg`): nothing of the shared layer is importable inside, and a
  venv without system site packages also has no user site (`~/.local`).
* **`--no-deps`, then `uv pip check`.** The list is already the full resolution (every
  dependency, pinned), so uv installs exactly it without resolving again: the environment is the
  resolution the key hashes, never a re-resolution that could drift. `uv pip check` then fails
  the build when the list was not closed (a dependency missing or at a conflicting version),
  instead of leaving an environment that breaks at import time. (`uv pip install --strict` only
  warns, exit status 0, so it would not do.)
* **No `--require-hashes`.** The resolver pins versions, not artifact hashes, so hash-checking
  mode cannot be turned on; integrity rests on the index (HTTPS) and uv's cache. A pinned list
  that carries `--hash=` options gets them verified anyway (uv checks hashes that are present).
* **uv's cache is the shared layer's.** The default cache (or UV_CACHE_DIR if the user set one) is
  left alone, so a package already in the shared venv is hard-linked (cloned on APFS) from the cache
  instead of downloaded or copied; `--compile-bytecode` compiles at build time, so no task pays the
  first-import compile and tasks never write into an environment (see COMPILE_BYTECODE for its cost).
* **One build per key.** `ensure_environment` takes the key's file lock (flock, as the DVC
  workspace does) before building; a second process or thread asking for the same key waits and
  then finds the marker. The ready check itself takes no lock (one small file read), so a cached
  environment costs well under a millisecond.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings

log = logging.getLogger(__name__)

MARKER = "mlops-ready.json"
REQUIREMENTS = "requirements.txt"
STAGING_PREFIX = ".build-"
TRASH_PREFIX = ".trash-"
LOCKS = ".locks"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Compile every installed module at build time, as the shared layer does (`[tool.uv] compile-bytecode`):
# no task pays a first-import compile and tasks never write into an environment. The cost is in the
# build: most of it for big packages (bench/environments.py: numpy+pandas, ~5 s of compiling against
# ~0.2 s of linking on 2 cores), since it compiles modules no task imports (their tests) too.
COMPILE_BYTECODE = True


class EnvironmentBuildError(RuntimeError):
    """uv could not build an environment; the message names the key, the command and uv's output."""


@dataclass(frozen=True)
class EnvironmentInfo:
    """One environment on disk, as `mlops envs list` shows it."""

    key: str
    path: Path
    state: str  # "ready"; "building" (a build holds the lock); "stale" (left by a dead build); "broken"
    pinned: tuple[str, ...] = ()
    python_version: str | None = None
    built_at: str | None = None  # ISO 8601, UTC
    build_seconds: float | None = None
    size_bytes: int = 0  # on disk, every file once (hard links into uv's cache included)
    own_bytes: int = 0  # files no other path links to: what removing it frees for sure

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def environments_root(settings: Settings) -> Path:
    return settings.home / "envs"


def ensure_environment(settings: Settings, pinned: Sequence[str], key: str) -> Path:
    """The python of the environment `key` (the hash of `pinned`), built first if it is not ready.

    Ready means renamed into place with its marker and its interpreter still there; otherwise it
    is built under the key's lock (another process building it meanwhile: this one waits, then
    reuses it). Raises EnvironmentBuildError when uv fails (nothing usable is left behind, and
    the next call tries again) and ValueError for a key that is not a plain name or an
    environment already built under `key` from a different pinned list.
    """
    if not _KEY.fullmatch(key):
        raise ValueError(f"environment key {key!r}: expected a plain name (letters, digits, '_', '.', '-')")
    pinned = [line.strip() for line in pinned if line.strip()]
    envs = environments_root(settings)
    final = envs / key
    marker = _ready_marker(final)
    if marker is None:
        with _key_lock(envs, key):
            marker = _ready_marker(final)  # built by whoever held the lock before us
            if marker is None:
                _remove_leftovers(envs, key)
                marker = _build(envs, key, pinned)
    if canonical_pinned(marker.get("pinned", [])) != canonical_pinned(pinned):
        raise ValueError(
            f"environment {key} at {final} was built from a different pinned list than the one asked "
            f"for under the same key: the key must be the hash of the resolution (remove it: mlops envs prune)"
        )
    return final / "bin" / "python"


def list_environments(settings: Settings) -> list[EnvironmentInfo]:
    """Every environment under the state folder (ready ones, builds under way or left behind), by key."""
    envs = environments_root(settings)
    if not envs.is_dir():
        return []
    found: list[EnvironmentInfo] = []
    for entry in sorted(envs.iterdir()):
        if not entry.is_dir() or entry.name in (LOCKS,) or entry.name.startswith(TRASH_PREFIX):
            continue
        if entry.name.startswith(STAGING_PREFIX):
            key = _staging_key(entry.name)
            if key is None:
                continue
            with _key_lock(envs, key, blocking=False) as free:
                state = "stale" if free else "building"
            size, own = _disk_usage(entry)
            found.append(EnvironmentInfo(key=key, path=entry, state=state, size_bytes=size, own_bytes=own))
            continue
        marker = _ready_marker(entry)
        size, own = _disk_usage(entry)
        if marker is None:
            found.append(EnvironmentInfo(key=entry.name, path=entry, state="broken", size_bytes=size, own_bytes=own))
            continue
        found.append(EnvironmentInfo(
            key=entry.name, path=entry, state="ready", pinned=tuple(marker.get("pinned", ())),
            python_version=marker.get("python_version"), built_at=marker.get("built_at"),
            build_seconds=marker.get("build_seconds"), size_bytes=size, own_bytes=own,
        ))
    return found


def prune_environments(settings: Settings, keep: set[str], *, dry_run: bool = False) -> list[str]:
    """Remove every environment whose key is not in `keep`; returns the keys removed (or, dry, to remove).

    Never touches one being built (its key's lock is held): the lock is taken without waiting, and
    a key that is busy is skipped. A removed environment is first renamed out of the way (one
    atomic step), so a concurrent `ensure_environment` sees it either whole or gone and rebuilds.
    A task still running inside a removed environment is not detected: prune when no task of a
    project that used it runs (`mlops envs prune` is a manual command). Leftovers of dead builds
    are removed too.
    """
    envs = environments_root(settings)
    if not envs.is_dir():
        return []
    removed: list[str] = []
    for entry in sorted(envs.iterdir()):
        name = entry.name
        if name == LOCKS or not entry.is_dir():
            continue
        if name.startswith(TRASH_PREFIX):
            if not dry_run:
                shutil.rmtree(entry, ignore_errors=True)
            continue
        key = _staging_key(name) if name.startswith(STAGING_PREFIX) else name
        if key is None or key in keep:
            continue
        with _key_lock(envs, key, blocking=False) as free:
            if not free:
                log.info("environment %s is being built: not pruned", key)
                continue
            if dry_run:
                if not name.startswith(STAGING_PREFIX):
                    removed.append(key)
                continue
            _discard(envs, entry)
            if not name.startswith(STAGING_PREFIX):
                removed.append(key)
                log.info("pruned environment %s", key)
            if not (envs / key).exists():
                _drop_lock_file(envs, key)
    return removed


def _build(envs: Path, key: str, pinned: list[str]) -> dict:
    """Create, fill and check the environment in a staging folder, then rename it into place."""
    staging = envs / f"{STAGING_PREFIX}{key}-{os.getpid()}"
    python = staging / "bin" / "python"
    log.info("building environment %s (%d pinned packages) in %s", key, len(pinned), envs)
    started = time.monotonic()
    try:
        _uv(key, envs, ["venv", "--quiet", "--no-project", "--relocatable", "--python", sys.executable, str(staging)])
        requirements = staging / REQUIREMENTS
        requirements.write_text("".join(line + "\n" for line in pinned))
        if pinned:
            _uv(key, envs, ["pip", "install", "--python", str(python), "--no-deps",
                            *(["--compile-bytecode"] if COMPILE_BYTECODE else []), "-r", str(requirements)])
        _uv(key, envs, ["pip", "check", "--python", str(python)])
        marker = {
            "key": key,
            "pinned": pinned,
            "python_version": "%d.%d.%d" % sys.version_info[:3],
            "base_python": os.path.realpath(sys.executable),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - started, 3),
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        os.rename(staging, envs / key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("built environment %s in %.1f s", key, marker["build_seconds"])
    return marker


def _uv(key: str, cwd: Path, args: list[str]) -> None:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)  # the caller's venv must not stand in for --python
    env["UV_PYTHON_DOWNLOADS"] = "never"
    command = [sys.executable, "-m", "uv", *args]
    done = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise EnvironmentBuildError(
            f"building environment {key}: `uv {' '.join(args)}` failed (exit {done.returncode}):\n{output[-4000:]}"
        )
    if output:
        log.debug("uv %s: %s", args[0], output)


def _ready_marker(path: Path) -> dict | None:
    """The marker of a complete environment whose interpreter still resolves, else None."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    if not (path / "bin" / "python").exists():  # the base interpreter it links to is gone
        return None
    return marker


def _remove_leftovers(envs: Path, key: str) -> None:
    """Under the key's lock: staging folders of dead builds of `key`, and a `<key>` that is not ready."""
    for entry in envs.glob(f"{STAGING_PREFIX}{key}-*"):
        if _staging_key(entry.name) == key:
            log.info("removing %s, left by a build that did not finish", entry.name)
            _discard(envs, entry)
    final = envs / key
    if final.exists() or final.is_symlink():
        log.warning("environment %s is incomplete or its interpreter is gone: rebuilding it", key)
        _discard(envs, final)


def _discard(envs: Path, path: Path) -> None:
    """Rename out of the way (atomic), then delete."""
    trash = envs / f"{TRASH_PREFIX}{path.name}-{os.getpid()}-{time.monotonic_ns()}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _staging_key(name: str) -> str | None:
    stem, _, pid = name[len(STAGING_PREFIX):].rpartition("-")
    return stem if stem and pid.isdigit() else None


@contextlib.contextmanager
def _key_lock(envs: Path, key: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the key's build lock; yields False at once if `blocking` is off and someone holds it.

    Prune deletes the lock files of removed keys; a process that opened the file before it was
    deleted would lock an orphan, so the lock counts only if the path still names the same file.
    """
    locks = envs / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{key}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        yield True
    finally:
        os.close(fd)  # releases the flock


def _drop_lock_file(envs: Path, key: str) -> None:
    """Call holding the key's lock: waiters see the file gone and lock a new one (see `_key_lock`)."""
    with contextlib.suppress(FileNotFoundError):
        (envs / LOCKS / f"{key}.lock").unlink()


def canonical_pinned(pinned: Sequence[str]) -> tuple[str, ...]:
    """A pinned list compared the way a resolution is: order, case, spacing and name spelling aside."""
    lines = []
    for line in pinned:
        line = "".join(line.split()).lower()
        if not line or line.startswith("#"):
            continue
        name = re.match(r"[a-z0-9._-]+", line)
        if name:
            line = re.sub(r"[-_.]+", "-", name.group()) + line[name.end():]
        lines.append(line)
    return tuple(sorted(lines))


def _disk_usage(path: Path) -> tuple[int, int]:
    """(bytes on disk of every file under `path`, each inode once; bytes of files linked nowhere else)."""
    seen: set[tuple[int, int]] = set()
    total = own = 0
    for root, dirs, files in os.walk(path):
        for names, is_dir in ((dirs, True), (files, False)):
            for name in names:
                try:
                    st = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                size = st.st_blocks * 512
                total += size
                if is_dir or st.st_nlink == 1:
                    own += size
    return total, own
