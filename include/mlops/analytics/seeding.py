"""A known history written to an MLflow store: what the analytics tests and benchmarks read.

Not used by the platform itself. Every run is written the way the trainer and the monitor write
theirs (`mlops.analytics.names`), with figures drawn from fixed per-technique and per-machine
profiles plus seeded noise, so which technique is best on which machine is known in advance:

* machine A (an M4 Max, with a power reading): quantization is within 1% of the best quality and the fastest of those;
  pruning is faster still but 6% worse, so "fastest within 2%" picks quantization;
* machine B (an M3 Max, without one): quantization is slow there (its profile says so), so LoRA wins.

The machines' identities are what the probe reads from two real recorded `sysctl` outputs
(`MACHINE_TAGS`); their performance profiles are invented.
Monitoring runs carry the version that was serving (the latest registered before them), as the
monitor tags its own; `seed_predictions` writes a served-prediction log through the gateway's writer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops.analytics import names
from mlops.monitoring.report import MODEL_VERSION_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.settings import Settings

#: technique -> (quality, relative throughput, relative peak memory, relative model size)
TECHNIQUES: dict[str, tuple[float, float, float, float]] = {
    "none": (0.900, 1.00, 1.00, 1.00),
    "quantization": (0.893, 1.60, 0.55, 0.27),
    "pruning": (0.846, 1.90, 0.80, 0.50),
    "lora": (0.889, 1.30, 0.70, 1.02),
    "distillation": (0.871, 1.45, 0.60, 0.40),
}
#: The two machines, by the `machine.*` tags `machine_tags(probe_from_dir(bundle), "gpu")` gives for two
#: recorded `sysctl` outputs (tests/hardware/fixtures/recorded/m4max_archspec_sequoia and
#: m3max_archspec_sequoia; tests/analytics/test_compare.py checks they still do). sysctl names no GPU
#: core count, so none is claimed.
MACHINE_TAGS: dict[str, dict[str, str]] = {
    "Apple M4 Max, 64 GB, gpu": {names.MACHINE_CHIP: "Apple M4 Max", names.MACHINE_GPU_CORES: "unknown",
                                 names.MACHINE_MEMORY_GB: "64.0", names.MACHINE_DEVICE: "gpu"},
    "Apple M3 Max, 36 GB, gpu": {names.MACHINE_CHIP: "Apple M3 Max", names.MACHINE_GPU_CORES: "unknown",
                                 names.MACHINE_MEMORY_GB: "36.0", names.MACHINE_DEVICE: "gpu"},
}
RECORDED_BUNDLES = ("m4max_archspec_sequoia", "m3max_archspec_sequoia")  # in the order of MACHINE_TAGS
#: machine -> (base throughput, per-technique speed factor overriding the profile, watts or None): invented
#: profiles, chosen so that the best technique differs between the machines.
MACHINES: dict[str, tuple[float, dict[str, float], float | None]] = {
    "Apple M4 Max, 64 GB, gpu": (5200.0, {}, 38.0),
    "Apple M3 Max, 36 GB, gpu": (3900.0, {"quantization": 1.05}, None),
}
#: The best technique on each machine under "fastest within 2% of the best quality".
EXPECTED_BEST = {
    "Apple M4 Max, 64 GB, gpu": "quantization",
    "Apple M3 Max, 36 GB, gpu": "lora",
}
FAILURE_CAUSES = ("out_of_memory", "thermal_throttling", "data", "code")


@dataclass
class SeededHistory:
    projects: list[str]
    runs: int
    monitoring_runs: int
    failed_runs: int
    versions: int


def seed_history(
    client: MlflowClient,
    projects: list[str],
    runs_per_project: int,
    seed: int = 0,
    start_ms: int = 1_780_000_000_000,
    system_samples: int = 4,
    artifact_root: str | None = None,
) -> SeededHistory:
    """Write `runs_per_project` training runs per project (techniques x machines in turn), a monitoring
    run every 5, a failed run with a diagnosed cause every 10, and a registered version every 10.
    `artifact_root` (a URI): where the experiments keep artifacts (else MLflow's default, ./mlruns of the cwd)."""
    rng = random.Random(seed)
    techniques, machines = list(TECHNIQUES), list(MACHINES)
    counts = {"runs": 0, "monitoring": 0, "failed": 0, "versions": 0}
    for project in projects:
        experiment_id = _experiment(client, project, artifact_root)
        serving: int | None = None  # the latest registered version: what the monitor saw served
        for i in range(runs_per_project):
            technique = techniques[i % len(techniques)]
            machine = machines[(i // len(techniques)) % len(machines)]
            moment = start_ms + i * 3_600_000
            run_id = _training_run(client, experiment_id, project, technique, machine, rng, moment, system_samples)
            counts["runs"] += 1
            if i % 10 == 9:
                serving = _register(client, project, run_id, technique)
                counts["versions"] += 1
            if i % 5 == 4:
                _monitoring_run(client, experiment_id, project, rng, moment + 1_800_000, i % 20 == 19, serving)
                counts["monitoring"] += 1
            if i % 10 == 3:
                _failed_run(client, experiment_id, project, machine, FAILURE_CAUSES[(i // 10) % len(FAILURE_CAUSES)], moment)
                counts["failed"] += 1
    return SeededHistory(projects, counts["runs"], counts["monitoring"], counts["failed"], counts["versions"])


def _experiment(client: MlflowClient, project: str, artifact_root: str | None) -> str:
    found = client.get_experiment_by_name(project)
    if found is not None:
        return found.experiment_id
    location = f"{artifact_root.rstrip('/')}/{project}" if artifact_root else None
    return client.create_experiment(project, artifact_location=location,
                                    tags={names.PROJECT: project, "mlops.owner": "seeded"})


def _training_run(
    client: MlflowClient, experiment_id: str, project: str, technique: str, machine: str,
    rng: random.Random, moment: int, system_samples: int,
) -> str:
    from mlflow.entities import Metric, RunTag

    quality, speed, memory, size = TECHNIQUES[technique]
    base, overrides, watts = MACHINES[machine]
    throughput = base * overrides.get(technique, speed) * rng.uniform(0.97, 1.03)
    peak_mb = 900.0 * memory * rng.uniform(0.98, 1.02)
    seconds = 20480 / throughput * 3
    tags = {
        names.PROJECT: project,
        names.TECHNIQUES: technique,
        names.MACHINE: machine,
        **MACHINE_TAGS[machine],
        names.PERF_UNIT: "samples",
        names.QUALITY_METRIC: "accuracy",
        names.QUALITY_GOAL: "max",
        "mlops.family": "mlp_classifier",
    }
    run = client.create_run(experiment_id, start_time=moment, tags=tags, run_name=f"{project}-{technique}")
    run_id = run.info.run_id
    value = quality + rng.uniform(-0.003, 0.003)
    figures = {
        "accuracy": value,
        "eval_accuracy": value,
        names.THROUGHPUT: throughput,
        names.STEP_TIME_MS: 64_000 / throughput,
        names.TRAIN_SECONDS: seconds,
        names.PEAK_MEMORY_MB: peak_mb,
        names.THROUGHPUT_PER_GB: throughput / (peak_mb / 1e3),
        names.MODEL_FOOTPRINT_MB: 4.2 * size,
        names.GPU_UTILIZATION_MEAN: min(99.0, 55 * speed * rng.uniform(0.9, 1.1)),
        names.CPU_UTILIZATION_MEAN: 30 * rng.uniform(0.8, 1.2),
        names.THROTTLED_SHARE: rng.choice((0.0, 0.0, 0.0, 0.25)),
    }
    if watts is not None:
        figures[names.POWER_MEAN_WATTS] = watts
        figures[names.ENERGY_JOULES] = watts * seconds
        figures[names.ENERGY_PER_SAMPLE_J] = watts * seconds / (20480 * 3)
    metrics = [Metric(k, float(v), moment, 0) for k, v in figures.items()]
    for epoch in range(3):
        metrics.append(Metric("train_loss", 1.0 / (epoch + 1) + rng.uniform(0, 0.05), moment + epoch, epoch))
    for step in range(system_samples):
        stamp = moment + step * 5000
        metrics.append(Metric(names.SYSTEM + names.GPU_UTILIZATION, figures[names.GPU_UTILIZATION_MEAN], stamp, step))
        metrics.append(Metric(names.SYSTEM + names.THERMAL_LEVEL, 2.0 if step == 0 and figures[names.THROTTLED_SHARE] else 0.0,
                              stamp, step))
    client.log_batch(run_id, metrics=metrics, params=[], tags=[RunTag("mlops.evaluation", "passed")])
    client.set_terminated(run_id, "FINISHED", end_time=moment + int(seconds * 1000))
    return run_id


def _register(client: MlflowClient, project: str, run_id: str, technique: str) -> int:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(project, tags={"project": project})
    except MlflowException:
        pass  # registered by an earlier version
    run = client.get_run(run_id)
    version = client.create_model_version(project, f"{run.info.artifact_uri}/model", run_id=run_id,
                                          tags={"project": project, "techniques": technique})
    return int(version.version)


def _monitoring_run(
    client: MlflowClient, experiment_id: str, project: str, rng: random.Random, moment: int, drifted: bool,
    version: int | None,
) -> None:
    from mlflow.entities import Metric

    tags = {
        names.KIND: "monitoring", names.PROJECT: project,
        "mlops.drift_status": "drift" if drifted else "no_drift", "mlops.performance_status": "ok",
        "mlops.retrain_requested": str(drifted).lower(),
    }
    if version is not None:
        tags[MODEL_VERSION_TAG] = str(version)
    run = client.create_run(experiment_id, start_time=moment, tags=tags)
    values = {
        "drift_share": 0.6 if drifted else rng.uniform(0.0, 0.2),
        "serving_accuracy": rng.uniform(0.85, 0.92),
        "serving_p50_ms": rng.uniform(2.0, 4.0),
        "serving_p99_ms": rng.uniform(8.0, 15.0),
        "serving_requests": float(rng.randint(500, 5000)),
        "serving_requests_per_busy_second": rng.uniform(100, 400),
    }
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, moment, 0) for k, v in values.items()])
    client.set_terminated(run.info.run_id, "FINISHED", end_time=moment + 60_000)


def _failed_run(client: MlflowClient, experiment_id: str, project: str, machine: str, cause: str, moment: int) -> None:
    run = client.create_run(experiment_id, start_time=moment, tags={
        names.PROJECT: project, names.MACHINE: machine,
        names.FAILURE_CAUSE: cause, "mlops.failure_task": "train (try 1)",
    })
    client.set_terminated(run.info.run_id, "FAILED", end_time=moment + 30_000)


def seed_predictions(
    settings: Settings, project: str, versions: dict[int, float], requests: int, end: float, seed: int = 0
) -> int:
    """Write `requests` served predictions of `project` over the hour before `end` (epoch seconds),
    spread over `versions` ({version: median latency in ms}), through the gateway's log writer."""
    import numpy as np

    from mlops.monitoring.prediction_log import PredictionLogWriter, log_root

    rng = np.random.default_rng(seed)
    writer = PredictionLogWriter(log_root(settings), flush_seconds=3600, thermal=lambda: "nominal")
    choices = sorted(versions)
    try:
        for i in range(requests):
            version = choices[i % len(choices)]
            rows = int(rng.integers(1, 4))
            latency = float(versions[version] * rng.lognormal(0.0, 0.25))
            x = rng.standard_normal((rows, 4)).astype(np.float32)
            writer.record(project, writer.request_id(), version, "mlx", "gpu", latency, {"x": x},
                          {"label": rng.integers(0, 4, rows)}, rows, ts=end - 3600 + 3600 * i / requests)
        return writer.flush()
    finally:
        writer.close()
