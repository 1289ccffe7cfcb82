"""A folder of data files → named numpy arrays, and the train/validation split of them.

What a model family's `load_dataset` builds on. The rules, in the order they apply:

- **Which files.** Every file under the folder, recursively, except hidden ones (`.name`) and side
  files that are never data: `.md .txt .rst .json .yaml .yml .dvc` (the synthetic source's
  `spec.json`, a README). Any other suffix that is not a data format is an error.
- **One format per folder.** Data files are `.npy`, `.npz`, `.csv`, `.parquet` or `.jsonl`, and a
  folder holds one of them only: a stray `data.csv` beside `part-0.parquet` is an error, never
  rows silently mixed in. Convert or move the odd file out.
- **Names.** `.npy`: one array named after the file's path without suffix (`train_x.npy` → `train_x`,
  `train/x.npy` → `train_x`). `.npz`: its keys, prefixed with the file's split (below) unless they
  already are. Tables (`.csv`, `.parquet`, `.jsonl`): one array per column, named after it.
- **Splits.** A file whose first path part (top folder, or file name) is `train…`/`val…`/
  `validation…` (`train.csv`, `val-1.csv`, `train/part-0.csv`) belongs to that split: its arrays
  are named `train_<col>`/`val_<col>`. Either every table file names a split or none does.
- **Concatenation.** Table files of one split (or all of them, unsplit) must have the same columns;
  they are concatenated by rows in natural name order (`part-2` before `part-10`).
- **Types.** Numbers become float32, integers int32 (int64 when a value does not fit: never
  silently wrapped), booleans int32; text becomes an array of `str`; a JSON (or Parquet) list per
  row becomes one more axis. `.npy` files already float32/int32 stay memory-mapped. In a table, a
  missing value, or a word in a column of mostly numbers, is an error naming the file, the column
  and the row (a csv row by its line number, the header being line 1).

`split_rows` then names arrays `train_*`/`val_*`: already-split data (the synthetic layout) is
used as it is; otherwise rows are shuffled with a seed and a share is held out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

FORMATS = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
SIDE_SUFFIXES = frozenset({".md", ".txt", ".rst", ".json", ".yaml", ".yml", ".dvc"})
SPLITS = {"train": "train", "val": "val", "validation": "val"}
_SPLIT_PART = re.compile(r"^(train|validation|val)(?=$|[-_.0-9])")
INT32 = (-(2**31), 2**31 - 1)


class DataFormatError(ValueError):
    """Data files the loaders cannot turn into arrays; the message names the file, column and row."""


def natural_key(path: str) -> list[Any]:
    """Sort key putting `part-2` before `part-10`."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def is_side_file(relpath: str) -> bool:
    """Hidden files and documentation/metadata, which live beside data but are never read as data."""
    parts = Path(relpath).parts
    return any(p.startswith(".") for p in parts) or Path(relpath).suffix.lower() in SIDE_SUFFIXES


def data_format(relpaths: list[str], where: str) -> str:
    """The one data format of these files (`where` names them in errors); raises on unknown or mixed ones."""
    data = [p for p in relpaths if not is_side_file(p)]
    unknown = [p for p in data if Path(p).suffix.lower() not in FORMATS]
    if unknown:
        raise DataFormatError(
            f"{where}: {', '.join(unknown[:5])} {'is not a' if len(unknown) == 1 else 'are not'} data "
            f"format the loaders read ({', '.join(FORMATS)}); convert it, or move it out of the data"
        )
    if not data:
        raise DataFormatError(f"{where}: no data files ({', '.join(FORMATS)}) found")
    by_format: dict[str, list[str]] = {}
    for p in data:
        by_format.setdefault(FORMATS[Path(p).suffix.lower()], []).append(p)
    if len(by_format) > 1:
        listing = "; ".join(f"{fmt}: {', '.join(sorted(files)[:3])}" for fmt, files in sorted(by_format.items()))
        raise DataFormatError(
            f"{where}: data files of several formats ({listing}); a data set is one format, so rows are "
            "never mixed in by accident: convert the odd files or move them out"
        )
    return next(iter(by_format))


def split_of(relpath: str) -> str | None:
    """'train' / 'val' when the file's first path part names a split, else None."""
    first = Path(relpath).parts[0]
    if len(Path(relpath).parts) == 1:
        first = Path(first).stem
    match = _SPLIT_PART.match(first.lower())
    return SPLITS[match.group(1)] if match else None


