"""The `mlops` plugin and its package: loaded once under one name, light to import, the old paths gone."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

MOVED = ("factory", "fair_share", "listeners", "pool_refresher", "pools", "pools_cli", "queue_view")


def _run(script: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_loader_imports_the_plugin_file_and_the_package_once_by_its_name():
    """Airflow's loader imports every .py under plugins/ by its bare name, unless .airflowignore says not to."""
    seen = _run(
        "import json, sys\n"
        "from airflow import plugins_manager\n"
        "plugins, errors = plugins_manager._get_plugins()\n"
        "mlops = next(p for p in plugins if p.name == 'mlops')\n"
        "print(json.dumps({'errors': errors, 'source': str(mlops.source), 'modules': sorted(sys.modules),\n"
        "                  'listener_is_the_package_module': mlops.listeners[0] is sys.modules['mlops_airflow.listeners']}))\n"
    )
    assert seen["errors"] == {} and seen["source"] == "$PLUGINS_FOLDER/mlops_plugin.py"
    assert seen["listener_is_the_package_module"]
    bare = {"__init__", "dag_factory", *MOVED} & set(seen["modules"])
    assert not bare, f"plugin files imported a second time under bare names: {sorted(bare)}"
    assert "mlops_airflow.dag_factory" not in seen["modules"]  # the plugin never needs the factory


def test_importing_the_plugin_adds_only_names():
    """Every Airflow process loads the plugin: beyond Airflow's own, it imports three small modules of ours."""
    new = _run(
        "import json, sys\n"
        "import airflow.plugins_manager, airflow.listeners, airflow.task.priority_strategy\n"
        "from mlops.airflow_env import plugins_on_path\n"
        "plugins_on_path()\n"
        "before = set(sys.modules)\n"
        "import mlops_plugin\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    assert set(new) == {
        "mlops_plugin", "mlops_airflow", "mlops_airflow.listeners", "mlops_airflow.fair_share",
        "mlops.resources", "mlops.resources.fair_share", "mlops.resources.names",
    }


@pytest.mark.parametrize("name", MOVED)
def test_operators_holds_no_moved_module(name):
    assert importlib.util.find_spec(f"operators.{name}") is None


def test_dag_versions_serialized_under_the_former_path_still_load(tmp_path):
    """A metadata DB keeps each DAG version as serialized: those from before the move name operators.fair_share."""
    from airflow.serialization.serialized_objects import DagSerialization

    from mlops.config import parse_project_text
    from mlops_airflow.dag_factory import build_lifecycle_dag
    from mlops_airflow.fair_share import FairShareWeight, FormerPathWeight

    config = parse_project_text("name: moved\nowner: t\nmodel:\n  family: mlp_classifier\n", "moved.yaml")
    text = json.dumps(DagSerialization.to_dict(build_lifecycle_dag(config, tmp_path / "moved.yaml")))
    assert "mlops_airflow.fair_share.FairShareWeight" in text and "operators.fair_share" not in text
    old = DagSerialization.from_dict(json.loads(text.replace("mlops_airflow.fair_share.", "operators.fair_share.")))
    rules = {type(task.weight_rule) for task in old.tasks}
    assert rules == {FormerPathWeight} and issubclass(FormerPathWeight, FairShareWeight)
