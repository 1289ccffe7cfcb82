"""Train a project's model with MLX and track everything about the run in MLflow.

This is what the `train` step runs. Per epoch it logs the loss, validation metrics,
throughput, step time and MLX memory; once per run the parameters, data version,
hardware, device and techniques (as tags, so runs compare by technique); at the end the
model folder (safetensors + manifest) as an MLflow pyfunc model.

A federated project trains in rounds instead (`mlops.federated`), and ends the same way: the
run's tags and parameters (`training_tags`, `log_training_params`) and the end of a training
(`finish_training`: techniques, score, save, log the model) are shared, so `evaluate`,
`register` and `build` cannot tell the two kinds of model apart.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.data.model_artifacts import model_dir

if TYPE_CHECKING:
    import numpy as np

    from mlops.analytics.sampler import HardwareSampler
    from mlops.config.schema import ProjectConfig
    from mlops.hardware.model import HardwareProfile
    from mlops.settings import Settings
    from mlops.training.families import FamilySource
    from mlops.training.families.base import ModelFamily, TrainingSession
    from mlops.training.loop import EpochReport


def _run_tags(config: ProjectConfig, device: str, data_version: str, extra: dict[str, str]) -> dict[str, str]:
    techniques = config.training.techniques
    tags = {
        "mlops.project": config.name,
        "mlops.owner": config.owner,
        "mlops.family": config.model.family,
        "mlops.techniques": ",".join(techniques) or "none",
        "mlops.device": device,
        "mlops.data_version": data_version,
        **{f"technique.{t}": "true" for t in techniques},
        **{f"tag.{t}": "true" for t in config.tags},
        **extra,
    }
    return tags


def _run_params(config: ProjectConfig, hyperparameters: dict[str, Any], data_version: str) -> dict[str, Any]:
    return {
        **{f"hp.{k}": v for k, v in hyperparameters.items()},
        "epochs": config.training.epochs,
        "batch_size": config.training.batch_size,
        "seed": config.training.seed,
        "memory_gb": config.training.memory_gb,
        "techniques": ",".join(config.training.techniques) or "none",
        "data.num_samples": config.data.num_samples,
        "data.seed": config.data.seed,
        "data.val_fraction": config.data.val_fraction,  # with data.seed, the split load_dataset made
        "data_version": data_version,
    }


def _environment_params(config: ProjectConfig) -> dict[str, str]:
    """Which Python ran the training and the installed version of each package the project requires:
    a project in its own environment (issue 14) shows the versions it really got."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    from mlops.environments.requirements import parse_requirement

    params = {"environment.python": sys.executable}
    for text in config.environment.requirements:
        name = parse_requirement(text).name
        try:
            params[f"environment.{name}"] = version(name)
        except PackageNotFoundError:
            params[f"environment.{name}"] = "not installed"
    return params


def _epoch_metrics(report: EpochReport, unit: str) -> dict[str, float]:
    from mlops.training.device import memory_snapshot

    metrics = {
        "train_loss": report.loss,
        "epoch_seconds": report.seconds,
        "step_time_ms": 1000 * report.seconds / report.steps,
        f"{unit}_per_second": report.throughput,
        **{f"val_{k}": v for k, v in report.val.items()},
        **{f"train_{k}": v for k, v in report.extra.items()},
        **{k: float(v) for k, v in memory_snapshot().items()},
    }
    return metrics


@dataclass(frozen=True)
class ProjectFamily:
    """A project's model family as its YAML sets it up, resolved once per task: every step that
    trains, scores or saves needs the same instance, merged hyperparameters and error wrapper."""

    source: FamilySource
    family: ModelFamily
    hyperparameters: dict[str, Any]  # the family's defaults, overridden by the YAML's
    step: Callable[[str], Any]  # `with step("create"):` turns an exception in family code into a FamilyCodeError

    def load_dataset(self, config: ProjectConfig, data_path: str | Path) -> dict[str, np.ndarray]:
        return self.family.load_dataset(Path(data_path), self.hyperparameters, config.data.seed, config.data.val_fraction)


