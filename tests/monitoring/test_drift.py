"""check_drift and save_report against real Evidently 0.7 and a real MLflow sqlite store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.monitoring.drift import (
    DRIFT,
    INSUFFICIENT_DATA,
    OK,
    SCHEMA_MISMATCH,
    DriftResult,
    check_drift,
    save_report,
)

COLUMNS = [f"in.x_{i}" for i in range(5)]


def frame(rows: int, seed: int, shift: dict[str, float] | None = None, columns: list[str] = COLUMNS) -> pd.DataFrame:
    """Standard-normal columns; `shift` moves some of them by that many standard deviations."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.normal(loc=(shift or {}).get(c, 0.0), size=rows) for c in columns})


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(2000, seed=1)


def as_json(result: DriftResult) -> dict:
    return json.loads(json.dumps(result.as_dict(), allow_nan=False))


def test_same_distribution_is_ok(reference):
    result = check_drift(reference, frame(2000, seed=2))

    assert result.status == OK
    assert result.drifted_columns == []
    assert result.drift_share == 0.0
    assert result.tested_columns == COLUMNS
    assert result.rows == {"reference_total": 2000, "current_total": 2000, "reference": 2000, "current": 2000}
    assert not result.sampled
    for stats in result.columns.values():
        assert stats.method == "wasserstein" and stats.threshold == 0.1  # Evidently's pick above 1000 rows
        assert stats.drifted is False and 0 <= stats.score < 0.1
    assert "snapshot" not in as_json(result)


def test_shifted_columns_are_named(reference):
    current = frame(2000, seed=2, shift={"in.x_1": 1.0, "in.x_3": -1.0, "in.x_4": 2.0})

    result = check_drift(reference, current)

    assert result.status == DRIFT
    assert result.drifted_columns == ["in.x_1", "in.x_3", "in.x_4"]
    assert result.drift_share == pytest.approx(0.6)
    assert result.columns["in.x_4"].current_mean == pytest.approx(2.0, abs=0.1)
    assert result.columns["in.x_4"].reference_mean == pytest.approx(0.0, abs=0.1)
    assert any("in.x_1, in.x_3, in.x_4" in m for m in result.messages)
    # Below the drift_share bar: the drifted columns are named, the verdict is still ok.
    assert check_drift(reference, current, drift_share=0.8).status == OK


def test_per_column_methods_and_thresholds_are_honoured(reference):
    from scipy.stats import ks_2samp, wasserstein_distance

    current = frame(2000, seed=2, shift={"in.x_0": 0.2, "in.x_2": 0.2})

    result = check_drift(
        reference,
        current,
        methods={"in.x_0": "ks", "x_1": "psi"},  # `x_1`: the project YAML's name for in.x_1
        thresholds={"in.x_0": 1e-30, "in.x_2": 0.5},
        default_method="wasserstein",
    )

    x0, x1, x2, x3 = (result.columns[c] for c in COLUMNS[:4])
    assert (x0.method, x0.threshold) == ("ks", 1e-30)
    assert x0.score == pytest.approx(ks_2samp(reference["in.x_0"], current["in.x_0"]).pvalue)
    assert x0.drifted is False  # p ~ 1e-10 would be drift at the default 0.05, not at 1e-30
    assert (x1.method, x1.threshold) == ("psi", 0.1)  # a column's own method brings its own default threshold
    assert (x2.method, x2.threshold) == ("wasserstein", 0.5)
    wasserstein_normed = wasserstein_distance(reference["in.x_2"], current["in.x_2"]) / np.std(reference["in.x_2"])
    assert x2.score == pytest.approx(wasserstein_normed)
    assert x2.drifted is False  # ~0.2 >= 0.1 would drift at the default threshold
    assert (x3.method, x3.threshold, x3.drifted) == ("wasserstein", 0.1, False)
    assert result.drifted_columns == []

    defaults = check_drift(reference, current, methods={"in.x_0": "ks"})
    assert defaults.columns["in.x_0"].drifted is True
    assert defaults.columns["in.x_2"].drifted is True


