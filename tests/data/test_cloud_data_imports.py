"""A project's own data (`data.source: files`) imported from each cloud, against local emulators.

The CSV files are put in the emulator's bucket/container with that cloud's own SDK (boto3,
google-cloud-storage, azure-storage-blob), never through DVC; the platform then imports them with
DVC's import-url (dvc-s3, dvc-gs, dvc-azure), configured only through the environment the way a
user configures it. The DVC remote is a local folder, so what a version holds after the cache is
lost comes from that remote, not from the cloud. Versions are recomputed from the bytes uploaded
(DVC's md5 of the folder listing, `dir_hash`), never hard-coded.

One emulator per cloud serves every test of that cloud (module-scoped); each test has its own
MLOPS_HOME and its own object prefix, and sets its environment with monkeypatch.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlops_testing import AZURITE_KEY, azurite_server, gcs_server, s3_server
from test_file_source import contents, dir_hash, write_csv

from mlops.data.dvc_workspace import DataError
from mlops.data.file_source import SOURCES_DIR, ensure_file_data
from mlops.data.project_data import data_paths
from mlops.settings import Settings

KINDS = ("s3", "gs", "azure")
# Anything from the outer environment that would point the platform elsewhere.
PLATFORM_VARS = ("MLOPS_DVC_REMOTE", "MLOPS_DVC_REMOTE_ENDPOINT", "MLOPS_DVC_REMOTE_ANONYMOUS", "MLOPS_PROJECTS_DIR")


@dataclass
class Cloud:
    kind: str
    bucket: str  # bucket (S3, GCS) or container (Azure) the emulator created
    env: dict[str, str]  # what a user sets: SDK credentials/emulator address + the platform's endpoint settings
    secrets: tuple[str, ...]  # strings that must never be written to the workspace
    put: Callable[[str, bytes], None]  # upload one object to `bucket` with the cloud's SDK
    delete: Callable[[str], None]  # delete every object under a prefix of `bucket`

    def url(self, path: str, bucket: str | None = None) -> str:
        return f"{self.kind}://{bucket or self.bucket}/{path}"


def _s3(server: dict) -> Cloud:
    import boto3

    client = boto3.client("s3", endpoint_url=server["endpoint"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = server["bucket"]

    def delete(prefix: str) -> None:
        for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])

    return Cloud("s3", bucket, {**server["env"], "MLOPS_DVC_REMOTE_ENDPOINT": server["endpoint"]}, ("testing",),
                 lambda key, body: client.put_object(Bucket=bucket, Key=key, Body=body), delete)


def _gs(server: dict) -> Cloud:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": server["endpoint"]})
    bucket = client.bucket(server["bucket"])

    def delete(prefix: str) -> None:
        for blob in client.list_blobs(bucket, prefix=prefix):
            blob.delete()

    env = {**server["env"], "MLOPS_DVC_REMOTE_ENDPOINT": server["endpoint"], "MLOPS_DVC_REMOTE_ANONYMOUS": "true"}
    return Cloud("gs", bucket.name, env, (), lambda key, body: bucket.blob(key).upload_from_string(body), delete)


def _azure(server: dict) -> Cloud:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(server["connection_string"])
    container = service.get_container_client(server["container"])

    def delete(prefix: str) -> None:
        for blob in container.list_blobs(name_starts_with=prefix):
            container.delete_blob(blob.name)

    return Cloud("azure", server["container"], dict(server["env"]), (AZURITE_KEY, "AccountKey"),
                 lambda key, body: container.upload_blob(key, body, overwrite=True), delete)


@pytest.fixture(scope="module", params=KINDS)
def cloud(request, tmp_path_factory) -> Iterator[Cloud]:
    """A running emulator of one cloud (started here, stopped by PID) and an SDK client for it."""
    kind = request.param
    start, make = {"s3": (s3_server, _s3), "gs": (gcs_server, _gs), "azure": (azurite_server, _azure)}[kind]
    with start(tmp_path_factory.mktemp(f"{kind}-emulator")) as server:
        yield make(server)


@pytest.fixture
def settings(cloud: Cloud, tmp_path: Path, monkeypatch) -> Settings:
    """The platform's settings read from the environment: the cloud's variables, MLOPS_HOME in tmp,
    the DVC remote its default local folder ($MLOPS_HOME/dvc-remote)."""
    for key in PLATFORM_VARS:
        monkeypatch.delenv(key, raising=False)
    for key, value in cloud.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    settings = Settings.from_env()
    assert settings.dvc_remote == str(tmp_path / "state" / "dvc-remote")  # a local folder, not the cloud
    return settings


def test_cloud_folder_is_imported_updated_and_versioned(cloud: Cloud, settings: Settings, tmp_path: Path):
    prefix = f"{tmp_path.name}/exports"  # this test's own objects in the shared bucket
    url = cloud.url(prefix)
    made = tmp_path / "made"
    objects = {"part-0.csv": write_csv(made / "0.csv", 30, seed=0), "sub/part-1.csv": write_csv(made / "1.csv", 30, seed=1)}
    for rel, body in objects.items():
        cloud.put(f"{prefix}/{rel}", body)
    folder, dvc_file = data_paths(settings, "clouded")

    # First run: imported, tracked, pushed to the (local) DVC remote.
    a = ensure_file_data(settings, "clouded", url)
    assert a["created"] and a["origin"] == url and a["source"] == "files" and a["path"] == str(folder)
    assert a["version"] == dir_hash(objects) and a["files"] == sorted(objects) and contents(folder) == objects
    assert a["remote"] == settings.dvc_remote
    remote_object = Path(settings.dvc_remote) / "files" / "md5" / a["version"][:2] / a["version"][2:]
    assert remote_object.is_file()
    # The import's .dvc file says where the data came from, and nothing about how to log in.
    stage_text = (settings.dvc_workspace / SOURCES_DIR / "clouded" / "exports.dvc").read_text()
    stage = yaml.safe_load(stage_text)
    assert stage["deps"][0]["path"] == url
    assert stage["deps"][0].get("fs_config", {}).get("endpointurl") == cloud.env.get("MLOPS_DVC_REMOTE_ENDPOINT")
    for secret in cloud.secrets:
        assert secret not in stage_text
    config = settings.dvc_workspace / ".dvc"
    written = [p for p in settings.dvc_workspace.rglob("*.dvc") if p.is_file()] + [config / "config", config / "config.local"]
    workspace_texts = [p.read_text() for p in written if p.is_file()]
    assert not [s for s in cloud.secrets for text in workspace_texts if s in text]

    # Nothing changed in the cloud: the same version, nothing made.
    same = ensure_file_data(settings, "clouded", url)
    assert same["version"] == a["version"] and not same["created"] and contents(folder) == objects

    # A third file in the cloud: a new version holding the three.
    objects_b = {**objects, "part-2.csv": write_csv(made / "2.csv", 5, seed=2)}
    cloud.put(f"{prefix}/part-2.csv", objects_b["part-2.csv"])
    b = ensure_file_data(settings, "clouded", url)
    assert b["created"] and b["version"] == dir_hash(objects_b) != a["version"]
    assert b["files"] == sorted(objects_b) and contents(folder) == objects_b
    assert yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"] == b["version"]

    # Back to version A with the DVC cache lost and the cloud's objects gone: A comes from the DVC remote.
    shutil.rmtree(settings.dvc_workspace / ".dvc" / "cache")
    cloud.delete(prefix)
    back = ensure_file_data(settings, "clouded", url, version=a["version"])
    assert back["version"] == a["version"] and not back["created"] and back["files"] == sorted(objects)
    assert contents(folder) == objects
    assert yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"] == a["version"]


def test_missing_bucket_names_project_and_url(cloud: Cloud, settings: Settings):
    """The emulator answers that the bucket/container does not exist (not a login or network failure)."""
    url = cloud.url("exports", bucket="no-such-bucket")
    with pytest.raises(DataError) as info:
        ensure_file_data(settings, "clouded", url)
    message = str(info.value)
    assert "project clouded" in message and repr(url) in message and "does not exist" in message, message
    endpoint = cloud.env.get("MLOPS_DVC_REMOTE_ENDPOINT")  # S3/GCS: the emulator was asked, and is named
    assert endpoint is None or f"the endpoint {endpoint} answers" in message, message
    assert not data_paths(settings, "clouded")[1].exists()  # nothing was tracked
