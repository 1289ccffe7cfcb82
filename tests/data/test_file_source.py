"""A project's own files (`data.source: files`) in a real DVC workspace and remote: local folders, globs, S3 on moto.

Versions are DVC's md5 of the data folder, recomputed here from the files (the same way
tests/data/test_project_data.py checks it), so "same files → same version" is checked against
DVC's own definition rather than against what the code returned before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlops_testing import free_port, s3_server

from mlops.data.dvc_workspace import DataError
from mlops.data.file_source import SOURCES_DIR, ensure_file_data
from mlops.data.project_data import data_paths, ensure_project_data
from mlops.settings import Settings


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {"MLOPS_HOME": str(tmp_path / "state"), "MLOPS_PROJECTS_DIR": str(tmp_path / "repo" / "projects")}
    return Settings.from_env({**base, **env})


def dir_hash(files: dict[str, bytes]) -> str:
    """DVC's version of a folder holding `files` (relpath -> content): md5 of its sorted JSON listing + .dir."""
    entries = [{"md5": hashlib.md5(data).hexdigest(), "relpath": rel} for rel, data in sorted(files.items())]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def write_csv(path: Path, rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=rows), rng.normal(size=rows), rng.integers(0, 2, rows)
    lines = ["f1,f2,label"] + [f"{a[i]:.6f},{b[i]:.6f},{c[i]}" for i in range(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("{source: files}", r"p\.yaml:4:7: data: .*source 'files' needs `path`"),
        ("{source: files, path: 'ftp://host/d'}", r"data\.path: .*ftp:// is not a scheme DVC imports here; use one of s3://"),
        ("{source: files, path: d, num_samples: 100}", r"data: .*num_samples does not apply to source 'files': remove it"),
        ("{path: d}", r"data: .*path does not apply to source 'synthetic'"),
        ("{source: files, path: d, val_fraction: 1}", r"data\.val_fraction: Input should be less than 1"),
    ],
)
def test_data_section_rules_name_file_line_and_field(data: str, error: str):
    from mlops.config import ProjectConfigError
    from mlops.config.loader import parse_project_text

    with pytest.raises(ProjectConfigError, match=error):
        parse_project_text(f"name: abc\nmodel:\n  family: mlp_classifier\ndata: {data}\n", "p.yaml")


def test_a_files_config_survives_its_own_dump():
    """Operators hand the config to tasks as a dict with every default: it must validate again."""
    from mlops.config.schema import ProjectConfig

    config = ProjectConfig(name="abc", model={"family": "mlp_classifier"}, data={"source": "files", "path": "d"})
    assert ProjectConfig.model_validate(config.model_dump()) == config


def test_versions_follow_the_files_and_an_old_one_comes_back(tmp_path: Path):
    settings = make_settings(tmp_path)
    source = tmp_path / "repo" / "mydata"  # relative data.path: from the folder holding projects/
    write_csv(source / "part-0.csv", 40, seed=0)
    write_csv(source / "nested" / "part-1.csv", 40, seed=1)
    files_a = contents(source)

    a = ensure_project_data(settings, "own", "mlp_classifier", 0, 0, {}, source="files", path="mydata")
    folder, dvc_file = data_paths(settings, "own")
    assert a["source"] == "files" and a["created"] and a["origin"] == str(source)
    assert a["version"] == dir_hash(files_a) and contents(folder) == files_a
    assert a["files"] == sorted(files_a) and a["path"] == str(folder)
    assert (Path(settings.dvc_remote) / "files" / "md5" / a["version"][:2] / a["version"][2:]).is_file()  # pushed

    write_csv(source / "part-2.csv", 10, seed=2)  # an added file: a new version on the next run
    b = ensure_file_data(settings, "own", "mydata")
    files_b = contents(source)
    assert b["created"] and b["version"] == dir_hash(files_b) != a["version"]
    again = ensure_file_data(settings, "own", "mydata")  # nothing changed: the same version, nothing made
    assert again["version"] == b["version"] and not again["created"]

    (source / "part-2.csv").write_text((source / "part-2.csv").read_text() + "0.5,0.5,1\n")  # a changed file
    c = ensure_file_data(settings, "own", "mydata")
    assert c["version"] == dir_hash(contents(source)) not in (a["version"], b["version"])

    # Lose the local cache: version A must come back from the remote, exactly A's files.
    shutil.rmtree(settings.dvc_workspace / ".dvc" / "cache")
    back = ensure_file_data(settings, "own", "mydata", version=a["version"])
    assert back["version"] == a["version"] and not back["created"]
    assert contents(folder) == files_a and yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"] == a["version"]
    latest = ensure_file_data(settings, "own", "mydata")  # unpinned again: the files as they are now
    assert latest["version"] == c["version"] and contents(folder) == contents(source)


