"""`mlops new-project NAME`: a project folder its author owns, ready to validate and to run.

    projects/NAME/
      project.yaml          the project: `model.family: "model:<Name>Family"`, data from files in data/
      model.py              its model family, written out in full (an MLX MLP classifier, no private helpers)
      data/part-0.csv       sample rows (made here with a fixed seed: no download): numeric
      data/part-1.csv       feature columns and an integer `label` column

`--like FAMILY` picks the built-in family the generated one resembles (`LIKE` lists the ones this
can write). The folder is written under a hidden name and renamed into place once complete, so
Airflow's DAG parsing (which skips hidden entries) never sees half a project.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlops.config.schema import NAME_PATTERN
from mlops.settings import get_settings

DEFAULT_LIKE = "mlp_classifier"
SAMPLE_SEED = 0
SAMPLE_ROWS = (600, 600)  # rows of data/part-0.csv and data/part-1.csv
SAMPLE_FEATURES = 8
SAMPLE_CLASSES = 3
SAMPLE_SEPARATION = 1.8  # cluster centres' spread in noise standard deviations: ~0.9 accuracy is reachable
DATA_FOLDER = "data"


class NewProjectError(ValueError):
    """A project that cannot be created; the message says why and what to do instead."""


@dataclass
class NewProject:
    """What `create_project` wrote."""

    name: str
    folder: Path
    files: list[Path] = field(default_factory=list)
    family_class: str = ""


def family_class_name(name: str) -> str:
    """`my_project` -> `MyProjectFamily` (the class model.py defines)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) + "Family"


def data_path_for(projects_dir: Path, name: str) -> str:
    """`data.path` of the new project: relative to the repo root, the folder holding `projects/`."""
    return f"{projects_dir.name}/{name}/{DATA_FOLDER}"


def _names_in_use(projects_dir: Path) -> dict[str, Path]:
    """project name -> file, for every project file of `projects_dir` that names one (valid or not)."""
    import yaml

    from mlops.config import load_projects, project_files
    from mlops.config.errors import ProjectConfigError
    from mlops.config.reading import read_project_text

    try:
        paths = project_files(projects_dir)
    except OSError:
        return {}
    configs, errors = load_projects(paths)
    used = {config.name: path for path, config in configs.items()}
    for path in errors:  # an invalid file still claims its name: creating a second one would clash later
        try:
            data = yaml.safe_load(read_project_text(path))
        except (ProjectConfigError, yaml.YAMLError, RecursionError):
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            used.setdefault(data["name"], path)
    return used


def check_new_project(name: str, projects_dir: Path, like: str = DEFAULT_LIKE) -> None:
    """Raise `NewProjectError` (saying what to do) unless `name` can become a new project in `projects_dir`."""
    if like not in TEMPLATES:
        raise NewProjectError(
            f"--like {like!r} is not supported: new-project can write a family like "
            f"{', '.join(sorted(TEMPLATES))}; pick one of those and change model.py as you need"
        )
    if not re.match(NAME_PATTERN, name):
        raise NewProjectError(
            f"{name!r} is not a valid project name: use lowercase letters, digits and _ "
            "(2-63 characters, starting with a letter), e.g. churn_model"
        )
    folder = projects_dir / name
    if folder.exists() or folder.is_symlink():
        raise NewProjectError(f"{folder} already exists: choose another name, or move that folder away first")
    for suffix in (".yaml", ".yml"):
        if (projects_dir / f"{name}{suffix}").exists():
            raise NewProjectError(
                f"{projects_dir / (name + suffix)} already defines a project of that name: choose another name"
            )
    owner = _names_in_use(projects_dir).get(name)
    if owner is not None:
        raise NewProjectError(f"project name {name!r} is already used by {owner}: choose another name")


