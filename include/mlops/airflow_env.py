"""The environment every Airflow process of the platform gets (CLI calls and `mlops up`).

AIRFLOW_HOME is this repository (its committed airflow.cfg); the API's JWT secret is
generated once into the state folder, 64 bytes, never committed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mlops.settings import REPO_ROOT, Settings


def _secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["AIRFLOW_HOME"] = str(REPO_ROOT)  # the committed airflow.cfg, whatever the shell had
    env["MLOPS_HOME"] = str(settings.home)
    env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", _secret(settings.home / "secrets" / "jwt_secret"))
    env["AIRFLOW__API__HOST"] = settings.bind_host
    env["AIRFLOW__API__PORT"] = str(settings.airflow_port)
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{settings.bind_host}:{settings.airflow_port}/execution/"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("MLFLOW_LOG_UV_FILES", "false")
    (settings.home / "airflow" / "logs").mkdir(parents=True, exist_ok=True)
    return env
