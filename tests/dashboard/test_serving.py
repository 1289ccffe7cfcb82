"""The serving part: a gateway that is down is a status and a note (never an exception, never a wait), a real
gateway is read with the API key, the route table names the deployed version, the prediction log gives
latency and rate."""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from mlops_testing import free_port, wait_for

from mlops.dashboard.serving import GatewayView, deployments, predict_answers, project_serving, read_gateway
from mlops.serving.routes import Route, routes_file, write_route

KEY = "dashboard-test-key"


def test_a_gateway_that_is_down_answers_at_once_with_a_note(store):
    view = read_gateway(store.settings)  # nothing listens on its port: refused at once
    assert view.down and view.models is None and view.note.startswith("gateway down: http://127.0.0.1:")
    entry = project_serving(store.settings, "shop_classifier", view)
    assert entry["status"] == "gateway down" and entry["version"] is None and entry["p50_ms"] is None


def test_the_route_table_names_the_deployed_version_even_with_the_gateway_down(store, tmp_path):
    settings = dataclasses.replace(store.settings, home=tmp_path)
    write_route(settings, Route("shop_classifier", 3, "http://127.0.0.1:1/shop", "ray", "shop-v3", "cpu",
                                {"min": 1, "max": 2}, deployed_at=1_780_000_000.0))
    view = read_gateway(settings)
    entry = project_serving(settings, "shop_classifier", view)
    assert (entry["status"], entry["version"], entry["backend"], entry["replicas"], entry["deployed"]) == (
        "gateway down", 3, "ray", 2, True)
    (deployment,) = deployments(view, "shop_classifier")
    assert deployment["version"] == 3 and deployment["deployed_at"].startswith("2026-05-28")
    assert routes_file(settings).is_file()


def test_prediction_log_gives_latency_and_rate_of_the_served_version(store, tmp_path):
    from mlops.analytics.seeding import seed_predictions

    settings = dataclasses.replace(store.settings, home=tmp_path)
    now = time.time()
    seed_predictions(settings, "shop_classifier", {3: 4.0}, 90, end=now)  # 90 requests over the last hour
    view = GatewayView("http://gw", models={"shop_classifier": {
        "name": "shop_classifier", "latest_version": 3, "backend": "mlx", "device": "cpu", "replicas": 1,
        "versions": [{"version": 3, "servable": True}]}},
        answers={"shop_classifier": {"errors": 2, "rejected": 1}})
    entry = project_serving(settings, "shop_classifier", view, now=datetime.fromtimestamp(now, UTC))
    assert (entry["status"], entry["version"], entry["backend"], entry["deployed"]) == ("serving", 3, "mlx", False)
    assert (entry["errors"], entry["rejected"]) == (2, 1)  # from the gateway's per-project counters
    assert entry["request_rate"] == pytest.approx(22 / 900, abs=2 / 900)  # the last 15 of the 60 minutes
    assert 1.0 < entry["p50_ms"] < 16.0 and entry["p99_ms"] >= entry["p50_ms"]
    assert "prediction log" in entry["source"] and entry["url"] == "http://gw/v1/projects/shop_classifier/models/latest/predict"
    assert project_serving(settings, "story_lm", view)["status"] == "not deployed"


def test_predict_answers_count_5xx_as_errors_and_4xx_as_rejected_per_project():
    text = (
        'mlops_gateway_predictions_total{project="a",status="200"} 40\n'
        'mlops_gateway_predictions_total{project="a",status="502"} 3\n'
        'mlops_gateway_predictions_total{project="a",status="503"} 2\n'
        'mlops_gateway_predictions_total{project="a",status="422"} 4\n'
        'mlops_gateway_predictions_total{project="b",status="200"} 9\n'
        'mlops_gateway_requests_total{route="/readyz",method="GET",status="503"} 7\n'
    )
    assert predict_answers(text) == {"a": {"errors": 5, "rejected": 4}, "b": {"errors": 0, "rejected": 0}}


def test_a_real_gateway_is_read_with_the_api_key(store, monkeypatch):
    import uvicorn

    from mlops.serving.gateway import create_app

    settings = dataclasses.replace(store.settings, gateway_port=free_port())
    server = uvicorn.Server(uvicorn.Config(create_app(settings, {KEY}, capture=False), host="127.0.0.1",
                                           port=settings.gateway_port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the gateway", interval=0.05)
        monkeypatch.setenv("MLOPS_API_KEYS", KEY)
        view = read_gateway(settings)
        assert not view.down and view.note is None and view.answers == {}
        bad = urllib.request.Request(f"{view.base}/v1/projects/shop_classifier/models/latest/predict",
                                     data=b"not json", headers={"X-API-Key": KEY, "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused_input:
            urllib.request.urlopen(bad, timeout=10)
        assert 400 <= refused_input.value.code < 500
        view = read_gateway(settings)  # the gateway counts that answer under the project
        assert view.answers == {"shop_classifier": {"errors": 0, "rejected": 1}}
        assert "shop_classifier" in view.models  # registered; its seeded versions have no model to serve
        entry = project_serving(settings, "shop_classifier", view)
        assert entry["status"] == "not deployed" and entry["source"] == "gateway /v1/models"
        monkeypatch.setenv("MLOPS_API_KEYS", "wrong-key")
        refused = read_gateway(settings)
        assert refused.models is None and not refused.down and "HTTP 403" in refused.note
        assert project_serving(settings, "shop_classifier", refused)["status"] == "unknown"
    finally:
        server.should_exit = True
        thread.join(10)
