"""Hooks: where operators get their connections (MLflow, DVC remote) and the settings object.

An Airflow connection, when defined, overrides the environment's settings, so credentials
live in Airflow's secrets backend and never in a YAML or in git:

- `mlflow_default`: host (+ port, schema http/https) of the MLflow tracking server;
- `dvc_default`: `host` = remote URL (e.g. s3://bucket/path), extra `{"endpoint_url": ...}`,
  login/password = access key id / secret, exported to the DVC process as AWS variables.
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
            if conn.login:
                os.environ["AWS_ACCESS_KEY_ID"] = conn.login
                os.environ["AWS_SECRET_ACCESS_KEY"] = conn.password or ""
        return dataclasses.replace(settings, **changes) if changes else settings
