"""A real training and evaluation task: sampled hardware series, the comparable `perf/` figures and the
machine's identity on the run, in a real MLflow store. Readers that cannot read on this Linux machine
(Apple's GPU, macmon, NVML without a driver) are absent and say why; nothing is invented for them."""

from __future__ import annotations

import pytest

from mlops.analytics import names


def _train(tmp_path, monkeypatch, tracking: dict, epochs: int = 2):
    from mlops.config.schema import ProjectConfig
    from mlops.data.project_data import ensure_project_data
    from mlops.settings import Settings
    from mlops.training.trainer import train_project

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLOPS_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    config = ProjectConfig(
        name="sampled_proj", data={"num_samples": 4096}, model={"family": "mlp_classifier"},
        training={"epochs": epochs, "techniques": ["quantization"]}, tracking=tracking,
    )
    data = ensure_project_data(settings, config.name, "mlp_classifier", 4096, 0, {})
    return settings, config, data, train_project(settings, config, data["path"], data["version"])


def test_a_training_run_carries_sampled_series_figures_and_the_machine(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from mlops.hardware import probe
    from mlops.hardware.thermal import read_thermal
    from mlops.training.evaluate import evaluate_model

    settings, config, data, result = _train(tmp_path, monkeypatch, {"sample_seconds": 0.5})
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    tags, metrics = run.data.tags, run.data.metrics

    hardware = probe()
    chip = hardware.chip if hardware.chip != "unknown" else hardware.cpu_brand
    assert tags[names.MACHINE_CHIP] == chip and tags[names.MACHINE_DEVICE] == result["device"]
    assert tags[names.MACHINE].startswith(chip) and tags[names.MACHINE].endswith(result["device"])
    assert tags[names.MACHINE_MEMORY_GB] == hardware.memory_total_gb
    assert (tags[names.PERF_UNIT], tags[names.QUALITY_METRIC], tags[names.QUALITY_GOAL]) == ("samples", "accuracy", "max")
    assert tags[names.TECHNIQUES] == "quantization"

    # The comparable figures, from this run's own epochs and memory
    per_epoch = {
        m.step: m.value for m in client.get_metric_history(run.info.run_id, "epoch_seconds")
    }, {m.step: m.value for m in client.get_metric_history(run.info.run_id, "samples_per_second")}
    seconds = sum(per_epoch[0].values())
    trained = sum(per_epoch[0][e] * per_epoch[1][e] for e in per_epoch[0])  # samples of both epochs
    assert len(per_epoch[0]) == 2
    assert metrics[names.TRAIN_SECONDS] == pytest.approx(seconds)
    assert metrics[names.THROUGHPUT] == pytest.approx(trained / seconds)
    assert metrics[names.PEAK_MEMORY_MB] == pytest.approx(result["peak_memory_bytes"] / 1e6)
    assert metrics[names.THROUGHPUT_PER_GB] == pytest.approx(metrics[names.THROUGHPUT] / (result["peak_memory_bytes"] / 1e9))
    assert metrics[names.MODEL_FOOTPRINT_MB] == pytest.approx(result["weights_bytes"] / 1e6)
    assert names.STEP_TIME_MS in metrics and names.CPU_UTILIZATION_MEAN in metrics

    # Sampled series under MLflow's own names, at least the one taken when the task started
    cpu = client.get_metric_history(run.info.run_id, names.SYSTEM + names.CPU_UTILIZATION)
    mlx = client.get_metric_history(run.info.run_id, names.SYSTEM + names.MLX_ACTIVE_MB)
    assert len(mlx) == int(tags["mlops.sampler.samples"]) >= 2  # when started and when stopped, at least
    assert len(cpu) == len(mlx) - 1  # CPU utilization is a share since the previous sample: none at the first
    assert all(0 <= m.value <= 100 for m in cpu)
    assert tags["mlops.sampler.cpu_memory"] == tags["mlops.sampler.mlx_memory"] == "sampled"
    # Nothing this machine cannot read is logged, and the tags say why
    for reader in ("apple_gpu", "macmon"):
        assert tags[f"mlops.sampler.{reader}"].startswith("unavailable: ")
    if tags["mlops.sampler.nvidia_gpu"].startswith("unavailable"):
        assert names.GPU_UTILIZATION_MEAN not in metrics
        assert not client.get_metric_history(run.info.run_id, names.SYSTEM + names.GPU_UTILIZATION)
    assert names.ENERGY_PER_SAMPLE_J not in metrics and names.POWER_MEAN_WATTS not in metrics  # no power source here
    thermal_known = read_thermal().state != "unknown"
    assert (tags["mlops.sampler.thermal"] == "sampled") == thermal_known
    assert (names.THROTTLED_SHARE in metrics) == thermal_known

    # The evaluation task samples into the same run, after the training task's steps
    trained_steps = len(cpu)
    evaluate_model(settings, config, data["path"], result["run_id"], result["model_dir"])
    after = client.get_metric_history(run.info.run_id, names.SYSTEM + names.CPU_UTILIZATION)
    assert len(after) > trained_steps
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, names.SYSTEM + names.MLX_ACTIVE_MB))
    assert steps == list(range(len(steps)))  # one timeline: the evaluation's steps follow the training's


def test_system_metrics_off_logs_no_series_but_the_figures(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    _, _, _, result = _train(tmp_path, monkeypatch, {"system_metrics": False}, epochs=1)
    run = MlflowClient().get_run(result["run_id"])
    assert not [k for k in run.data.metrics if k.startswith(names.SYSTEM)]
    assert run.data.tags["mlops.sampler.samples"] == "0"  # never started
    assert names.THROUGHPUT in run.data.metrics and names.CPU_UTILIZATION_MEAN not in run.data.metrics
