"""Drift of a window of served inputs against the reference (training data of the deployed version).

`check_drift` runs Evidently 0.7 (`Report([DataDriftPreset(...)])`) on the two frames and returns a
`DriftResult`; `save_report` keeps its HTML under MLOPS_HOME, in an MLflow run of the project's
experiment and in the local Evidently workspace (`evidently_workspace`).

What is checked, and what happens to bad data (no bad data raises; only wrong arguments do):

* Columns: `columns`, else the reference's numeric (not bool) columns, i.e. the flattened `in.*`
  features (`features.py`). Current columns that are not checked are ignored and listed
  (`extra_columns`). Every checked column is compared as float64.
* Schema: a checked column missing from either frame, duplicated, or not numeric in either frame
  (strings where numbers were, bools) -> `schema_mismatch`, naming the columns.
* Rows: an empty frame, or fewer than `min_rows` rows -> `insufficient_data` with the counts.
  An empty frame wins over a schema problem (an empty window has no meaningful dtypes); otherwise
  a schema problem wins over too few rows (it will not go away with more data).
* Missing values: NaN and +-inf count as missing. They are dropped per column, never whole rows
  (which is what Evidently's tests do themselves), and the statistics are over the rest. A column
  whose current share of missing values exceeds `max_nan_share` is named in `nan_columns` and the
  messages, and still tested. A column left with fewer than `min_rows` values in either frame is
  excluded (`excluded_columns`, with the reason); so is a column Evidently's test cannot handle
  (e.g. `anderson` on a constant column). Nothing left to test -> `insufficient_data`.
* Sampling: a frame with more than `max_rows` rows is reduced to `max_rows` rows drawn uniformly
  without replacement by `numpy.random.default_rng(child).choice(rows, max_rows, replace=False)`,
  where `reference_child, current_child = numpy.random.SeedSequence(seed).spawn(2)`; the drawn
  positions are sorted, so row order (time) is kept. Only the checked columns of the drawn rows
  are copied, so memory is bounded by `max_rows` x columns whatever the window's size.
  Evidently alone needed hours for 3M rows (evidently#1526); `max_rows=None` turns sampling off.
* Methods: `methods` / `thresholds` map a column (or its name without the `in.` prefix, as the
  project YAML writes it) to an Evidently stat test and threshold; the rest use `default_method`
  (unset: Evidently picks by size and cardinality) and `default_threshold`. A column with its own
  method but no threshold gets that method's default threshold, never `default_threshold`: a
  p-value threshold means nothing to a distance. These go into the preset's `per_column_method` /
  `per_column_threshold`, from which it generates one `ValueDrift(column, method, threshold)` per
  column (evidently/presets/drift.py); separate ValueDrift metrics would only repeat those.
* Verdict: per column Evidently's own test (the `ValueDrift` test fails when it drifted, as each
  test defines it: ks p-value <= threshold, wasserstein distance >= threshold, ...); `drift_share`
  is the share of tested columns that drifted (Evidently's `DriftedColumnsCount`), and the status
  is `drift` when it is at least the `drift_share` argument (Evidently's dataset-drift rule),
  else `ok`.
* Speed: Evidently draws the report with plotly, whose property-path parser is memoized first
  (`plotly_paths`: the same report, about a fifth less time).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from mlops.settings import Settings

OK = "ok"
DRIFT = "drift"
INSUFFICIENT_DATA = "insufficient_data"
SCHEMA_MISMATCH = "schema_mismatch"

SAMPLING_METHOD = (
    "uniform without replacement: numpy.random.default_rng(child).choice(rows, max_rows, replace=False), "
    "children = numpy.random.SeedSequence(seed).spawn(2) (reference, current); positions sorted"
)
_MAX_LISTED = 20  # columns named in one message; the result's lists hold them all


@dataclass
class ColumnDrift:
    """One tested column: Evidently's verdict and what the two samples looked like."""

    column: str
    method: str | None  # Evidently's stat test name (`ks`, `wasserstein`, ...)
    threshold: float | None
    score: float | None  # p-value for tests (ks, ...), distance for distances (wasserstein, psi, ...)
    drifted: bool | None  # None: Evidently gave no verdict (see messages)
    reference_mean: float | None
    reference_std: float | None
    current_mean: float | None
    current_std: float | None
    reference_nan: int  # NaN or +-inf among the rows used
    current_nan: int
    reference_values: int  # values tested (rows used minus missing)
    current_values: int


