"""The memoized plotly path parser answers as plotly's own, and leaves Evidently's reports unchanged."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import plotly.basedatatypes as datatypes
import pytest

from mlops.monitoring import plotly_paths
from mlops.monitoring.evidently_workspace import snapshot_json

PATHS = ["", "x", "xaxis.title.text", "error_x.thickness", "marker.line[2].width", "a__b_", "_lead", "layout.xaxis2"]


@pytest.fixture
def plotly_parser(monkeypatch):
    """Plotly's own parser, put back in the module for this test whatever was installed before."""
    original = datatypes._str_to_dict_path_full
    original = getattr(original, "__wrapped__", original)
    monkeypatch.setattr(datatypes, "_str_to_dict_path_full", original)
    return original


def test_cached_answers_are_plotlys_and_fresh(plotly_parser):
    cached = plotly_paths.cached_parser(plotly_parser)

    for path in PATHS * 2:
        assert cached(path) == plotly_parser(path), path
    keys, starts = cached("marker.line[2].width")
    starts.append(99)  # a caller changing its list changes nobody else's
    assert cached("marker.line[2].width") == plotly_parser("marker.line[2].width")
    assert cached.cache_info().hits == len(PATHS) + 2


def test_what_is_not_a_string_goes_to_plotly_uncached(plotly_parser):
    cached = plotly_paths.cached_parser(plotly_parser)
    with pytest.raises(TypeError):
        plotly_parser(3)
    with pytest.raises(TypeError):
        cached(3)
    assert cached.cache_info().currsize == 0


def test_install_is_idempotent(plotly_parser):
    assert plotly_paths.install() is True
    installed = datatypes._str_to_dict_path_full
    assert installed is not plotly_parser and installed.__wrapped__ is plotly_parser

    assert plotly_paths.install() is True
    assert datatypes._str_to_dict_path_full is installed


def test_install_changes_nothing_without_plotlys_parser(monkeypatch):
    monkeypatch.delattr(datatypes, "_str_to_dict_path_full")
    assert plotly_paths.install() is False
    assert not hasattr(datatypes, "_str_to_dict_path_full")


def test_an_evidently_report_is_the_same_with_the_cache(plotly_parser):
    """Every figure, number and verdict of a DataDriftPreset report, apart from its fresh ids and timestamp."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(0)
    frame = lambda shift: pd.DataFrame(  # noqa: E731
        {"x": rng.normal(shift, size=300), "error_x": rng.normal(size=300), "n": rng.integers(0, 4, 300)}
    )
    current, reference = frame(1.0), frame(0.0)

    def report() -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
        text = snapshot_json(snapshot.to_snapshot_model())
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", text)
        return re.sub(r'"timestamp": "[^"]+"', '"timestamp": "T"', text)

    plain = report()
    plotly_paths.install()
    cached = report()

    assert datatypes._str_to_dict_path_full.cache_info().hits > 1000  # the report really went through the cache
    assert cached == plain
