"""One client's local update in one round, on whichever machine runs the task.

The machine may share nothing with the coordinator but the DVC remote and MLflow: the partition
comes from the remote by its version, the global weights from the parent run's artifacts, and the
update goes back as a nested run. That run is FINISHED only once its weights are uploaded, so a
round never averages a half-written update; an attempt that fails leaves a FAILED run, which no
reader counts.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


def train_client(
    settings: Settings,
    config: ProjectConfig,
    federation: dict[str, Any],
    partitions: dict[str, Any],
    round_number: int,
    client_name: str,
    attempt: int,
    run_tags: dict[str, str],
) -> dict[str, Any]:
    """Train `client_name` for round `round_number` and report it; or say why it has nothing to do."""
    import mlflow

    from mlops.federated.tracking import client_run_tags, closed_round, tracking_client

    if client_name not in federation["sampled"][str(round_number)]:
        return {"status": "not_sampled", "reason": f"round {round_number} did not sample {client_name}"}
    client = tracking_client(settings)
    closed = closed_round(client, federation["run_id"])
    if closed >= round_number:
        return {"status": "round_closed", "reason": f"round {round_number} already aggregated without {client_name}"}
    host = socket.gethostname()
    tags = {**run_tags, **client_run_tags(federation["run_id"], config.name, round_number, client_name, attempt, host)}
    run_id = client.create_run(federation["experiment_id"], tags=tags).info.run_id
    try:
        metrics = _local_update(settings, config, client, federation["run_id"], run_id, round_number,
                                partitions["clients"][client_name]["version"], client_name)
        mlflow.log_metrics(metrics, run_id=run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")  # only now does the round count it
    return {"status": "trained", "run_id": run_id, "examples": metrics["examples"],
            "train_loss": metrics["train_loss"], "host": host}


def _local_update(
    settings: Settings, config: ProjectConfig, client: MlflowClient, federation_run_id: str, run_id: str,
    round_number: int, version: str, client_name: str,
) -> dict[str, float]:
    """Global weights of the round before -> `local_epochs` passes over the partition -> `client.safetensors`
    on run `run_id`; returns the figures the aggregation and the published model's run use."""
    import mlx.core as mx

    from mlops.federated.partitions import load_partition
    from mlops.federated.weights import CLIENT_FILE, GLOBAL_FILE, download, load_session, round_dir, save_weights
    from mlops.federated.weights import scratch
    from mlops.training.device import memory_limit, select_device
    from mlops.training.loop import train_steps
    from mlops.training.trainer import memory_limit_bytes, project_family

    federated = config.federated
    assert federated is not None
    project = project_family(settings, config)
    select_device()
    batch_size = config.training.batch_size
    with scratch(settings) as folder:
        data = load_partition(settings, config.name, client_name, version)
        start = download(client, federation_run_id, f"{round_dir(round_number - 1)}/{GLOBAL_FILE}", folder / "global")
        mx.random.seed(config.training.seed)
        mx.reset_peak_memory()
        with memory_limit(memory_limit_bytes(config)):
            session = load_session(project, config, start)
            began, losses, samples = time.perf_counter(), [], 0
            with project.step(f"train_epoch (round {round_number}, client {client_name})"):
                for local in range(federated.local_epochs):
                    stats = session.train_epoch(data, batch_size, (round_number - 1) * federated.local_epochs + local)
                    losses.append(stats.loss)
                    samples += stats.samples
            seconds = time.perf_counter() - began
            client.log_artifact(run_id, str(save_weights(folder / CLIENT_FILE, session.weights())))
        return {
            "examples": len(next(v for k, v in data.items() if k.startswith("train_"))),
            "train_loss": sum(losses) / len(losses),
            "samples": samples,
            "seconds": seconds,
            "steps": train_steps(data, batch_size) * federated.local_epochs,
            "peak_memory_bytes": int(mx.get_peak_memory()),
        }

