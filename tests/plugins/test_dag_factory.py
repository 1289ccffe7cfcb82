"""The DAG factory maps the YAML's settings onto every task; no Airflow DB needed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from mlops.config import parse_project_text
from mlops_airflow.dag_factory import build_lifecycle_dag

YAML = """\
name: factory_check
description: Checks the factory.
owner: team-a
tags: [x]
schedule: "@daily"
priority: 8
retries: 3
data:
  version: 0123456789abcdef0123456789abcdef.dir
model:
  family: mlp_classifier
"""


def test_tasks_carry_owner_retries_backoff_priority_and_docs():
    config = parse_project_text(YAML, "factory_check.yaml")
    dag = build_lifecycle_dag(config, Path("projects/factory_check.yaml"))
    assert dag.dag_id == "factory_check__lifecycle"
    assert set(dag.tags) == {"factory_check", "mlops", "x"}
    assert "Checks the factory." in dag.doc_md and "projects/factory_check.yaml" in dag.doc_md
    assert dag.params["data_version"] == "0123456789abcdef0123456789abcdef.dir"
    assert [t.task_id for t in dag.topological_sort()] == [
        "pull_data", "thermal_gate", "train", "evaluate", "register", "build", "version_artifacts"
    ]
    train, evaluate = dag.get_task("train"), dag.get_task("evaluate")
    assert (train.pool, train.pool_slots) == ("mlx_memory", 2)  # training.memory_gb defaults to 2
    assert (evaluate.pool, evaluate.pool_slots) == ("mlx_compute", 1)
    for task in dag.tasks:
        assert task.owner == "team-a" and task.retries == 3 and task.retry_exponential_backoff == 2.0
        assert task.priority_weight == 8 and task.weight_rule == "mlops_airflow.fair_share.FairShareWeight" and task.doc_md
        assert task.max_retry_delay == timedelta(minutes=10)
    assert dag.get_task("version_artifacts").trigger_rule == "none_failed"


def test_every_dag_of_a_project_is_active_unless_the_yaml_pauses_it():
    from mlops_airflow.dag_factory import build_deploy_dag, build_monitor_dag

    extra = "serving:\n  enabled: true\nmonitoring:\n  enabled: true\n"
    for yaml_text, paused in ((YAML + extra, False), (YAML + extra + "paused: true\n", True)):
        config = parse_project_text(yaml_text, "factory_check.yaml")
        source = Path("projects/factory_check.yaml")
        dags = [build(config, source) for build in (build_lifecycle_dag, build_deploy_dag, build_monitor_dag)]
        # An explicit value on each DAG: airflow.cfg's dags_are_paused_at_creation no longer decides.
        assert [d.is_paused_upon_creation for d in dags] == [paused] * 3


def test_validated_configs_are_reused_until_a_file_changes(tmp_path: Path):
    from mlops_airflow.dag_factory import load_projects_cached

    first = tmp_path / "a.yaml"
    first.write_text(YAML)
    paths = [first]
    configs, errors = load_projects_cached(paths)
    assert errors == {} and configs[first].priority == 8
    assert load_projects_cached(paths) is load_projects_cached(paths)  # the second DAG loader's call
    first.write_text(YAML.replace("priority: 8", "priority: 9"))  # an edit misses the cache
    assert load_projects_cached(paths)[0][first].priority == 9
    second = tmp_path / "b.yaml"
    second.write_text("name: [\n")  # so does an added file
    configs, errors = load_projects_cached([first, second])
    assert set(configs) == {first} and set(errors) == {second}
    missing = tmp_path / "gone.yaml"  # a file that cannot be stat'ed: not cached, reported by the loader
    assert set(load_projects_cached([first, missing])[1]) == {missing}


def test_building_dags_imports_no_hardware_reader():
    """Parse-time cost: the thermal gate's constructor must not import `mlops.hardware` (probe, readers)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from mlops.airflow_env import plugins_on_path\n"
        "plugins_on_path()  # as Airflow's DAG parsers have it\n"
        "from mlops_airflow.dag_factory import collect_project_dags\n"
        "result = collect_project_dags()\n"
        "assert result.dags and not result.errors, result.errors\n"
        "print(sorted(m for m in sys.modules if m.startswith('mlops.hardware')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
