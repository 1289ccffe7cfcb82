"""The `federated:` section: defaults, client names and queues, and every inconsistency as a located error."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import ProjectConfigError, load_project, parse_project_text
from mlops.federated.plan import client_names, client_queue

REPO = Path(__file__).resolve().parents[2]
BASE = "name: fed_check\nmodel:\n  family: federated_mlp\n"  # `federated:` starts on line 4


def errors_of(tail: str) -> list[str]:
    with pytest.raises(ProjectConfigError) as info:
        parse_project_text(BASE + tail, "projects/fed_check.yaml")
    return [e.format() for e in info.value.errors]


def test_absent_section_is_the_ordinary_lifecycle_and_defaults_give_four_local_clients():
    assert parse_project_text(BASE, "x.yaml").federated is None
    config = parse_project_text(BASE + "federated: {}\n", "x.yaml")
    f = config.federated
    assert (f.rounds, f.nodes, f.client_count, f.clients_per_round, f.min_clients, f.round_timeout_s, f.local_epochs) == (
        3, [], 4, None, 1, 600, 1)
    assert client_names(config) == ["client_1", "client_2", "client_3", "client_4"]
    assert client_queue(config, "client_1") is None


def test_nodes_name_the_clients_and_their_queues():
    config = parse_project_text(
        BASE + "federated:\n  nodes:\n    - name: mac_a\n    - name: mac_b\n      queue: studio.queue\n", "x.yaml"
    )
    assert config.federated.client_count == 2 and client_names(config) == ["mac_a", "mac_b"]
    assert (client_queue(config, "mac_a"), client_queue(config, "mac_b")) == ("node_mac_a", "studio.queue")


def test_the_shipped_project_is_federated_on_one_machine():
    config = load_project(REPO / "projects" / "federated_learning.yaml")
    f = config.federated
    assert (f.rounds, f.client_count, f.clients_per_round, f.min_clients, f.round_timeout_s, f.nodes) == (4, 4, 3, 2, 600, [])


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (  # both ways of counting clients
            "federated:\n  clients: 2\n  nodes:\n    - name: mac_a\n",
            "projects/fed_check.yaml:5:3: federated: Value error, give either nodes (1 listed: one client each) or "
            "clients, not both",
        ),
        (
            "federated:\n  nodes:\n    - name: mac_a\n    - name: mac_a\n",
            "projects/fed_check.yaml:5:3: federated: Value error, node name mac_a appears more than once",
        ),
        (  # a queue given twice, and a given queue equal to another node's default one
            "federated:\n  nodes:\n    - name: mac_a\n    - name: mac_b\n      queue: node_mac_a\n",
            "projects/fed_check.yaml:5:3: federated: Value error, node queue node_mac_a appears more than once",
        ),
        (
            "federated:\n  clients: 4\n  clients_per_round: 2\n  min_clients: 3\n",
            "projects/fed_check.yaml:5:3: federated: Value error, min_clients (3) is more than the 2 clients sampled per "
            "round: no round could ever aggregate",
        ),
        (  # without clients_per_round every client is sampled: the quorum is checked against the client count
            "federated:\n  clients: 2\n  min_clients: 3\n",
            "projects/fed_check.yaml:5:3: federated: Value error, min_clients (3) is more than the 2 clients sampled",
        ),
        (
            "federated:\n  nodes:\n    - name: mac_a\n    - name: mac_b\n  clients_per_round: 3\n",
            "projects/fed_check.yaml:5:3: federated: Value error, clients_per_round (3) is more than the 2 clients",
        ),
        (
            "federated:\n  nodes:\n    - name: Mac-A\n",
            "projects/fed_check.yaml:6:13: federated.nodes.0.name: String should match pattern",
        ),
        (
            "federated:\n  rounds: 2\n  round_timeout_s: 1\n",
            "projects/fed_check.yaml:6:20: federated.round_timeout_s: Input should be greater than or equal to 5",
        ),
        (
            "federated:\n  nodes:\n    - name: mac_a\n      host: studio.local\n",
            "projects/fed_check.yaml:7:7: federated.nodes.0.host: unknown field",
        ),
    ],
)
def test_inconsistent_sections_are_located_errors(tail: str, expected: str):
    (error,) = errors_of(tail)
    assert error.startswith(expected), error


def test_training_techniques_that_change_training_are_refused():
    """Rounds average plain weights: a teacher's distillation or LoRA adapters do not fit; quantization does."""
    base = BASE.replace("federated_mlp", "mlp_classifier")  # its family supports quantization, pruning, distillation
    ok = parse_project_text(base + "training:\n  techniques: [quantization, pruning]\nfederated: {}\n", "x.yaml")
    assert ok.training.techniques == ["quantization", "pruning"]
    with pytest.raises(ProjectConfigError) as info:
        parse_project_text(base + "training:\n  techniques: [quantization, distillation]\nfederated: {}\n", "p.yaml")
    (error,) = [e.format() for e in info.value.errors]
    # at the offending item: the line of the techniques list, the column of `distillation`
    assert error.startswith("p.yaml:5:30: training.techniques.1: distillation cannot be combined with `federated`: "
                            "only quantization and pruning"), error
