"""Train a project's model with MLX and track everything about the run in MLflow.

This is what the `train` step runs. Per epoch it logs the loss, validation metrics,
throughput, step time and MLX memory; once per run the parameters, data version,
hardware, device and techniques (as tags, so runs compare by technique); at the end the
model folder (safetensors + manifest) as an MLflow pyfunc model.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.data.model_artifacts import model_dir

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings
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

    from mlops.analytics import names
    from mlops.analytics.performance import machine_tags, run_figures
    from mlops.analytics.task_sampling import sampler_tags, task_sampler
    from mlops.hardware import probe
    from mlops.training.evaluate import gate_metric
    from mlops.tracking.client import configure, ensure_project_experiment
    from mlops.tracking.pyfunc_model import MLXModel
    from mlops.training.artifacts import save_model
    from mlops.training.device import memory_limit, select_device
    from mlops.training.families import find_family, load_family_class, project_code_dir
    from mlops.training.families.contract import FamilyCodeError, check_predict, declared_signature, family_step
    from mlops.training.loop import run_epochs

    configure(settings)  # fails fast, before any compute, when the server is down
    family_source = find_family(config.model.family, project_code_dir(settings, config.name))
    family = load_family_class(family_source)()
    step = functools.partial(family_step, config.name, config.model.family, family_source.origin)
    hyperparameters = {**family.default_hyperparameters, **config.model.hyperparameters}
    techniques = list(config.training.techniques)
    device = select_device()
    hardware = probe()
    data = family.load_dataset(Path(data_path), hyperparameters, config.data.seed, config.data.val_fraction)

    experiment_id = ensure_project_experiment(settings, config)  # described and tagged from the YAML
    mx.random.seed(config.training.seed)
    mx.reset_peak_memory()
    # The task declared its memory (and holds that many GB of the memory pool): keep MLX inside it.
    limit = int(config.training.memory_gb * 2**30)
    tags = _run_tags(config, device, data_version, run_tags or {})
    tags.update(machine_tags(hardware, device))
    tags[names.PERF_UNIT] = family.throughput_unit
    tags[names.QUALITY_METRIC], tags[names.QUALITY_GOAL] = gate_metric(config, family)
    with (
        memory_limit(limit),
        mlflow.start_run(experiment_id=experiment_id, tags=tags) as run,
        task_sampler(config, run.info.run_id) as sampler,
    ):
        mlflow.log_params({**_run_params(config, hyperparameters, data_version), "mlx_memory_limit_bytes": limit})
        mlflow.log_params(hardware.to_mlflow_params())
        mlflow.log_params(_environment_params(config))
        mlflow.log_dict(hardware.to_dict(), "hardware.json")
        with step("create"):
            session = family.create(hyperparameters, techniques, config.training.seed)
        with step("training (train_epoch / evaluate)"):
            reports = run_epochs(
                session,
                data,
                config.training.epochs,
                config.training.batch_size,
                on_epoch=lambda r: mlflow.log_metrics(_epoch_metrics(r, family.throughput_unit), step=r.epoch),
            )
        with step("apply_techniques"):
            applied = session.apply_techniques(techniques, data)
        with step("evaluate"):
            final = session.evaluate(data)
        with step("predict"):  # a model that breaks its own signature is never registered, never served
            broken = check_predict(session, family, data, hyperparameters)
        if broken:
            raise FamilyCodeError(
                f"project {config.name!r}: model family {config.model.family!r} ({family_source.origin}): "
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
                "family_origin": family_source.origin,
                "hyperparameters": hyperparameters,
                "techniques": techniques,
                "seed": config.training.seed,
                "data_version": data_version,
                "run_id": run.info.run_id,
                "device": device,
                "mlx_version": mx.__version__,
                "dtype": str(applied.get("dtype", "float32")),
                # Readers outside the model's environment (gateway, deploy) take it from here, not from the code.
                "signature": declared_signature(family, hyperparameters),
                "metrics": final,
            },
            family_source,
        )
        model_info = mlflow.pyfunc.log_model(
            name="model",
            python_model=MLXModel(),
            artifacts={"model_dir": str(model_dir(settings, config.name))},
            pip_requirements=[f"mlx=={mx.__version__}", "numpy"],
            metadata={"mlops": json.loads(json.dumps(manifest, default=str))},
        )
        mlflow.set_tag("mlops.model_uri", model_info.model_uri)
        peak = int(mx.get_peak_memory())
        mlflow.log_metric("mlx_run_peak_memory_bytes", peak)
        sampler.stop()  # the figures cover the task up to here
        mlflow.log_metrics(run_figures(reports, peak, manifest.get("weights_bytes"), sampler))
        mlflow.set_tags(sampler_tags(sampler))
    return {
        "run_id": run.info.run_id,
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
