"""A project's own data files (`data.source: files`): brought into its DVC workspace folder, versioned by content.

Each run makes `data/<project>` in the shared workspace hold exactly the files `data.path` names
(a folder's files recursively, a glob's matches, or one file), then `dvc add` + push: the version
is DVC's md5 of that folder, so unchanged files give the same version and an added or changed
file a new one. The folder is built aside and swapped in (never half-written); files are hard
links to the originals where the filesystem allows (DVC copies them into its cache and links the
workspace to the cache: the originals are never modified), else copies.

A URL (`s3://`, `gs://`, `azure://`, `http(s)://`) is first imported with DVC's import-url into
`sources/<project>/` — so the workspace records where the data came from — and updated on later
runs; S3 and GCS get the platform's endpoint (`MLOPS_DVC_REMOTE_ENDPOINT`, for emulators), and
credentials come from the environment only (never written to a .dvc file). A URL may end in a glob
(`s3://bucket/data/*.csv`): the folder before it is imported, the pattern picks files from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.config.schema import DATA_URL_SCHEMES
from mlops.data.dvc_workspace import (
    DataError,
    add_and_push,
    checkout_version,
    open_workspace,
    push,
    remote_url,
    tracked_hash,
    workspace_lock,
)
from mlops.data.loaders import DataFormatError, data_format
from mlops.data.project_data import data_paths

if TYPE_CHECKING:
    from dvc.repo import Repo

    from mlops.settings import Settings

SOURCES_DIR = "sources"  # workspace folder of URL imports, one subfolder per project
LISTING_SUFFIX = ".source.json"  # beside data/<project>.dvc: what the folder was last built from
GLOB_CHARS = frozenset("*?[")


def is_url(path: str) -> bool:
    return path.partition("://")[0] in DATA_URL_SCHEMES and "://" in path


def resolve(settings: Settings, path: str) -> str:
    """A URL as given; a local path absolute, relative ones from the folder holding the projects folder."""
    if is_url(path):
        return path
    local = Path(path).expanduser()
    return str(local if local.is_absolute() else settings.projects_dir.parent / local)


def split_glob(path: str) -> tuple[str, str | None]:
    """(the part before the first glob character's path segment, the pattern after it or None)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if GLOB_CHARS & set(part):
            return "/".join(parts[:i]) or "/", "/".join(parts[i:])
    return path, None


def url_fs_config(url: str, endpoint: str | None, anonymous: bool = False) -> dict[str, Any] | None:
    """What DVC needs besides the URL, recorded in the import's .dvc file, so never a secret: the
    endpoint of an S3/GCS emulator or gateway, and anonymous access to gs:// or azure:// (as the
    remote gets them in `open_workspace`)."""
    scheme = url.partition("://")[0]
    config: dict[str, Any] = {}
    if endpoint and scheme in ("s3", "gs"):
        config["endpointurl"] = endpoint
    if scheme == "gs" and endpoint:
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # see open_workspace
    if anonymous and scheme in ("gs", "azure"):
        config["allow_anonymous_login"] = True
    return config or None


def ensure_file_data(
    settings: Settings, project: str, path: str, version: str | None = None, endpoint: str | None = None
) -> dict[str, Any]:
    """Make `data/<project>` hold the files `path` names (or DVC version `version`), tracked and pushed.

    `path` is `data.path` as written (local folder/file/glob, or URL). `endpoint` is the one of an
    s3:// or gs:// URL (default: the settings' `dvc_remote_endpoint`, as for the remote); Azure's
    comes with `AZURE_STORAGE_CONNECTION_STRING`; `settings.dvc_remote_anonymous` makes gs:// and
    azure:// reads anonymous. Credentials come from the environment, each SDK reading its own.
    Returns version, path, remote, created, files, source ("files") and origin (resolved path/URL).
    """
    folder, dvc_file = data_paths(settings, project)
    origin = resolve(settings, path)
    with workspace_lock(settings.dvc_workspace):
        repo = open_workspace(settings)
        before = tracked_hash(dvc_file)
        if version:
            checkout_version(repo, dvc_file, folder, version)
            md5 = version
        else:
            if is_url(origin):
                endpoint = endpoint or settings.dvc_remote_endpoint
                base, pattern = _import_url(repo, settings, project, origin, endpoint)
            else:
                base, pattern = split_glob(origin)
                base = Path(base)
            files = list_files(project, path, base, pattern)
            md5 = _track(repo, folder, dvc_file, files, origin, project, path)
        return {
            "version": md5,
            "path": str(folder),
            "remote": remote_url(repo),
            "created": not version and md5 != before,  # a version the workspace did not track before
            "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
            "source": "files",
            "origin": origin,
        }


def list_files(project: str, shown: str, base: Path, pattern: str | None) -> list[tuple[Path, str]]:
    """(file, path inside the data folder) of every readable data file; errors say what to fix."""
    where = f"project {project}: data.path {shown!r}"
    if not base.exists():
        raise DataError(f"{where}: {base} does not exist; create it or fix data.path in the project's YAML "
                        "(relative paths start at the folder holding the projects folder)")
    if pattern is not None:
        found = [p for p in sorted(base.glob(pattern)) if p.is_file()]
        if not found:
            raise DataError(f"{where}: the glob {pattern!r} matches no file in {base}; "
                            "fix the pattern or add the files")
    elif base.is_dir():
        found = [p for p in sorted(base.rglob("*")) if p.is_file()]
        if not found:
            raise DataError(f"{where}: the folder {base} holds no files; put the data files there")
    else:
        return [(_readable(base, where), base.name)]
    files = [(p, p.relative_to(base).as_posix()) for p in found]
    files = [(p, rel) for p, rel in files if not any(part.startswith(".") for part in rel.split("/"))]
    return [(_readable(p, where), rel) for p, rel in files]


def _readable(file: Path, where: str) -> Path:
    if not os.access(file, os.R_OK):
        raise DataError(f"{where}: {file} is not readable by this user; fix its permissions (chmod a+r)")
    return file


def _import_url(
    repo: Repo, settings: Settings, project: str, url: str, endpoint: str | None
) -> tuple[Path, str | None]:
    """Import (first run, or the URL/endpoint changed) or update the URL's data; (local copy, glob pattern)."""
    base, pattern = split_glob(url)
    base = base.rstrip("/")
    root = settings.dvc_workspace / SOURCES_DIR / project
    out = root / (base.rsplit("/", 1)[-1] or "data")
    dvc_file = out.with_name(out.name + ".dvc")
    fs_config = url_fs_config(base, endpoint, settings.dvc_remote_anonymous)
    try:
        with _quiet_dvc():
            _import_or_update(repo, root, out, dvc_file, base, fs_config)
    except Exception as exc:  # DVC, fsspec and the cloud SDKs raise many types
        used = (fs_config or {}).get("endpointurl")
        raise DataError(
            f"project {project}: cannot import data.path {url!r} ({type(exc).__name__}: {exc}); check the URL, "
            "that the credentials are in the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*)"
            + (f" and that the endpoint {used} answers" if used else "")
        ) from exc
    return out, pattern


def _import_or_update(
    repo: Repo, root: Path, out: Path, dvc_file: Path, url: str, fs_config: dict[str, Any] | None
) -> None:
    if _imports(dvc_file, url, fs_config) and out.exists():
        repo.update([str(dvc_file)])
    else:  # first import, or another URL/endpoint: start afresh
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        repo.imp_url(url, out=str(out), fs_config=fs_config, force=True)


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """DVC logs "Importing ..." to stdout, which would corrupt `mlops init-project`'s JSON."""
    dvc_log = logging.getLogger("dvc")
    level = dvc_log.level
    dvc_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dvc_log.setLevel(level)


def _imports(dvc_file: Path, url: str, fs_config: dict[str, Any] | None) -> bool:
    """Does `dvc_file` import `url` with this `fs_config` (so an update suffices)?"""
    import yaml

    try:
        deps = yaml.safe_load(dvc_file.read_text()).get("deps") or []
    except (OSError, ValueError, AttributeError):
        return False
    return len(deps) == 1 and deps[0].get("path") == url and deps[0].get("fs_config") == fs_config


def _track(
    repo: Repo, folder: Path, dvc_file: Path, files: list[tuple[Path, str]], origin: str, project: str, shown: str
) -> str:
    """The version of `files` in `folder`: the current one when nothing changed, else built, added, pushed."""
    try:
        data_format([rel for _, rel in files], f"project {project}: data.path {shown!r}")
    except DataFormatError as exc:
        raise DataError(str(exc)) from exc
    listing_file = dvc_file.with_name(dvc_file.stem + LISTING_SUFFIX)
    listing = {"origin": origin, "files": [[rel, p.stat().st_size, p.stat().st_mtime_ns] for p, rel in files]}
    current = tracked_hash(dvc_file)
    if current and folder.is_dir() and _read_json(listing_file) == {**listing, "version": current}:
        push(repo, dvc_file)  # no-op when the remote has it; heals a push that failed earlier
        return current
    _build(folder, files, f"project {project}: data.path {shown!r}")
    md5 = add_and_push(repo, folder)
    listing_file.write_text(json.dumps({**listing, "version": md5}, indent=1))
    return md5


def _build(folder: Path, files: list[tuple[Path, str]], where: str) -> None:
    """Link (else copy) the files into a fresh folder beside `folder`, then swap it in."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for source, rel in files:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # another filesystem, or links not allowed: copy
                try:
                    shutil.copyfile(source, target)
                except OSError as exc:
                    raise DataError(f"{where}: cannot read {source} ({exc}); fix its permissions or the path") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        old = folder.rename(Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent)) / "x")
    staging.rename(folder)
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
