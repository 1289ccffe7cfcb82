"""Turn the last round's global weights into the project's model, exactly as `train` would leave it.

The federation's parent run becomes the model's run: `finish_training` (shared with the trainer)
applies the post-training techniques, scores, saves the model folder and logs the pyfunc model
into it, so evaluate, register, build and version_artifacts take it like any trained model.
Each round counts as one "epoch" of that run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings
    from mlops.training.loop import EpochReport


def round_reports(summaries: list[dict[str, Any]]) -> list[EpochReport]:
    """The rounds as the trainer's epoch reports: clients' mean loss, their summed work, the global scores."""
    from mlops.training.loop import EpochReport

    return [
        EpochReport(
            epoch=s["round"], loss=s["train_loss"], samples=int(s["samples"]), seconds=s["seconds"],
            steps=int(s["steps"]), val=s["metrics"], extra={},
        )
        for s in summaries
    ]


def publish_model(
    settings: Settings, config: ProjectConfig, federation: dict[str, Any], data_path: str, data_version: str
) -> dict[str, Any]:
    """Finish the federation's run with its model; returns what `train_project` returns."""
    import mlflow
    import mlx.core as mx

    from mlops.analytics.task_sampling import task_sampler
    from mlops.federated.tracking import closed_round, read_summary, tracking_client
    from mlops.federated.weights import GLOBAL_FILE, download, load_session, round_dir, scratch
    from mlops.training.device import memory_limit, select_device
    from mlops.training.trainer import finish_training, memory_limit_bytes, project_family

    client = tracking_client(settings)
    run_id, rounds = federation["run_id"], federation["rounds"]
    closed = closed_round(client, run_id)
    if closed < rounds:
        raise RuntimeError(
            f"project {config.name}: federation run {run_id} aggregated {closed} of its {rounds} rounds: "
            f"nothing to publish (see round_{closed + 1}.aggregate)"
        )
    project = project_family(settings, config)
    device = select_device()
    data = project.load_dataset(config, data_path)
    summaries = [read_summary(client, settings, run_id, r) for r in range(1, rounds + 1)]
    techniques = list(config.training.techniques)  # created with them, as `evaluate` restores the model
    mx.random.seed(config.training.seed)
    mx.reset_peak_memory()
    # start_run(run_id=...) refuses a run of another experiment than the process's active one (set by
    # an earlier step when several run in one process, as under `airflow dags test`)
    mlflow.set_experiment(experiment_id=federation["experiment_id"])
    with scratch(settings) as folder:
        weights = download(client, run_id, f"{round_dir(rounds)}/{GLOBAL_FILE}", folder)
        with (
            memory_limit(memory_limit_bytes(config)),
            mlflow.start_run(run_id=run_id),  # resumed; FINISHED when the block ends, FAILED if it raises
            task_sampler(config, run_id) as sampler,
        ):
            return finish_training(
                settings, config, project, load_session(project, config, weights, techniques), data,
                device=device, data_version=data_version, run_id=run_id, experiment_id=federation["experiment_id"],
                reports=round_reports(summaries), sampler=sampler,
                peak_memory_bytes=int(max(s["peak_memory_bytes"] for s in summaries)),
            )
