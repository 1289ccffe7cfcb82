"""Settings survive the trip to a child process: `to_env` gives back exactly what `from_env` read."""

from __future__ import annotations

import dataclasses

from mlops.settings import Settings


def test_to_env_round_trips_every_field(tmp_path):
    env = {
        "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_PROJECTS_DIR": str(tmp_path / "projects"),
        "MLOPS_TRACKING_URI": "http://127.0.0.1:5001", "MLOPS_ARTIFACTS_URI": "s3://art/ifacts",
        "MLOPS_DVC_REMOTE": "gs://bucket/dvc", "MLOPS_DVC_REMOTE_ENDPOINT": "http://127.0.0.1:9023",
        "MLOPS_MLFLOW_PORT": "5001", "MLOPS_AIRFLOW_PORT": "8081", "MLOPS_GATEWAY_PORT": "8003",
        "MLOPS_BIND_HOST": "127.0.0.2", "MLOPS_POOL_REFRESH_SECONDS": "7.5", "MLOPS_HARDWARE_ROOT": str(tmp_path / "hw"),
        "MLOPS_RAY_PORT": "6400", "MLOPS_SERVE_PORT": "8004", "MLOPS_SERVING_MEMORY_GB": "3.5",
        "MLOPS_EVIDENTLY_PORT": "8005", "MLOPS_CAPTURE_FLUSH_SECONDS": "2", "MLOPS_COMPUTE_SLOTS": "3",
        "MLOPS_DVC_REMOTE_ANONYMOUS": "true",
    }
    settings = Settings.from_env(env)
    assert Settings.from_env(settings.to_env()) == settings
    names = {f.name for f in dataclasses.fields(Settings)}
    assert len(settings.to_env()) == len(names)  # every field travels (a new field must be added to to_env)
    defaults = Settings.from_env({"MLOPS_HOME": str(tmp_path / "home")})
    assert Settings.from_env(defaults.to_env()) == defaults