def project_family(settings: Settings, config: ProjectConfig) -> ProjectFamily:
    """Import the project's family (its own code folder first) and merge its hyperparameters."""
    from mlops.training.families import find_family, load_family_class, project_code_dir
    from mlops.training.families.contract import family_step

    source = find_family(config.model.family, project_code_dir(settings, config.name))
    family = load_family_class(source)()
    return ProjectFamily(
        source=source,
        family=family,
        hyperparameters={**family.default_hyperparameters, **config.model.hyperparameters},
        step=functools.partial(family_step, config.name, config.model.family, source.origin),
    )


def training_tags(
    config: ProjectConfig, family: ModelFamily, device: str, hardware: HardwareProfile, data_version: str,
    extra: dict[str, str],
) -> dict[str, str]:
    """The tags a training run starts with: project, techniques, data version, machine, and the metric
    that gates it (the analytics and the dashboard compare runs by them)."""
    from mlops.analytics import names
    from mlops.analytics.performance import machine_tags
    from mlops.training.evaluate import gate_metric

    tags = _run_tags(config, device, data_version, extra)
    tags.update(machine_tags(hardware, device))
    tags[names.PERF_UNIT] = family.throughput_unit
    tags[names.QUALITY_METRIC], tags[names.QUALITY_GOAL] = gate_metric(config, family)
    return tags


def log_training_params(
    run_id: str, config: ProjectConfig, hyperparameters: dict[str, Any], data_version: str,
    hardware: HardwareProfile, limit: int,
) -> None:
    """Parameters, hardware and environment of a training run (by id: a federation logs them from the
    task that starts it, not from the one that ends it)."""
    import mlflow

    mlflow.log_params(
        {**_run_params(config, hyperparameters, data_version), "mlx_memory_limit_bytes": limit}, run_id=run_id
    )
    mlflow.log_params(hardware.to_mlflow_params(), run_id=run_id)
    mlflow.log_params(_environment_params(config), run_id=run_id)
    mlflow.log_dict(hardware.to_dict(), "hardware.json", run_id=run_id)


def memory_limit_bytes(config: ProjectConfig) -> int:
    """The task declared its memory (and holds that many GB of the memory pool): MLX stays inside it."""
    return int(config.training.memory_gb * 2**30)


