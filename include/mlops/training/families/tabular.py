"""The tabular convention of the classifiers: a table of numeric features plus a label column → x, y.

A CSV/Parquet/JSONL file with columns `f1, f2, ..., label` loads (`mlops.data.loaders`) as one
array per column; `classification_arrays` stacks the feature columns, in the table's column
order, into `x` (float32, rows × features) and the label into `y` (int32), per split. Data
already holding `train_x`/`train_y`/`val_x`/`val_y` (the synthetic layout, or .npy files named
so) passes through unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops.data.loaders import DataFormatError

if TYPE_CHECKING:
    import numpy as np

LABEL_COLUMNS = ("label", "y")  # the first one present is the label, unless one is named


def classification_arrays(
    data: dict[str, np.ndarray],
    label: str | None = None,
    features: int | None = None,
    num_classes: int | None = None,
    where: str = "data",
) -> dict[str, np.ndarray]:
    """`train_x, train_y, val_x, val_y` from split column arrays; checked against the model's sizes when given.

    `features`/`num_classes` are the model's hyperparameters: a mismatch is an error saying which
    value to set, since a wrong width would fail deep inside MLX.
    """
    if not {"train_x", "train_y", "val_x", "val_y"} <= set(data):
        train_x, train_y, train_columns = _stacked(data, "train", label, where)
        val_x, val_y, val_columns = _stacked(data, "val", label, where)
        if train_columns != val_columns:
            raise DataFormatError(f"{where}: train feature columns {train_columns} differ from val's {val_columns}")
        data = {"train_x": train_x, "train_y": train_y, "val_x": val_x, "val_y": val_y}
    _check_sizes(data, features, num_classes, where)
    return data


def _stacked(data: dict[str, np.ndarray], split: str, label: str | None, where: str) -> tuple:
    """(x, y, feature column names) of one split."""
    import numpy as np

    columns = {name[len(split) + 1 :]: a for name, a in data.items() if name.startswith(f"{split}_")}
    candidates = (label,) if label else LABEL_COLUMNS
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise DataFormatError(
            f"{where}: no label column {' or '.join(map(repr, candidates))} among the {split} columns "
            f"{sorted(columns)}; name the class column `label` (or `y`)"
        )
    y = columns.pop(found)
    if y.dtype.kind == "U":
        raise DataFormatError(
            f"{where}: label column {found!r} holds text ({y[0]!r}, ...); the classifiers need class numbers "
            "0..K-1: map the names to numbers in the file"
        )
    if y.dtype.kind == "f":
        if not np.all(np.mod(y, 1) == 0):
            row = int(np.flatnonzero(np.mod(y, 1) != 0)[0])
            raise DataFormatError(f"{where}: label column {found!r}, {split} row {row}: {y[row]} is not a class number")
    if y.ndim != 1:
        raise DataFormatError(f"{where}: label column {found!r} must hold one class number per row")
    parts = []
    for name, array in columns.items():
        if array.dtype.kind == "U":
            raise DataFormatError(
                f"{where}: feature column {name!r} holds text ({array[0]!r}, ...); the tabular convention "
                "stacks numeric columns only: drop it, encode it as numbers, or override the family's load_dataset"
            )
        parts.append(np.asarray(array, dtype=np.float32).reshape(len(array), -1))
    if not parts:
        raise DataFormatError(f"{where}: only the label column {found!r}; add feature columns")
    return np.concatenate(parts, axis=1), np.asarray(y, dtype=np.int32), list(columns)


def _check_sizes(data: dict[str, np.ndarray], features: int | None, num_classes: int | None, where: str) -> None:
    width = data["train_x"].shape[1] if data["train_x"].ndim == 2 else None
    if features is not None and width != features:
        raise DataFormatError(
            f"{where}: the data have {width} feature values per row but the model expects {features}: "
            f"set model.hyperparameters.features: {width}"
        )
    if num_classes is None:
        return
    for split in ("train", "val"):
        y = data[f"{split}_y"]
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DataFormatError(
                f"{where}: {split} labels run from {int(y.min())} to {int(y.max())} but the model has "
                f"{num_classes} classes (0..{num_classes - 1}): set model.hyperparameters.num_classes: "
                f"{int(y.max()) + 1}, or renumber the labels from 0"
            )
