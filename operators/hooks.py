"""Hooks: where operators get their connections (MLflow, DVC remote) and the settings object.

An Airflow connection, when defined, overrides the environment's settings, so credentials
live in Airflow's secrets backend and never in a YAML or in git:

- `mlflow_default`: host (+ port, schema http/https) of the MLflow tracking server;
- `dvc_default`: `host` = remote URL (s3://, gs://, azure://), extra `{"endpoint_url": ...}` (s3, gs);
  its credentials go to the variables the remote's SDK reads (`remote_credentials`): s3:// login /
  password = access key id / secret; azure:// login / password = account / key, or extra
  `{"connection_string": ...}`; gs:// extra `{"key_path": ...}` = a service-account key file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from mlops.settings import Settings


def _connection(conn_id: str):
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not defined: the environment's settings apply
        return None


def remote_credentials(url: str, login: str | None, password: str | None, extra: dict) -> dict[str, str]:
    """The environment variables that give the SDK of remote `url` the connection's credentials."""
    if url.startswith("s3://") and login:
        return {"AWS_ACCESS_KEY_ID": login, "AWS_SECRET_ACCESS_KEY": password or ""}
    if url.startswith("azure://"):
        if extra.get("connection_string"):
            return {"AZURE_STORAGE_CONNECTION_STRING": extra["connection_string"]}
        if login:
            return {"AZURE_STORAGE_ACCOUNT": login, **({"AZURE_STORAGE_KEY": password} if password else {})}
    if url.startswith("gs://") and extra.get("key_path"):
        return {"GOOGLE_APPLICATION_CREDENTIALS": extra["key_path"]}
    return {}


class MLOpsHook(BaseHook):
    """Resolves the platform settings, with the MLflow and DVC connections applied."""

    conn_name_attr = "mlflow_conn_id"
    hook_name = "MLX MLOps"

    def __init__(self, mlflow_conn_id: str = "mlflow_default", dvc_conn_id: str = "dvc_default") -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self.dvc_conn_id = dvc_conn_id

    def get_settings(self) -> Settings:
        from mlops.settings import get_settings

        settings = get_settings()
        changes = {}
        if (conn := _connection(self.mlflow_conn_id)) is not None and conn.host:
            scheme = conn.schema or "http"
            port = f":{conn.port}" if conn.port else ""
            changes["tracking_uri"] = f"{scheme}://{conn.host}{port}"
        if (conn := _connection(self.dvc_conn_id)) is not None and conn.host:
            changes["dvc_remote"] = conn.host
            extra = conn.extra_dejson
            if extra.get("endpoint_url"):
                changes["dvc_remote_endpoint"] = extra["endpoint_url"]
            os.environ.update(remote_credentials(conn.host, conn.login, conn.password, extra))
        return dataclasses.replace(settings, **changes) if changes else settings
