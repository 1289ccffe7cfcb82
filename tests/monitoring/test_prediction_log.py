"""The prediction log on real Parquet: layout, columns, failures that lose nothing, bounded sampling reads."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mlops.monitoring import features
from mlops.monitoring.prediction_log import (
    PREDICTION_COLUMNS,
    ROW_GROUP_ROWS,
    PredictionLogWriter,
    accuracy,
    log_root,
    read_feedback,
    read_predictions,
)
from mlops.settings import Settings

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"MLOPS_HOME": str(tmp_path)})


def _writer(settings: Settings, **kwargs) -> PredictionLogWriter:
    kwargs.setdefault("flush_seconds", 3600)  # the tests flush themselves
    return PredictionLogWriter(log_root(settings), thermal=lambda: "fair", **kwargs)


def _mlp_outputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"label": rng.integers(0, 4, rows), "probabilities": rng.random((rows, 4)).astype(np.float32)}


def test_rows_land_in_hive_partitions_by_project_and_utc_date(settings):
    import pyarrow.dataset as ds

    writer = _writer(settings)
    x = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    today = time.time()
    yesterday = today - 86400
    writer.record("alpha", "a" * 32, 2, "mlx", "cpu", 1.5, {"x": x}, _mlp_outputs(3), 3, ts=today)
    writer.record("alpha", "b" * 32, 2, "ray", "gpu", 2.5, {"x": x[:1].tolist()}, {"label": [1], "probabilities": [[0.1] * 4]}, 1, ts=yesterday)
    writer.record("beta", "c" * 32, 1, "mlx", "cpu", 0.5, {"noise": x[:2, :2]}, {"samples": x[:2, 2:4]}, 2, ts=today)
    writer.record_feedback("alpha", "a" * 32, [1, 2, 3], ts=today)
    assert writer.flush() == 9
    writer.close()

    root = log_root(settings)
    day = lambda t: datetime.fromtimestamp(t, UTC).date().isoformat()  # noqa: E731
    found = sorted(str(p.relative_to(root).parent) for p in root.rglob("part-*.parquet"))
    assert found == sorted(
        [
            f"feedback/project=alpha/date={day(today)}",
            f"predictions/project=alpha/date={day(today)}",
            f"predictions/project=alpha/date={day(yesterday)}",
            f"predictions/project=beta/date={day(today)}",
        ]
    )
    assert not list(root.rglob(".part-*")), "no staging file is left behind"

    dataset = ds.dataset(root / "predictions", partitioning="hive")
    table = dataset.to_table(filter=ds.field("project") == "alpha").to_pandas().sort_values(["ts", "row"])
    assert list(table["request_id"]) == ["b" * 32, "a" * 32, "a" * 32, "a" * 32]
    assert set(table["date"].astype(str)) == {day(today), day(yesterday)}

    frame = read_predictions(settings, "alpha", since=datetime.fromtimestamp(today, UTC) - HOUR)
    assert list(frame.columns[: len(PREDICTION_COLUMNS)]) == list(PREDICTION_COLUMNS)
    assert [c for c in frame.columns if c.startswith("in.")] == [f"in.x_{i}" for i in range(32)]
    assert [c for c in frame.columns if c.startswith("out.")] == ["out.label"] + [f"out.probabilities_{i}" for i in range(4)]
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert {str(frame[c].dtype) for c in ("row", "batch_rows")} == {"int32"} and str(frame["version"].dtype) == "int64"
    assert frame["row"].tolist() == [0, 1, 2] and frame["batch_rows"].tolist() == [3, 3, 3]
    assert (frame["backend"].unique().tolist(), frame["device"].unique().tolist(), frame["latency_ms"].unique().tolist()) == (["mlx"], ["cpu"], [1.5])
    expected = features.prefixed("in", features.flatten({"x": x}))
    for name, values in expected.items():
        np.testing.assert_array_equal(frame[name].to_numpy(), values)
    assert frame["ts"].iloc[0].timestamp() == pytest.approx(today, abs=1e-6)

    beta = read_predictions(settings, "beta", since=datetime.fromtimestamp(today, UTC) - HOUR)
    assert [c for c in beta.columns if "." in c] == ["in.noise_0", "in.noise_1", "out.samples_0", "out.samples_1"]
    labels = read_feedback(settings, "alpha", since=datetime.fromtimestamp(today, UTC) - HOUR)
    assert labels[["request_id", "row", "label"]].values.tolist() == [["a" * 32, 0, 1.0], ["a" * 32, 1, 2.0], ["a" * 32, 2, 3.0]]


def test_versions_with_other_inputs_share_a_project_and_readers_fill_nulls(settings):
    writer = _writer(settings)
    now = time.time()
    writer.record("p", "1" * 32, 1, "mlx", "cpu", 1.0, {"x": np.ones((2, 2))}, {"y": np.zeros(2)}, 2, ts=now)
    writer.flush()
    writer.record("p", "2" * 32, 2, "mlx", "cpu", 1.0, {"x": np.ones((1, 3))}, {"y": np.zeros(1)}, 1, ts=now)
    writer.record("p", "3" * 32, 2, "mlx", "cpu", 1.0, {"tokens": np.ones((1, 100), np.int32)}, {"y": np.zeros(1)}, 1, ts=now)
    writer.close()
    frame = read_predictions(settings, "p", since=datetime.fromtimestamp(now - 60, UTC))
    assert frame["request_id"].tolist() == ["1" * 32] * 2 + ["2" * 32, "3" * 32]
    assert frame["in.x_2"].isna().tolist() == [True, True, False, True]
    assert frame["in.tokens_mean"].tolist()[3] == 1.0  # wider than features.MAX_WIDTH: summarised
    assert read_predictions(settings, "p", since=datetime.fromtimestamp(now - 60, UTC), columns=["in.x_2", "nope"]).shape == (4, 2)


@pytest.mark.parametrize("rows", [[1, 1, 1, 1], [3, 1, 2, 1]], ids=["one-row requests", "batches"])
def test_packed_predictions_make_the_general_paths_table(rows):
    """The request path packs array bytes; the flush's table equals the general (per-shape) path's, cell for cell."""
    from mlops.monitoring.prediction_log import PREDICTIONS, PackedPredictions, Record, _prediction_table_by_shape, prediction_table

    rng = np.random.default_rng(3)
    records = [
        Record(PREDICTIONS, "p", 1_700_000_000.25 + i, n, (f"{i:032x}", 1 + i % 2, "mlx", "cpu", "nominal", 0.5 * i,
                                                            {"x": rng.standard_normal((n, 5)).astype(np.float32)}, _mlp_outputs(n, i)))
        for i, n in enumerate(rows)
    ]
    first = records[0].payload
    packed = PackedPredictions("p", PackedPredictions.layout_of(first[6], first[7], records[0].rows))
    for r in records:
        assert packed.append(r.payload[0], r.ts, r.rows, *r.payload[1:])
    table = packed.table()
    general = _prediction_table_by_shape(records)
    assert table.equals(general.select(table.column_names)) and table.num_rows == sum(rows)
    assert table.column("row").to_pylist() == [r for n in rows for r in range(n)]
    assert table.column("batch_rows").to_pylist() == [n for n in rows for _ in range(n)]
    assert prediction_table(records).equals(table)  # the joined general path too
    # one record not like the others (a list, as a client may send) takes the general path, still one table
    records[1] = records[1]._replace(payload=records[1].payload[:6] + ({"x": records[1].payload[6]["x"].tolist()}, records[1].payload[7]))
    assert prediction_table(records).column("in.x_4").to_pylist() == table.column("in.x_4").to_pylist()


def test_a_batch_packs_only_its_own_layout_and_copies_the_bytes():
    """Another dtype, trailing shape, row count or name is refused whole; what is packed is a copy."""
    from mlops.monitoring.prediction_log import PackedPredictions

    x, outputs = np.arange(6, dtype=np.float32).reshape(2, 3), _mlp_outputs(2)
    batch = PackedPredictions("p", PackedPredictions.layout_of({"x": x}, outputs, 2))
    refused = [
        ({"x": x.astype(np.float64)}, outputs, 2),
        ({"x": np.zeros((2, 4), np.float32)}, outputs, 2),
        ({"x": x}, outputs, 1),
        ({"y": x}, outputs, 2),
        ({"x": x.tolist()}, outputs, 2),
        ({"x": np.float32(1)}, outputs, 2),
        ({"x": np.array(1.0, np.float32)}, outputs, 2),
        ({"x": x}, {**outputs, "probabilities": np.zeros((2, 5), np.float32)}, 2),  # x is copied, then taken back
    ]
    for inputs, outs, rows in refused:
        assert not batch.append("r", 1.0, rows, 1, "mlx", "cpu", "fair", 1.0, inputs, outs)
    assert not batch.append("r", 1.0, 2, None, "mlx", "cpu", "fair", 1.0, {"x": x}, outputs)  # a version that is no int
    assert batch.total_rows == 0 and not any(batch.buffers) and not batch.ids and not len(batch.version)
    assert batch.append("r", 1.0, 2, 1, "mlx", "cpu", "fair", 1.0, {"x": x[:, ::-1]}, outputs)  # strided: packed in C order
    x[:] = -1  # the caller may reuse its arrays
    assert batch.table().column("in.x_0").to_pylist() == [2.0, 5.0]
    assert PackedPredictions.layout_of({"x": x}, {"text": np.array(["a", "b"])}, 2) is None


def test_one_flush_writes_one_file_per_project_and_day_in_time_order(settings):
    """Packed batches of two layouts, and a prediction that could not be packed, share one file, ordered by time."""
    writer = _writer(settings)
    now = time.time()
    xs = [np.full((1, 3), i, np.float32) for i in range(3)] + [np.full((2, 4), 3, np.float32)]
    for i, x in enumerate(xs):
        writer.record("p", f"{i:032x}", 1, "mlx", "cpu", 1.0, {"x": x}, _mlp_outputs(len(x), i), len(x), ts=now + i)
    writer.record("p", f"{4:032x}", 1, "mlx", "cpu", 1.0, {"x": [[4.0, 4.0, 4.0]]}, _mlp_outputs(1, 4), 1, ts=now + 4)
    writer.record("q", f"{5:032x}", 1, "mlx", "cpu", 1.0, {"x": xs[0]}, _mlp_outputs(1, 5), 1, ts=now + 5)
    assert writer.flush() == 7
    assert [len(list((log_root(settings) / "predictions" / f"project={name}").rglob("part-*.parquet"))) for name in "pq"] == [1, 1]
    frame = read_predictions(settings, "p", since=datetime.fromtimestamp(now - 60, UTC))
    assert frame["request_id"].tolist() == [f"{i:032x}" for i in (0, 1, 2, 3, 3, 4)]
    assert frame["in.x_0"].tolist() == [0, 1, 2, 3, 3, 4] and frame["in.x_3"].isna().tolist() == [True, True, True, False, False, True]
    writer.close()


def test_more_layouts_than_batches_take_the_general_path(settings):
    """Variable-length inputs give a new layout per length; past MAX_LAYOUTS they are kept as records, nothing lost."""
    from mlops.monitoring.prediction_log import MAX_LAYOUTS

    writer = _writer(settings)
    now = time.time()
    for length in range(1, MAX_LAYOUTS + 4):
        tokens = np.arange(length, dtype=np.int32)[None, :]
        writer.record("p", f"{length:032x}", 1, "mlx", "cpu", 1.0, {"tokens": tokens}, {"y": np.zeros(1)}, 1, ts=now + length)
    writer.lookup("0" * 32)  # packs what is queued
    assert len(writer._batches["p", "tokens", None, "y"]) == MAX_LAYOUTS and len(writer._unpacked) == 3
    assert writer.flush() == MAX_LAYOUTS + 3
    frame = read_predictions(settings, "p", since=datetime.fromtimestamp(now - 60, UTC))
    assert frame["in.tokens_max"].tolist() == list(range(MAX_LAYOUTS + 3))
    writer.close()


def test_a_failing_write_keeps_the_rows_and_writes_them_once_fixed(settings, caplog):
    writer = _writer(settings)
    root = log_root(settings)
    root.mkdir(parents=True)
    (root / "predictions").write_text("a file where the predictions folder belongs")
    x = np.zeros((2, 32), np.float32)
    writer.record("p", "a" * 32, 1, "mlx", "cpu", 1.0, {"x": x}, _mlp_outputs(2), 2)
    writer.record_feedback("p", "a" * 32, [0, 1])
    with caplog.at_level(logging.WARNING, logger="mlops.monitoring.prediction_log"):
        assert writer.flush() == 2  # the feedback partition is fine
        assert writer.flush() == 0  # retried, still failing
    assert "could not write 2 predictions rows of p" in caplog.text
    snapshot = writer.snapshot()
    assert snapshot["buffered_rows"] == 2
    assert snapshot["counts"]["write_failures", "predictions"] == 2 and snapshot["counts"]["written", "predictions"] == 0

    writer.record("p", "b" * 32, 1, "mlx", "cpu", 1.0, {"x": x[:1]}, _mlp_outputs(1), 1)
    (root / "predictions").unlink()
    writer.close()
    frame = read_predictions(settings, "p", since=datetime.now(UTC) - HOUR)
    assert frame["request_id"].tolist() == ["a" * 32, "a" * 32, "b" * 32]
    snapshot = writer.snapshot()
    assert (snapshot["counts"], snapshot["buffered_rows"]) == (writer.counts, 0) and snapshot["flush_cpu_seconds"] > 0
    assert writer.counts["written", "predictions"] == 3 and writer.counts["dropped", "predictions"] == 0


def test_a_full_buffer_drops_and_counts_instead_of_growing(settings):
    writer = _writer(settings, max_buffered_rows=5)
    x = np.zeros((3, 32), np.float32)
    assert writer.record("p", "a" * 32, 1, "mlx", "cpu", 1.0, {"x": x}, _mlp_outputs(3), 3)
    assert not writer.record("p", "b" * 32, 1, "mlx", "cpu", 1.0, {"x": x}, _mlp_outputs(3), 3)
    assert writer.counts["dropped", "predictions"] == 3 and writer.snapshot()["buffered_rows"] == 3
    writer.close()
    assert writer.counts["written", "predictions"] == 3


def test_the_writer_thread_flushes_on_its_own_and_refreshes_the_thermal_state(settings):
    states = iter(["nominal", "critical", "critical", "critical"])
    writer = PredictionLogWriter(log_root(settings), flush_seconds=0.2, thermal=lambda: next(states, "critical"), thermal_seconds=0.2)
    writer.start()
    from mlops_testing import wait_for

    wait_for(lambda: writer.thermal_state == "critical", 10, "the thermal refresh", interval=0.05)
    writer.record("p", "a" * 32, 1, "mlx", "cpu", 1.0, {"x": np.zeros((1, 32))}, _mlp_outputs(1), 1)
    wait_for(lambda: writer.counts["written", "predictions"] == 1, 10, "the background flush", interval=0.05)
    assert read_predictions(settings, "p", since=datetime.now(UTC) - HOUR)["thermal_state"].tolist() == ["critical"]
    writer.close()


def test_accuracy_joins_feedback_on_request_and_row(settings):
    writer = _writer(settings)
    outputs = {"label": np.array([0, 1, 2, 3])}
    writer.record("p", "a" * 32, 1, "mlx", "cpu", 1.0, {"x": np.zeros((4, 2))}, outputs, 4)
    writer.record("p", "b" * 32, 1, "mlx", "cpu", 1.0, {"x": np.zeros((1, 2))}, {"label": [2]}, 1)
    writer.record_feedback("p", "a" * 32, [0, 1, 0, 0])  # rows 0 and 1 right
    writer.record_feedback("p", "b" * 32, [1])
    writer.record_feedback("p", "b" * 32, [2])  # a correction: the latest label wins
    writer.record_feedback("p", "f" * 32, [1])  # no such prediction: joins nothing
    writer.close()
    since = datetime.now(UTC) - HOUR
    assert accuracy(settings, "p", since) == {"rows": 5, "accuracy": 3 / 5}
    assert accuracy(settings, "p", since, until=since + HOUR / 2) == {"rows": 0, "accuracy": None}
    assert accuracy(settings, "nothing", since) == {"rows": 0, "accuracy": None}
    regression = accuracy(settings, "p", since, label_column="out.value")
    assert regression["accuracy"] is None and "out.value" in regression["reason"]


# --- sampling a large window -----------------------------------------------------------------

ROWS, FILES, FLOATS = 1_000_000, 10, 20


@pytest.fixture(scope="module")
def big_log(tmp_path_factory) -> tuple[Settings, datetime]:
    """1M prediction rows, 20 float input columns, in 10 files over two UTC days: written with pyarrow directly.

    Row groups of ROW_GROUP_ROWS, as the writer makes them (a reader holds one row group at a time).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    home = tmp_path_factory.mktemp("big-log")
    settings = Settings.from_env({"MLOPS_HOME": str(home)})
    start = datetime(2025, 3, 1, 12, tzinfo=UTC)
    rng = np.random.default_rng(7)
    per_file = ROWS // FILES
    for i in range(FILES):
        first = i * per_file
        ts = start + timedelta(hours=2.4 * i)
        seconds = ts.timestamp() + np.arange(per_file) * 0.001
        columns = {
            "request_id": pa.array([f"{n:032x}" for n in range(first, first + per_file)]),
            "row": pa.array(np.zeros(per_file, np.int32)),
            "ts": pa.array((seconds * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
            "version": pa.array(np.ones(per_file, np.int64)),
            "latency_ms": pa.array(np.arange(first, first + per_file, dtype=np.float64)),  # = global row number
        }
        columns.update({f"in.f_{j}": pa.array(rng.standard_normal(per_file)) for j in range(FLOATS)})
        folder = log_root(settings) / "predictions" / "project=big" / f"date={ts.date()}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{ts:%Y%m%dT%H%M%S}Z-{i:08x}.parquet"
        pq.write_table(pa.table(columns), folder / name, row_group_size=ROW_GROUP_ROWS)
    return settings, start


def test_sampling_reader_is_reproducible_uniform_and_windowed(big_log):
    settings, start = big_log
    since = start - HOUR
    first = read_predictions(settings, "big", since, max_rows=5_000, seed=3)
    again = read_predictions(settings, "big", since, max_rows=5_000, seed=3)
    other = read_predictions(settings, "big", since, max_rows=5_000, seed=4)
    assert len(first) == 5_000 and first.equals(again)
    assert not first["request_id"].equals(other["request_id"])
    positions = first["latency_ms"].to_numpy()
    assert (np.diff(positions) > 0).all(), "log order, no row twice"
    assert abs((positions < ROWS / 2).mean() - 0.5) < 0.03, "every part of the window is sampled alike"
    assert [c for c in first.columns if c.startswith("in.")] == [f"in.f_{j}" for j in range(FLOATS)]

    # a window cutting files in the middle: only rows inside it, and fewer rows than asked -> all of them
    cut_since, cut_until = start + timedelta(hours=2.4 * 3 + 0.01), start + timedelta(hours=2.4 * 3 + 0.02)
    window = read_predictions(settings, "big", cut_since, cut_until, columns=["ts", "in.f_0"], max_rows=100_000)
    assert len(window) == 36_000 and list(window.columns) == ["ts", "in.f_0"]
    assert window["ts"].min() >= cut_since and window["ts"].max() < cut_until


MEASURE = """import json, sys, threading, time
from datetime import datetime
import psutil
from mlops.monitoring.prediction_log import read_predictions
from mlops.settings import Settings

settings = Settings.from_env({"MLOPS_HOME": sys.argv[1]})
since, until, max_rows = datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), int(sys.argv[4])
process = psutil.Process()
read_predictions(settings, "nothing", since)  # import pandas/pyarrow before the baseline
baseline = peak = process.memory_info().rss
done = False

def sample():
    global peak
    while not done:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.002)

sampler = threading.Thread(target=sample)
sampler.start()
frame = read_predictions(settings, "big", since, until, max_rows=max_rows, seed=0)
done = True
sampler.join()
print(json.dumps({"rows": len(frame), "peak_mb": (max(peak, process.memory_info().rss) - baseline) / 2**20}))
"""


def _peak_rss_delta_mb(settings: Settings, since: datetime, until: datetime, max_rows: int) -> dict:
    """Peak RSS above the post-import baseline of one sampled read, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(settings.home), since.isoformat(), until.isoformat(), str(max_rows)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sampling_reader_stays_in_bounded_memory(big_log):
    settings, start = big_log
    whole = _peak_rss_delta_mb(settings, start - HOUR, start + 48 * HOUR, 10_000)
    one_file = _peak_rss_delta_mb(settings, start - HOUR, start + 2 * HOUR, 10_000)
    assert whole["rows"] == one_file["rows"] == 10_000
    # The 1M-row window is ~200 MB as Arrow (a full read into pandas peaks near 800 MB); the sample holds
    # ~2 x 10k rows plus one 16k-row group (~5 MB). Allocator warm-up and slack are most of what is measured
    # (~70-90 MB), so: a generous absolute bound, and 10x the rows may not cost noticeably more.
    assert whole["peak_mb"] < 150, whole
    assert whole["peak_mb"] < one_file["peak_mb"] + 40, (whole, one_file)


def test_the_request_path_only_queues_and_the_writer_packs_soon(settings):
    """`record` queues a tuple; the writer thread packs the queue within `drain_seconds` (or at DRAIN_AT waiting)."""
    from mlops_testing import wait_for

    writer = _writer(settings, drain_seconds=0.05)
    request_id = writer.request_id()
    writer.record("p", request_id, 1, "mlx", "cpu", 1.0, {"x": np.zeros((2, 32), np.float32)}, _mlp_outputs(2), 2)
    assert writer.snapshot()["buffered_rows"] == 2
    wait_for(lambda: not writer._queue and writer._batches, timeout=10, what="the writer thread to pack the queue")
    assert writer.recent.get(request_id) == ("p", 2) and writer.lookup(request_id) == ("p", 2)
    assert writer.flush() == 2 and writer.flush_cpu_seconds > 0
    writer.close()


def test_a_prediction_that_cannot_be_logged_is_dropped_and_counted_not_fatal(settings, caplog):
    """The request path only queues, so a malformed call surfaces in the writer: it is dropped, named, and the log goes on."""
    writer = _writer(settings)
    now = time.time()
    writer.record("p", "a" * 32, 1, "mlx", "cpu", 1.0, [[0.0] * 32], _mlp_outputs(1), 1, ts=now)  # inputs not a mapping
    writer.record("p", "b" * 32, 1, "mlx", "cpu", 1.0, {"x": np.zeros((1, 32), np.float32)}, _mlp_outputs(1), 1, ts=now)
    with caplog.at_level(logging.WARNING, logger="mlops.monitoring.prediction_log"):
        assert writer.flush() == 1
    assert f"dropped request {'a' * 32} of p, which cannot be logged" in caplog.text
    assert writer.counts["dropped", "predictions"] == 1 and writer.snapshot()["buffered_rows"] == 0
    assert read_predictions(settings, "p", since=datetime.fromtimestamp(now - 60, UTC))["request_id"].tolist() == ["b" * 32]
    writer.close()
