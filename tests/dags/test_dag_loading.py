"""The DAG folder parses fast, imports no ML library, touches no DB or network, isolates bad YAMLs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]

HEAVY = ["mlflow", "dvc", "mlx", "bentoml", "ray", "evidently", "pandas"]

PARSE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    from airflow.dag_processing.dagbag import DagBag

    calls = []
    def no_network(*args, **kwargs):
        calls.append(("network", repr(args[1:2])))
        raise OSError("network disabled in this test")
    socket.socket.connect = no_network

    import sqlalchemy.event
    from sqlalchemy.engine import Engine
    @sqlalchemy.event.listens_for(Engine, "before_cursor_execute")
    def record(conn, cursor, statement, *args):
        calls.append(("db", statement[:80]))

    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({
        "dags": sorted(bag.dag_ids),
        "errors": {k.rsplit("/", 1)[-1]: v for k, v in bag.import_errors.items()},
        "heavy": sorted(m for m in HEAVY if m in sys.modules),
        "calls": calls,
        "tasks": {d: [t.task_id for t in bag.dags[d].tasks] for d in bag.dag_ids},
    }))
    """
).replace("HEAVY", repr(HEAVY))


def parse_dags(projects_dir: Path | None = None) -> dict:
    env = os.environ.copy()
    if projects_dir is not None:
        env["MLOPS_PROJECTS_DIR"] = str(projects_dir)
    done = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(REPO / "dags")], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_nine_projects_parse_without_heavy_imports_db_or_network():
    result = parse_dags()
    lifecycles = [d for d in result["dags"] if d.endswith("__lifecycle")]
    assert len(lifecycles) == 9
    # Serving-enabled projects (the YAML's serving.enabled) also get their asset-scheduled deploy DAG.
    # And the toolkit has its daily report.
    assert set(result["dags"]) - set(lifecycles) == {
        "quantized_optimization__deploy", "quantized_optimization__monitor", "toolkit__report"}
    assert result["tasks"]["toolkit__report"] == ["report"]
    assert result["tasks"]["quantized_optimization__deploy"] == ["deploy"]
    assert result["tasks"]["quantized_optimization__monitor"] == [
        "check_drift", "check_accuracy", "check_performance", "report", "request_retrain", "alert"
    ]
    assert result["errors"] == {}
    assert result["heavy"] == []
    assert result["calls"] == []
    tasks = result["tasks"]["quantized_optimization__lifecycle"]
    assert tasks == ["pull_data", "thermal_gate", "train", "evaluate", "register", "build", "version_artifacts"]
    # The federated project: 4 rounds of 4 local clients (tests/dags/test_federated_dag.py checks the shape).
    rounds = [f"round_{r}.{t}" for r in range(1, 5) for t in ("train_client_1", "train_client_2", "train_client_3",
                                                                "train_client_4", "aggregate")]
    assert sorted(result["tasks"]["federated_learning__lifecycle"]) == sorted([
        "pull_data", "partition_data", "thermal_gate", "start_federation", *rounds, "publish_model", "participation",
        "evaluate", "register", "build", "version_artifacts"])


def test_broken_yaml_is_an_import_error_and_hides_no_other_dag(tmp_path: Path):
    for name in ("quantized_optimization", "federated_learning"):
        shutil.copy(REPO / "projects" / f"{name}.yaml", tmp_path)
    (tmp_path / "typo.yaml").write_text("name: typo_project\nmodel:\n  family: mlp_classifier\ntraining:\n  epocs: 2\n")
    (tmp_path / "syntax.yaml").write_text("name: [\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "range.yaml").write_text("name: range_project\npriority: 99\nmodel:\n  family: mlp_classifier\n")
    (tmp_path / "zz_dupe.yaml").write_text((REPO / "projects" / "federated_learning.yaml").read_text())
    result = parse_dags(tmp_path)
    assert result["dags"] == [
        "federated_learning__lifecycle", "quantized_optimization__deploy", "quantized_optimization__lifecycle",
        "quantized_optimization__monitor", "toolkit__report",
    ]
    (message,) = result["errors"].values()
    assert list(result["errors"]) == ["project_errors.py"]
    assert f"{tmp_path / 'typo.yaml'}:5:3: training.epocs: unknown field (did you mean 'epochs'?)" in message
    assert f"{tmp_path / 'syntax.yaml'}:" in message and "YAML syntax error" in message
    assert f"{tmp_path / 'empty.yaml'}:1:1: <file>: empty file" in message
    assert f"{tmp_path / 'range.yaml'}:2:11: priority:" in message
    assert f"{tmp_path / 'zz_dupe.yaml'}:" in message and "already used by" in message


def test_new_yaml_appears_on_next_parse(tmp_path: Path):
    shutil.copy(REPO / "projects" / "quantized_optimization.yaml", tmp_path)
    kinds = ("deploy", "lifecycle", "monitor")  # the sample project is served and monitored
    assert parse_dags(tmp_path)["dags"] == [*(f"quantized_optimization__{k}" for k in kinds), "toolkit__report"]
    text = (REPO / "projects" / "quantized_optimization.yaml").read_text()
    (tmp_path / "copy.yaml").write_text(text.replace("name: quantized_optimization", "name: my_copy"))
    assert parse_dags(tmp_path)["dags"] == [
        *(f"{p}__{k}" for p in ("my_copy", "quantized_optimization") for k in kinds), "toolkit__report"]