def test_wrong_arguments_raise(reference):
    with pytest.raises(ValueError, match="'chisquare' is not an Evidently test for numeric columns"):
        check_drift(reference, reference, methods={"in.x_0": "chisquare"})
    with pytest.raises(ValueError, match="no-such-test"):
        check_drift(reference, reference, default_method="no-such-test")
    with pytest.raises(ValueError, match="positive"):
        check_drift(reference, reference, thresholds={"in.x_0": -1})
    with pytest.raises(ValueError, match="max_rows"):
        check_drift(reference, reference, min_rows=100, max_rows=10)
    with pytest.raises(ValueError, match="chisquare"):  # however bad the data: a wrong argument is a bug
        check_drift(reference, reference.iloc[:0], methods={"in.x_0": "chisquare"})
    with pytest.raises(TypeError):
        check_drift(reference, None)
    # None is "no override", as a project YAML without a per-column setting gives.
    result = check_drift(reference, reference, methods={"in.x_0": None}, thresholds={"in.x_0": None})
    assert result.columns["in.x_0"].method == "wasserstein"


def _with(frame_: pd.DataFrame, **columns) -> pd.DataFrame:
    out = frame_.copy()
    for name, values in columns.items():
        out[name.replace("__", ".")] = values
    return out


def test_empty_windows_are_insufficient_data(reference):
    for current in (reference.iloc[:0], pd.DataFrame(), pd.DataFrame(columns=COLUMNS)):
        result = check_drift(reference, current)
        assert result.status == INSUFFICIENT_DATA
        assert result.rows["current"] == 0
        assert "current has no rows" in result.messages[-1]
    empty_reference = check_drift(reference.iloc[:0], reference)
    assert empty_reference.status == INSUFFICIENT_DATA and "reference has no rows" in empty_reference.messages[-1]


def test_too_few_rows_is_insufficient_data(reference):
    result = check_drift(reference, frame(12, seed=3), min_rows=30)

    assert result.status == INSUFFICIENT_DATA
    assert result.messages[-1] == "too few rows: reference 2000, current 12 (min_rows 30)"
    assert as_json(result)["status"] == INSUFFICIENT_DATA


def test_missing_columns_are_a_schema_mismatch(reference):
    result = check_drift(reference, frame(500, seed=3).drop(columns=["in.x_1", "in.x_3"]))

    assert result.status == SCHEMA_MISMATCH
    assert result.missing_columns == ["in.x_1", "in.x_3"]
    assert "columns missing from current: in.x_1, in.x_3" in result.messages
    assert result.snapshot is None

    # Columns asked for that the reference lacks are named too.
    result = check_drift(reference, frame(500, seed=3), columns=["in.x_0", "in.y"])
    assert result.status == SCHEMA_MISMATCH and result.missing_columns == ["in.y"]
    assert "columns missing from reference: in.y" in result.messages


def test_extra_columns_are_ignored_and_listed(reference):
    current = _with(frame(500, seed=3), out__y=1.0, request_id="abc")

    result = check_drift(reference, current)

    assert result.status == OK
    assert result.extra_columns == ["out.y", "request_id"]
    assert result.tested_columns == COLUMNS


def test_changed_types_are_a_schema_mismatch(reference):
    current = _with(frame(500, seed=3), in__x_2="1.5", in__x_4=True)

    result = check_drift(reference, current)

    assert result.status == SCHEMA_MISMATCH
    assert sorted(result.type_mismatches) == ["in.x_2", "in.x_4"]
    assert "current object" in result.type_mismatches["in.x_2"]
    assert "current bool" in result.type_mismatches["in.x_4"]
    assert any("in.x_2 (" in m and "in.x_4 (" in m for m in result.messages)


def test_int_columns_are_numbers(reference):
    from scipy.stats import wasserstein_distance

    current = frame(500, seed=3)
    current["in.x_0"] = np.rint(current["in.x_0"] * 100).astype("int64")  # 100x the spread, as integers

    result = check_drift(reference, current)

    # Tested as a number (the numeric Wasserstein distance, as for the float columns; not a categorical test),
    # and found drifted: one column of five is under the 0.5 drift share, so the verdict stays ok.
    assert (result.status, result.drifted_columns, result.drift_share) == (OK, ["in.x_0"], pytest.approx(0.2))
    x0 = result.columns["in.x_0"]
    assert (x0.method, x0.threshold, x0.drifted, x0.current_values) == ("wasserstein", 0.1, True, 500)
    normed = wasserstein_distance(reference["in.x_0"], current["in.x_0"]) / np.std(reference["in.x_0"])
    assert x0.score == pytest.approx(normed)
    assert x0.current_mean == pytest.approx(current["in.x_0"].mean())


