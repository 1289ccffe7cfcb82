"""Where every process finds the platform's state, services and remotes.

One object, read from the environment with documented defaults, so no module reads
`os.environ` on its own. Defaults are the embedded, one-laptop setup: everything under
`<repo>/.mlops` (gitignored), services on 127.0.0.1.

| variable               | default                                   | meaning                                   |
|------------------------|-------------------------------------------|-------------------------------------------|
| MLOPS_HOME             | <repo>/.mlops                             | state folder (DB, logs, DVC, MLflow)      |
| MLOPS_PROJECTS_DIR     | <repo>/projects                           | where project YAMLs live                  |
| MLOPS_TRACKING_URI     | sqlite:///$MLOPS_HOME/mlflow/mlflow.db    | MLflow tracking + registry store          |
| MLOPS_ARTIFACTS_URI    | $MLOPS_HOME/mlflow/artifacts              | MLflow artifact root (file store default) |
| MLOPS_DVC_REMOTE       | $MLOPS_HOME/dvc-remote                    | DVC remote URL (folder, s3://, gs://, azure://) |
| MLOPS_DVC_REMOTE_ENDPOINT | (unset)                                | endpoint URL of an s3:// remote (MinIO, moto) or a gs:// one (GCS emulator, gateway) |
| MLOPS_DVC_REMOTE_ANONYMOUS | (unset: off)                          | `true`: a gs:// or azure:// remote connects without credentials (emulators, public buckets) |
| MLOPS_MLFLOW_PORT      | 5000                                      | port `mlops up` gives the MLflow server   |
| MLOPS_AIRFLOW_PORT     | 8080                                      | port of Airflow's api-server (UI + API)   |
| MLOPS_GATEWAY_PORT     | 8000                                      | port of the model-serving gateway         |
| MLOPS_BIND_HOST        | 127.0.0.1                                 | address every server binds to             |
| MLOPS_RAY_PORT         | 6390                                      | port of the Ray head's GCS (`mlops up` starts the head) |
| MLOPS_SERVE_PORT       | 8001                                      | port of Ray Serve's HTTP proxy (the gateway forwards to it) |
| MLOPS_EVIDENTLY_PORT   | 8002                                      | port of Evidently's UI (drift reports, behind a login) |
| MLOPS_SERVING_MEMORY_GB | 25 % of RAM, at least 1                  | memory every project's replicas share (the Ray head's `memory` resource) |
| MLOPS_POOL_REFRESH_SECONDS | 30                                    | how often the scheduler re-sizes the mlx pools to the thermal state (0: only at DAG-run starts) |
| MLOPS_COMPUTE_SLOTS    | (unset: from the hardware)                | size of the mlx_compute pool before thermal scaling (replaces the accelerator/core-derived base) |
| MLOPS_HARDWARE_ROOT    | (unset: /)                                | fake /sys + /proc tree for the Linux readers (tests, simulations) |
| MLOPS_TELEMETRY        | (unset: off)                              | `on`: libraries' usage telemetry left to their defaults (mlops.telemetry) |

Cloud credentials are never settings (nor YAML, nor the DVC workspace's config): each SDK reads
its own variables from the environment of the process that pushes or pulls. s3://: boto's
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or its profiles and roles). gs://:
GOOGLE_APPLICATION_CREDENTIALS or the machine's Google identity (MLOPS_DVC_REMOTE_ANONYMOUS for
none). azure://: AZURE_STORAGE_CONNECTION_STRING (it also carries the endpoint: Azurite, sovereign
clouds), or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (or, with the
account alone, Azure AD through azure-identity); dvc-azure reads them when it connects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    home: Path
    projects_dir: Path
    tracking_uri: str
    artifacts_uri: str
    dvc_remote: str
    dvc_remote_endpoint: str | None
    mlflow_port: int
    airflow_port: int
    gateway_port: int
    bind_host: str
    hardware_root: Path | None
    pool_refresh_seconds: float
    ray_port: int = 6390
    serve_port: int = 8001
    serving_memory_gb: float | None = None
    evidently_port: int = 8002
    capture_flush_seconds: float = 5.0  # how often the gateway writes captured predictions to Parquet
    compute_slots: int | None = None  # MLOPS_COMPUTE_SLOTS: the mlx_compute pool's base, else from the hardware
    dvc_remote_anonymous: bool = False  # MLOPS_DVC_REMOTE_ANONYMOUS: gs:// / azure:// without credentials
    report_schedule: str | None = "@daily"  # MLOPS_REPORT_SCHEDULE: the toolkit__report DAG's; "none": by hand

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("MLOPS_HOME") or REPO_ROOT / ".mlops").resolve()
        return cls(
            home=home,
            projects_dir=Path(env.get("MLOPS_PROJECTS_DIR") or REPO_ROOT / "projects").resolve(),
            tracking_uri=env.get("MLOPS_TRACKING_URI") or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            artifacts_uri=env.get("MLOPS_ARTIFACTS_URI") or str(home / "mlflow" / "artifacts"),
            dvc_remote=env.get("MLOPS_DVC_REMOTE") or str(home / "dvc-remote"),
            dvc_remote_endpoint=env.get("MLOPS_DVC_REMOTE_ENDPOINT") or None,
            mlflow_port=_number(env, "MLOPS_MLFLOW_PORT", 5000, int, 1),
            airflow_port=_number(env, "MLOPS_AIRFLOW_PORT", 8080, int, 1),
            gateway_port=_number(env, "MLOPS_GATEWAY_PORT", 8000, int, 1),
            bind_host=env.get("MLOPS_BIND_HOST") or "127.0.0.1",
            pool_refresh_seconds=_number(env, "MLOPS_POOL_REFRESH_SECONDS", 30.0, float, 0),  # 0: refresher off
            hardware_root=Path(env["MLOPS_HARDWARE_ROOT"].strip()) if env.get("MLOPS_HARDWARE_ROOT", "").strip() else None,
            ray_port=_number(env, "MLOPS_RAY_PORT", 6390, int, 1),
            serve_port=_number(env, "MLOPS_SERVE_PORT", 8001, int, 1),
            serving_memory_gb=_number(env, "MLOPS_SERVING_MEMORY_GB", None, float, 0.001),
            evidently_port=_number(env, "MLOPS_EVIDENTLY_PORT", 8002, int, 1),
            capture_flush_seconds=_number(env, "MLOPS_CAPTURE_FLUSH_SECONDS", 5.0, float, 0.001),
            compute_slots=_number(env, "MLOPS_COMPUTE_SLOTS", None, int, 1),
            dvc_remote_anonymous=_flag(env, "MLOPS_DVC_REMOTE_ANONYMOUS"),
            report_schedule=_schedule(env, "MLOPS_REPORT_SCHEDULE", "@daily"),
        )

    def to_env(self) -> dict[str, str]:
        """The MLOPS_* variables that make `from_env` give these settings back (for a child process,
        e.g. a task run in a project's own environment, after connections overrode some of them)."""
        values = {
            "MLOPS_HOME": self.home, "MLOPS_PROJECTS_DIR": self.projects_dir, "MLOPS_TRACKING_URI": self.tracking_uri,
            "MLOPS_ARTIFACTS_URI": self.artifacts_uri, "MLOPS_DVC_REMOTE": self.dvc_remote,
            "MLOPS_DVC_REMOTE_ENDPOINT": self.dvc_remote_endpoint, "MLOPS_MLFLOW_PORT": self.mlflow_port,
            "MLOPS_AIRFLOW_PORT": self.airflow_port, "MLOPS_GATEWAY_PORT": self.gateway_port,
            "MLOPS_BIND_HOST": self.bind_host, "MLOPS_POOL_REFRESH_SECONDS": self.pool_refresh_seconds,
            "MLOPS_HARDWARE_ROOT": self.hardware_root, "MLOPS_RAY_PORT": self.ray_port,
            "MLOPS_SERVE_PORT": self.serve_port, "MLOPS_SERVING_MEMORY_GB": self.serving_memory_gb,
            "MLOPS_EVIDENTLY_PORT": self.evidently_port, "MLOPS_CAPTURE_FLUSH_SECONDS": self.capture_flush_seconds,
            "MLOPS_COMPUTE_SLOTS": self.compute_slots,
            "MLOPS_DVC_REMOTE_ANONYMOUS": "true" if self.dvc_remote_anonymous else None,
            "MLOPS_REPORT_SCHEDULE": self.report_schedule or "none",
        }
        return {name: str(value) for name, value in values.items() if value is not None}

    @cached_property
    def dvc_workspace(self) -> Path:
        """The one DVC repository every project's data and models live in."""
        return self.home / "dvc"

    @cached_property
    def run_dir(self) -> Path:
        """PID files and logs of the services `mlops up` starts."""
        return self.home / "run"


    @cached_property
    def serving_memory_bytes(self) -> int:
        """The memory budget of all served replicas together (MLOPS_SERVING_MEMORY_GB or 25 % of RAM)."""
        if self.serving_memory_gb is not None:
            return int(self.serving_memory_gb * 1024**3)
        import psutil

        return max(1024**3, psutil.virtual_memory().total // 4)


class SettingsError(ValueError):
    """A setting from the environment that cannot be used (the message names the variable)."""


def _number(env: dict[str, str], name: str, default: float | None, kind: type, minimum: float) -> float | None:
    """A numeric environment setting, or a SettingsError naming the variable, its value and what it takes."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (kind is int and name.endswith("_PORT") and value > 65535):
        what = "a port number (1-65535)" if name.endswith("_PORT") else f"a number >= {minimum:g}"
        raise SettingsError(f"environment variable {name}={text!r}: expected {what}; unset it for the default ({default})")
    return value


def _flag(env: dict[str, str], name: str) -> bool:
    """A yes/no environment setting (unset: no), or a SettingsError naming the variable and its value."""
    text = env.get(name, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"environment variable {name}={env[name]!r}: expected true or false (1/0, yes/no, on/off); unset it for false")


def _schedule(env: dict[str, str], name: str, default: str) -> str | None:
    """A cron expression or Airflow preset; "none" (or "off") for manual runs only."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in ("none", "off"):
        return None
    from mlops.config.schema import check_schedule

    try:
        return check_schedule(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name}={raw!r}: {exc}; or 'none' for manual runs only") from None


def get_settings() -> Settings:
    return Settings.from_env()
