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
        f"  {mlops} demo {created.name}    # all of it, then deploy, a prediction through the gateway, a drift check",
    ]
    if created.folder.parent != get_settings().projects_dir:
        lines.append(f"  (the last three read MLOPS_PROJECTS_DIR: set it to {_shown(created.folder.parent)} for them)")
    lines += [
        "",
        f"Your own data: put CSV (or Parquet, JSONL, .npy) files in {folder}/{DATA_FOLDER}/ instead, or point "
        "data.path at them; then set model.hyperparameters.features and num_classes in project.yaml.",
    ]
    return "\n".join(lines)


TEMPLATE_ROOT = Path(__file__).with_name("templates")  # <like>/<file>.tmpl: @NAME@, @CLASS@, ... filled in


def _templates() -> dict[str, dict[str, str]]:
    """like -> {file written: its template text}, one folder per family the generated one resembles."""
    return {
        folder.name: {t.name.removesuffix(".tmpl"): t.read_text() for t in sorted(folder.glob("*.tmpl"))}
        for folder in sorted(TEMPLATE_ROOT.iterdir()) if folder.is_dir()
    }


TEMPLATES = _templates()
LIKE = tuple(sorted(TEMPLATES))
