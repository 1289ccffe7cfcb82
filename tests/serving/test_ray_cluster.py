"""The head's readiness: a driver connects only once the whole head is up, never on the GCS port alone."""

from __future__ import annotations

import contextlib
import socket

import pytest
from mlops_testing import free_port


@contextlib.contextmanager
def _listening(port: int):
    server = socket.create_server(("127.0.0.1", port))
    try:
        yield
    finally:
        server.close()


def _settings(monkeypatch, tmp_path, port: int):
    from mlops.settings import Settings

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLOPS_RAY_PORT", str(port))
    return Settings.from_env()


def _free_triple() -> int:
    """A port p with p and p + 2 free (the head's GCS and agent ports)."""
    for _ in range(50):
        port = free_port()
        with contextlib.suppress(OSError), _listening(port + 2):
            return port
    raise AssertionError("no free port pair")


def test_a_head_whose_gcs_answers_before_its_agents_is_not_ready(monkeypatch, tmp_path):
    from mlops.serving.ray_cluster import connected, head_reachable, head_ready, head_ready_url

    port = _free_triple()
    settings = _settings(monkeypatch, tmp_path, port)
    assert head_ready_url(settings) == f"tcp://127.0.0.1:{port + 2}"
    assert not head_reachable(settings) and not head_ready(settings)
    with _listening(port):  # the GCS is up, the raylet and its agents are not yet
        assert head_reachable(settings) and not head_ready(settings)
        with pytest.raises(ConnectionError, match=rf"answers but its agents \(port {port + 2}\) never came up: .*ray-head.log"):
            with connected(settings, ready_timeout=0.5):
                pass
        with _listening(port + 2):
            assert head_ready(settings)


def test_no_head_at_all_says_how_to_start_one(monkeypatch, tmp_path):
    from mlops.serving.ray_cluster import connected

    settings = _settings(monkeypatch, tmp_path, _free_triple())
    with pytest.raises(ConnectionError, match=r"no Ray head at 127.0.0.1:\d+: start the platform with `mlops up`"):
        with connected(settings):
            pass


def test_a_replica_on_another_node_downloads_its_version_from_mlflow(monkeypatch, tmp_path):
    """The deployer hands replicas a path in its own serving cache; a replica that Ray places on another
    Mac finds nothing there and fetches the version from the registry into that node's cache."""
    from serving_support import train_and_register

    from mlops.serving.ray_app import model_folder_on_this_node
    from mlops.settings import Settings
    from mlops.training.artifacts import read_manifest

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shared = {"MLOPS_TRACKING_URI": store, "MLOPS_ARTIFACTS_URI": str(tmp_path / "artifacts")}
    deployer = Settings.from_env({"MLOPS_HOME": str(tmp_path / "coordinator"), **shared})
    version = train_and_register(deployer, "two_nodes", "mlp_classifier")
    number = int(version["version"])
    for name, value in {"MLOPS_HOME": str(tmp_path / "other_mac"), **shared}.items():
        monkeypatch.setenv(name, value)
    deployers_path = tmp_path / "coordinator" / "serving" / "two_nodes" / str(number)  # absent on this "node"
    folder = model_folder_on_this_node(deployers_path, "two_nodes", number)
    assert folder == tmp_path / "other_mac" / "serving" / "two_nodes" / str(number)
    assert read_manifest(folder)["project"] == "two_nodes"
    assert model_folder_on_this_node(folder, "two_nodes", number) == folder  # present: used as it is