def sample_tables(seed: int = SAMPLE_SEED) -> list:
    """The sample rows as pandas DataFrames (one per data file): `feature_0..7` floats and an int `label`.

    Each class is two gaussian clusters: learnable by a small MLP, not perfectly (~0.9 accuracy).
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, SAMPLE_SEPARATION, (2 * SAMPLE_CLASSES, SAMPLE_FEATURES))
    tables = []
    for rows in SAMPLE_ROWS:
        cluster = rng.integers(0, 2 * SAMPLE_CLASSES, rows)
        x = centres[cluster] + rng.normal(0.0, 1.0, (rows, SAMPLE_FEATURES))
        table = pd.DataFrame({f"feature_{i}": x[:, i].round(4).astype("float32") for i in range(SAMPLE_FEATURES)})
        table["label"] = (cluster % SAMPLE_CLASSES).astype("int32")
        tables.append(table)
    return tables


def _write_data(folder: Path) -> list[Path]:
    """One CSV per sample table. CSV only: the loaders read one format per data folder
    (`mlops.data.loaders`), and files of one folder are concatenated by rows."""
    folder.mkdir(parents=True)
    files = []
    for i, table in enumerate(sample_tables()):
        files.append(folder / f"part-{i}.csv")
        table.to_csv(files[-1], index=False)
    return files


def create_project(name: str, projects_dir: Path, like: str = DEFAULT_LIKE) -> NewProject:
    """Write `projects_dir/name/` (project.yaml, model.py, data/): complete, or not at all."""
    projects_dir = Path(projects_dir).resolve()
    check_new_project(name, projects_dir, like)
    projects_dir.mkdir(parents=True, exist_ok=True)
    family_class = family_class_name(name)
    values = {
        "@NAME@": name,
        "@CLASS@": family_class,
        "@DATA_PATH@": data_path_for(projects_dir, name),
        "@FEATURES@": str(SAMPLE_FEATURES),
        "@CLASSES@": str(SAMPLE_CLASSES),
    }
    texts = {file: _fill(text, values) for file, text in TEMPLATES[like].items()}
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=projects_dir))  # hidden: DAG parsing skips it
    try:
        for file, text in texts.items():
            (staging / file).write_text(text)
        data_files = _write_data(staging / DATA_FOLDER)
        target = projects_dir / name
        staging.chmod(0o755)  # mkdtemp made it private
        staging.rename(target)  # one step: the project appears complete
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = [target / file for file in texts] + [target / DATA_FOLDER / f.name for f in data_files]
    return NewProject(name, target, files, family_class)


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _shown(path: Path) -> str:
    """`path` relative to the current folder when it is below it (what a user would type)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _mlops_command() -> str:
    """How to call this CLI: its script beside this Python (`.venv/bin/mlops` from the repo root), else `mlops`."""
    script = Path(sys.executable).with_name("mlops")
    return _shown(script.absolute()) if script.is_file() else "mlops"


def summary(created: NewProject, mlops: str | None = None) -> str:
    """What was written and the commands to run next (printed by `mlops new-project`)."""
    mlops = mlops or _mlops_command()
    folder = _shown(created.folder)
    lines = [f"created project {created.name!r} in {folder}/"]
    lines += [f"  {_shown(f)}" for f in created.files]
    lines += [
        "",
        "next:",
        f"  {mlops} validate {folder}    # the YAML, and model.py imported and checked against the contract",
        f"  {mlops} families    # {created.family_class} listed, from {_shown(created.folder / 'model.py')}",
        f"  {mlops} airflow dags test {created.name}__lifecycle    # data, train, evaluate, register, build",
    ]
    if created.folder.parent != get_settings().projects_dir:
        lines.append(f"  (the last two read MLOPS_PROJECTS_DIR: set it to {_shown(created.folder.parent)} for them)")
    lines += [
        "",
        f"Your own data: put CSV (or Parquet, JSONL, .npy) files in {folder}/{DATA_FOLDER}/ instead, or point "
        "data.path at them; then set model.hyperparameters.features and num_classes in project.yaml.",
    ]
    return "\n".join(lines)


