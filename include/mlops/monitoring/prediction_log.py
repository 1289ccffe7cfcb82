"""The prediction log: every served prediction and every ground-truth label, as Parquet.

Why: drift checks and accuracy need what the models actually saw and answered, per project,
without slowing serving down. The gateway hands each prediction to `PredictionLogWriter.record`
(its arrays' bytes appended to its project's buffers under a lock: no I/O, no pyarrow on the
request path); a daemon thread writes the buffers in batches.

Layout (a contract: the drift check and anyone with `pyarrow.dataset` read it; Hive partitions,
`project` and `date` exist only as partitions, never as file columns):

    <MLOPS_HOME>/monitoring/predictions/project=<project>/date=<YYYY-MM-DD>/part-<utc>-<uuid8>.parquet
    <MLOPS_HOME>/monitoring/feedback/project=<project>/date=<YYYY-MM-DD>/part-<utc>-<uuid8>.parquet

`date` is the UTC day of `ts`. Files are written under a dot-name and renamed into place, so a
reader never sees half a file (pyarrow.dataset ignores dot-files).

Prediction rows, one per batch row: `request_id` (string), `row` (int32, index in the request's
batch), `ts` (timestamp[us, UTC], when the answer was ready), `version` (int64), `backend`,
`device`, `thermal_state` (strings), `latency_ms` (float64, the whole request's), `batch_rows`
(int32), then `in.<column>` and `out.<column>` (float64) flattened by `features.flatten`.
Versions with other inputs/outputs give other `in.`/`out.` columns; files of one flush share a
schema (absent columns are null), readers fill columns a file lacks with nulls.

Feedback rows: `request_id`, `row` (int32), `label` (float64), `ts`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from mlops.settings import Settings

log = logging.getLogger(__name__)

PREDICTIONS, FEEDBACK = "predictions", "feedback"
PREDICTION_COLUMNS = ("request_id", "row", "ts", "version", "backend", "device", "thermal_state", "latency_ms", "batch_rows")
FEEDBACK_COLUMNS = ("request_id", "row", "label", "ts")
DEFAULT_LABEL_COLUMN = "out.label"
DICTIONARY_COLUMNS = ("backend", "device", "thermal_state")
MAX_LAYOUTS = 8  # packed batches per project and names in one flush interval; more shapes take the general path
DRAIN_AT, DRAIN_SECONDS = 256, 0.2  # the writer packs the queue when this many predictions wait, or this often
RECENT_REQUESTS = 100_000  # request ids remembered for feedback (rounded up to a power of two)
ROW_GROUP_ROWS = 16_384  # files are read one row group at a time: this bounds a reader's memory


def log_root(settings: Settings) -> Path:
    """Where the prediction and feedback logs live (`<MLOPS_HOME>/monitoring`)."""
    return settings.home / "monitoring"


def partition_dir(root: Path, kind: str, project: str, day: date | str) -> Path:
    return root / kind / f"project={project}" / f"date={day}"


# --- writing -------------------------------------------------------------------------------


class Record(NamedTuple):
    """One buffered prediction or feedback; `payload` is kept as given and converted when written.

    payload: predictions (request_id, version, backend, device, thermal_state, latency_ms,
    inputs, outputs); feedback (request_id, labels).
    """

    kind: str
    project: str
    ts: float  # epoch seconds
    rows: int
    payload: tuple


class PackedPredictions:
    """Predictions of one project and one array layout, packed into byte buffers as they arrive.

    Why: keeping each request's arrays, floats and id string alive until the flush meant ~700
    bytes of small objects per request; the gateway then served every request from cold memory
    and freed it in bulk, and the flush joined the arrays one by one under the GIL. Measured at
    concurrency 32 (bench/capture.py), that cost 6 us a request, packing the bytes (about
    0.25 us an array) 3 us. The flush reads each buffer as one numpy array: no per-record step.

    `layout`: (side, name, dtype, shape after the batch axis) of every array, inputs (side 0)
    then outputs (side 1). `append` packs only predictions of exactly this layout.
    """

    __slots__ = ("project", "layout", "buffers", "ids", "id_ends", "ts", "rows", "version", "latency_ms",
                 "backend", "device", "thermal_state", "total_rows", "ndarray", "specs", "row_bytes")

    def __init__(self, project: str, layout: tuple[tuple[int, str, Any, tuple[int, ...]], ...]):
        from array import array

        import numpy as np

        self.ndarray = np.ndarray  # looked up once: `append` runs on every request
        self.project, self.layout = project, layout
        self.specs = tuple((side, name, dtype, (1, *shape), shape) for side, name, dtype, shape in layout)
        self.row_bytes = tuple(dtype.itemsize * int(np.prod(shape, dtype=np.int64)) for _, _, dtype, shape in layout)
        self.buffers = [bytearray() for _ in layout]
        self.ids, self.id_ends = bytearray(), array("q")  # request ids as UTF-8, and where each one ends
        self.ts, self.latency_ms = array("d"), array("d")
        self.rows, self.version = array("q"), array("q")
        self.backend: list[str] = []  # a handful of distinct strings: references, not copies
        self.device: list[str] = []
        self.thermal_state: list[str] = []
        self.total_rows = 0

    @staticmethod
    def layout_of(inputs: dict[str, Any], outputs: dict[str, Any], rows: int) -> tuple | None:
        """The layout of one prediction, or None when an array cannot be packed (a list, a scalar, text)."""
        import numpy as np

        layout = []
        for side, arrays in enumerate((inputs, outputs)):
            for name, array in arrays.items():
                if type(array) is not np.ndarray or array.ndim == 0 or array.shape[0] != rows or array.dtype.kind not in "biuf":
                    return None
                layout.append((side, name, array.dtype, array.shape[1:]))
        return tuple(layout)

    def append(self, request_id: str, ts: float, rows: int, version: int, backend: str, device: str,
               thermal_state: str, latency_ms: float, inputs: dict[str, Any], outputs: dict[str, Any]) -> bool:
        """Pack one prediction; False, with nothing packed, unless its arrays have this batch's layout.

        One pass checks and copies each array (`.shape` builds a tuple per call: read once); a
        mismatch takes back what this call copied.
        """
        ndarray, buffers, copied = self.ndarray, self.buffers, 0
        try:
            for side, name, dtype, one_row, shape in self.specs:
                array = (outputs if side else inputs)[name]
                if array.__class__ is not ndarray or (array.dtype is not dtype and array.dtype != dtype) or array.shape != (one_row if rows == 1 else (rows, *shape)):
                    break
                buffers[copied] += array.tobytes()  # C order whatever the strides
                copied += 1
            else:
                self.version.append(version)
                self.ids += request_id.encode()
                self.id_ends.append(len(self.ids))
                self.ts.append(ts)
                self.latency_ms.append(latency_ms)
                self.rows.append(rows)
                self.backend.append(backend)
                self.device.append(device)
                self.thermal_state.append(thermal_state)
                self.total_rows += rows
                return True
        except (KeyError, TypeError, OverflowError):  # another name, a version that is no int
            pass
        for buffer, row_bytes in zip(buffers[:copied], self.row_bytes):
            if row_bytes:
                del buffer[-row_bytes * rows :]
        return False

    @property
    def request_id(self) -> pa.Array:
        """The request ids as an Arrow string array, built on the packed bytes (no per-record step)."""
        import numpy as np
        import pyarrow as pa

        offsets = np.zeros(len(self.id_ends) + 1, np.int32)
        offsets[1:] = np.frombuffer(self.id_ends, np.int64)
        return pa.Array.from_buffers(pa.string(), len(self.id_ends), [None, pa.py_buffer(offsets), pa.py_buffer(bytes(self.ids))])

    def table(self) -> pa.Table:
        """The Arrow table of every packed prediction."""
        import numpy as np

        arrays: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
        for (side, name, dtype, shape), buffer in zip(self.layout, self.buffers):
            arrays[side][name] = np.frombuffer(buffer, dtype).reshape((self.total_rows, *shape))
        return _prediction_columns(self, *arrays)


class PredictionColumns:
    """Prediction records of one project and one set of input and output names, column by column.

    The general path (records the gateway could not pack, `prediction_table`): each column's
    arrays are joined with one `np.concatenate`; `table()` says None when they do not join (a
    list instead of an array, other row counts or trailing shapes), and `_prediction_table_by_shape`
    groups such records by shape first.
    """

    __slots__ = ("project", "inputs", "outputs", "request_id", "ts", "rows", "version", "backend", "device",
                 "thermal_state", "latency_ms")

    def __init__(self, project: str, input_names: tuple[str, ...], output_names: tuple[str, ...]):
        self.project = project
        self.inputs: dict[str, list[Any]] = {name: [] for name in input_names}
        self.outputs: dict[str, list[Any]] = {name: [] for name in output_names}
        self.request_id: list[str] = []
        self.ts: list[float] = []
        self.rows: list[int] = []
        self.version: list[int] = []
        self.backend: list[str] = []
        self.device: list[str] = []
        self.thermal_state: list[str] = []
        self.latency_ms: list[float] = []

    def append(self, request_id: str, ts: float, rows: int, version: int, backend: str, device: str,
               thermal_state: str, latency_ms: float, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        self.request_id.append(request_id)
        self.ts.append(ts)
        self.rows.append(rows)
        self.version.append(version)
        self.backend.append(backend)
        self.device.append(device)
        self.thermal_state.append(thermal_state)
        self.latency_ms.append(latency_ms)
        for name, column in self.inputs.items():
            column.append(inputs[name])
        for name, column in self.outputs.items():
            column.append(outputs[name])

    def table(self) -> pa.Table | None:
        """The Arrow table of every buffered prediction, or None when the arrays do not join."""
        inputs = _joined(self.inputs, self.rows)
        outputs = _joined(self.outputs, self.rows) if inputs is not None else None
        if inputs is None or outputs is None:
            return None
        return _prediction_columns(self, inputs, outputs)

    @classmethod
    def of(cls, project: str, records: list[Record]) -> PredictionColumns | None:
        """The records as one batch, or None when their input/output names differ."""
        first = records[0].payload
        batch = cls(project, tuple(first[6]), tuple(first[7]))
        for r in records:
            p = r.payload
            if len(p[6]) != len(batch.inputs) or len(p[7]) != len(batch.outputs):
                return None
            try:
                batch.append(p[0], r.ts, r.rows, p[1], p[2], p[3], p[4], p[5], p[6], p[7])
            except KeyError:
                return None
        return batch


def read_thermal_state(settings: Settings | None = None) -> str:
    """The machine's thermal state now (the writer thread calls this, never the request path)."""
    from mlops.hardware.thermal import read_thermal

    return read_thermal(settings.hardware_root if settings is not None else None).state


