"""Projects filed in MLflow: each experiment and registered model carries its YAML's description, owner and
tags, kept in step with the YAML, so one tag filter lists one owner's (or project's) experiments and models.

Every store test runs twice: on a SQLite store (what tasks use without `mlops up`) and through a real
`mlflow server` on 127.0.0.1 over a temporary SQLite file (what they use under `mlops up`), stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.config.schema import ProjectConfig
from mlops.settings import Settings
from mlops.tracking.metadata import DESCRIPTION_TAG, project_metadata, tag_changes, tag_key
from mlops_testing import free_port, wait_for

pytestmark = pytest.mark.timeout(300)


def project(
    name: str, owner: str, tags: list[str], description: str = "", family: str = "mlp_classifier"
) -> ProjectConfig:
    return ProjectConfig(name=name, owner=owner, tags=tags, description=description, model={"family": family})


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` (no auth app) on a loopback port over a fresh SQLite store; stopped by its PID."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _healthy(url), 120, "mlflow server /health")
        assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def sqlite_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sqlite-home")  # one store for the module: each test names its own projects


@pytest.fixture(params=["sqlite", "server"])
def settings(request, sqlite_home: Path, monkeypatch) -> Settings:
    """The platform's settings on this module's store, MLflow's client pointed at it."""
    from mlops.tracking.client import configure

    monkeypatch.setenv("MLOPS_HOME", str(sqlite_home))
    monkeypatch.delenv("MLOPS_TRACKING_URI", raising=False)
    if request.param == "server":
        monkeypatch.setenv("MLOPS_TRACKING_URI", request.getfixturevalue("mlflow_server"))
    settings = Settings.from_env()
    configure(settings)
    return settings


def experiment_tags(name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient().get_experiment_by_name(name).tags


def experiments_where(filter_string: str, prefix: str) -> set[str]:
    from mlflow import MlflowClient

    return {e.name for e in MlflowClient().search_experiments(filter_string=filter_string) if e.name.startswith(prefix)}


def models_where(filter_string: str, prefix: str) -> set[str]:
    from mlflow import MlflowClient

    return {m.name for m in MlflowClient().search_registered_models(filter_string=filter_string)
            if m.name.startswith(prefix)}


@pytest.fixture
def writes(monkeypatch) -> list[tuple[str, tuple]]:
    """Every tag or description write MLflow's client makes (the real call still runs)."""
    from mlflow import MlflowClient

    calls: list[tuple[str, tuple]] = []
    for method in ("set_experiment_tag", "delete_experiment_tag", "set_registered_model_tag",
                   "delete_registered_model_tag", "update_registered_model"):
        real = getattr(MlflowClient, method)

        def spy(self, *args, _real=real, _method=method, **kwargs):
            calls.append((_method, args))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, method, spy)
    return calls


# -- what a YAML gives ---------------------------------------------------------------------------


def test_a_yaml_gives_project_owner_family_its_tags_and_description():
    config = project("lora_x", "llm-team", ["llm", "peft", "team:a b/c"], description="  Low-rank adapters.\n")
    metadata = project_metadata(config)
    assert metadata.description == "Low-rank adapters."
    assert metadata.tags == {
        "mlops.project": "lora_x", "mlops.owner": "llm-team", "mlops.family": "mlp_classifier",
        "mlops.tags": "llm,peft,team:a b/c",
        "tag.llm": "true", "tag.peft": "true", "tag.team_a_b_c": "true",  # a key MLflow accepts and a filter can name
    }
    assert metadata.experiment_tags() == {**metadata.tags, DESCRIPTION_TAG: "Low-rank adapters."}
    bare = project_metadata(project("bare_x", "ops", []))
    assert "mlops.tags" not in bare.tags and DESCRIPTION_TAG not in bare.experiment_tags()
    assert tag_key("meta-learning") == "tag.meta-learning"


def test_only_what_differs_is_written_and_only_owned_stale_keys_are_deleted():
    current = {"mlops.owner": "a", "tag.old": "true", "mlops.best_technique": "{}", "x": "1"}
    desired = {"mlops.owner": "a", "mlops.family": "mlp"}
    assert tag_changes(current, desired) == ({"mlops.family": "mlp"}, [])
    assert tag_changes(current, desired, lambda key: key.startswith("tag.")) == ({"mlops.family": "mlp"}, ["tag.old"])


# -- experiments ---------------------------------------------------------------------------------