def load_folder(folder: str | Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every data file in `folder` as named arrays (the rules are in the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: no such data folder (did the pull_data step run?)")
    files = sorted((p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()), key=natural_key)
    fmt = data_format(files, str(folder))
    files = [p for p in files if not is_side_file(p)]
    if fmt == "npy":
        return {_array_name(p): _npy(folder / p, mmap) for p in files}
    if fmt == "npz":
        return _npz_arrays(folder, files)
    return _table_arrays(folder, files, fmt)


def _array_name(relpath: str) -> str:
    return relpath.rsplit(".", 1)[0].replace("/", "_")


def _npy(path: Path, mmap: bool) -> np.ndarray:
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable .npy array ({exc})") from exc
    return model_dtype(array, str(path))


def _npz_arrays(folder: Path, files: list[str]) -> dict[str, np.ndarray]:
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for relpath in files:
        split = split_of(relpath)
        try:
            with np.load(folder / relpath, allow_pickle=False) as archive:
                loaded = {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{folder / relpath}: not a readable .npz archive ({exc})") from exc
        for key, array in loaded.items():
            name = key if split is None or key.startswith(f"{split}_") else f"{split}_{key}"
            if name in arrays:
                raise DataFormatError(f"{folder}: array {name!r} is in both {origin[name]} and {relpath}")
            arrays[name], origin[name] = model_dtype(array, f"{folder / relpath}: array {key!r}"), relpath
    return arrays


def _table_arrays(folder: Path, files: list[str], fmt: str) -> dict[str, np.ndarray]:
    """Read every table file, check each split's files agree on columns, concatenate by rows."""
    import numpy as np

    splits = {p: split_of(p) for p in files}
    named = [p for p, s in splits.items() if s is not None]
    if named and len(named) != len(files):
        plain = [p for p, s in splits.items() if s is None]
        raise DataFormatError(
            f"{folder}: {', '.join(named[:3])} name a split (train/val) but {', '.join(plain[:3])} do not; "
            "name every file by its split, or none (rows are then split with data.val_fraction)"
        )
    if named and set(splits.values()) != {"train", "val"}:
        have = next(iter(set(splits.values())))
        raise DataFormatError(
            f"{folder}: only {have} files ({', '.join(named[:3])}); add the other split's files, or "
            "rename them so the rows are split with data.val_fraction"
        )
    arrays: dict[str, np.ndarray] = {}
    for split in dict.fromkeys(splits.values()):
        group = [p for p in files if splits[p] == split]
        tables = [(p, _read_table(folder / p, fmt)) for p in group]
        first_path, first = tables[0]
        for path, table in tables[1:]:
            if list(table) != list(first):
                raise DataFormatError(
                    f"{folder / path}: columns {list(table)} differ from {first_path}'s {list(first)}; "
                    "files concatenated by rows need the same columns in the same order"
                )
        prefix = f"{split}_" if split else ""
        for column in first:
            parts = [table[column] for _, table in tables]
            kinds = {part.dtype.kind for part in parts}
            if "U" in kinds and len(kinds) > 1:
                raise DataFormatError(f"{folder}: column {column!r} is text in some files and numbers in others")
            merged = parts[0] if len(parts) == 1 else np.concatenate(parts)
            arrays[prefix + column] = model_dtype(merged, f"{folder}: column {column!r}")
    return arrays


def _read_table(path: Path, fmt: str) -> dict[str, np.ndarray]:
    """column -> array of one table file, every value checked (`_column`)."""
    if fmt == "jsonl":
        columns, rows = _read_jsonl(path)
        return {name: _column(values, path, name, rows) for name, values in columns.items()}
    import pandas as pd

    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types; the file is what matters
        raise DataFormatError(f"{path}: cannot read it as {fmt}: {exc}") from exc
    first_row = 2 if fmt == "csv" else 0  # csv: rows counted as lines, the header is line 1
    rows = [("line" if fmt == "csv" else "row", first_row + i) for i in range(len(frame))]
    return {str(name): _frame_column(frame[name], path, str(name), rows) for name in frame.columns}


def _frame_column(series: Any, path: Path, name: str, rows: list[tuple[str, int]]) -> np.ndarray:
    """A pandas column: typed ones checked for gaps at numpy speed, the others value by value."""
    import numpy as np

    if series.dtype.kind in "fiub":
        values = series.to_numpy()
        gaps = np.flatnonzero(np.isnan(values)) if values.dtype.kind == "f" else []
        if len(gaps):
            kind, number = rows[gaps[0]]
            raise DataFormatError(
                f"{path}: column {name!r}, {kind} {number}: missing value; fill it in or drop the row"
            )
        return values
    return _column(list(series), path, name, rows)


def _read_jsonl(path: Path) -> tuple[dict[str, list[Any]], list[tuple[str, int]]]:
    """Columns of a JSON-lines file: one object per line, every line with the same keys."""
    columns: dict[str, list[Any]] = {}
    rows: list[tuple[str, int]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read it ({exc})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataFormatError(f"{path}: line {number} is not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}: line {number} is a {type(record).__name__}, not a JSON object")
        if not rows:
            columns = {key: [] for key in record}
        elif set(record) != set(columns):
            missing, extra = sorted(set(columns) - set(record)), sorted(set(record) - set(columns))
            raise DataFormatError(
                f"{path}: line {number} has different keys than line {rows[0][1]} "
                f"(missing {missing}, extra {extra}); every line needs the same keys"
            )
        for key, value in record.items():
            columns[key].append(value)
        rows.append(("line", number))
    return columns, rows


def _column(values: list[Any], path: Path, name: str, rows: list[tuple[str, int]]) -> np.ndarray:
    """One column's values as an array: numbers, text, or equal-length lists; errors name the row."""
    import numpy as np

    def where(i: int) -> str:
        return f"{path}: column {name!r}, {rows[i][0]} {rows[i][1]}"

    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and value != value):
            raise DataFormatError(f"{where(i)}: missing value; fill it in or drop the row")
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        lengths = [len(v) if isinstance(v, (list, tuple, np.ndarray)) else None for v in values]
        first = lengths[0]
        for i, length in enumerate(lengths):
            if length != first:
                raise DataFormatError(f"{where(i)}: a list of {length} values where row 0 has {first}")
        values = [np.asarray(v).tolist() for v in values]
    numeric = [isinstance(v, (bool, int, float, np.number, np.bool_, list)) for v in values]
    if all(numeric):
        try:
            return np.asarray(values)
        except ValueError as exc:
            raise DataFormatError(f"{path}: column {name!r}: {exc}") from exc
    words = [i for i, v in enumerate(values) if not (numeric[i] or _number_text(v))]
    if words and len(words) * 2 < len(values):  # mostly numbers: the words are mistakes, not a text column
        i = words[0]
        raise DataFormatError(f"{where(i)}: {values[i]!r} is not a number (most rows are)")
    return np.asarray([str(v) for v in values], dtype=str)


def _number_text(value: Any) -> bool:
    """A string holding a number, as a csv cell of a column pandas could not read as numbers."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def model_dtype(array: np.ndarray, where: str) -> np.ndarray:
    """float32 for floats, int32 for integers that fit (and booleans), str kept; anything else an error."""
    import numpy as np

    kind = array.dtype.kind
    if array.dtype in (np.float32, np.int32) or kind == "U":
        return array
    if kind == "f":
        return array.astype(np.float32)
    if kind == "b":
        return array.astype(np.int32)
    if kind in "iu":
        if array.size == 0 or (INT32[0] <= array.min() and array.max() <= INT32[1]):
            return array.astype(np.int32)
        return array.astype(np.int64)
    raise DataFormatError(f"{where}: values of type {array.dtype} are neither numbers nor text")


def split_rows(
    arrays: dict[str, np.ndarray], val_fraction: float, seed: int, where: str = "data"
) -> dict[str, np.ndarray]:
    """`train_*`/`val_*` arrays: given as they are when already split, else rows shuffled with `seed`
    and `val_fraction` of them held out (each split keeps the files' row order)."""
    import numpy as np

    split = [n for n in arrays if n.startswith(("train_", "val_"))]
    if split and len(split) == len(arrays):
        sides = {n.split("_", 1)[0] for n in split}
        if sides != {"train", "val"}:
            raise DataFormatError(f"{where}: only {', '.join(sorted(sides))}_* arrays; add the other split")
        return arrays
    if split:
        plain = [n for n in arrays if n not in split]
        raise DataFormatError(
            f"{where}: arrays {split[:3]} are split (train_/val_) but {plain[:3]} are not; split all or none"
        )
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataFormatError(f"{where}: arrays have different numbers of rows {lengths}; rows must line up")
    n = next(iter(lengths.values()))
    if n < 2:
        raise DataFormatError(f"{where}: {n} row(s); at least 2 are needed to hold some out for validation")
    num_val = min(max(1, round(n * val_fraction)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:num_val]), np.sort(order[num_val:])
    out = {}
    for name, array in arrays.items():
        out[f"train_{name}"] = array[train]
        out[f"val_{name}"] = array[val]
    return out