class PredictionLogWriter:
    """Takes predictions on the request path in O(1) and writes them as Parquet from one daemon thread.

    * `record` only queues the prediction (a tuple appended under a lock, ~0.5 us). The writer
      thread packs the queue into per-layout `PackedPredictions` every `drain_seconds`, or as soon
      as `DRAIN_AT` predictions wait. Why: packing on the request path measured 7 us a request
      inside a loaded gateway (its code and data cold between requests) against 1 us in a tight
      loop; the writer packs in a tight loop, and a request's arrays live ~40 ms, not seconds.
    * Predictions that cannot be packed (lists, scalars), and feedback, are kept as `Record`s.
    * The thread writes when `flush_rows` rows wait or every `flush_seconds`; `flush()` writes
      now, `close()` stops the thread and writes the rest. A flush writes one file per kind,
      project and UTC day.
    * A file that cannot be written keeps its rows (as the Arrow table); it is retried first at
      the next flush (warning logged, `write_failures` counted). At most `max_buffered_rows`
      rows wait, queued or packed: records beyond them are dropped and counted in `dropped`.
    * Request ids come from `request_id()`; the writer remembers the last `recent_requests` of
      them with their project and rows (`lookup`, for the feedback route).
    * `thermal_state` is refreshed by the same thread every `thermal_seconds` and stamped on each
      prediction as it is recorded.
    """

    def __init__(
        self,
        root: Path,
        flush_rows: int = 50_000,
        flush_seconds: float = 5.0,
        max_buffered_rows: int = 1_000_000,
        thermal: Callable[[], str] | None = None,
        thermal_seconds: float = 5.0,
        drain_seconds: float = DRAIN_SECONDS,
        recent_requests: int = RECENT_REQUESTS,
    ):
        from collections import deque

        from mlops.monitoring.request_ids import RecentRequests

        self.root = Path(root)
        self.flush_rows, self.flush_seconds, self.drain_seconds = flush_rows, flush_seconds, drain_seconds
        self.max_buffered_rows = max_buffered_rows
        self.thermal_state = "unknown"
        self._thermal, self._thermal_seconds, self._thermal_read_at = thermal, thermal_seconds, float("-inf")
        self.recent = RecentRequests(recent_requests)
        self._lock = threading.Lock()  # guards the queue, the feedback buffer and the counters: held briefly
        self._pack_lock = threading.Lock()  # guards the packed batches, unpacked records and recent ids
        self._write_lock = threading.Lock()  # one flush at a time (thread, flush(), close())
        self._queue: deque[tuple] = deque()  # predictions as recorded, not packed yet
        self._buffer: list[Record] = []  # feedback
        self._unpacked: list[Record] = []  # predictions that could not be packed
        self._batches: dict[tuple, list[PackedPredictions]] = {}  # by (project, input names, None, output names)
        self._unwritten: list[tuple[str, str, date, pa.Table]] = []  # files that failed: retried first
        self._buffered_rows = 0
        self.flush_cpu_seconds = 0.0  # the writer's CPU time (packing and writing): capture's cost off the request path
        self.counts: dict[tuple[str, str], int] = {
            (name, kind): 0 for name in ("captured", "written", "dropped", "write_failures") for kind in (PREDICTIONS, FEEDBACK)
        }
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # request path ------------------------------------------------------------------------

    def request_id(self) -> str:
        """A new request id (`request_ids.RecentRequests.make_id`)."""
        return self.recent.make_id()

    def record(
        self,
        project: str,
        request_id: str,
        version: int,
        backend: str,
        device: str | None,
        latency_ms: float,
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        rows: int,
        ts: float | None = None,
    ) -> bool:
        """Queue one served prediction of `rows` rows (arrays or nested lists, batch first).

        `ts`: epoch seconds of the answer (default now). False when the buffer is full (dropped).
        """
        if self._thread is None:
            self.start()
        item = (project, request_id, version, backend, device or "unknown", latency_ms, inputs, outputs, rows,
                time.time() if ts is None else ts, self.thermal_state)
        with self._lock:
            if self._buffered_rows + rows > self.max_buffered_rows:
                self.counts["dropped", PREDICTIONS] += rows
                return False
            self._buffered_rows += rows
            self.counts["captured", PREDICTIONS] += rows
            self._queue.append(item)
            queued = len(self._queue)
        if queued == DRAIN_AT:
            self._wake.set()
        return True

    def lookup(self, request_id: str) -> tuple[str, int] | None:
        """(project, rows) of a recent request id (queued predictions included), or None."""
        with self._pack_lock:
            self._drain()
            return self.recent.get(request_id)

    def record_feedback(self, project: str, request_id: str, labels: list[float], ts: float | None = None) -> bool:
        """Buffer ground-truth labels of one request, one per row in batch order."""
        rows = len(labels)
        if self._thread is None:
            self.start()
        with self._lock:
            if self._buffered_rows + rows > self.max_buffered_rows:
                self.counts["dropped", FEEDBACK] += rows
                return False
            self._buffer.append(Record(FEEDBACK, project, time.time() if ts is None else ts, rows, (request_id, labels)))
            self._buffered_rows += rows
            self.counts["captured", FEEDBACK] += rows
        return True

    # the writer thread -------------------------------------------------------------------

    def _drain(self) -> None:
        """Pack every queued prediction and remember its id. Call with `_pack_lock` held."""
        with self._lock:
            queue, self._queue = self._queue, type(self._queue)()
        remember = self.recent.remember
        for item in queue:
            project, request_id, version, backend, device, latency_ms, inputs, outputs, rows, ts, thermal = item
            try:
                remember(request_id, project, rows)
                for batch in self._batches.get((project, *inputs, None, *outputs), ()):
                    # one, unless the arrays' shapes changed (a new version, variable-length inputs)
                    if batch.append(request_id, ts, rows, version, backend, device, thermal, latency_ms, inputs, outputs):
                        break
                else:
                    self._pack_or_keep(Record(PREDICTIONS, project, ts, rows,
                                              (request_id, version, backend, device, thermal, latency_ms, inputs, outputs)))
            except Exception as exc:  # noqa: BLE001 - one malformed prediction must not stop the log
                self._drop_malformed(project, request_id, rows, exc)

    def _drop_malformed(self, project: str, request_id: str, rows: int, exc: Exception) -> None:
        """A queued prediction that cannot be logged at all (inputs or outputs not name -> array mappings)."""
        with self._lock:
            self._buffered_rows -= rows
            self.counts["dropped", PREDICTIONS] += rows
        log.warning("prediction log: dropped request %s of %s, which cannot be logged: %s: %s",
                    request_id, project, type(exc).__name__, exc)

    def _pack_or_keep(self, record: Record) -> None:
        """A prediction no batch took: a new batch for its layout, else (not packable, or too many
        layouts of one project) kept as a record for the general path."""
        request_id, version, backend, device, thermal_state, latency_ms, inputs, outputs = record.payload
        batches = self._batches.setdefault((record.project, *inputs, None, *outputs), [])
        layout = PackedPredictions.layout_of(inputs, outputs, record.rows) if len(batches) < MAX_LAYOUTS else None
        if layout is not None:
            batch = PackedPredictions(record.project, layout)
            if batch.append(request_id, record.ts, record.rows, version, backend, device, thermal_state, latency_ms, inputs, outputs):
                batches.append(batch)
                return
        self._unpacked.append(record)

    def start(self) -> None:
        """Start the writer thread (idempotent; `record` starts it too)."""
        with self._write_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            self._refresh_thermal()
            self._wake.wait(timeout=min(self.drain_seconds, self.flush_seconds, self._thermal_seconds))
            self._wake.clear()
            if self._stopping:
                return
            try:
                if self._buffered_rows >= self.flush_rows or time.monotonic() - last_flush >= self.flush_seconds:
                    self.flush()
                    last_flush = time.monotonic()
                elif self._queue:
                    cpu_started = time.thread_time()
                    with self._pack_lock:
                        self._drain()
                    self.flush_cpu_seconds += time.thread_time() - cpu_started
            except Exception:  # a bug here must not silently end capture: log it, go on
                log.exception("prediction log: the writer thread's pass failed (retried at the next one)")

    def _refresh_thermal(self) -> None:
        if self._thermal is None or time.monotonic() - self._thermal_read_at < self._thermal_seconds:
            return
        self._thermal_read_at = time.monotonic()
        try:
            self.thermal_state = self._thermal()
        except Exception as exc:  # noqa: BLE001 - a broken sensor must not stop the log
            log.warning("thermal state read failed: %s: %s", type(exc).__name__, exc)
            self.thermal_state = "unknown"

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written. Files that fail stay buffered."""
        with self._write_lock:
            cpu_started = time.thread_time()
            with self._pack_lock:
                self._drain()
                batches = [batch for layouts in self._batches.values() for batch in layouts]
                unpacked, self._batches, self._unpacked = self._unpacked, {}, []
            with self._lock:
                records, self._buffer = unpacked + self._buffer, []
                unwritten, self._unwritten = self._unwritten, []
            try:
                return self._flush(records, batches, unwritten) if records or batches or unwritten else 0
            finally:
                self.flush_cpu_seconds += time.thread_time() - cpu_started

    def _flush(self, records: list[Record], batches: list[PackedPredictions], unwritten: list[tuple]) -> int:
        """Earlier failures first, then one table per kind and project, split by UTC day: files keep log order."""
        import pyarrow as pa

        failed: list[tuple[str, str, date, pa.Table]] = []
        written = sum(self._write_or_keep(*item, failed) for item in unwritten)
        tables: dict[tuple[str, str], list[pa.Table]] = {}
        for batch in batches:
            tables.setdefault((PREDICTIONS, batch.project), []).append(batch.table())
        kept = self._tables_of_records(records, tables)
        for (kind, project), parts in tables.items():
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default").sort_by("ts")
            if kind == PREDICTIONS:
                table = table.select(_ordered(table.column_names, PREDICTION_COLUMNS))
            for day, part in _split_by_day(table):
                written += self._write_or_keep(kind, project, day, part, failed)
        with self._lock:
            self._unwritten[:0] = failed
            self._buffer[:0] = kept
            self._buffered_rows -= written
        return written

    def _tables_of_records(self, records: list[Record], tables: dict[tuple[str, str], list[pa.Table]]) -> list[Record]:
        """Add the records' tables, by kind and project, to `tables`; returns the records that would not convert."""
        groups: dict[tuple[str, str], list[Record]] = {}
        for record in records:
            groups.setdefault((record.kind, record.project), []).append(record)
        kept: list[Record] = []
        for (kind, project), members in groups.items():
            try:
                table = prediction_table(members) if kind == PREDICTIONS else feedback_table(members)
            except Exception as exc:  # noqa: BLE001 - keep the rows, retry next flush
                kept.extend(members)
                self._write_failed(kind, project, sum(r.rows for r in members), exc)
                continue
            tables.setdefault((kind, project), []).append(table)
        return kept

    def _write_or_keep(self, kind: str, project: str, day: date, table: pa.Table, failed: list[tuple]) -> int:
        """Write one partition file; on failure keep the table for the next flush. Returns rows written."""
        try:
            self._write_table(kind, project, day, table)
        except Exception as exc:  # noqa: BLE001 - keep the rows, retry next flush
            failed.append((kind, project, day, table))
            self._write_failed(kind, project, table.num_rows, exc)
            return 0
        with self._lock:
            self.counts["written", kind] += table.num_rows
        return table.num_rows

    def _write_failed(self, kind: str, project: str, rows: int, exc: Exception) -> None:
        with self._lock:
            self.counts["write_failures", kind] += 1
        log.warning(
            "prediction log: could not write %d %s rows of %s (kept, retried at the next flush): %s: %s",
            rows, kind, project, type(exc).__name__, exc,
        )

    def _write_table(self, kind: str, project: str, day: date, table: pa.Table) -> Path:
        import pyarrow.parquet as pq

        folder = partition_dir(self.root, kind, project, day.isoformat())
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.parquet"
        staging = folder / f".{name}"
        try:
            # Dictionary encoding only where values repeat: on float features it costs 3x the write.
            dictionary = [name for name in DICTIONARY_COLUMNS if name in table.column_names]
            pq.write_table(table, staging, row_group_size=ROW_GROUP_ROWS, use_dictionary=dictionary)
            staging.replace(folder / name)
        finally:
            staging.unlink(missing_ok=True)
        return folder / name

    def close(self) -> None:
        """Stop the thread and write what is left (what still cannot be written is logged as lost)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
        if self._buffered_rows:
            log.warning("prediction log: %d rows could not be written and are lost", self._buffered_rows)

    def snapshot(self) -> dict[str, Any]:
        """Counters for /metrics: {(counter, kind): n} plus the rows waiting in the buffer."""
        with self._lock:
            return {"counts": dict(self.counts), "buffered_rows": self._buffered_rows, "flush_cpu_seconds": self.flush_cpu_seconds}


def _repeated(values: Any, rows: np.ndarray | None, kind: str) -> pa.Array:
    """One value per record -> one per row (each record's value repeated for its rows).

    `rows`: rows per record, or None when every record has one row (no repeat needed).
    `kind`: "string", "int32", "int64", "float64" or "timestamp" (epoch seconds -> us, UTC).
    """
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.Array):
        array = values
    elif kind == "timestamp":
        micros = np.round(np.asarray(values, dtype=np.float64) * 1e6).astype(np.int64)
        array = pa.array(micros, pa.timestamp("us", tz="UTC"))
    else:
        array = pa.array(values if kind == "string" else np.asarray(values, dtype=kind), pa.type_for_alias(kind))
    if rows is None:
        return array
    return array.take(pa.array(np.repeat(np.arange(len(rows)), rows)))


def _row_numbers(rows: np.ndarray | None, total: int) -> pa.Array:
    """0..n-1 for each record's n rows, as one int32 array (all zeros when every record has one row)."""
    import numpy as np
    import pyarrow as pa

    if rows is None:
        return pa.array(np.zeros(total, dtype=np.int32), pa.int32())
    starts = np.repeat(np.cumsum(rows) - rows, rows)
    return pa.array((np.arange(total) - starts).astype(np.int32), pa.int32())


def _row_arrays(mapping: dict[str, Any], rows: int) -> dict[str, np.ndarray]:
    """The numeric arrays of one record with one entry per row (a scalar output has no row to log)."""
    import numpy as np

    def loggable(array: Any) -> bool:
        return type(array) is np.ndarray and array.ndim > 0 and array.shape[0] == rows and array.dtype.kind in "biuf"

    if all(loggable(value) for value in mapping.values()):  # the usual case: the gateway's arrays, as they are
        return mapping
    arrays = {name: np.asarray(value) for name, value in mapping.items()}
    return {name: array for name, array in arrays.items() if loggable(array)}


def _joined(columns: dict[str, list[Any]], rows: list[int]) -> dict[str, np.ndarray] | None:
    """Each name's arrays joined into one, or None unless every part is a numeric array with its record's rows.

    C-level checks (`map`) and one `np.concatenate` per name: no Python work per record.
    """
    import numpy as np

    joined = {}
    for name, parts in columns.items():
        try:
            if set(map(type, parts)) != {np.ndarray} or list(map(len, parts)) != rows:
                return None
            array = np.concatenate(parts)
        except (TypeError, ValueError):  # a 0-d array; trailing shapes differ
            return None
        if array.dtype.kind not in "biuf":
            return None
        joined[name] = array
    return joined


def _split_by_day(table: pa.Table) -> Iterator[tuple[date, pa.Table]]:
    """(UTC day, its rows) of a table with a `ts` column: one part unless it spans midnight."""
    import numpy as np
    import pyarrow as pa

    days = table.column("ts").cast(pa.int64()).to_numpy() // 86_400_000_000
    if not len(days):
        return
    first = int(days[0])
    if (days == first).all():
        yield date(1970, 1, 1) + timedelta(days=first), table
        return
    for day in np.unique(days):
        yield date(1970, 1, 1) + timedelta(days=int(day)), table.filter(days == day)


def prediction_table(records: list[Record]) -> pa.Table:
    """One Arrow table of prediction records; records of the same array shapes are flattened together."""
    batch = PredictionColumns.of(records[0].project, records)
    table = batch.table() if batch is not None else None
    if table is None:
        table = _prediction_table_by_shape(records)
    return table.select(_ordered(table.column_names, PREDICTION_COLUMNS))


def _prediction_columns(batch: PredictionColumns, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> pa.Table:
    """The table of a batch whose arrays are already joined per name."""
    import numpy as np
    import pyarrow as pa

    from mlops.monitoring import features

    rows = batch.rows
    total = sum(rows)
    counts = None if total == len(rows) else np.asarray(rows)
    columns: dict[str, Any] = {
        "request_id": _repeated(batch.request_id, counts, "string"),
        "row": _row_numbers(counts, total),
        "ts": _repeated(batch.ts, counts, "timestamp"),
        "version": _repeated(batch.version, counts, "int64"),
        "backend": _repeated(batch.backend, counts, "string"),
        "device": _repeated(batch.device, counts, "string"),
        "thermal_state": _repeated(batch.thermal_state, counts, "string"),
        "latency_ms": _repeated(batch.latency_ms, counts, "float64"),
        "batch_rows": _repeated(rows, counts, "int32"),
    }
    for prefix, joined in (("in", inputs), ("out", outputs)):
        for name, values in features.prefixed(prefix, features.flatten(joined)).items():
            columns[name] = pa.array(values, pa.float64())
    table = pa.table(columns)
    return table.select(_ordered(table.column_names, PREDICTION_COLUMNS))


def _prediction_table_by_shape(records: list[Record]) -> pa.Table:
    """The general path: records grouped by their arrays' names and shapes, one table per group."""
    import pyarrow as pa

    shaped: dict[tuple, PredictionColumns] = {}
    for record in records:
        inputs, outputs = _row_arrays(record.payload[6], record.rows), _row_arrays(record.payload[7], record.rows)
        key = tuple([(n, a.shape[1:]) for n, a in inputs.items()]), tuple([(n, a.shape[1:]) for n, a in outputs.items()])
        batch = shaped.get(key)
        if batch is None:
            batch = shaped[key] = PredictionColumns(record.project, tuple(inputs), tuple(outputs))
        p = record.payload
        batch.append(p[0], record.ts, record.rows, p[1], p[2], p[3], p[4], p[5], inputs, outputs)
    tables = [batch.table() for batch in shaped.values()]  # arrays made loggable and grouped by shape: they join
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def _ordered(names: list[str], base_columns: tuple[str, ...]) -> list[str]:
    """The fixed columns, then `in.` then `out.` columns, each in the order `features.flatten` gave them."""
    extra = sorted((c for c in names if c not in base_columns), key=lambda c: not c.startswith("in."))
    return [c for c in base_columns if c in names] + extra


def feedback_table(records: list[Record]) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    rows = [r.rows for r in records]
    total = sum(rows)
    counts = None if total == len(rows) else np.asarray(rows)
    return pa.table(
        {
            "request_id": _repeated([r.payload[0] for r in records], counts, "string"),
            "row": _row_numbers(counts, total),
            "label": pa.array(np.concatenate([np.asarray(r.payload[1], dtype=np.float64) for r in records]), pa.float64()),
            "ts": _repeated([r.ts for r in records], counts, "timestamp"),
        }
    )


# --- reading -------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def log_files(settings: Settings, kind: str, project: str, since: datetime, until: datetime | None = None) -> list[Path]:
    """The Parquet files of the date partitions overlapping [since, until], in date then name (time) order."""
    folder = log_root(settings) / kind / f"project={project}"
    first, last = _utc(since).date(), (_utc(until).date() if until is not None else date.max)
    files = []
    for partition in sorted(folder.glob("date=*")):
        try:
            day = date.fromisoformat(partition.name.removeprefix("date="))
        except ValueError:
            continue
        if first <= day <= last:
            files.extend(sorted(partition.glob("part-*.parquet")))
    return files


def scan(
    settings: Settings,
    kind: str,
    project: str,
    since: datetime,
    until: datetime | None = None,
    columns: list[str] | None = None,
    batch_rows: int = ROW_GROUP_ROWS,
) -> Iterator[pa.Table]:
    """Tables of at most `batch_rows` log rows with since <= ts < until, in log order.

    Reads one file's row batch at a time (only `columns`, plus `ts` to filter on); a requested
    column a file lacks is simply absent from its tables.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    stamp = pa.timestamp("us", tz="UTC")
    low = pa.scalar(_utc(since), stamp)
    high = pa.scalar(_utc(until), stamp) if until is not None else None
    for path in log_files(settings, kind, project, since, until):
        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering would read every row group up front
        present = parquet.schema_arrow.names
        wanted = present if columns is None else [c for c in columns if c in present]
        read = sorted(set(wanted) | {"ts"}, key=present.index)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=read, use_threads=False):
            keep = pc.greater_equal(batch.column("ts"), low)
            if high is not None:
                keep = pc.and_(keep, pc.less(batch.column("ts"), high))
            table = pa.Table.from_batches([batch]).filter(keep)
            if table.num_rows:
                yield table.select(wanted)


def _bottom_k(tables: Iterator[pa.Table], k: int, seed: int) -> pa.Table | None:
    """A uniform sample of `k` rows without replacement, holding at most ~2k rows plus one batch.

    Each scanned row gets a key from `numpy.random.Generator(PCG64(seed))`, drawn in scan
    order; the rows with the k smallest keys are the sample (reservoir sampling by random
    keys). Rows whose key is above the current k-th smallest are discarded as they are read.
    The result is in log order.
    """
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    kept: list[tuple[pa.Table, np.ndarray, np.ndarray]] = []
    kept_rows, offset, threshold = 0, 0, 1.0

    def compact() -> tuple[pa.Table, np.ndarray, np.ndarray]:
        table = pa.concat_tables([t for t, _, _ in kept], promote_options="default")
        keys, positions = np.concatenate([k_ for _, k_, _ in kept]), np.concatenate([p for _, _, p in kept])
        if len(keys) > k:
            chosen = np.argpartition(keys, k - 1)[:k]
            chosen.sort()  # positions grow with the index: this keeps log order
            table, keys, positions = table.take(pa.array(chosen)), keys[chosen], positions[chosen]
        return table, keys, positions

    for table in tables:
        keys = rng.random(table.num_rows)
        positions = np.arange(offset, offset + table.num_rows)
        offset += table.num_rows
        below = np.flatnonzero(keys < threshold)
        if len(below) < table.num_rows:
            table, keys, positions = table.take(pa.array(below)), keys[below], positions[below]
        if not len(keys):
            continue
        kept.append((table, keys, positions))
        kept_rows += len(keys)
        if kept_rows >= 2 * k:
            kept = [compact()]
            kept_rows = len(kept[0][1])
            threshold = float(kept[0][1].max())
    if not kept:
        return None
    table, _, positions = compact()
    order = np.argsort(positions, kind="stable")
    return table.take(pa.array(order))


def _read(
    settings: Settings,
    kind: str,
    project: str,
    since: datetime,
    until: datetime | None,
    columns: list[str] | None,
    max_rows: int | None,
    seed: int,
    base_columns: tuple[str, ...],
) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    tables = scan(settings, kind, project, since, until, columns)
    if max_rows is not None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        sample = _bottom_k(tables, max_rows, seed)
        found = [sample] if sample is not None else []
    else:
        found = list(tables)
    if not found:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in (columns or base_columns)})
    table = pa.concat_tables(found, promote_options="default") if len(found) > 1 else found[0]
    frame = table.to_pandas()
    if columns is not None:
        return frame.reindex(columns=list(columns))
    return frame[_ordered(list(frame.columns), base_columns)]


def read_predictions(
    settings: Settings,
    project: str,
    since: datetime,
    until: datetime | None = None,
    columns: list[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The project's predictions with since <= ts < until (naive datetimes are UTC), in log order.

    `columns`: only these (a column no file has comes back as nulls). `max_rows`: at most that
    many rows, a uniform sample without replacement taken while scanning, so memory stays
    ~2 * max_rows rows plus one row group (the writer writes 16k-row groups) however large the
    window. Method: every row in the window gets a uniform key from
    `numpy.random.default_rng(seed)`, drawn in log order (date partition, then file name =
    write time, then row); the max_rows smallest keys win (reservoir sampling by random keys,
    rows above the current k-th smallest key are dropped as they are read). Same log, window and
    seed -> the same rows, returned in log order.
    """
    return _read(settings, PREDICTIONS, project, since, until, columns, max_rows, seed, PREDICTION_COLUMNS)


def read_feedback(
    settings: Settings,
    project: str,
    since: datetime,
    until: datetime | None = None,
    columns: list[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The project's ground-truth labels with since <= ts < until; sampling as `read_predictions`."""
    return _read(settings, FEEDBACK, project, since, until, columns, max_rows, seed, FEEDBACK_COLUMNS)


def accuracy(
    settings: Settings, project: str, since: datetime, until: datetime | None = None, label_column: str | None = None
) -> dict[str, Any]:
    """Share of predictions in [since, until) whose `label_column` (default `out.label`) equals the feedback label.

    Joined on (request_id, row). Feedback counts from `since` on with no upper bound (labels
    arrive after the prediction); the latest label of a row wins. Predictions are scanned in
    batches, so memory is bounded by the feedback, not by the log. When predictions exist but
    none has `label_column` (not a classifier) the answer is 0 rows, accuracy None and a `reason`.
    """
    import numpy as np

    column = label_column or DEFAULT_LABEL_COLUMN
    labels = read_feedback(settings, project, since)
    if labels.empty:
        return {"rows": 0, "accuracy": None}
    labels = labels.sort_values("ts", kind="stable").drop_duplicates(["request_id", "row"], keep="last")
    labels = labels.set_index(["request_id", "row"])["label"]
    joined = correct = 0
    seen_predictions = seen_column = False
    for table in scan(settings, PREDICTIONS, project, since, until, ["request_id", "row", column]):
        seen_predictions = True
        if column not in table.column_names:
            continue
        seen_column = True
        frame = table.to_pandas().join(labels, on=["request_id", "row"], how="inner")
        joined += len(frame)
        correct += int(np.sum(frame[column].to_numpy() == frame["label"].to_numpy()))
    if seen_predictions and not seen_column:
        return {"rows": 0, "accuracy": None, "reason": f"no prediction of {project!r} has a column {column!r}"}
    return {"rows": joined, "accuracy": correct / joined if joined else None}


__all__ = [
    "FEEDBACK",
    "PREDICTIONS",
    "PredictionLogWriter",
    "accuracy",
    "log_files",
    "log_root",
    "partition_dir",
    "read_feedback",
    "read_predictions",
    "read_thermal_state",
    "scan",
]
