"""A federated project's lifecycle DAG: task ids, dependencies, placement and trigger rules (no Airflow DB)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from mlops.config import load_project, parse_project_text
from mlops_airflow.dag_factory import build_lifecycle_dag

REPO = Path(__file__).resolve().parents[2]
COORDINATOR = ("pull_data", "partition_data", "thermal_gate", "start_federation", "publish_model", "participation",
               "register", "build", "version_artifacts")


def federated_dag(tail: str, head: str = ""):
    text = f"name: fed_dag\nretries: 3\nmodel:\n  family: federated_mlp\n{head}federated:\n{tail}"
    config = parse_project_text(text, "fed_dag.yaml")
    return config, build_lifecycle_dag(config, Path("projects/fed_dag.yaml"))


def spec_edges(clients: list[str], rounds: int) -> set[tuple[str, str]]:
    """The dependencies SPEC.md gives, task by task."""
    chain = ["pull_data", "partition_data", "thermal_gate", "start_federation"]
    edges = set(zip(chain, chain[1:]))
    previous = "start_federation"
    for r in range(1, rounds + 1):
        for c in clients:
            edges |= {(previous, f"round_{r}.train_{c}"), (f"round_{r}.train_{c}", "participation")}
        edges.add((previous, f"round_{r}.aggregate"))
        previous = f"round_{r}.aggregate"
    tail = [previous, "publish_model", "evaluate", "register", "build", "version_artifacts"]
    return edges | set(zip(tail, tail[1:]))


def closure(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    reach = set(edges)
    while True:
        more = {(a, d) for a, b in reach for c, d in reach if b == c} - reach
        if not more:
            return reach
        reach |= more


def dag_edges(dag) -> set[tuple[str, str]]:
    return {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}


def check_shape(dag, clients: list[str], rounds: int) -> None:
    expected = spec_edges(clients, rounds)
    actual = dag_edges(dag)
    # Every edge of the spec is there; the others (XCom inputs: `start_federation.output`...) add no ordering.
    assert expected <= actual and closure(actual) == closure(expected)
    ids = {t.task_id for t in dag.tasks}
    assert ids == {task for edge in expected for task in edge}
    for r in range(1, rounds + 1):
        group = dag.task_group.get_child_by_label(f"round_{r}")
        assert sorted(group.children) == sorted([f"round_{r}.aggregate", *(f"round_{r}.train_{c}" for c in clients)])
        aggregate = dag.get_task(f"round_{r}.aggregate")
        # The aggregate never waits on its clients through Airflow: it reads their results in MLflow.
        assert not any(up.startswith("round_") and ".train_" in up for up in aggregate.get_flat_relative_ids(upstream=True))
        for c in clients:  # a client's only downstream: participation (all_done) -> a failed client fails no run
            assert dag.get_task(f"round_{r}.train_{c}").downstream_task_ids == {"participation"}
    assert {t.task_id for t in dag.leaves} == {"participation", "version_artifacts"}
    assert dag.get_task("participation").trigger_rule == "all_done"
    assert dag.get_task("version_artifacts").trigger_rule == "none_failed"
    assert {t.trigger_rule for t in dag.tasks} == {"all_success", "all_done", "none_failed"}


def test_shipped_project_runs_local_clients_on_this_machine_in_the_memory_pool():
    config = load_project(REPO / "projects" / "federated_learning.yaml")
    dag = build_lifecycle_dag(config, REPO / "projects" / "federated_learning.yaml")
    clients = ["client_1", "client_2", "client_3", "client_4"]
    check_shape(dag, clients, rounds=4)
    assert len(dag.tasks) == 4 + 4 * 5 + 6  # chain to start, 4 rounds of 4 clients + aggregate, publish..artifacts
    for r in range(1, 5):
        for c in clients:
            task = dag.get_task(f"round_{r}.train_{c}")
            assert (task.queue, task.pool, task.pool_slots) == ("default", "mlx_memory", 2)  # like `train`
            assert task.execution_timeout == timedelta(seconds=600) and task.retries == config.retries
            assert (task.client, task.round) == (c, r)
        aggregate = dag.get_task(f"round_{r}.aggregate")
        assert (aggregate.queue, aggregate.pool, aggregate.round) == ("default", "default_pool", r)
    evaluate = dag.get_task("evaluate")
    assert (evaluate.pool, evaluate.queue) == ("mlx_compute", "default")
    for name in COORDINATOR:
        task = dag.get_task(name)
        assert (task.queue, task.pool, task.execution_timeout) == ("default", "default_pool", None), name
    # The DAG's doc lists the federated steps, not `train`.
    assert "**train_client**" in dag.doc_md and "**aggregate**" in dag.doc_md and "**train**:" not in dag.doc_md
    assert "client_1, client_2, client_3, client_4" in dag.get_task("round_1.train_client_1").doc_md


def test_nodes_train_on_their_own_queues_with_no_pool():
    head = "scheduling:\n  requires: apple_silicon\n  min_memory_gb: 24\n"
    tail = ("  rounds: 2\n  round_timeout_s: 90\n  min_clients: 2\n  nodes:\n    - name: mac_a\n    - name: mac_b\n"
            "      queue: studio_m2\n    - name: mini\n")
    config, dag = federated_dag(tail, head)
    check_shape(dag, ["mac_a", "mac_b", "mini"], rounds=2)
    for r in (1, 2):
        placed = {c: (t.queue, t.pool, t.pool_slots) for c in ("mac_a", "mac_b", "mini")
                  for t in [dag.get_task(f"round_{r}.train_{c}")]}
        assert placed == {"mac_a": ("node_mac_a", "default_pool", 1), "mac_b": ("studio_m2", "default_pool", 1),
                          "mini": ("node_mini", "default_pool", 1)}
        for c in ("mac_a", "mac_b", "mini"):
            task = dag.get_task(f"round_{r}.train_{c}")
            assert task.execution_timeout == timedelta(seconds=90) and task.retries == 3
    # Coordinator steps stay on the default queue; evaluate keeps the project's hardware queue and pool.
    for name in COORDINATOR:
        assert dag.get_task(name).queue == "default", name
    assert {dag.get_task(f"round_{r}.aggregate").queue for r in (1, 2)} == {"default"}
    evaluate = dag.get_task("evaluate")
    assert (evaluate.queue, evaluate.pool) == ("apple_silicon_mem32gb", "mlx_compute")


def test_one_round_one_client_is_still_the_same_shape():
    _, dag = federated_dag("  rounds: 1\n  clients: 1\n")
    check_shape(dag, ["client_1"], rounds=1)
    assert dag.get_task("publish_model").upstream_task_ids >= {"round_1.aggregate"}


def test_ordinary_projects_keep_their_chain():
    config = parse_project_text("name: plain\nmodel:\n  family: federated_mlp\n", "plain.yaml")
    dag = build_lifecycle_dag(config, Path("projects/plain.yaml"))
    assert [t.task_id for t in dag.topological_sort()] == [
        "pull_data", "thermal_gate", "train", "evaluate", "register", "build", "version_artifacts"]