@dataclass
class DriftResult:
    """What a drift check found; `as_dict()` is its JSON form (without the Evidently snapshot)."""

    status: str
    drift_share: float | None = None
    drift_share_threshold: float = 0.5
    drifted_columns: list[str] = field(default_factory=list)
    n_drifted: int = 0
    columns: dict[str, ColumnDrift] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)
    type_mismatches: dict[str, str] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    nan_columns: list[str] = field(default_factory=list)
    excluded_columns: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    sampled: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    snapshot: Any = field(default=None, repr=False, compare=False)

    @property
    def tested_columns(self) -> list[str]:
        return list(self.columns)

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict(self): it would deep-copy the snapshot, datasets and all.
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "snapshot"}
        data["columns"] = {name: asdict(stats) for name, stats in self.columns.items()}
        return _json_safe(data)


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    methods: dict[str, str] | None = None,
    thresholds: dict[str, float] | None = None,
    default_method: str | None = None,
    default_threshold: float | None = None,
    drift_share: float = 0.5,
    min_rows: int = 30,
    max_rows: int | None = 100_000,
    max_nan_share: float = 0.1,
    seed: int = 0,
) -> DriftResult:
    """Compare `current` (recent predictions) with `reference`; see the module docstring for the rules.

    Raises only for wrong arguments (not DataFrames, unknown methods, out-of-range numbers); every
    data problem is a result with status `insufficient_data` or `schema_mismatch` naming the columns.
    The Evidently snapshot is kept on `result.snapshot` for `save_report`.
    """
    import pandas as pd

    if not isinstance(reference, pd.DataFrame) or not isinstance(current, pd.DataFrame):
        raise TypeError(
            f"reference and current must be pandas DataFrames, got {type(reference).__name__} "
            f"and {type(current).__name__}"
        )
    _check_numbers(drift_share, min_rows, max_rows, max_nan_share, default_threshold)
    _stat_test(default_method, "default_method")
    for key, method in (methods or {}).items():
        _stat_test(method, f"methods[{key!r}]")
    for key, threshold in (thresholds or {}).items():
        if threshold is not None:
            _check_threshold(threshold, f"thresholds[{key!r}]")
    result = DriftResult(
        status=OK,
        drift_share_threshold=drift_share,
        rows={
            "reference_total": len(reference),
            "current_total": len(current),
            "reference": len(reference),
            "current": len(current),
        },
        sampling={"max_rows": max_rows, "seed": seed, "method": SAMPLING_METHOD},
    )
    if len(reference) == 0 or len(current) == 0:
        empty = " and ".join(name for name, frame in (("reference", reference), ("current", current)) if len(frame) == 0)
        return _finish(
            result,
            INSUFFICIENT_DATA,
            f"{empty} has no rows (reference {len(reference)}, current {len(current)}); no verdict",
        )

    checked = _checked_columns(reference, current, columns, result)
    if result.missing_columns or result.type_mismatches or not checked:
        return _finish(result, SCHEMA_MISMATCH, None)
    if len(reference) < min_rows or len(current) < min_rows:
        return _finish(
            result,
            INSUFFICIENT_DATA,
            f"too few rows: reference {len(reference)}, current {len(current)} (min_rows {min_rows})",
        )

    method_of = _per_column(methods, checked, "methods", result)
    threshold_of = _per_column(thresholds, checked, "thresholds", result)
    for column, method in method_of.items():
        threshold_of.setdefault(column, _stat_test(method, f"methods[{column!r}]").default_threshold)

    reference_values = _sampled_float_columns(reference, checked, max_rows, seed, 0, result)
    current_values = _sampled_float_columns(current, checked, max_rows, seed, 1, result)
    tested = _usable_columns(reference_values, current_values, min_rows, max_nan_share, result)
    if not tested:
        return _finish(result, INSUFFICIENT_DATA, "no column has enough values to test")

    snapshot, failed = _run_evidently(
        reference_values,
        current_values,
        tested,
        default_method=default_method,
        default_threshold=default_threshold,
        method_of=method_of,
        threshold_of=threshold_of,
        drift_share=drift_share,
    )
    for column, reason in failed.items():
        _exclude(result, column, f"Evidently's test failed on it ({reason})")
    if snapshot is None:
        return _finish(result, INSUFFICIENT_DATA, "Evidently could not test any column")
    result.snapshot = snapshot
    _read_verdicts(snapshot, result)
    verdict = DRIFT if result.drift_share is not None and result.drift_share >= drift_share else OK
    return _finish(result, verdict, _drift_message(result))


