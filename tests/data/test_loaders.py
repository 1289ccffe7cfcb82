"""Data files → named arrays (mlops.data.loaders): every format, the naming/concatenation/split rules, the errors.

Files are written here with numpy/pandas from arrays made in the test; what the loaders return is
compared with those arrays, not with numbers typed in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data.loaders import DataFormatError, load_folder, split_rows


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "f1": rng.normal(size=rows),
        "f2": rng.integers(-5, 5, rows),
        "name": [f"item {i}" for i in range(rows)],
        "label": rng.integers(0, 3, rows),
    })


def _assert_columns(arrays: dict, frame: pd.DataFrame, prefix: str = "") -> None:
    assert list(arrays) == [prefix + c for c in frame.columns]
    np.testing.assert_array_equal(arrays[prefix + "f1"], frame["f1"].to_numpy(np.float32))
    np.testing.assert_array_equal(arrays[prefix + "f2"], frame["f2"].to_numpy(np.int32))
    assert list(arrays[prefix + "name"]) == list(frame["name"])
    assert arrays[prefix + "f1"].dtype == np.float32 and arrays[prefix + "f2"].dtype == np.int32
    assert arrays[prefix + "label"].dtype == np.int32 and arrays[prefix + "name"].dtype.kind == "U"


# ---------------------------------------------------------------- formats


def test_npy_stays_memory_mapped_and_other_dtypes_are_converted(tmp_path: Path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 3)).astype(np.float32), rng.integers(0, 4, 20).astype(np.int32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "w.npy", x.astype(np.float64))
    np.save(tmp_path / "big.npy", np.array([0, 2**40], dtype=np.int64))
    (tmp_path / "spec.json").write_text("{}")  # a side file: never data
    arrays = load_folder(tmp_path)
    assert sorted(arrays) == ["big", "sub_w", "x", "y"]
    assert isinstance(arrays["x"], np.memmap) and isinstance(arrays["y"], np.memmap)
    np.testing.assert_array_equal(arrays["x"], x)
    assert arrays["sub_w"].dtype == np.float32 and np.allclose(arrays["sub_w"], x)
    assert arrays["big"].dtype == np.int64  # does not fit int32: kept, never wrapped


def test_npz_keys_take_the_split_of_their_file(tmp_path: Path):
    rng = np.random.default_rng(2)
    train, val = rng.normal(size=(8, 2)), rng.normal(size=(3, 2))
    np.savez(tmp_path / "train.npz", x=train, y=np.arange(8))
    np.savez(tmp_path / "val.npz", x=val, val_y=np.arange(3))
    arrays = load_folder(tmp_path)
    assert sorted(arrays) == ["train_x", "train_y", "val_x", "val_y"]
    np.testing.assert_allclose(arrays["val_x"], val.astype(np.float32))
    assert arrays["train_y"].dtype == np.int32


def test_npz_name_in_two_files_is_an_error(tmp_path: Path):
    np.savez(tmp_path / "a.npz", x=np.zeros(2))
    np.savez(tmp_path / "b.npz", x=np.ones(2))
    with pytest.raises(DataFormatError, match=r"'x' is in both a\.npz and b\.npz"):
        load_folder(tmp_path)


def test_csv_parts_concatenate_in_natural_name_order(tmp_path: Path):
    frame = _frame(30)
    bounds = {"part-0.csv": (0, 10), "part-2.csv": (10, 20), "part-10.csv": (20, 30)}
    for name, (lo, hi) in bounds.items():
        frame.iloc[lo:hi].to_csv(tmp_path / name, index=False)
    (tmp_path / "README.md").write_text("not data")
    _assert_columns(load_folder(tmp_path), frame)


def test_parquet_with_a_list_column_becomes_an_extra_axis(tmp_path: Path):
    frame = _frame(12)
    vectors = np.random.default_rng(3).normal(size=(12, 4)).astype(np.float32)
    frame["vec"] = list(vectors)
    frame.to_parquet(tmp_path / "data.parquet")
    arrays = load_folder(tmp_path)
    _assert_columns({k: v for k, v in arrays.items() if k != "vec"}, frame.drop(columns="vec"))
    assert arrays["vec"].shape == (12, 4) and arrays["vec"].dtype == np.float32
    np.testing.assert_array_equal(arrays["vec"], vectors)


def test_jsonl_text_numbers_and_lists(tmp_path: Path):
    frame = _frame(6)
    lines = [json.dumps({**row, "tokens": [i, i + 1, i + 2]}) for i, row in enumerate(frame.to_dict("records"))]
    (tmp_path / "data.jsonl").write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    arrays = load_folder(tmp_path)
    _assert_columns({k: v for k, v in arrays.items() if k != "tokens"}, frame)
    np.testing.assert_array_equal(arrays["tokens"], [[i, i + 1, i + 2] for i in range(6)])
    assert arrays["tokens"].dtype == np.int32


def test_files_named_by_split_keep_their_split(tmp_path: Path):
    train, val = _frame(9, seed=1), _frame(4, seed=2)
    (tmp_path / "train").mkdir()
    train.iloc[:5].to_csv(tmp_path / "train" / "part-0.csv", index=False)
    train.iloc[5:].to_csv(tmp_path / "train" / "part-1.csv", index=False)
    val.to_csv(tmp_path / "validation.csv", index=False)
    arrays = load_folder(tmp_path)
    _assert_columns({k: v for k, v in arrays.items() if k.startswith("train_")}, train, "train_")
    _assert_columns({k: v for k, v in arrays.items() if k.startswith("val_")}, val, "val_")
    assert split_rows(arrays, 0.5, 0) is arrays  # already split: used as it is


# ---------------------------------------------------------------- errors name file, column, row


def _csv(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_missing_value_names_file_column_and_line(tmp_path: Path):
    path = _csv(tmp_path, "d.csv", "a,b\n1,2\n3,\n5,6\n")
    with pytest.raises(DataFormatError) as info:
        load_folder(tmp_path)
    assert str(path) in str(info.value) and "'b'" in str(info.value) and "line 3" in str(info.value)


def test_word_in_a_number_column_names_the_line(tmp_path: Path):
    path = _csv(tmp_path, "d.csv", "a,b\n1,2\n3,4\n5,oops\n7,8\n")
    with pytest.raises(DataFormatError, match=r"column 'b', line 4: 'oops' is not a number") as info:
        load_folder(tmp_path)
    assert str(path) in str(info.value)


def test_text_column_in_csv_stays_text(tmp_path: Path):
    _csv(tmp_path, "d.csv", "a,b\n1,x\n2,y\n3,4\n")
    arrays = load_folder(tmp_path)
    assert list(arrays["b"]) == ["x", "y", "4"]


def test_parts_with_different_columns(tmp_path: Path):
    _csv(tmp_path, "part-0.csv", "a,b\n1,2\n")
    _csv(tmp_path, "part-1.csv", "a,c\n1,2\n")
    with pytest.raises(DataFormatError, match=r"part-1\.csv: columns \['a', 'c'\] differ from part-0\.csv"):
        load_folder(tmp_path)


def test_two_formats_in_one_folder_are_never_mixed(tmp_path: Path):
    _csv(tmp_path, "part-0.csv", "a\n1\n")
    pd.DataFrame({"a": [2]}).to_parquet(tmp_path / "part-1.parquet")
    with pytest.raises(DataFormatError, match=r"several formats \(csv: part-0\.csv; parquet: part-1\.parquet\)"):
        load_folder(tmp_path)


def test_unknown_suffix_is_named(tmp_path: Path):
    _csv(tmp_path, "a.csv", "a\n1\n")
    _csv(tmp_path, "b.tsv", "a\n1\n")
    with pytest.raises(DataFormatError, match=r"b\.tsv is not a data format"):
        load_folder(tmp_path)


def test_jsonl_errors_name_the_line(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n')
    with pytest.raises(DataFormatError, match=r"d\.jsonl: line 2 is not JSON"):
        load_folder(tmp_path)
    path.write_text('{"a": 1}\n{"b": 2}\n')
    with pytest.raises(DataFormatError, match=r"line 2 has different keys than line 1 \(missing \['a'\], extra \['b'\]\)"):
        load_folder(tmp_path)
    path.write_text('{"a": [1, 2]}\n{"a": [1]}\n')
    with pytest.raises(DataFormatError, match=r"column 'a', line 2: a list of 1 values where row 0 has 2"):
        load_folder(tmp_path)


def test_parquet_missing_value_names_the_row(tmp_path: Path):
    pd.DataFrame({"a": [1.0, None, 3.0]}).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataFormatError, match=r"d\.parquet: column 'a', row 1: missing value"):
        load_folder(tmp_path)


def test_split_and_unsplit_files_together(tmp_path: Path):
    _csv(tmp_path, "train.csv", "a\n1\n")
    _csv(tmp_path, "extra.csv", "a\n1\n")
    with pytest.raises(DataFormatError, match=r"train\.csv name a split .* but extra\.csv do not"):
        load_folder(tmp_path)
    (tmp_path / "extra.csv").unlink()
    with pytest.raises(DataFormatError, match=r"only train files"):
        load_folder(tmp_path)


def test_empty_or_missing_folder(tmp_path: Path):
    with pytest.raises(DataFormatError, match="no such data folder"):
        load_folder(tmp_path / "nope")
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(DataFormatError, match="no data files"):
        load_folder(tmp_path)


# ---------------------------------------------------------------- the split


def test_split_rows_holds_out_a_seeded_share_and_keeps_rows_aligned():
    n = 101
    arrays = {"id": np.arange(n, dtype=np.int32), "twice": np.arange(n, dtype=np.float32)[:, None] * 2}
    out = split_rows(arrays, 0.25, seed=3)
    assert sorted(out) == ["train_id", "train_twice", "val_id", "val_twice"]
    assert len(out["val_id"]) == round(n * 0.25)
    assert sorted([*out["train_id"], *out["val_id"]]) == list(range(n))  # a partition of the rows
    for side in ("train", "val"):
        np.testing.assert_array_equal(out[f"{side}_twice"][:, 0], out[f"{side}_id"] * 2)  # rows stay aligned
        assert list(out[f"{side}_id"]) == sorted(out[f"{side}_id"])  # file order kept within a split
    again, other = split_rows(arrays, 0.25, seed=3), split_rows(arrays, 0.25, seed=4)
    np.testing.assert_array_equal(again["val_id"], out["val_id"])
    assert not np.array_equal(other["val_id"], out["val_id"])


def test_split_rows_errors():
    with pytest.raises(DataFormatError, match="different numbers of rows"):
        split_rows({"a": np.zeros(3), "b": np.zeros(4)}, 0.2, 0)
    with pytest.raises(DataFormatError, match=r"are split \(train_/val_\) but \['c'\] are not"):
        split_rows({"train_a": np.zeros(3), "val_a": np.zeros(1), "c": np.zeros(4)}, 0.2, 0)
    with pytest.raises(DataFormatError, match="only train_"):
        split_rows({"train_a": np.zeros(3)}, 0.2, 0)
    with pytest.raises(DataFormatError, match="at least 2"):
        split_rows({"a": np.zeros(1)}, 0.2, 0)