def test_nans_are_dropped_per_column_and_reported(reference):
    current = frame(1000, seed=3)
    current.loc[:299, "in.x_1"] = np.nan  # 30 %: beyond the 10 % tolerance
    current.loc[:9, "in.x_2"] = np.inf  # 1 %: within it, still counted as missing
    current.loc[:994, "in.x_3"] = np.nan  # 5 values left: fewer than min_rows

    result = check_drift(reference, current, min_rows=30)

    assert result.status == OK
    assert result.nan_columns == ["in.x_1", "in.x_3"]
    assert any(m.startswith("in.x_1: 30% of current values are NaN/inf") for m in result.messages)
    assert result.columns["in.x_1"].current_nan == 300 and result.columns["in.x_1"].current_values == 700
    assert result.columns["in.x_2"].current_nan == 10 and np.isfinite(result.columns["in.x_2"].current_mean)
    assert "in.x_3" in result.excluded_columns and "in.x_3" not in result.columns
    assert "5 current values" in result.excluded_columns["in.x_3"]
    assert result.tested_columns == ["in.x_0", "in.x_1", "in.x_2", "in.x_4"]


def test_all_nan_window_is_insufficient_data(reference):
    current = frame(100, seed=3) * np.nan

    result = check_drift(reference, current)

    assert result.status == INSUFFICIENT_DATA
    assert sorted(result.excluded_columns) == COLUMNS
    assert result.messages[-1] == "no column has enough values to test"


def test_a_column_evidently_cannot_test_is_excluded_not_fatal():
    reference = frame(500, seed=1).assign(**{"in.x_0": 0.0})  # constant: anderson_ksamp raises on it
    current = frame(500, seed=2).assign(**{"in.x_0": 0.0})

    result = check_drift(reference, current, default_method="anderson")

    assert "in.x_0" in result.excluded_columns
    assert "Evidently's test failed" in result.excluded_columns["in.x_0"]
    assert result.tested_columns == COLUMNS[1:]
    assert result.status == OK and result.snapshot is not None


def test_reference_without_numeric_columns_is_a_schema_mismatch():
    reference = pd.DataFrame({"name": ["a"] * 50})

    result = check_drift(reference, reference)

    assert result.status == SCHEMA_MISMATCH
    assert "the reference has no numeric column to compare" in result.messages


def test_large_windows_are_sampled_reproducibly():
    columns = COLUMNS[:3]
    reference = frame(300_000, seed=1, columns=columns)
    current = frame(300_000, seed=2, shift={"in.x_0": 0.5}, columns=columns)

    first = check_drift(reference, current, max_rows=50_000, seed=7)
    again = check_drift(reference, current, max_rows=50_000, seed=7)
    other = check_drift(reference, current, max_rows=50_000, seed=8)

    assert first.sampled is True
    assert first.sampling["seed"] == 7 and first.sampling["max_rows"] == 50_000
    assert "SeedSequence(seed)" in first.sampling["method"]
    assert first.rows == {"reference_total": 300_000, "current_total": 300_000, "reference": 50_000, "current": 50_000}
    assert first.columns["in.x_0"].current_values == 50_000
    assert as_json(first)["columns"] == as_json(again)["columns"]
    assert first.columns["in.x_1"].score != other.columns["in.x_1"].score
    assert first.drifted_columns == other.drifted_columns == ["in.x_0"]

    whole = check_drift(reference.iloc[:40_000], current.iloc[:40_000], max_rows=50_000)
    assert whole.sampled is False and whole.rows["current"] == 40_000


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    from mlops.settings import Settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(tmp_path_factory.mktemp("mlops-home")))
        patch.delenv("MLOPS_TRACKING_URI", raising=False)
        yield Settings.from_env()


