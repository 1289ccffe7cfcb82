"""The dashboard tests' world: a real MLflow store (sqlite) with a known history per model family, and a projects folder beside it.

Five projects, one per family fit: a classifier (accuracy, max), a language model (perplexity, min),
a diffusion model (loss, min), a dual encoder (recall_at_1, max) and a quantized classifier (int4,
its footprint in a version tag). Every version's run carries the family's eval_* figures, as the
trainer logs them, so the newest version is not the best one anywhere (latest vs best is visible).
Versions carry their evaluation as tags too (`registry.evaluation_tags`, what registration writes),
except LEGACY's, registered as before those tags: the dashboard reads its versions' runs instead.
Plus an invalid YAML (located errors) and a project with an experiment but no YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlops_testing import free_port

from mlops.analytics import names
from mlops.monitoring.report import MODEL_VERSION_TAG
from mlops.settings import Settings

M4 = "Apple M4 Max, 64 GB, gpu"
START_MS = 1_780_000_000_000


@dataclass(frozen=True)
class Family:
    family: str
    metric: str
    goal: str
    values: tuple[float, ...]  # the quality of versions 1, 2, 3
    extra: str  # a second eval figure the family's evaluate returns
    quantization: str = "none"
    footprint_bytes: int = 4_200_000


PROJECTS: dict[str, Family] = {
    "shop_classifier": Family("mlp_classifier", "accuracy", "max", (0.80, 0.91, 0.85), "loss"),
    "story_lm": Family("tiny_lm", "perplexity", "min", (30.0, 12.0, 18.0), "loss"),
    "pixel_diffusion": Family("tiny_diffusion", "loss", "min", (0.40, 0.21, 0.33), "sample_mmd"),
    "clip_pairs": Family("dual_encoder", "recall_at_1", "max", (0.42, 0.66, 0.58), "loss"),
    "tiny_quant": Family("mlp_classifier", "accuracy", "max", (0.88, 0.90, 0.89), "loss", "int4", 1_150_000),
}
LEGACY = "shop_classifier"  # versions without evaluation tags
BROKEN = "broken_proj"
ORPHAN = "orphan_proj"  # an experiment tagged as a project's, no YAML


@dataclass
class Store:
    settings: Settings
    uri: str
    client: object
    runs: dict[str, list[str]]  # project -> run ids of versions 1..3
    experiments: dict[str, str]
    monitoring: dict[str, str]  # project -> run id of its latest monitoring run


def write_projects(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, fit in PROJECTS.items():
        (folder / f"{name}.yaml").write_text(
            f"name: {name}\ndescription: the {fit.family} project\nowner: team-{fit.family}\n"
            f"tags: [{fit.family}, seeded]\nmodel:\n  family: {fit.family}\n"
        )
    # two errors the loader locates: an unknown key (did you mean) and a value out of bounds
    (folder / f"{BROKEN}.yaml").write_text(f"name: {BROKEN}\nmodel:\n  family: mlp_classifier\npriorty: 3\nretries: 99\n")


def seed(client, settings: Settings) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]]:
    from mlflow.entities import Metric

    from mlops.tracking.registry import evaluation_tags

    runs: dict[str, list[str]] = {}
    experiments: dict[str, str] = {}
    monitoring: dict[str, str] = {}
    for p, (name, fit) in enumerate(PROJECTS.items()):
        experiment = client.create_experiment(name, artifact_location=(settings.home / "artifacts" / name).as_uri(),
                                              tags={names.PROJECT: name, "mlops.family": fit.family})
        experiments[name] = experiment
        client.create_registered_model(name)
        runs[name] = []
        for i, value in enumerate(fit.values):
            moment = START_MS + (p * 10 + i) * 3_600_000
            technique = "quantization" if fit.quantization != "none" else ("lora" if i == 1 else "none")
            run = client.create_run(experiment, start_time=moment, tags={
                names.PROJECT: name, names.TECHNIQUES: technique, names.MACHINE: M4,
                names.QUALITY_METRIC: fit.metric, names.QUALITY_GOAL: fit.goal, "mlops.family": fit.family})
            figures = {fit.metric: value, f"eval_{fit.metric}": value, f"eval_{fit.extra}": value / 2,
                       names.TRAIN_SECONDS: 10.0 + i, names.MODEL_FOOTPRINT_MB: fit.footprint_bytes / 1e6}
            client.log_batch(run.info.run_id, metrics=[Metric(k, v, moment, 0) for k, v in figures.items()])
            client.set_terminated(run.info.run_id, "FINISHED", end_time=moment + 20_000)
            evaluation = {"metric": fit.metric, "goal": fit.goal, "metrics": {fit.metric: value, fit.extra: value / 2}}
            client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags={
                "project": name, "techniques": technique, "quantization": fit.quantization,
                "memory_footprint_bytes": str(fit.footprint_bytes),
                **(evaluation_tags(evaluation) if name != LEGACY else {})})
            runs[name].append(run.info.run_id)
    # monitoring of the classifier: an old calm run, then the latest with drift
    for i, (drift, status) in enumerate(((0.1, "no_drift"), (0.6, "drift"))):
        moment = START_MS + (100 + i) * 3_600_000
        run = client.create_run(experiments["shop_classifier"], start_time=moment, tags={
            names.KIND: "monitoring", names.PROJECT: "shop_classifier", MODEL_VERSION_TAG: "3",
            "mlops.drift_status": status, "mlops.retrain_requested": str(status == "drift").lower()})
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, moment, 0) for k, v in {
            "drift_share": drift, "serving_accuracy": 0.87 - i / 10, "serving_p50_ms": 2.5, "serving_p99_ms": 9.0,
            "serving_requests": 1200.0}.items()])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=moment + 60_000)
        monitoring["shop_classifier"] = run.info.run_id
    client.set_experiment_tag(experiments["shop_classifier"], names.BEST_TECHNIQUE,
                              json.dumps({"objective": "fastest", "best": {M4: "lora", "Other, 8 GB, cpu": "none"}}))
    experiments[ORPHAN] = client.create_experiment(ORPHAN, tags={names.PROJECT: ORPHAN, "mlops.owner": "ghost",
                                                                 "mlops.family": "tiny_lm", "tag.legacy": "true"})
    return runs, experiments, monitoring


def settings_for(home: Path, uri: str, **extra: str) -> Settings:
    env = {"MLOPS_HOME": str(home), "MLOPS_TRACKING_URI": uri, "MLOPS_PROJECTS_DIR": str(home / "projects"),
           "MLOPS_GATEWAY_PORT": str(free_port()), **extra}  # a port no gateway listens on
    return Settings.from_env(env)