def test_a_project_experiment_carries_its_yaml_and_follows_its_changes(settings: Settings, writes: list):
    from mlflow import MlflowClient

    from mlops.tracking.client import ensure_project_experiment

    lora = project("exp_lora", "llm-team", ["llm", "peft"], description="LoRA fine-tuning of a tiny transformer.")
    clip = project("exp_clip", "llm-team", ["clip"], description="Contrastive image-text.")
    diffusion = project("exp_diffusion", "vision-team", [], family="unet_diffusion")
    ids = {config.name: ensure_project_experiment(settings, config) for config in (lora, clip, diffusion)}

    assert experiment_tags("exp_lora") == {
        DESCRIPTION_TAG: "LoRA fine-tuning of a tiny transformer.",  # the UI's experiment description
        "mlops.project": "exp_lora", "mlops.owner": "llm-team", "mlops.family": "mlp_classifier",
        "mlops.tags": "llm,peft", "tag.llm": "true", "tag.peft": "true",
    }
    assert experiment_tags("exp_diffusion")["mlops.family"] == "unet_diffusion"
    assert experiments_where("tags.mlops.owner = 'llm-team'", "exp_") == {"exp_lora", "exp_clip"}
    assert experiments_where("tags.mlops.owner = 'vision-team'", "exp_") == {"exp_diffusion"}
    assert experiments_where("tags.mlops.project = 'exp_clip'", "exp_") == {"exp_clip"}
    assert experiments_where("tags.tag.peft = 'true'", "exp_") == {"exp_lora"}

    # Tags other code puts on the experiment (mlops compare's verdict, a note written in the UI) stay.
    client = MlflowClient()
    client.set_experiment_tag(ids["exp_lora"], "mlops.best_technique", "{}")
    client.set_experiment_tag(ids["exp_diffusion"], DESCRIPTION_TAG, "written in the UI")

    # Nothing changed in the YAML: the next training run only reads.
    del writes[:]
    assert [ensure_project_experiment(settings, c) for c in (lora, clip, diffusion)] == list(ids.values())
    assert writes == []
    assert experiment_tags("exp_diffusion")[DESCRIPTION_TAG] == "written in the UI"  # an empty YAML one leaves it

    # The YAML changes owner, description and tags: the next training run writes just that.
    moved = project("exp_lora", "vision-team", ["llm", "vision"], description="LoRA, now owned by vision.")
    assert ensure_project_experiment(settings, moved) == ids["exp_lora"]
    assert sorted(writes) == sorted([
        ("set_experiment_tag", (ids["exp_lora"], "mlops.owner", "vision-team")),
        ("set_experiment_tag", (ids["exp_lora"], "mlops.tags", "llm,vision")),
        ("set_experiment_tag", (ids["exp_lora"], "tag.vision", "true")),
        ("set_experiment_tag", (ids["exp_lora"], DESCRIPTION_TAG, "LoRA, now owned by vision.")),
        ("delete_experiment_tag", (ids["exp_lora"], "tag.peft")),
    ])
    tags = experiment_tags("exp_lora")
    assert tags[DESCRIPTION_TAG] == "LoRA, now owned by vision." and tags["mlops.owner"] == "vision-team"
    assert "tag.peft" not in tags and tags["tag.vision"] == "true" and tags["mlops.best_technique"] == "{}"
    assert experiments_where("tags.mlops.owner = 'llm-team'", "exp_") == {"exp_clip"}
    assert experiments_where("tags.mlops.owner = 'vision-team'", "exp_") == {"exp_lora", "exp_diffusion"}
    assert experiments_where("tags.tag.peft = 'true'", "exp_") == set()

    # Its tags all dropped from the YAML: the list and every tag.<t> go.
    ensure_project_experiment(settings, project("exp_lora", "vision-team", [], description="LoRA."))
    assert not {k for k in experiment_tags("exp_lora") if k == "mlops.tags" or k.startswith("tag.")}


def test_a_plain_experiment_gets_its_tags_set_and_keeps_the_others(settings: Settings):
    from mlflow import MlflowClient

    from mlops.tracking.client import ensure_experiment

    experiment_id = ensure_experiment(settings, "plain_toolkit", {"mlops.owner": "platform"})
    MlflowClient().set_experiment_tag(experiment_id, "tag.kept", "true")
    assert ensure_experiment(settings, "plain_toolkit", {"mlops.owner": "ops"}) == experiment_id
    assert experiment_tags("plain_toolkit") == {"mlops.owner": "ops", "tag.kept": "true"}  # nothing deleted


# -- registered models ---------------------------------------------------------------------------