def train_project(
    settings: Settings,
    config: ProjectConfig,
    data_path: str,
    data_version: str,
    run_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train, track and save the project's model; return the run id, metrics and model folder."""
    import mlflow
    import mlx.core as mx

    from mlops.analytics.task_sampling import task_sampler
    from mlops.hardware import probe
    from mlops.tracking.client import configure, ensure_project_experiment
    from mlops.training.device import memory_limit, select_device
    from mlops.training.loop import run_epochs

    configure(settings)  # fails fast, before any compute, when the server is down
    project = project_family(settings, config)
    family = project.family
    techniques = list(config.training.techniques)
    device = select_device()
    hardware = probe()
    data = project.load_dataset(config, data_path)

    experiment_id = ensure_project_experiment(settings, config)  # described and tagged from the YAML
    mx.random.seed(config.training.seed)
    mx.reset_peak_memory()
    limit = memory_limit_bytes(config)
    tags = training_tags(config, family, device, hardware, data_version, run_tags or {})
    with (
        memory_limit(limit),
        mlflow.start_run(experiment_id=experiment_id, tags=tags) as run,
        task_sampler(config, run.info.run_id) as sampler,
    ):
        log_training_params(run.info.run_id, config, project.hyperparameters, data_version, hardware, limit)
        with project.step("create"):
            session = family.create(project.hyperparameters, techniques, config.training.seed)
        with project.step("training (train_epoch / evaluate)"):
            reports = run_epochs(
                session,
                data,
                config.training.epochs,
                config.training.batch_size,
                on_epoch=lambda r: mlflow.log_metrics(_epoch_metrics(r, family.throughput_unit), step=r.epoch),
            )
        return finish_training(
            settings, config, project, session, data,
            device=device, data_version=data_version, run_id=run.info.run_id, experiment_id=experiment_id,
            reports=reports, sampler=sampler,
        )


def finish_training(
    settings: Settings,
    config: ProjectConfig,
    project: ProjectFamily,
    session: TrainingSession,
    data: dict[str, np.ndarray],
    *,
    device: str,
    data_version: str,
    run_id: str,
    experiment_id: str,
    reports: list[EpochReport],
    sampler: HardwareSampler,
    peak_memory_bytes: int = 0,
) -> dict[str, Any]:
    """End a training inside its active MLflow run `run_id`: apply the post-training techniques, score,
    check `predict` against the signature, save the model folder and log it as the run's pyfunc model.

    Both `train_project` and a federation's `publish_model` end here, so their results have one shape
    (what evaluate, register and build read). `peak_memory_bytes`: a peak measured elsewhere (the
    federated clients' machines) that the run's figure must not fall below.
    """
    import mlflow
    import mlx.core as mx

    from mlops.analytics.performance import run_figures
    from mlops.analytics.task_sampling import sampler_tags
    from mlops.tracking.pyfunc_model import MLXModel
    from mlops.training.artifacts import save_model
    from mlops.training.families.contract import FamilyCodeError, check_predict, declared_signature

    family, hyperparameters = project.family, project.hyperparameters
    techniques = list(config.training.techniques)
    with project.step("apply_techniques"):
        applied = session.apply_techniques(techniques, data)
    with project.step("evaluate"):
        final = session.evaluate(data)
    with project.step("predict"):  # a model that breaks its own signature is never registered, never served
        broken = check_predict(session, family, data, hyperparameters)
    if broken:
        raise FamilyCodeError(
            f"project {config.name!r}: model family {config.model.family!r} ({project.source.origin}): "
            f"predict() breaks its declared signature: {'; '.join(broken)}"
        )
    mlflow.log_metrics(final)
    mlflow.log_params({f"result.{k}": v for k, v in applied.items()})

    manifest = save_model(
        model_dir(settings, config.name),
        session,
        {
            "project": config.name,
            "family": config.model.family,
            "family_origin": project.source.origin,
            "hyperparameters": hyperparameters,
            "techniques": techniques,
            "seed": config.training.seed,
            "data_version": data_version,
            "run_id": run_id,
            "device": device,
            "mlx_version": mx.__version__,
            "dtype": str(applied.get("dtype", "float32")),
            # Readers outside the model's environment (gateway, deploy) take it from here, not from the code.
            "signature": declared_signature(family, hyperparameters),
            "metrics": final,
        },
        project.source,
    )
    model_info = mlflow.pyfunc.log_model(
        name="model",
        python_model=MLXModel(),
        artifacts={"model_dir": str(model_dir(settings, config.name))},
        pip_requirements=[f"mlx=={mx.__version__}", "numpy"],
        metadata={"mlops": json.loads(json.dumps(manifest, default=str))},
    )
    mlflow.set_tag("mlops.model_uri", model_info.model_uri)
    peak = max(int(mx.get_peak_memory()), peak_memory_bytes)
    mlflow.log_metric("mlx_run_peak_memory_bytes", peak)
    sampler.stop()  # the figures cover the task up to here
    mlflow.log_metrics(run_figures(reports, peak, manifest.get("weights_bytes"), sampler))
    mlflow.set_tags(sampler_tags(sampler))
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "experiment": config.name,
        "model_uri": model_info.model_uri,
        "model_dir": str(model_dir(settings, config.name)),
        "metrics": final,
        "epochs": [{"epoch": r.epoch, "loss": r.loss, **r.val} for r in reports],
        "device": device,
        "mlx_version": mx.__version__,
        "data_version": data_version,
        "dtype": manifest["dtype"],
        "weights_bytes": manifest["weights_bytes"],
        "peak_memory_bytes": peak,
        "applied": applied,
    }
