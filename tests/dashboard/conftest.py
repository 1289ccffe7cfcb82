"""The session's seeded store (`dashboard_support`): one real sqlite MLflow store every dashboard test reads."""

from __future__ import annotations

import pytest
from dashboard_support import Store, seed, settings_for, write_projects


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    from mlflow import MlflowClient

    home = tmp_path_factory.mktemp("dashboard")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    write_projects(home / "projects")
    settings = settings_for(home, uri)
    client = MlflowClient(uri, uri)
    runs, experiments, monitoring = seed(client, settings)
    return Store(settings, uri, client, runs, experiments, monitoring)