PROJECT_YAML = """\
# yaml-language-server: $schema=../schema.json
# Made by `mlops new-project @NAME@`; DAGs: @NAME@__lifecycle, @NAME@__deploy, @NAME@__monitor.
name: @NAME@
description: "Small MLX MLP classifier of tabular rows (numeric feature columns -> `label`), from the files in data/."
tags: [own-family]
data:
  source: files
  # A folder (its files), a file or a glob, relative to the folder holding projects/; or an s3:// ... URL.
  path: @DATA_PATH@
  val_fraction: 0.2   # share of the rows held out for evaluation (shuffled with data.seed)
model:
  family: "model:@CLASS@"   # the class @CLASS@ in model.py, beside this file
  hyperparameters:    # overrides of model.py's default_hyperparameters
    features: @FEATURES@        # numeric columns of the data (every column but `label`)
    num_classes: @CLASSES@     # labels are 0 .. num_classes - 1
    hidden: 32
training:
  epochs: 5
  batch_size: 32
  memory_gb: 1
evaluation:
  metric: accuracy
  threshold: 0.8      # register only a model at least this accurate (the sample data gives ~0.9)
serving:
  enabled: true       # deploy every registered version behind the gateway (@NAME@__deploy)
  max_replicas: 1
monitoring:
  enabled: true       # drift of served inputs, accuracy from feedback, latency (@NAME@__monitor)
  accuracy_threshold: 0.7
"""

