"""MLflow tracking and registry on PostgreSQL, the shared store past one machine (README "Scaling out").

A real PostgreSQL (pgserver's binaries) and `mlflow server --backend-store-uri postgresql+psycopg2://...`
on 127.0.0.1, stopped by PID; the platform's own code then talks to it as a second machine would, by
`MLOPS_TRACKING_URI` alone: the project's experiment with its YAML's metadata, a tracked run, the
registration the lifecycle's register step makes (with its version and evaluation tags), and the
toolkit dashboard's overview read back from that store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow.pyfunc
import pytest
from mlops_testing import airflow_processes, free_port, pg_rows, postgres_binaries, postgres_server, wait_for

from mlops.settings import Settings


@pytest.mark.skipif(postgres_binaries() is None,
                    reason="no PostgreSQL: pgserver has wheels for Linux x86_64 and macOS only; put one on PATH")
def test_tracking_and_registry_on_postgresql(tmp_path: Path, monkeypatch) -> None:
    from mlflow import MlflowClient

    from mlops.config.loader import load_project
    from mlops.dashboard.airflow_state import AirflowState
    from mlops.dashboard.overview import build_overview
    from mlops.tracking.client import configure, ensure_project_experiment
    from mlops.tracking.registry import evaluation_tags, register_run_model

    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "pg_project.yaml").write_text(
        "name: pg_project\ndescription: tracked on PostgreSQL\nowner: platform-team\ntags: [shared]\n"
        "model:\n  family: mlp_classifier\n")
    with postgres_server(tmp_path, database="mlflow") as pg:
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        server = str(Path(sys.executable).with_name("mlflow"))
        argv = [server, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--backend-store-uri", f"postgresql+psycopg2://{pg['dsn']}",
                "--artifacts-destination", str(tmp_path / "artifacts")]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"}
        with airflow_processes(env, tmp_path, {"mlflow-server": argv}):
            wait_for(lambda: _answers(f"{uri}/health"), 120, "mlflow server on PostgreSQL", interval=0.5)
            for name, value in {"MLOPS_HOME": str(tmp_path / "state"), "MLOPS_PROJECTS_DIR": str(projects),
                                "MLOPS_TRACKING_URI": uri, "MLOPS_GATEWAY_PORT": str(free_port())}.items():
                monkeypatch.setenv(name, value)
            settings = Settings.from_env()
            config = load_project(projects / "pg_project.yaml")

            configure(settings)  # what every task does first: the platform's store for MLflow's fluent API
            experiment_id = ensure_project_experiment(settings, config)
            client = MlflowClient(uri, uri)
            with mlflow.start_run(experiment_id=experiment_id) as run:  # a model, as the trainer logs one
                mlflow.log_metric("eval_accuracy", 0.93)
                mlflow.pyfunc.log_model(name="model", python_model=Identity())
            evaluation = {"metric": "accuracy", "goal": "max", "metrics": {"accuracy": 0.93, "loss": 0.2}}
            registered = register_run_model(settings, config.name, run.info.run_id, f"runs:/{run.info.run_id}/model",
                                            {"project": config.name, **evaluation_tags(evaluation)})
            assert registered == {"name": "pg_project", "version": 1, "created": True, "run_id": run.info.run_id}

            # in PostgreSQL, where every machine's client finds it
            dsn = pg["dsn"]
            assert pg_rows(dsn, "select name from experiments where name = 'pg_project'") == [("pg_project",)]
            assert pg_rows(dsn, "select name, version from model_versions") == [("pg_project", 1)]
            assert ("mlops.owner", "platform-team") in pg_rows(dsn, "select key, value from registered_model_tags")

            overview = build_overview(settings, AirflowState(), client)
            (entry,) = overview["projects"]
            assert (entry["name"], entry["owner"], entry["versions"]["count"]) == ("pg_project", "platform-team", 1)
            assert entry["versions"]["best"]["metrics"] == {"accuracy": 0.93, "loss": 0.2}


class Identity(mlflow.pyfunc.PythonModel):
    """The smallest model MLflow registers: a pyfunc answering its input."""

    def predict(self, context, model_input, params=None):
        return model_input


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
