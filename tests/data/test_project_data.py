"""DVC data versioning against real DVC workspaces and remotes (a local folder, and S3 on moto)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlops_testing import free_port

from mlops.data.dvc_workspace import DataError
from mlops.data.model_artifacts import version_model_artifacts
from mlops.data.project_data import data_paths, ensure_project_data, load_arrays
from mlops.settings import Settings
from mlops.training.families import get_family


def make_settings(tmp_path: Path, remote: str | None = None, endpoint: str | None = None) -> Settings:
    env = {"MLOPS_HOME": str(tmp_path / "state")}
    if remote:
        env["MLOPS_DVC_REMOTE"] = remote
    if endpoint:
        env["MLOPS_DVC_REMOTE_ENDPOINT"] = endpoint
    return Settings.from_env(env)


def _split_sizes(arrays: dict) -> tuple[int, int]:
    """(train rows, validation rows), each checked to agree between x and y."""
    assert len(arrays["train_x"]) == len(arrays["train_y"]) and len(arrays["val_x"]) == len(arrays["val_y"])
    return len(arrays["train_x"]), len(arrays["val_x"])


def _dvc_dir_hash(folder: Path) -> str:
    entries = sorted(
        ({"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": p.relative_to(folder).as_posix()}
         for p in folder.rglob("*") if p.is_file()),
        key=lambda e: e["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def pull(settings: Settings, version: str | None = None, num_samples: int = 256, project: str = "proj") -> dict:
    return ensure_project_data(settings, project, "mlp_classifier", num_samples, 0, {}, version=version)


def test_first_run_generates_tracks_and_pushes(tmp_path: Path):
    settings = make_settings(tmp_path)
    first = pull(settings)
    assert first["created"] and first["version"].endswith(".dir") and len(first["version"]) == 36
    folder, dvc_file = data_paths(settings, "proj")
    assert dvc_file.exists() and (settings.dvc_workspace / ".dvc").is_dir()
    remote_files = [p for p in Path(settings.dvc_remote).rglob("*") if p.is_file()]
    assert len(remote_files) >= len(first["files"])  # every object pushed, plus the .dir listing
    again = pull(settings)
    assert again["version"] == first["version"] and not again["created"]


def test_changed_spec_is_a_new_version_and_old_one_can_be_restored(tmp_path: Path):
    settings = make_settings(tmp_path)
    v1 = pull(settings, num_samples=256)["version"]
    v2 = pull(settings, num_samples=512)["version"]
    assert v1 != v2
    folder, _ = data_paths(settings, "proj")
    assert _split_sizes(load_arrays(folder)) == (410, 102)  # v2: 512 samples, a fifth held out
    # Lose the local cache: switching back must fetch v1 from the remote.
    import shutil

    shutil.rmtree(settings.dvc_workspace / ".dvc" / "cache")
    restored = pull(settings, version=v1)
    assert restored["version"] == v1
    arrays = load_arrays(folder)
    assert _split_sizes(arrays) == (205, 51)  # v1: 256 samples
    # Exactly the data v1 was made of: the family's dataset for (seed 0, 256 samples), regenerated here.
    expected = get_family("mlp_classifier").make_dataset(0, 256, {})
    assert sorted(arrays) == sorted(expected)
    for name, array in expected.items():
        assert arrays[name].dtype == array.dtype, name
        np.testing.assert_array_equal(arrays[name], array, err_msg=name)


def test_arrays_are_memory_mapped_links_into_the_cache(tmp_path: Path):
    settings = make_settings(tmp_path)
    folder = Path(pull(settings)["path"])
    arrays = load_arrays(folder)
    assert arrays and all(isinstance(a, np.memmap) for a in arrays.values())
    # One copy on disk: the workspace file is a link to DVC's cache object, not a copy.
    train = next(folder.glob("train_*.npy"))
    assert train.is_symlink() or train.stat().st_nlink > 1


def test_unknown_version_names_remote_and_keeps_workspace(tmp_path: Path):
    settings = make_settings(tmp_path)
    good = pull(settings)["version"]
    with pytest.raises(DataError) as info:
        pull(settings, version="0" * 32 + ".dir")
    assert settings.dvc_remote in str(info.value) and "0" * 32 in str(info.value)
    _, dvc_file = data_paths(settings, "proj")
    assert good in dvc_file.read_text()  # the workspace still points at the version it had


def test_unreachable_remote_fails_with_remote_in_message(tmp_path: Path):
    port = free_port()  # a port nothing listens on
    settings = make_settings(tmp_path, remote="s3://bucket/dvc", endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(DataError) as info:
        pull(settings)
    assert "s3://bucket/dvc" in str(info.value) and str(data_paths(settings, "proj")[0]) in str(info.value)
    # The data was added before the push failed: the local cache holds every object, whole
    # (each file's md5 is its name), nothing half-written; the next pull pushes them.
    cache = settings.dvc_workspace / ".dvc" / "cache" / "files" / "md5"
    objects = sorted(p for p in cache.rglob("*") if p.is_file())
    assert [p for p in objects if p.name.endswith(".dir")] != [] and [p for p in objects if ".tmp" in p.name] == []
    for obj in objects:
        assert hashlib.md5(obj.read_bytes()).hexdigest() == obj.parent.name + obj.name.removesuffix(".dir"), obj
    version = yaml.safe_load(data_paths(settings, "proj")[1].read_text())["outs"][0]["md5"]
    assert (cache / version[:2] / version[2:]).is_file()


def test_s3_remote_on_moto(tmp_path: Path, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="mlops-data")
        settings = make_settings(tmp_path, remote="s3://mlops-data/dvc", endpoint=endpoint)
        version = pull(settings)["version"]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlops-data").get("Contents", [])]
        assert keys and all(k.startswith("dvc/") for k in keys)
        # A second machine (fresh workspace, same remote) gets the same data by version.
        other = dataclasses.replace(settings, home=tmp_path / "other")
        assert pull(other, version=version)["version"] == version
        assert sorted(load_arrays(data_paths(other, "proj")[0])) == sorted(load_arrays(data_paths(settings, "proj")[0]))
    finally:
        server.stop()


def test_model_artifacts_versioned(tmp_path: Path):
    settings = make_settings(tmp_path)
    folder = settings.dvc_workspace / "models" / "proj"
    with pytest.raises(FileNotFoundError, match="run the train step first"):
        version_model_artifacts(settings, "proj")
    folder.mkdir(parents=True)
    (folder / "model.json").write_text("{}")
    (folder / "weights").mkdir()
    (folder / "weights" / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    first = version_model_artifacts(settings, "proj")
    # The version is DVC's directory hash, computed here: md5 of the sorted JSON list of
    # {"md5", "relpath"} of its files, + ".dir"; pushed to the remote under that name.
    assert first == {"version": _dvc_dir_hash(folder), "path": str(folder), "remote": settings.dvc_remote}
    remote = Path(settings.dvc_remote) / "files" / "md5"
    assert (remote / first["version"][:2] / first["version"][2:]).is_file()
    assert version_model_artifacts(settings, "proj") == first  # idempotent
    (folder / "model.json").write_text('{"changed": true}')
    second = version_model_artifacts(settings, "proj")
    assert second["version"] == _dvc_dir_hash(folder) != first["version"]
