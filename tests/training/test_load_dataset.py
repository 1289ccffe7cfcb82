"""`ModelFamily.load_dataset`: synthetic data read exactly as before, and a project's CSV training the built-in MLP.

The end-to-end test runs the library's own steps (data → train → evaluate → register → drift
reference) on a sqlite MLflow store and a local DVC remote, as tests/serving/serving_support.py does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlops.data.loaders import DataFormatError
from mlops.data.project_data import load_arrays
from mlops.training.families import BUILT_IN, get_family


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_synthetic_data_loads_exactly_as_load_arrays_did(name: str, tmp_path: Path):
    family = get_family(name)
    hp = dict(family.default_hyperparameters)
    for array_name, array in family.make_dataset(0, 128, hp).items():
        np.save(tmp_path / f"{array_name}.npy", array)
    (tmp_path / "spec.json").write_text(json.dumps({"family": name}))
    expected = load_arrays(tmp_path)
    loaded = family.load_dataset(tmp_path, hp, seed=5, val_fraction=0.5)  # already split: seed/fraction unused
    assert list(loaded) == list(expected)
    for key, array in expected.items():
        assert isinstance(loaded[key], np.memmap), key  # still memory-mapped: pages read on use
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape, key
        np.testing.assert_array_equal(loaded[key], array, err_msg=key)


def write_blobs(folder: Path, rows: int, features: int, classes: int, seed: int, parts: int = 2) -> tuple:
    """Well-separated gaussian classes as CSV parts `f0..f{d-1},label`; returns (x, y) as written (6 decimals)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, (classes, features))
    y = rng.integers(0, classes, rows)
    x = centers[y] + rng.normal(0, 0.5, (rows, features))
    folder.mkdir(parents=True, exist_ok=True)
    header = ",".join(f"f{i}" for i in range(features)) + ",label"
    for part, rows_of_part in enumerate(np.array_split(np.arange(rows), parts)):
        lines = [header] + [",".join(f"{v:.6f}" for v in x[i]) + f",{y[i]}" for i in rows_of_part]
        (folder / f"part-{part}.csv").write_text("\n".join(lines) + "\n")
    as_written = np.array([[float(f"{v:.6f}") for v in row] for row in x], dtype=np.float32)
    return as_written, y.astype(np.int32)


def test_mlp_reads_a_feature_table_and_checks_its_sizes(tmp_path: Path):
    x, y = write_blobs(tmp_path, rows=50, features=3, classes=2, seed=0)
    family = get_family("mlp_classifier")
    data = family.load_dataset(tmp_path, {"features": 3, "num_classes": 2}, seed=1, val_fraction=0.2)
    assert sorted(data) == ["train_x", "train_y", "val_x", "val_y"]
    assert data["train_x"].dtype == np.float32 and data["train_y"].dtype == np.int32
    assert (len(data["train_x"]), len(data["val_x"])) == (50 - round(50 * 0.2), round(50 * 0.2))
    # Every row, features and label together, is one of the rows written, and none is lost.
    def rows(features: np.ndarray, labels: np.ndarray) -> set:
        return {(*row.tolist(), int(label)) for row, label in zip(features, labels)}

    written = rows(x, y)
    loaded = rows(np.concatenate([data["train_x"], data["val_x"]]), np.concatenate([data["train_y"], data["val_y"]]))
    assert loaded == written

    with pytest.raises(DataFormatError, match="3 feature values per row but the model expects 32: set model.hyperparameters.features: 3"):
        family.load_dataset(tmp_path, {"num_classes": 2}, seed=1, val_fraction=0.2)
    with pytest.raises(DataFormatError, match="model has 1 classes .* set model.hyperparameters.num_classes: 2"):
        family.load_dataset(tmp_path, {"features": 3, "num_classes": 1}, seed=1, val_fraction=0.2)


def test_mlp_names_a_text_label_or_feature(tmp_path: Path):
    (tmp_path / "d.csv").write_text("a,colour,label\n" + "".join(f"{i},red,{i % 2}\n" for i in range(10)))
    family = get_family("mlp_classifier")
    with pytest.raises(DataFormatError, match="feature column 'colour' holds text"):
        family.load_dataset(tmp_path, {"features": 2, "num_classes": 2}, seed=0, val_fraction=0.2)
    (tmp_path / "d.csv").write_text("a,label\n" + "".join(f"{i},{'cat' if i % 2 else 'dog'}\n" for i in range(10)))
    with pytest.raises(DataFormatError, match="label column 'label' holds text"):
        family.load_dataset(tmp_path, {"features": 1, "num_classes": 2}, seed=0, val_fraction=0.2)
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataFormatError, match=r"no label column 'label' or 'y'"):
        family.load_dataset(tmp_path, {"features": 1, "num_classes": 2}, seed=0, val_fraction=0.2)


@pytest.mark.timeout(300)
def test_mlp_trains_evaluates_and_gives_a_reference_from_a_csv(tmp_path: Path, monkeypatch):
    from mlops.config.schema import ProjectConfig
    from mlops.data.project_data import ensure_project_data
    from mlops.monitoring.reference import load_reference
    from mlops.settings import Settings
    from mlops.tracking.registry import register_run_model, version_tags
    from mlops.training.evaluate import evaluate_model
    from mlops.training.trainer import train_project

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLOPS_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    rows, val_fraction = 600, 0.25
    write_blobs(tmp_path / "table", rows=rows, features=4, classes=3, seed=3, parts=3)
    config = ProjectConfig(
        name="csv_mlp",
        data={"source": "files", "path": str(tmp_path / "table"), "val_fraction": val_fraction, "seed": 2},
        model={"family": "mlp_classifier", "hyperparameters": {"features": 4, "num_classes": 3}},
        training={"epochs": 8, "batch_size": 32},
    )
    data = ensure_project_data(
        settings, config.name, config.model.family, config.data.num_samples, config.data.seed,
        config.model.hyperparameters, source=config.data.source, path=config.data.path,
    )
    assert data["files"] == ["part-0.csv", "part-1.csv", "part-2.csv"]

    training = train_project(settings, config, data["path"], data["version"])
    chance = 1 / 3
    assert training["metrics"]["accuracy"] > 2 * chance  # separable classes: learnt, far above chance
    evaluation = evaluate_model(settings, config, data["path"], training["run_id"], training["model_dir"])
    assert evaluation["metric"] == "accuracy" and evaluation["value"] == pytest.approx(training["metrics"]["accuracy"])

    version = register_run_model(settings, config.name, training["run_id"], training["model_uri"],
                                 version_tags(config, training))["version"]
    reference = load_reference(settings, config.name, int(version))
    assert reference.data_version == data["version"]
    assert len(reference.frame) == rows - round(rows * val_fraction)  # the training split, as trained on