def test_originals_are_never_modified(tmp_path: Path):
    """The workspace holds links/copies; DVC's cache protection (read-only objects) must not reach the originals."""
    settings = make_settings(tmp_path)
    source = tmp_path / "data" / "d.csv"
    data = write_csv(source, 20, seed=0)
    mode = source.stat().st_mode
    ensure_file_data(settings, "own", str(source))
    ensure_file_data(settings, "own", str(source))
    assert source.stat().st_mode == mode and source.read_bytes() == data
    workspace_file = data_paths(settings, "own")[0] / "d.csv"
    assert not os.path.samefile(workspace_file, source)
    source.write_text("f1,f2,label\n1,2,0\n")  # the user edits the file: the tracked version is intact
    assert workspace_file.read_bytes() == data


def test_glob_takes_only_the_matched_files(tmp_path: Path):
    settings = make_settings(tmp_path)
    source = tmp_path / "repo" / "exports"
    write_csv(source / "day-1.csv", 10, seed=1)
    write_csv(source / "day-2.csv", 10, seed=2)
    (source / "day-3.parquet").write_bytes(b"not matched")
    (source / "notes.txt").write_text("not matched either")
    result = ensure_file_data(settings, "globbed", "exports/day-*.csv")
    assert result["files"] == ["day-1.csv", "day-2.csv"]
    matched = {rel: data for rel, data in contents(source).items() if rel.endswith(".csv")}
    assert result["version"] == dir_hash(matched)


def test_errors_name_project_path_and_what_to_do(tmp_path: Path):
    settings = make_settings(tmp_path)
    with pytest.raises(DataError, match=r"project own: data\.path 'nowhere'.*does not exist; create it or fix data\.path"):
        ensure_file_data(settings, "own", "nowhere")
    (tmp_path / "repo" / "empty").mkdir(parents=True)
    with pytest.raises(DataError, match=r"data\.path 'empty/\*\.csv': the glob '\*\.csv' matches no file"):
        ensure_file_data(settings, "own", "empty/*.csv")
    with pytest.raises(DataError, match=r"the folder .*empty holds no files"):
        ensure_file_data(settings, "own", "empty")
    write_csv(tmp_path / "repo" / "mixed" / "a.csv", 5, seed=0)
    np.save(tmp_path / "repo" / "mixed" / "b.npy", np.zeros(5))
    with pytest.raises(DataError, match=r"project own: data\.path 'mixed': data files of several formats"):
        ensure_file_data(settings, "own", "mixed")
    assert not data_paths(settings, "own")[1].exists()  # nothing was tracked by the failed runs