MLP_CLASSIFIER_MODEL = '''\
"""The model family of project @NAME@: a small MLP classifier of tabular rows, in MLX.

project.yaml names it as `model.family: "model:@CLASS@"`: the platform finds this file
beside the YAML and imports it in its tasks (train, evaluate), in serving, in the monitor and in
`mlops validate` (which also checks the class fulfils the ModelFamily contract). DAG parsing never
imports it. Training copies this folder's Python files into the model (`code/`), so every
registered version keeps being served with the code it was trained with.

Everything here is yours to change. The platform owns the loop around it: it calls
`train_epoch` once per epoch and `evaluate` after each, times them, logs losses, metrics,
throughput and memory to MLflow, saves `TrainingSession.weights()` and registers the model
when `evaluate`'s gate metric passes the threshold of project.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from mlops.training.families.base import EpochStats, ModelFamily, TrainingSession


class MLP(nn.Module):
    """`layers` hidden ReLU layers of width `hidden`, then a linear head giving one logit per class."""

    def __init__(self, features: int, hidden: int, classes: int, layers: int) -> None:
        super().__init__()
        sizes = [features] + [hidden] * layers
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.head = nn.Linear(sizes[-1], classes)

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = nn.relu(layer(x))
        return self.head(x)


class ClassifierSession(TrainingSession):
    """One model being trained: the MLP and its Adam optimizer."""

    def __init__(self, hp: dict[str, Any], seed: int) -> None:
        mx.random.seed(seed)  # the same seed gives the same initial weights: a rerun trains the same model
        self.hp, self.seed = hp, seed
        self.model = MLP(hp["features"], hp["hidden"], hp["num_classes"], hp["layers"])
        self.optimizer = optim.Adam(learning_rate=hp["learning_rate"])
        self._loss_and_grad = nn.value_and_grad(self.model, self._loss)

    @staticmethod
    def _loss(model: MLP, x: mx.array, y: mx.array) -> mx.array:
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        """One shuffled pass over the training rows (`train_x`, `train_y`).

        Called by the `train` task once per epoch (`training.epochs`), after the thermal gate let it
        start and while it holds `training.memory_gb` (rounded up) slots of the `mlx_memory` pool;
        MLX is limited to that much memory. The platform times the call and logs the returned loss and
        `samples / seconds` (throughput) to MLflow.
        """
        x, y = data["train_x"], data["train_y"]
        order = np.random.default_rng([self.seed, epoch]).permutation(len(x))  # new order each epoch, same each rerun
        total = 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start : start + batch_size]
            loss, grads = self._loss_and_grad(self.model, mx.array(x[rows]), mx.array(y[rows]))
            self.optimizer.update(self.model, grads)
            mx.eval(self.model.parameters(), self.optimizer.state, loss)  # MLX is lazy: compute this step now
            total += loss.item() * len(rows)
        return EpochStats(loss=total / max(len(x), 1), samples=len(x))

    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """Scores on the held-out rows (`val_x`, `val_y`): one value per name in `metrics`.

        Called after every epoch (logged as `val_<metric>`) and by the `evaluate` task on the model
        restored from its saved weights: that result is compared with `evaluation.threshold` of the
        `evaluation.metric` and decides whether `register` adds a model version.
        """
        logits, y = self.model(mx.array(data["val_x"])), mx.array(data["val_y"])
        return {
            "accuracy": (logits.argmax(axis=-1) == y).mean().item(),
            "loss": nn.losses.cross_entropy(logits, y, reduction="mean").item(),
        }

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"x": [B, features]} -> {"probabilities": [B, classes], "label": [B]}, as `signature` declares.

        Called by serving (the gateway, Ray Serve replicas, the Bento) on batches the gateway has
        already checked against the signature; and on example inputs to measure the model's
        serving memory. Inference only: no weights change.
        """
        probabilities = mx.softmax(self.model(mx.array(inputs["x"], dtype=mx.float32)), axis=-1)
        mx.eval(probabilities)
        probabilities = np.array(probabilities, dtype=np.float32)
        return {"probabilities": probabilities, "label": probabilities.argmax(axis=-1).astype(np.int32)}

    def apply_techniques(self, techniques: list[str], data: dict[str, np.ndarray]) -> dict[str, Any]:
        """After the last epoch: post-training optimizations named in `training.techniques`.

        This family declares none (`supported_techniques` is empty, so `mlops validate` refuses any).
        Returned keys would be logged to MLflow as what was done, e.g. {"dtype": "int4"}.
        """
        return {}

    def restore_structure(self, techniques: list[str]) -> None:
        """Before saved weights are loaded into a fresh model (evaluate, serving): redo whatever
        `apply_techniques` changed in the model's structure (e.g. quantized layers). Nothing here."""


class @CLASS@(ModelFamily):
    """The family project.yaml names. Its class attributes are checked by `mlops validate`."""

    name = "@NAME@"  # shown by `mlops families`
    description = "MLP classifier of tabular rows: numeric feature columns -> the integer `label` column."
    metrics = {"accuracy": "max", "loss": "min"}  # what `evaluate` returns; the first gates registration by default
    default_hyperparameters = {  # project.yaml's `model.hyperparameters` override these; other names are refused
        "features": @FEATURES@,  # numeric columns in the data (every column but `label`)
        "num_classes": @CLASSES@,  # labels are 0 .. num_classes - 1
        "hidden": 32,
        "layers": 2,
        "learning_rate": 3e-3,
    }
    supported_techniques: frozenset[str] = frozenset()
    throughput_unit = "samples"  # EpochStats.samples counts rows (a language model would count tokens)

    def load_dataset(
        self, folder: Path, hyperparameters: dict[str, Any], seed: int, val_fraction: float
    ) -> dict[str, np.ndarray]:
        """The arrays `train_epoch`, `evaluate` and the drift check read: `train_x`/`train_y`, `val_x`/`val_y`.

        `folder` holds the files `data.path` names, as the `pull_data` task versioned them with DVC
        (a data version is their content hash, tagged on every MLflow run). The `train` and `evaluate`
        tasks call this with the same `data.seed` and `data.val_fraction`, so both see the same split;
        the monitor calls it on the data a served version was trained on, for its drift reference.

        The base class reads the files: one array per table column (the files of the folder, all
        in one format, concatenated by rows), rows shuffled with `seed` and `val_fraction` of them
        held out as `val_<column>`, the rest `train_<column>`. Here every column but `label` is
        stacked, in the table's order, into one feature matrix.
        """
        hp = {**self.default_hyperparameters, **hyperparameters}
        columns = super().load_dataset(folder, hp, seed, val_fraction)
        if {"train_x", "train_y", "val_x", "val_y"} <= set(columns):  # already x/y (`data.source: synthetic`)
            return columns
        data = {}
        for split in ("train", "val"):
            table = {name[len(split) + 1 :]: array for name, array in columns.items() if name.startswith(f"{split}_")}
            if "label" not in table:
                raise ValueError(f"{folder}: no `label` column among {sorted(table)}; name the class column `label`")
            labels = table.pop("label")
            if len(table) != hp["features"]:
                raise ValueError(
                    f"{folder}: {len(table)} feature columns but the model expects {hp['features']}: "
                    f"set model.hyperparameters.features: {len(table)} in project.yaml"
                )
            data[f"{split}_x"] = np.stack([np.asarray(a, dtype=np.float32) for a in table.values()], axis=1)
            data[f"{split}_y"] = np.asarray(labels, dtype=np.int32)
        if data["train_y"].min() < 0 or data["train_y"].max() >= hp["num_classes"]:
            raise ValueError(
                f"{folder}: labels run from {data['train_y'].min()} to {data['train_y'].max()}, the model has "
                f"{hp['num_classes']} classes (0..{hp['num_classes'] - 1}): set model.hyperparameters.num_classes"
            )
        return data

    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Synthetic rows of the same shape (required by the contract), used with `data.source: synthetic`.

        This project reads files, so only that source calls it: the `pull_data` task saves what it
        returns (with `data.seed` and `data.num_samples`) and `load_dataset` reads it back as it is.
        Class k is a gaussian blob around its own random centre; the first fifth is held out.
        """
        hp = {**self.default_hyperparameters, **hyperparameters}
        rng = np.random.default_rng(seed)
        centres = rng.normal(0.0, 2.0, (hp["num_classes"], hp["features"]))
        y = rng.integers(0, hp["num_classes"], num_samples).astype(np.int32)
        x = (centres[y] + rng.normal(0.0, 1.0, (num_samples, hp["features"]))).astype(np.float32)
        held_out = num_samples // 5
        return {"val_x": x[:held_out], "val_y": y[:held_out], "train_x": x[held_out:], "train_y": y[held_out:]}

    def create(self, hyperparameters: dict[str, Any], techniques: list[str], seed: int) -> ClassifierSession:
        """A fresh, untrained model (`training.seed`). The `train` task trains it; `restore` (the base
        class: `create`, then `restore_structure`, then the saved weights) rebuilds it for evaluate and serving."""
        return ClassifierSession({**self.default_hyperparameters, **hyperparameters}, seed)

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """What `predict` takes and returns. The gateway refuses a request that does not match it
        (422 naming the field), serving makes example inputs from it, the monitor flattens served
        inputs to columns (`x_0` ... `x_7`) by it, and `reference_inputs` (the base class: `train_x`)
        gives the training rows those columns are compared with."""
        hp = {**self.default_hyperparameters, **hyperparameters}
        return {
            "inputs": {"x": {"dtype": "float32", "shape": [-1, hp["features"]]}},
            "outputs": {
                "probabilities": {"dtype": "float32", "shape": [-1, hp["num_classes"]]},
                "label": {"dtype": "int32", "shape": [-1]},
            },
        }
'''

# --like FAMILY -> the files it writes (besides data/)
TEMPLATES: dict[str, dict[str, str]] = {
    "mlp_classifier": {"project.yaml": PROJECT_YAML, "model.py": MLP_CLASSIFIER_MODEL},
}
LIKE = tuple(sorted(TEMPLATES))