def save_report(
    snapshot_or_result: Any,
    settings: Settings,
    project: str,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Keep a drift check: HTML file, MLflow run in the project's experiment, Evidently workspace snapshot.

    The HTML goes to `<MLOPS_HOME>/monitoring/reports/<project>/<run_name>.html`; the MLflow run
    (named `drift-<UTC timestamp>` unless `run_name` is given, tagged `mlops.kind=drift_check`)
    gets metrics drift_share, n_drifted, rows and per-column drift_score.<column>, params
    method/threshold (overall and per column), the HTML and the result's JSON. A result without a
    snapshot (insufficient data, schema mismatch) is still logged to MLflow, with no HTML or
    Evidently snapshot: the history shows the checks that could not decide too.
    """
    from mlops.monitoring.evidently_workspace import add_snapshot, serialize

    result = snapshot_or_result if isinstance(snapshot_or_result, DriftResult) else None
    snapshot = result.snapshot if result is not None else snapshot_or_result
    if result is None and snapshot is None:
        raise TypeError("save_report needs a DriftResult or an Evidently Snapshot")
    summary = result if result is not None else _result_from_snapshot(snapshot)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run_name = run_name or f"drift-{stamp}"

    html_path = document = None
    if snapshot is not None:
        html, document = serialize(snapshot, run_name)
        html_path = _report_path(settings, project, run_name)
        html_path.write_text(html, encoding="utf-8")

    run_id = _log_mlflow_run(settings, project, run_name, summary, html_path)
    evidently_project_id = evidently_snapshot_id = None
    if document is not None:
        evidently_project_id, evidently_snapshot_id = add_snapshot(settings, project, document)
    return {
        "html": str(html_path) if html_path is not None else None,
        "mlflow_run_id": run_id,
        "evidently_project_id": evidently_project_id,
        "evidently_snapshot_id": evidently_snapshot_id,
    }


def _report_path(settings: Settings, project: str, run_name: str) -> Path:
    """A new file for the HTML report: the same run name twice keeps both reports."""
    folder = settings.home / "monitoring" / "reports" / project
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_name}.html"
    suffix = 1
    while path.exists():
        suffix += 1
        path = folder / f"{run_name}-{suffix}.html"
    return path


# -- arguments ---------------------------------------------------------------------------------


def _check_numbers(
    drift_share: float, min_rows: int, max_rows: int | None, max_nan_share: float, default_threshold: float | None
) -> None:
    if not 0 <= drift_share <= 1:
        raise ValueError(f"drift_share must be within [0, 1], got {drift_share}")
    if min_rows < 1:
        raise ValueError(f"min_rows must be at least 1, got {min_rows}")
    if max_rows is not None and max_rows < min_rows:
        raise ValueError(f"max_rows ({max_rows}) must be at least min_rows ({min_rows})")
    if not 0 <= max_nan_share <= 1:
        raise ValueError(f"max_nan_share must be within [0, 1], got {max_nan_share}")
    if default_threshold is not None:
        _check_threshold(default_threshold, "default_threshold")


def _check_threshold(threshold: float, what: str) -> None:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"{what} must be a positive number, got {threshold!r}")


def _stat_test(method: str | None, what: str) -> Any:
    """Evidently's registered test for numeric columns (None passes); ValueError names the choices."""
    if method is None:
        return None
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    try:
        return get_registered_stattest(method, ColumnType.Numerical)
    except ValueError as exc:  # StatTestNotFoundError / StatTestInvalidFeatureTypeError
        raise ValueError(
            f"{what}: {method!r} is not an Evidently test for numeric columns "
            f"(drift columns are float64; one of {', '.join(_numeric_stat_tests())}): {exc}"
        ) from exc


def _numeric_stat_tests() -> list[str]:
    from evidently.legacy.core import ColumnType

    return sorted(test.name for test in _stat_tests() if ColumnType.Numerical in test.allowed_feature_types)


def _stat_tests() -> list[Any]:
    from evidently.legacy.calculations import stattests
    from evidently.legacy.calculations.stattests.registry import StatTest

    return [value for value in vars(stattests).values() if isinstance(value, StatTest)]


def _method_name(label: str | None) -> str | None:
    """Evidently reports an auto-picked test by display name ('K-S p_value'): the registry name instead."""
    for test in _stat_tests():
        if label in (test.name, test.display_name):
            return test.name
    return label


def _per_column(config: dict[str, Any] | None, checked: list[str], what: str, result: DriftResult) -> dict[str, Any]:
    """`config` keyed by checked column (as str); a key may omit the `in.` prefix. None values are no override."""
    names = {str(c) for c in checked}
    resolved: dict[str, Any] = {}
    unknown = []
    for key, value in (config or {}).items():
        if value is None:
            continue
        if str(key) in names:
            resolved[str(key)] = value
        elif f"in.{key}" in names:
            resolved.setdefault(f"in.{key}", value)
        else:
            unknown.append(str(key))
    if unknown:
        result.messages.append(f"{what} for columns that are not checked, ignored: {_names(unknown)}")
    return resolved


# -- data --------------------------------------------------------------------------------------


def _numeric(dtype: Any) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _checked_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str] | None, result: DriftResult
) -> list[str]:
    """The columns to compare; records missing, mistyped, duplicated and extra columns on `result`."""
    if columns is not None:
        if isinstance(columns, str) or not columns:
            raise ValueError(f"columns must be a non-empty list of column names, got {columns!r}")
        checked = list(dict.fromkeys(columns))
    else:
        checked = list(dict.fromkeys(c for c, dtype in reference.dtypes.items() if _numeric(dtype)))
        skipped = [str(c) for c in dict.fromkeys(reference.columns) if c not in checked]
        if skipped:
            result.messages.append(f"reference columns that are not numeric, not checked: {_names(skipped)}")
        if not checked:
            result.messages.append("the reference has no numeric column to compare")
            return []
    for side, frame in (("reference", reference), ("current", current)):
        missing = [c for c in checked if c not in frame.columns]
        if missing:
            result.missing_columns.extend(c for c in missing if c not in result.missing_columns)
            result.messages.append(f"columns missing from {side}: {_names(missing)}")
        duplicated = [c for c in checked if c in frame.columns and isinstance(frame[c], type(frame))]
        for column in duplicated:
            result.type_mismatches[column] = f"appears more than once in {side}"
    for column in checked:
        if column in result.type_mismatches or column in result.missing_columns:
            continue
        ref_dtype, cur_dtype = reference[column].dtype, current[column].dtype
        if not (_numeric(ref_dtype) and _numeric(cur_dtype)):
            result.type_mismatches[column] = f"reference {ref_dtype}, current {cur_dtype}; both must be numeric"
    if result.type_mismatches:
        described = [f"{c} ({why})" for c, why in result.type_mismatches.items()]
        result.messages.append(f"columns with changed or wrong types: {_names(described)}")
    result.extra_columns = [str(c) for c in current.columns if c not in checked]
    if result.extra_columns:
        result.messages.append(f"{len(result.extra_columns)} current columns not checked: {_names(result.extra_columns)}")
    return checked


