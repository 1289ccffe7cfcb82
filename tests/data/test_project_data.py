"""DVC data versioning against real DVC workspaces and remotes (a local folder, and S3 on moto)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from mlops_testing import free_port

from mlops.data.dvc_workspace import DataError
from mlops.data.model_artifacts import version_model_artifacts
from mlops.data.project_data import data_paths, ensure_project_data, load_arrays
from mlops.settings import Settings


def make_settings(tmp_path: Path, remote: str | None = None, endpoint: str | None = None) -> Settings:
    env = {"MLOPS_HOME": str(tmp_path / "state")}
    if remote:
        env["MLOPS_DVC_REMOTE"] = remote
    if endpoint:
        env["MLOPS_DVC_REMOTE_ENDPOINT"] = endpoint
    return Settings.from_env(env)


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
    n2 = len(load_arrays(folder)["train_x"]) if "train_x" in load_arrays(folder) else None
    # Lose the local cache: switching back must fetch v1 from the remote.
    import shutil

    shutil.rmtree(settings.dvc_workspace / ".dvc" / "cache")
    restored = pull(settings, version=v1)
    assert restored["version"] == v1
    arrays = load_arrays(folder)
    total = sum(len(a) for k, a in arrays.items() if k.startswith(("train_", "val_")) and a.ndim >= 1)
    assert total > 0
    if n2 is not None:
        assert len(arrays["train_x"]) < n2


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
    cache = settings.dvc_workspace / ".dvc" / "cache"
    assert not [p for p in cache.rglob("*.tmp")] if cache.exists() else True


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
    first = version_model_artifacts(settings, "proj")
    assert version_model_artifacts(settings, "proj")["version"] == first["version"]  # idempotent
