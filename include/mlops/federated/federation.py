"""Open a federation: its MLflow run, the initial global weights, and every round's sample of clients.

The parent run is what a `train` run is for an ordinary project (same tags and parameters, later the
logged model), plus `mlops.federated=true` and the `federated.*` parameters. It stays RUNNING
across the round tasks; `publish_model` ends it. Samples are drawn once, here, from the run id, so
every task of the DAG run (and a retry of any) agrees on who trains which round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


def federated_params(config: ProjectConfig) -> dict[str, Any]:
    f = config.federated
    assert f is not None
    return {
        "federated.rounds": f.rounds,
        "federated.clients": f.client_count,
        "federated.nodes": ",".join(node.name for node in f.nodes) or "none",
        "federated.clients_per_round": f.clients_per_round or "all",
        "federated.min_clients": f.min_clients,
        "federated.round_timeout_s": f.round_timeout_s,
        "federated.local_epochs": f.local_epochs,
    }


def start_federation(
    settings: Settings, config: ProjectConfig, data_version: str, partitions: dict[str, Any], run_tags: dict[str, str]
) -> dict[str, Any]:
    """Create the parent run and round 0's global weights; return the federation every later step reads."""
    import mlflow
    import mlx.core as mx
    from mlflow.tracking.context.registry import resolve_tags

    from mlops.federated.plan import client_names, sample_clients
    from mlops.federated.tracking import FEDERATED, tracking_client
    from mlops.federated.weights import GLOBAL_FILE, round_dir, save_weights, scratch
    from mlops.hardware import probe
    from mlops.tracking.client import ensure_project_experiment
    from mlops.training.device import select_device
    from mlops.training.trainer import log_training_params, memory_limit_bytes, project_family, training_tags

    federated = config.federated
    if federated is None:
        raise ValueError(f"project {config.name} has no `federated:` section")
    client = tracking_client(settings)
    project = project_family(settings, config)
    device, hardware = select_device(), probe()
    experiment_id = ensure_project_experiment(settings, config)
    clients = client_names(config)
    unpartitioned = sorted(set(clients) - set(partitions["clients"]))
    if unpartitioned:
        raise ValueError(f"project {config.name}: no data partition for client(s) {', '.join(unpartitioned)}: "
                         "re-run partition_data (the clients changed since it ran)")
    tags = training_tags(config, project.family, device, hardware, data_version, run_tags)
    tags.update({FEDERATED: "true", f"{FEDERATED}.clients": ",".join(clients)})
    # Not `mlflow.start_run`: leaving its block would end the run, which must outlive this task.
    run_id = client.create_run(experiment_id, tags=resolve_tags(tags)).info.run_id
    try:
        log_training_params(run_id, config, project.hyperparameters, data_version, hardware, memory_limit_bytes(config))
        mlflow.log_params(federated_params(config), run_id=run_id)
        mlflow.log_dict(partitions, "federated/partitions.json", run_id=run_id)
        mx.random.seed(config.training.seed)
        with project.step("create"):  # plain weights: post-training techniques wait for publish_model
            session = project.family.create(project.hyperparameters, [], config.training.seed)
        with scratch(settings) as folder:
            client.log_artifact(run_id, str(save_weights(folder / GLOBAL_FILE, session.weights())), round_dir(0))
        sampled = {
            str(r): sample_clients(clients, federated.clients_per_round, f"{config.name}:{config.training.seed}", r) for r in range(1, federated.rounds + 1)
        }
        federation = {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "clients": clients,
            "sampled": sampled,
            "rounds": federated.rounds,
            "min_clients": federated.min_clients,
            "round_timeout_s": federated.round_timeout_s,
            "data_version": data_version,
        }
        mlflow.log_dict(federation, "federated/federation.json", run_id=run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return federation