def _sampled_float_columns(
    frame: pd.DataFrame, checked: list[str], max_rows: int | None, seed: int, stream: int, result: DriftResult
) -> dict[str, np.ndarray]:
    """Column name (str, as Evidently needs) -> float64 values of the rows used: all, or `max_rows` drawn."""
    import numpy as np

    side = ("reference", "current")[stream]
    positions = None
    if max_rows is not None and len(frame) > max_rows:
        child = np.random.SeedSequence(seed).spawn(2)[stream]
        positions = np.sort(np.random.default_rng(child).choice(len(frame), size=max_rows, replace=False))
        result.sampled = True
        result.rows[side] = max_rows
        result.messages.append(f"{side} sampled from {len(frame)} to {max_rows} rows (seed {seed})")
    values = {}
    for column in checked:
        # A float64 column is a view here; only the drawn rows are copied.
        array = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
        values[str(column)] = array if positions is None else array[positions]
    return values


def _usable_columns(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    min_rows: int,
    max_nan_share: float,
    result: DriftResult,
) -> list[str]:
    """Columns with enough values on both sides; fills the per-column statistics and NaN reports."""
    usable = []
    for column in reference:
        ref_stats, cur_stats = _describe(reference[column]), _describe(current[column])
        result.columns[column] = ColumnDrift(
            column=column,
            method=None,
            threshold=None,
            score=None,
            drifted=None,
            reference_mean=ref_stats["mean"],
            reference_std=ref_stats["std"],
            current_mean=cur_stats["mean"],
            current_std=cur_stats["std"],
            reference_nan=ref_stats["missing"],
            current_nan=cur_stats["missing"],
            reference_values=ref_stats["values"],
            current_values=cur_stats["values"],
        )
        nan_share = cur_stats["missing"] / len(current[column])
        if nan_share > max_nan_share:
            result.nan_columns.append(column)
            result.messages.append(
                f"{column}: {nan_share:.0%} of current values are NaN/inf (tolerance {max_nan_share:.0%}); "
                f"tested on the {cur_stats['values']} others"
            )
        fewest = min(ref_stats["values"], cur_stats["values"])
        if fewest < min_rows:
            _exclude(
                result,
                column,
                f"{ref_stats['values']} reference and {cur_stats['values']} current values that are not "
                f"NaN/inf (min_rows {min_rows})",
            )
        else:
            usable.append(column)
    return usable