def test_save_report_writes_html_mlflow_run_and_workspace_snapshot(settings, reference):
    from evidently.ui.workspace import Workspace
    from mlflow import MlflowClient

    result = check_drift(reference, frame(2000, seed=2, shift={"in.x_1": 1.0, "in.x_2": 1.0, "in.x_3": 1.0}))
    assert result.status == DRIFT

    saved = save_report(result, settings, "demo")

    html = settings.home / "monitoring" / "reports" / "demo"
    assert saved["html"].startswith(str(html)) and saved["html"].endswith(".html")
    assert "in.x_1" in open(saved["html"], encoding="utf-8").read()

    run = MlflowClient(settings.tracking_uri).get_run(saved["mlflow_run_id"])
    assert run.info.run_name.startswith("drift-") and run.info.status == "FINISHED"
    assert run.data.tags["mlops.kind"] == "drift_check" and run.data.tags["mlops.drift_status"] == DRIFT
    assert run.data.metrics["drift_share"] == pytest.approx(0.6)
    assert run.data.metrics["n_drifted"] == 3 and run.data.metrics["rows"] == 2000
    assert run.data.params["method"] == "wasserstein" and run.data.params["threshold"] == "0.1"
    assert run.data.params["method.in.x_1"] == "wasserstein"
    artifacts = {a.path for a in MlflowClient(settings.tracking_uri).list_artifacts(run.info.run_id, "drift")}
    assert artifacts == {f"drift/{saved['html'].rsplit('/', 1)[1]}", "drift/result.json"}
    experiment = MlflowClient(settings.tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == "demo"

    workspace = Workspace(str(settings.home / "monitoring" / "evidently"))
    (project,) = workspace.search_project("demo")
    assert str(project.id) == saved["evidently_project_id"]
    assert [str(s) for s in workspace.list_runs(project.id)] == [saved["evidently_snapshot_id"]]
    stored = workspace.get_run(project.id, saved["evidently_snapshot_id"])
    assert stored.name == run.info.run_name

    # The next check of the project lands in the same Evidently project.
    again = save_report(check_drift(reference, frame(2000, seed=3)), settings, "demo", run_name="drift-manual")
    assert again["evidently_project_id"] == saved["evidently_project_id"]
    assert again["html"].endswith("/drift-manual.html")
    assert len(workspace.list_runs(project.id)) == 2
    assert len(workspace.search_project("demo")) == 1


def test_save_report_records_undecided_checks_and_bare_snapshots(settings, reference):
    from evidently import Report
    from evidently.presets import DataDriftPreset
    from mlflow import MlflowClient

    undecided = save_report(check_drift(reference, frame(5, seed=3)), settings, "undecided")
    assert undecided["html"] is None and undecided["evidently_snapshot_id"] is None
    run = MlflowClient(settings.tracking_uri).get_run(undecided["mlflow_run_id"])
    assert run.data.tags["mlops.drift_status"] == INSUFFICIENT_DATA
    assert run.data.metrics["rows"] == 5

    snapshot = Report([DataDriftPreset()]).run(frame(2000, seed=2, shift={"in.x_0": 3.0}), reference)
    bare = save_report(snapshot, settings, "bare")
    run = MlflowClient(settings.tracking_uri).get_run(bare["mlflow_run_id"])
    assert run.data.metrics["n_drifted"] == 1 and run.data.metrics["drift_share"] == pytest.approx(0.2)
    # A bare snapshot is kept like a result's: its HTML report under the project, its Evidently run.
    from evidently.ui.workspace import Workspace

    assert Path(bare["html"]).parent == settings.home / "monitoring" / "reports" / "bare"
    assert Path(bare["html"]).name == f"{run.info.run_name}.html" and "in.x_0" in Path(bare["html"]).read_text(encoding="utf-8")
    workspace = Workspace(str(settings.home / "monitoring" / "evidently"))
    (project,) = workspace.search_project("bare")
    assert str(project.id) == bare["evidently_project_id"]
    assert [str(s) for s in workspace.list_runs(project.id)] == [bare["evidently_snapshot_id"]]
