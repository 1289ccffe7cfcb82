"""Serving degradation against the baseline, with the cause the evidence supports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.monitoring.performance import check_performance
from mlops.settings import Settings

COOL = {"thermal_state": "nominal", "memory_percent": 40.0, "swap_percent": 0.0}


def window(requests: int, latency_ms: float, version: int = 1, rows: int = 1, thermal: str = "nominal", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-11-26T10:00:00Z")
    frame = pd.DataFrame({
        "request_id": [f"r{seed}-{i}" for i in range(requests)],
        "ts": [start + pd.Timedelta(milliseconds=50 * i) for i in range(requests)],
        "version": version,
        "latency_ms": latency_ms * rng.uniform(0.9, 1.1, requests),
        "batch_rows": rows,
        "thermal_state": thermal,
        "device": "cpu",
    })
    return frame.loc[frame.index.repeat(rows)].reset_index(drop=True)  # one log row per batch row


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"MLOPS_HOME": str(tmp_path)})


def test_first_window_is_the_baseline_then_steady_is_ok(settings):
    first = check_performance(settings, "p", window(200, 2.0), factor=1.5, hardware=COOL)
    assert first.status == "baseline_set" and first.baseline["p50_ms"] == pytest.approx(2.0, rel=0.1)
    steady = check_performance(settings, "p", window(200, 2.1, seed=1), factor=1.5, hardware=COOL)
    assert steady.status == "ok" and steady.causes == [] and steady.latency_ratio == pytest.approx(1.05, rel=0.1)


def test_too_few_requests_is_insufficient_data(settings):
    assert check_performance(settings, "p", window(5, 2.0), factor=1.5, hardware=COOL).status == "insufficient_data"
    assert check_performance(settings, "p", window(0, 2.0), factor=1.5, hardware=COOL).status == "insufficient_data"


@pytest.mark.parametrize(
    ("slow", "hardware", "cause", "evidence"),
    [
        (dict(thermal="critical"), COOL, "thermal_throttling", "100% of requests served while serious/critical"),
        ({}, {"thermal_state": "nominal", "memory_percent": 97.0, "swap_percent": 70.0, "swap_used_bytes": 6 * 2**30},
         "memory_pressure", "97% of RAM used"),
        (dict(rows=8), COOL, "larger_batches", "8.0 rows per request vs 1.0"),
    ],
)
def test_a_slowdown_names_the_cause_its_evidence_supports(settings, slow, hardware, cause, evidence):
    check_performance(settings, "p", window(200, 2.0), factor=1.5, hardware=COOL)
    result = check_performance(settings, "p", window(200, 5.0, seed=2, **slow), factor=1.5, hardware=hardware)
    assert result.status == "degraded" and result.latency_ratio > 2
    found = {c["cause"]: c["evidence"] for c in result.causes}
    assert cause in found and evidence in found[cause], result.causes


def test_a_mixed_window_blames_the_new_version_and_a_new_version_gets_its_own_baseline(settings):
    check_performance(settings, "p", window(200, 2.0, version=1), factor=1.5, hardware=COOL)
    mixed = pd.concat([window(100, 2.0, version=1), window(100, 9.0, version=2, seed=3)])
    result = check_performance(settings, "p", mixed, factor=1.5, hardware=COOL)
    assert result.status == "degraded"
    assert any(c["cause"] == "slower_model_version" and "[2]" in c["evidence"] for c in result.causes)
    only_new = check_performance(settings, "p", window(200, 9.0, version=2, seed=4), factor=1.5, hardware=COOL)
    assert only_new.status == "baseline_set" and only_new.baseline["versions"] == [2]