def _describe(values: np.ndarray) -> dict[str, Any]:
    import numpy as np

    finite_mask = np.isfinite(values)
    count = int(finite_mask.sum())
    finite = values if count == values.size else values[finite_mask]
    return {
        "values": count,
        "missing": values.size - count,
        "mean": float(finite.mean()) if count else None,
        "std": float(finite.std(ddof=1)) if count > 1 else None,
    }


def _exclude(result: DriftResult, column: str, reason: str) -> None:
    result.columns.pop(column, None)
    result.excluded_columns[column] = reason
    result.messages.append(f"{column} not tested: {reason}")


# -- Evidently ---------------------------------------------------------------------------------


def _run_evidently(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    tested: list[str],
    **options: Any,
) -> tuple[Any, dict[str, str]]:
    """The snapshot over the columns Evidently can test, and column -> error for those it cannot.

    Some tests fail on some data (`anderson` on a constant column raises). When the whole run
    fails, each column is tried alone to find the culprits, and the rest run again; an error no
    single column reproduces is not a data problem and propagates.
    """
    try:
        return _evidently_report(reference, current, tested, **options), {}
    except Exception:
        failed = {}
        for column in tested:
            try:
                _evidently_report(reference, current, [column], **options)
            except Exception as exc:  # noqa: BLE001 - the error is the result
                failed[column] = f"{type(exc).__name__}: {exc}"
        if not failed:
            raise
    survivors = [c for c in tested if c not in failed]
    if not survivors:
        return None, failed
    return _evidently_report(reference, current, survivors, **options), failed


