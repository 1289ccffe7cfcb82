"""The one DVC workspace every project shares: created once, remote configured from settings.

The workspace lives in the state folder (not in the source repo), initialised without
git (`--no-scm`): a version is DVC's own content hash (md5) of a project's data folder,
which is exactly what a `.dvc` file records and what the remote stores objects under.
A process-wide file lock serialises DVC commands, because DVC's own lock fails fast
when two Airflow tasks touch the workspace at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.telemetry import telemetry_allowed

if TYPE_CHECKING:
    from dvc.repo import Repo

    from mlops.settings import Settings

REMOTE_NAME = "storage"
# Links keep one copy of each file (cache ↔ workspace); copy is the last resort.
CACHE_TYPES = "reflink,hardlink,symlink,copy"


class DataError(RuntimeError):
    """A DVC operation failed; the message names the remote and the path involved."""


@contextlib.contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".mlops-dvc.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_workspace(settings: Settings, remote_url: str | None = None) -> Repo:
    """Open (creating on first use) the shared DVC workspace, with its default remote set.

    Call under `workspace_lock`. `remote_url` overrides the settings' remote (per project).
    """
    from dvc.repo import Repo

    root = settings.dvc_workspace
    if not (root / ".dvc").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        init_log = logging.getLogger("dvc.repo.init")  # its banner would corrupt callers' JSON output
        level, init_log.level = init_log.level, logging.WARNING
        try:
            Repo.init(str(root), no_scm=True)
        finally:
            init_log.setLevel(level)
    repo = Repo(str(root))
    url = remote_url or settings.dvc_remote
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    with repo.config.edit() as conf:
        conf["core"]["remote"] = REMOTE_NAME
        conf["core"]["autostage"] = False
        # No phoning home (mlops.telemetry): a `dvc` command run in this workspace would send a
        # usage report and check for updates (the Repo API used here does neither).
        for key in ("analytics", "check_update"):
            if telemetry_allowed():
                conf["core"].pop(key, None)  # DVC's own default (on), or the user's global config
            else:
                conf["core"][key] = False
        conf["cache"]["type"] = CACHE_TYPES
        conf["cache"]["shared"] = "group"
        # Only where the remote lives and how to reach it: no credential is ever written here
        # (each SDK reads its own from the environment, see mlops.settings), and the whole entry
        # is rewritten on every open, so nothing stale survives a change of settings.
        remote: dict[str, object] = {"url": url}
        endpoint = settings.dvc_remote_endpoint
        if url.startswith("s3://") and endpoint:
            remote["endpointurl"] = endpoint
        elif url.startswith("gs://") and endpoint:
            remote["endpointurl"] = endpoint  # dvc-gs hands it to gcsfs as endpoint_url
            # gcsfs 2026.x probes every bucket's layout over the Storage Control gRPC API at the
            # endpoint's host, which emulators and gateways do not serve: each probe then retries
            # for ~60 s, on every operation. Its switch is read when gcsfs is imported (by DVC,
            # lazily, after this); one the user exported wins.
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        if url.startswith(("gs://", "azure://")) and settings.dvc_remote_anonymous:
            remote["allow_anonymous_login"] = True  # gs: gcsfs token "anon"; azure: no Azure AD lookup
        conf["remote"][REMOTE_NAME] = remote
    return Repo(str(root))


def remote_url(repo: Repo) -> str:
    return repo.config["remote"][REMOTE_NAME]["url"]


def tracked_hash(dvc_file: Path) -> str | None:
    """The md5 a `.dvc` file records for its single output (None if the file is absent)."""
    import yaml

    if not dvc_file.exists():
        return None
    outs = yaml.safe_load(dvc_file.read_text())["outs"]
    return outs[0]["md5"]


def add_and_push(repo: Repo, target: Path) -> str:
    """Track `target` (file or folder) and push it to the remote; return its content hash."""
    try:
        repo.add([str(target)])
    except Exception as exc:  # DVC raises many types; the caller needs one with the path
        raise DataError(f"dvc add {target} failed: {exc}") from exc
    dvc_file = target.with_name(target.name + ".dvc")
    # `dvc add` leaves the workspace files as copies; relinking makes them links to the cache
    # objects, so each data set is stored once (and pages shared when memory-mapped).
    repo.checkout([str(dvc_file)], relink=True)
    push(repo, dvc_file)
    md5 = tracked_hash(dvc_file)
    assert md5 is not None
    return md5


def push(repo: Repo, dvc_file: Path) -> None:
    try:
        repo.push([str(dvc_file)], remote=REMOTE_NAME)
    except Exception as exc:
        raise DataError(f"dvc push of {dvc_file.with_suffix('')} to remote {remote_url(repo)!r} failed: {exc}") from exc


def checkout_version(repo: Repo, dvc_file: Path, target: Path, md5: str) -> None:
    """Point `dvc_file` at content `md5` and materialise it in `target`, fetching from the remote if needed."""
    import yaml

    previous = dvc_file.read_text() if dvc_file.exists() else None
    dvc_file.parent.mkdir(parents=True, exist_ok=True)
    entry = {"md5": md5, "path": target.name}
    if md5.endswith(".dir"):
        entry["hash"] = "md5"
    dvc_file.write_text(yaml.safe_dump({"outs": [entry]}, sort_keys=False))
    try:
        repo.pull([str(dvc_file)], remote=REMOTE_NAME, force=True)
    except Exception as exc:
        if previous is not None:  # leave the workspace on the version it had
            dvc_file.write_text(previous)
        raise DataError(
            f"cannot get data version {md5} for {target} from remote {remote_url(repo)!r}: {exc}"
        ) from exc