def _run_with_model(experiment_id: str, tmp_path: Path) -> tuple[str, str]:
    """A finished run in the experiment whose `model` folder holds an MLmodel file: what registration needs."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.create_run(experiment_id).info.run_id
    folder = tmp_path / f"model-{run_id}"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    client.log_artifacts(run_id, str(folder), artifact_path="model")
    client.set_terminated(run_id)
    return run_id, f"runs:/{run_id}/model"


def run_id_of(client: Any, name: str) -> str:
    return client.get_model_version(name, "1").run_id


def test_the_registered_model_carries_the_project_and_follows_its_changes(settings: Settings, tmp_path: Path, writes):
    from mlflow import MlflowClient

    from mlops.tracking.client import ensure_experiment, ensure_project_experiment
    from mlops.tracking.registry import register_run_model

    client = MlflowClient()
    config = project("meta_reg", "llm-team", ["llm", "peft"], description="A registered LoRA model.")
    other = project("meta_reg_other", "vision-team", ["vision"])
    for c in (config, other):
        run_id, uri = _run_with_model(ensure_project_experiment(settings, c), tmp_path)
        assert register_run_model(settings, c.name, run_id, uri, {"dtype": "float32"})["version"] == 1

    model = client.get_registered_model("meta_reg")
    assert model.description == "A registered LoRA model."
    assert model.tags == {"mlops.project": "meta_reg", "mlops.owner": "llm-team", "mlops.family": "mlp_classifier",
                          "mlops.tags": "llm,peft", "tag.llm": "true", "tag.peft": "true"}
    assert client.get_model_version("meta_reg", "1").tags == {"dtype": "float32"}  # the version's own tags
    assert models_where("tags.mlops.owner = 'llm-team'", "meta_reg") == {"meta_reg"}
    assert models_where("tags.mlops.owner = 'vision-team'", "meta_reg") == {"meta_reg_other"}
    assert models_where("tags.mlops.project = 'meta_reg_other'", "meta_reg") == {"meta_reg_other"}
    assert models_where("tags.tag.peft = 'true'", "meta_reg") == {"meta_reg"}

    # A retry of the same registration (a task retried) writes nothing and makes no new version.
    del writes[:]
    assert register_run_model(settings, "meta_reg", run_id_of(client, "meta_reg"), "unused", {})["created"] is False
    assert writes == []

    # The YAML changes; the next training run (its experiment) and registration carry it to the model.
    changed = project("meta_reg", "vision-team", ["llm"], description="Now owned by vision.")
    run_id, uri = _run_with_model(ensure_project_experiment(settings, changed), tmp_path)
    assert register_run_model(settings, "meta_reg", run_id, uri, {})["version"] == 2
    model = client.get_registered_model("meta_reg")
    assert model.description == "Now owned by vision."
    assert (model.tags["mlops.owner"], model.tags["mlops.tags"]) == ("vision-team", "llm")
    assert "tag.peft" not in model.tags
    assert models_where("tags.mlops.owner = 'llm-team'", "meta_reg") == set()
    assert models_where("tags.mlops.owner = 'vision-team'", "meta_reg") == {"meta_reg", "meta_reg_other"}

    # A run of an experiment that is not the project's leaves the model's metadata alone.
    run_id, uri = _run_with_model(ensure_experiment(settings, "meta_scratch", {}), tmp_path)
    assert register_run_model(settings, "meta_reg", run_id, uri, {})["version"] == 3
    assert client.get_registered_model("meta_reg").tags == model.tags


def test_a_model_registered_before_gets_the_metadata_on_its_next_registration(settings: Settings, tmp_path: Path):
    """Models registered before projects were filed (or by `mlops demo` seeding) are brought in step."""
    from mlflow import MlflowClient

    from mlops.tracking.client import ensure_project_experiment
    from mlops.tracking.registry import register_run_model

    client = MlflowClient()
    client.create_registered_model("meta_old", tags={"project": "meta_old", "tag.stale": "true"}, description="old")
    config = project("meta_old", "ops", ["tabular"], description="Filed now.")
    run_id, uri = _run_with_model(ensure_project_experiment(settings, config), tmp_path)
    register_run_model(settings, "meta_old", run_id, uri, {})
    model = client.get_registered_model("meta_old")
    assert model.description == "Filed now."
    assert model.tags == {"project": "meta_old", "mlops.project": "meta_old", "mlops.owner": "ops",
                          "mlops.family": "mlp_classifier", "mlops.tags": "tabular", "tag.tabular": "true"}


# -- the real training and registration steps -----------------------------------------------------


def test_training_and_registration_file_the_project(tmp_path: Path, monkeypatch):
    """`train_project` files the experiment, `register_run_model` the registered model (SQLite store)."""
    import numpy as np
    from mlflow import MlflowClient

    from mlops.tracking.registry import register_run_model, version_tags
    from mlops.training.families import get_family
    from mlops.training.trainer import train_project

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLOPS_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    config = ProjectConfig(
        name="meta_trained", owner="tabular-team", tags=["tabular", "smoke"], description="A tiny MLP.",
        model={"family": "mlp_classifier"}, training={"epochs": 1, "batch_size": 64},
        tracking={"system_metrics": False},
    )
    family = get_family("mlp_classifier")
    data = tmp_path / "data"
    data.mkdir()
    for array_name, array in family.make_dataset(0, 256, dict(family.default_hyperparameters)).items():
        np.save(data / f"{array_name}.npy", array)
    (data / "spec.json").write_text(json.dumps({"family": "mlp_classifier"}))

    training = train_project(settings, config, str(data), "0" * 32)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("meta_trained")
    assert client.get_run(training["run_id"]).info.experiment_id == experiment.experiment_id
    assert experiment.tags[DESCRIPTION_TAG] == "A tiny MLP." and experiment.tags["mlops.owner"] == "tabular-team"
    assert experiment.tags["tag.smoke"] == "true"

    register_run_model(settings, config.name, training["run_id"], training["model_uri"], version_tags(config, training))
    model = client.get_registered_model("meta_trained")
    assert model.description == "A tiny MLP."
    assert model.tags == project_metadata(config).tags
    assert models_where("tags.mlops.owner = 'tabular-team'", "meta_") == {"meta_trained"}