def _evidently_report(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    tested: list[str],
    *,
    default_method: str | None,
    default_threshold: float | None,
    method_of: dict[str, str],
    threshold_of: dict[str, float],
    drift_share: float,
) -> Any:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from mlops.monitoring import plotly_paths

    plotly_paths.install()  # the same report, ~20 % sooner (plotly re-parses property paths)
    # Every type list given: Evidently infers nothing, and every column is numerical.
    definition = DataDefinition(
        numerical_columns=tested,
        categorical_columns=[],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    preset = DataDriftPreset(
        columns=tested,
        drift_share=drift_share,
        method=default_method,
        threshold=default_threshold,
        per_column_method={c: m for c, m in method_of.items() if c in tested} or None,
        per_column_threshold={c: t for c, t in threshold_of.items() if c in tested} or None,
    )

    def dataset(values: dict[str, np.ndarray]) -> Any:
        frame = pd.DataFrame({c: values[c] for c in tested}, copy=False)
        return Dataset.from_pandas(frame, data_definition=definition)

    # include_tests: each ValueDrift then carries Evidently's drifted/not verdict (read back below).
    report = Report([preset], include_tests=True, tags=["drift_check"])
    with warnings.catch_warnings():
        # Constant columns make NumPy warn inside Evidently's correlations; the result says what matters.
        warnings.simplefilter("ignore", RuntimeWarning)
        return report.run(dataset(current), dataset(reference))


def _read_verdicts(snapshot: Any, result: DriftResult) -> None:
    """Fill method, threshold, score and verdict per column, and the drift share, from the snapshot."""
    verdicts, counted = _snapshot_verdicts(snapshot)
    for column, stats in result.columns.items():
        found = verdicts.get(column)
        if found is None:
            result.messages.append(f"{column}: Evidently's report has no ValueDrift result for it")
            continue
        stats.method, stats.threshold, stats.score, stats.drifted = found
        if stats.drifted is None:
            result.messages.append(f"{column}: Evidently's ValueDrift carried no drift test verdict")
    result.drifted_columns = [c for c, stats in result.columns.items() if stats.drifted]
    result.n_drifted = len(result.drifted_columns)
    tested = len(result.columns)
    if counted is not None:
        result.drift_share = counted[1]
        if round(counted[0]) != len(result.drifted_columns):
            result.messages.append(
                f"Evidently counts {counted[0]:g} drifted columns, its per-column tests {len(result.drifted_columns)}"
            )
    elif tested:
        result.drift_share = len(result.drifted_columns) / tested


def _snapshot_verdicts(snapshot: Any) -> tuple[dict[str, tuple], tuple | None]:
    """column -> (method, threshold, score, drifted) of every ValueDrift; DriftedColumnsCount's (count, share, drift_share).

    Read through the public `MetricResult.to_dict()` (config + value) and `.tests`, not Evidently's
    internal metric ids; the verdict is the ValueDrift test's status (FAIL = drifted).
    """
    verdicts: dict[str, tuple] = {}
    counted = None
    for metric in snapshot.metric_results.values():
        summary = metric.to_dict()
        config, value = summary.get("config") or {}, summary.get("value")
        kind = str(config.get("type", ""))
        if kind.endswith(":ValueDrift") and "column" in config:
            statuses = [str(getattr(test.status, "value", test.status)).upper() for test in (metric.tests or [])]
            drifted = ("FAIL" in statuses) if statuses else None
            verdicts[config["column"]] = (
                _method_name(config.get("method")),
                _number(config.get("threshold")),
                _number(value),
                drifted,
            )
        elif kind.endswith(":DriftedColumnsCount") and isinstance(value, dict):
            counted = (float(value.get("count", 0)), float(value.get("share", 0)), _number(config.get("drift_share")))
    return verdicts, counted


def _result_from_snapshot(snapshot: Any) -> DriftResult:
    """A DriftResult for a snapshot made outside check_drift (its verdicts only, no statistics)."""
    result = DriftResult(status=OK)
    verdicts, counted = _snapshot_verdicts(snapshot)
    for column, (method, threshold, score, drifted) in verdicts.items():
        result.columns[column] = ColumnDrift(column, method, threshold, score, drifted, *([None] * 4), 0, 0, 0, 0)
    result.drifted_columns = [c for c, (*_, drifted) in verdicts.items() if drifted]
    result.n_drifted = len(result.drifted_columns)
    if any(drifted is None for *_, drifted in verdicts.values()):
        result.messages.append("the report ran without tests (Report(include_tests=False)): no per-column verdicts")
    if counted is not None:
        result.n_drifted = round(counted[0])
        result.drift_share = counted[1]
        result.drift_share_threshold = counted[2] if counted[2] is not None else result.drift_share_threshold
    elif verdicts:
        result.drift_share = len(result.drifted_columns) / len(verdicts)
    if result.drift_share is not None and result.drift_share >= result.drift_share_threshold:
        result.status = DRIFT
    return result


# -- MLflow ------------------------------------------------------------------------------------


def _log_mlflow_run(settings: Settings, project: str, run_name: str, result: DriftResult, html: Any) -> str:
    """One finished MLflow run for the check (the client API: no fluent active-run state is touched)."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from mlops.tracking.client import configure, ensure_experiment

    configure(settings)
    experiment_id = ensure_experiment(settings, project, {"mlops.project": project})
    client = MlflowClient()
    tags = {"mlops.kind": "drift_check", "mlops.project": project, "mlops.drift_status": result.status}
    run = client.create_run(experiment_id, tags=tags, run_name=run_name)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        metrics = {
            "drift_share": result.drift_share,
            "n_drifted": result.n_drifted,
            "n_tested": len(result.columns),
            "rows": result.rows.get("current"),
            "rows_reference": result.rows.get("reference"),
        }
        metrics.update({f"drift_score.{c}": stats.score for c, stats in result.columns.items()})
        metric_rows = [
            Metric(_mlflow_key(key), float(value), now, 0)
            for key, value in metrics.items()
            if value is not None and math.isfinite(float(value))
        ]
        params = {
            "method": _common([s.method for s in result.columns.values()]),
            "threshold": _common([s.threshold for s in result.columns.values()]),
            "drift_share_threshold": result.drift_share_threshold,
            "sampled": result.sampled,
            "max_rows": result.sampling.get("max_rows"),
            "seed": result.sampling.get("seed"),
        }
        for column, stats in result.columns.items():
            params[f"method.{column}"] = stats.method
            params[f"threshold.{column}"] = stats.threshold
        param_rows = [Param(_mlflow_key(key), str(value)) for key, value in params.items()]
        client.log_batch(run_id, metrics=metric_rows)
        for start in range(0, len(param_rows), 100):  # MLflow takes at most 100 params a batch
            client.log_batch(run_id, params=param_rows[start : start + 100])
        client.log_dict(run_id, result.as_dict(), "drift/result.json")
        if html is not None:
            client.log_artifact(run_id, str(html), "drift")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _common(values: list[Any]) -> Any:
    """The one value all columns share, else 'per column' (the per-column params then tell)."""
    distinct = set(values)
    if not distinct:
        return None
    return distinct.pop() if len(distinct) == 1 else "per column"


def _mlflow_key(key: str) -> str:
    return re.sub(r"[^\w.\-/ :]", "_", key)


# -- small helpers -----------------------------------------------------------------------------


def _finish(result: DriftResult, status: str, message: str | None) -> DriftResult:
    result.status = status
    if message:
        result.messages.append(message)
    return result


def _drift_message(result: DriftResult) -> str:
    tested = len(result.columns)
    share = result.drift_share or 0.0
    head = f"{len(result.drifted_columns)} of {tested} columns drifted ({share:.0%}; drift from {result.drift_share_threshold:.0%})"
    return f"{head}: {_names(result.drifted_columns)}" if result.drifted_columns else head


def _names(names: list[str]) -> str:
    shown = ", ".join(str(n) for n in names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None and NumPy scalars -> Python, so `json.dumps(..., allow_nan=False)` works."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item"):  # NumPy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


__all__ = ["DRIFT", "INSUFFICIENT_DATA", "OK", "SCHEMA_MISMATCH", "ColumnDrift", "DriftResult", "check_drift", "save_report"]
