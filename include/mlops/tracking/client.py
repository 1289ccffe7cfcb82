"""Connect to MLflow: one experiment per project (described and tagged from its YAML), and a fail-fast
reachability check.

MLflow's HTTP client retries a dead server for minutes before it raises; a task should
instead fail at once with the address and what to do, so `ensure_reachable` probes
`/health` with a short timeout before any run starts.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached."""


def ensure_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URL from settings
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise TrackingUnavailable(
        f"MLflow tracking server {tracking_uri} is unreachable ({problem}); "
        "start it with `mlops up` or point MLOPS_TRACKING_URI at a running server"
    )


MLFLOW_USER = "admin"
MLFLOW_PASSWORD_SECRET = "mlflow_admin_password"


def mlflow_credentials(settings: Settings) -> dict[str, str]:
    """The login of the MLflow server `mlops up` runs (basic-auth app; password generated in secrets/)."""
    from mlops.secrets import secret_file

    path = secret_file(settings, MLFLOW_PASSWORD_SECRET)
    if not path.is_file():
        return {}
    return {"MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": path.read_text().strip()}


def configure(settings: Settings) -> None:
    """Point this process's MLflow client at the platform's store."""
    from mlops import telemetry

    # Nothing leaves the machine (set before mlflow's import, which starts its telemetry client);
    # a monorepo's uv.lock is not the model's environment.
    telemetry.apply(os.environ)
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # task logs, not terminals
    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if settings.tracking_uri.startswith("http") and "MLFLOW_TRACKING_USERNAME" not in os.environ:
        os.environ.update(mlflow_credentials(settings))  # the server `mlops up` started requires a login
    ensure_reachable(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)


def ensure_project_experiment(settings: Settings, config: ProjectConfig) -> str:
    """The project's experiment id (named after the project), its description and filing tags in step with
    the YAML (`mlops.tracking.metadata`): created with them on first use, then only what differs is written."""
    from mlops.tracking.metadata import is_filing_key, project_metadata

    return _ensure(settings, config.name, project_metadata(config).experiment_tags(), owned=is_filing_key)


def ensure_experiment(settings: Settings, name: str, tags: dict[str, str]) -> str:
    """An experiment's id (e.g. the toolkit's), created with `tags` on first use; later calls set those of
    `tags` that differ and leave its other tags as they are."""
    return _ensure(settings, name, tags, owned=None)


def _ensure(settings: Settings, name: str, tags: dict[str, str], owned: Callable[[str], bool] | None) -> str:
    """Experiment `name`'s id, created with `tags`, or brought to them: set what differs, delete the stale
    keys `owned` claims. One read when nothing changed."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlops.tracking.metadata import tag_changes

    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        # A local store needs an explicit artifact root (MLflow would use ./mlruns of the cwd);
        # a tracking server decides its own.
        location = None
        if not settings.tracking_uri.startswith(("http://", "https://")):
            location = Path(settings.artifacts_uri, name).resolve().as_uri()
        try:
            return client.create_experiment(name, artifact_location=location, tags=tags)
        except MlflowException:  # created by a concurrent task meanwhile: bring that one to the tags
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    to_set, to_delete = tag_changes(experiment.tags, tags, owned)
    for key, value in to_set.items():
        client.set_experiment_tag(experiment.experiment_id, key, value)
    for key in to_delete:
        client.delete_experiment_tag(experiment.experiment_id, key)
    return experiment.experiment_id


def tag_run(settings: Settings, run_id: str, tags: dict[str, str]) -> None:
    """Add tags to an existing run (e.g. the DVC version of its model, known only later)."""
    from mlflow import MlflowClient

    configure(settings)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