def test_unreadable_file_is_named(tmp_path: Path):
    """A file this user may not read is named with what to do. Root reads every file, so as root the
    check runs in a child process that has become `nobody`, on a root-only file in a folder it may list."""
    settings = make_settings(tmp_path)
    if os.geteuid() != 0:
        secret = tmp_path / "repo" / "d" / "secret.csv"
        write_csv(secret, 5, seed=0)
        secret.chmod(0)
        with pytest.raises(DataError, match=rf"{secret} is not readable by this user; fix its permissions"):
            ensure_file_data(settings, "own", "d")
        return
    import multiprocessing
    import pwd
    import shutil
    import tempfile

    from mlops.data.file_source import _readable

    scratch = Path(tempfile.mkdtemp(prefix="mlops-test-unreadable-"))
    try:
        scratch.chmod(0o755)
        secret, public = scratch / "secret.csv", scratch / "public.csv"
        write_csv(secret, 5, seed=0)
        write_csv(public, 5, seed=0)
        secret.chmod(0o600)
        public.chmod(0o644)
        nobody = pwd.getpwnam("nobody")

        def check(queue) -> None:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            answers = []
            for file in (public, secret):
                try:
                    answers.append(str(_readable(file, "project own: data.path 'd'")))
                except DataError as exc:
                    answers.append(str(exc))
            queue.put(answers)

        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=check, args=(queue,))
        child.start()
        answers = queue.get(timeout=30)
        child.join(30)
        assert answers == [
            str(public),
            f"project own: data.path 'd': {secret} is not readable by this user; fix its permissions (chmod a+r)",
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- a URL, imported by DVC: S3 on moto


def test_s3_folder_is_imported_updated_and_versioned(tmp_path: Path, monkeypatch):
    import boto3

    with s3_server(tmp_path) as server:  # moto's server: DVC's s3fs ignores moto's in-process mocks
        for key, value in server["env"].items():  # credentials reach the SDK through the environment only
            monkeypatch.setenv(key, value)
        endpoint = server["endpoint"]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for bucket in ("raw", "remote"):
            server["create_bucket"](bucket)
        local = tmp_path / "made"
        objects = {
            "exports/part-0.csv": write_csv(local / "0.csv", 30, 0),
            "exports/sub/part-1.csv": write_csv(local / "1.csv", 30, 1),
        }
        for key, body in objects.items():
            s3.put_object(Bucket="raw", Key=key, Body=body)
        settings = make_settings(tmp_path, MLOPS_DVC_REMOTE="s3://remote/dvc", MLOPS_DVC_REMOTE_ENDPOINT=endpoint)

        first = ensure_file_data(settings, "clouded", "s3://raw/exports")
        expected = {k.removeprefix("exports/"): v for k, v in objects.items()}
        assert first["created"] and first["files"] == sorted(expected) and first["version"] == dir_hash(expected)
        # DVC recorded where the data came from (and no credentials).
        stage = (settings.dvc_workspace / SOURCES_DIR / "clouded" / "exports.dvc").read_text()
        assert yaml.safe_load(stage)["deps"][0]["path"] == "s3://raw/exports" and "testing" not in stage
        remote_keys = [o["Key"] for o in s3.list_objects_v2(Bucket="remote").get("Contents", [])]
        assert f"dvc/files/md5/{first['version'][:2]}/{first['version'][2:]}" in remote_keys

        same = ensure_file_data(settings, "clouded", "s3://raw/exports")
        assert same["version"] == first["version"] and not same["created"]
        s3.put_object(Bucket="raw", Key="exports/part-2.csv", Body=write_csv(local / "2.csv", 5, 2))
        grown = ensure_file_data(settings, "clouded", "s3://raw/exports")
        expected["part-2.csv"] = (local / "2.csv").read_bytes()
        assert grown["created"] and grown["version"] == dir_hash(expected)

        only_top = ensure_file_data(settings, "clouded", "s3://raw/exports/part-*.csv")  # a glob after the folder
        assert only_top["files"] == ["part-0.csv", "part-2.csv"]

        back = ensure_file_data(settings, "clouded", "s3://raw/exports", version=first["version"])
        first_files = {k.removeprefix("exports/"): v for k, v in objects.items()}
        assert contents(data_paths(settings, "clouded")[0]) == first_files
        assert back["version"] == first["version"]


def test_unreachable_url_names_project_url_and_endpoint(tmp_path: Path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # fail in one try, not after botocore's retries
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = make_settings(tmp_path)
    with pytest.raises(DataError) as info:
        ensure_file_data(settings, "clouded", "s3://raw/exports", endpoint=endpoint)
    message = str(info.value)
    assert "project clouded" in message and "s3://raw/exports" in message and endpoint in message
    assert not data_paths(settings, "clouded")[1].exists()
