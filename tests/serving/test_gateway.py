"""The gateway against a real MLflow registry: predictions, validation, auth, limits, catalog, probes."""

from __future__ import annotations


import re

import numpy as np
import pytest
from mlops_testing import mlx_device
from serving_support import DIFFUSION, MLP, train_and_register
from fastapi.testclient import TestClient

from mlops.serving.gateway import create_app
from mlops.training.artifacts import restore_session

pytestmark = pytest.mark.timeout(120)

KEY = "test-key-1"
HEADERS = {"X-API-Key": KEY}
LIMIT = 50_000


@pytest.fixture(scope="module")
def app(served):
    return create_app(served.settings, {KEY, "other-key"}, max_body_bytes=LIMIT)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def _url(project: str, model: str = "latest") -> str:
    return f"/v1/projects/{project}/models/{model}/predict"


def _direct(served, project: str, version: int, inputs: dict) -> dict:
    folder = served.home / "serving" / project / str(version)
    return restore_session(folder).predict({k: np.asarray(v) for k, v in inputs.items()})


def test_predict_batch_and_single_match_the_restored_session(client, served):
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    response = client.post(_url(MLP, "1"), json={"inputs": {"x": x.tolist()}}, headers=HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == (MLP, 1)
    probabilities = np.array(body["outputs"]["probabilities"], dtype=np.float32)
    assert probabilities.shape == (4, 4) and len(body["outputs"]["label"]) == 4
    direct = _direct(served, MLP, 1, {"x": x})
    np.testing.assert_allclose(probabilities, direct["probabilities"], rtol=1e-6)
    assert body["outputs"]["label"] == direct["label"].tolist()

    single = client.post(_url(MLP, "1"), json={"instances": [{"x": x[0].tolist()}]}, headers=HEADERS)
    assert single.status_code == 200, single.text
    predictions = single.json()["predictions"]
    assert len(predictions) == 1 and len(predictions[0]["probabilities"]) == 4
    np.testing.assert_allclose(predictions[0]["probabilities"], direct["probabilities"][0], rtol=1e-5)
    assert predictions[0]["label"] == int(direct["label"][0])

    records = client.post(
        _url(MLP, "1"), json={"instances": [{"x": row.tolist()} for row in x]}, headers=HEADERS
    ).json()["predictions"]
    assert [p["label"] for p in records] == direct["label"].tolist()


def test_diffusion_predict_is_deterministic_from_the_given_noise(client, served):
    noise = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    auth = {"Authorization": f"Bearer {KEY}"}
    first = client.post(_url(DIFFUSION), json={"inputs": {"noise": noise.tolist()}}, headers=auth)
    assert first.status_code == 200, first.text
    samples = np.array(first.json()["outputs"]["samples"], dtype=np.float32)
    assert samples.shape == (3, 2)
    version = first.json()["version"]
    np.testing.assert_allclose(samples, _direct(served, DIFFUSION, version, {"noise": noise})["samples"], rtol=1e-5, atol=1e-6)
    second = client.post(_url(DIFFUSION), json={"inputs": {"noise": noise.tolist()}}, headers=auth)
    assert second.json()["outputs"]["samples"] == first.json()["outputs"]["samples"]


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"inputs": {"x": [[0.0] * 31]}}, ["body", "inputs", "x"], "shape"),  # wrong feature count
        ({"inputs": {"x": [0.0] * 32}}, ["body", "inputs", "x"], "shape"),  # batch axis missing
        ({"inputs": {"x": [[0.0] * 32, [0.0] * 31]}}, ["body", "inputs", "x"], "shape"),  # ragged
        ({"inputs": {"features": [[0.0] * 32]}}, ["body", "inputs", "features"], "extra"),  # wrong name
        ({"inputs": {}}, ["body", "inputs", "x"], "missing"),
        ({"inputs": {"x": [["a"] * 32]}}, ["body", "inputs", "x"], "dtype"),  # wrong dtype
        ({"inputs": {"x": [[True] * 32]}}, ["body", "inputs", "x"], "dtype"),
        ({"instances": [{"x": [0.0] * 32}, {"x": [0.0] * 3}]}, ["body", "instances", 1, "x"], "shape"),
        ({"instances": [{"y": [0.0] * 32}]}, ["body", "instances", 0, "y"], "extra"),
        ({"rows": []}, ["body"], "missing"),
    ],
)
def test_invalid_inputs_get_422_naming_the_field(client, body, loc, kind):
    response = client.post(_url(MLP), json=body, headers=HEADERS)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert (detail["loc"], detail["type"]) == (loc, kind), detail


def test_int_inputs_reject_floats_and_out_of_range(client, served):
    """tiny_lm-style int32 checks, exercised through the validator with a token signature."""
    from mlops.serving.gateway import InputError, parse_inputs
    from mlops.training.families import get_family

    signature = get_family("tiny_lm").signature({})
    arrays, form = parse_inputs({"inputs": {"tokens": [[1, 2, 3]]}}, signature)
    assert arrays["tokens"].dtype == np.int32 and form == "inputs"
    for tokens, kind in (([[1.5, 2]], "dtype"), ([[64]], "value"), ([[-1]], "value"), ([list(range(33))], "shape")):
        with pytest.raises(InputError) as error:
            parse_inputs({"inputs": {"tokens": tokens}}, signature)
        assert error.value.detail[0]["type"] == kind and error.value.detail[0]["loc"][-1] == "tokens"


def test_api_key_is_required(client):
    body = {"inputs": {"x": [[0.0] * 32]}}
    missing = client.post(_url(MLP), json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post(_url(MLP), json=body, headers={"X-API-Key": "nope"}).status_code == 403
    assert client.post(_url(MLP), json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post(_url(MLP), json=body, headers={"X-API-Key": "other-key"}).status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"X-API-Key": "wrong"}).status_code == 403


def test_oversized_body_gets_413(client):
    big = {"inputs": {"x": [[0.123456789] * 32] * 400}}  # ~ 150 kB > LIMIT
    response = client.post(_url(MLP), json=big, headers=HEADERS)
    assert response.status_code == 413
    # no Content-Length (chunked): the bytes received are counted
    chunks = (b"x" * 10_000 for _ in range(10))
    response = client.post(_url(MLP), content=chunks, headers={**HEADERS, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_unknown_project_or_version_gets_404(client):
    body = {"inputs": {"x": [[0.0] * 32]}}
    assert client.post(_url("no_such_project"), json=body, headers=HEADERS).status_code == 404
    assert client.post(_url(MLP, "99"), json=body, headers=HEADERS).status_code == 404
    assert client.post(_url(MLP, "v1"), json=body, headers=HEADERS).status_code == 404


def test_models_lists_both_with_backend_and_device(client):
    response = client.get("/v1/models", headers=HEADERS)
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert {MLP, DIFFUSION} <= set(models)
    assert models[MLP]["family"] == "mlp_classifier" and models[DIFFUSION]["family"] == "tiny_diffusion"
    for m in models.values():
        assert (m["backend"], m["device"], m["replicas"]) == ("mlx", mlx_device(), 1)
        assert m["versions"][0]["tags"]["model_family"] == m["family"]
    assert models[MLP]["signature"]["inputs"] == {"x": {"dtype": "float32", "shape": [-1, 32]}}


def _count(metrics_text: str, route: str, status: str) -> int:
    pattern = rf'mlops_gateway_requests_total\{{route="{re.escape(route)}",method="[A-Z]+",status="{status}"\}} (\d+)'
    return sum(int(n) for n in re.findall(pattern, metrics_text))


def test_probes_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["device"] == mlx_device()
    route = "/v1/projects/{project}/models/{model}/predict"
    before = client.get("/metrics").text
    client.post(_url(MLP), json={"inputs": {"x": [[0.0] * 32]}}, headers=HEADERS)
    client.post(_url(MLP), json={"inputs": {"x": [[0.0] * 3]}}, headers=HEADERS)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = response.text
    assert _count(after, route, "200") == _count(before, route, "200") + 1
    assert _count(after, route, "422") == _count(before, route, "422") + 1
    assert f'mlops_gateway_request_duration_seconds_count{{route="{route}"}}' in after
    assert 'le="+Inf"' in after
    batched = re.findall(rf'mlops_gateway_(batches|batched_requests)_total\{{model="{MLP}",version="\d+"\}} (\d+)', after)
    assert {kind for kind, _ in batched} == {"batches", "batched_requests"}
    counts = dict((kind, int(n)) for kind, n in batched)
    assert 1 <= counts["batches"] <= counts["batched_requests"]
    # per project and status (the toolkit dashboard's errors and rejected counts)
    predictions = rf'mlops_gateway_predictions_total\{{project="{MLP}",status="(\d+)"\}} (\d+)'
    assert {status: int(n) for status, n in re.findall(predictions, after)}["422"] >= 1
    assert re.search(r"^mlops_serving_memory_budget_bytes \d+$", after, re.M)  # the serving budget, for autoscalers


def test_serving_memory_reserved_per_project_against_the_budget():
    from mlops.serving.gateway import render_serving_memory
    from mlops.serving.routes import Route

    routes = {"b": Route("b", 2, "http://x", replicas={"min": 1, "max": 3, "memory_bytes": 100}),
              "a": Route("a", 1, "http://y", replicas={})}
    assert render_serving_memory(routes, 1000).splitlines()[2:] == [
        "mlops_serving_memory_budget_bytes 1000",
        "# HELP mlops_serving_memory_reserved_bytes Max replicas x memory per replica of each deployed project.",
        "# TYPE mlops_serving_memory_reserved_bytes gauge",
        'mlops_serving_memory_reserved_bytes{project="a"} 0',
        'mlops_serving_memory_reserved_bytes{project="b"} 300',
    ]


def test_readyz_is_503_without_models(tmp_path):
    from mlops.settings import Settings

    empty = Settings.from_env({"MLOPS_HOME": str(tmp_path)})
    with TestClient(create_app(empty, {KEY})) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503


def test_reload_picks_up_a_new_version(app, client, served):
    body = {"inputs": {"x": [[0.5] * 32]}}
    assert client.post(_url(MLP), json=body, headers=HEADERS).json()["version"] == 1
    train_and_register(served.settings, MLP, "mlp_classifier", seed=1)
    assert app.state.reload()[MLP] == [1, 2]
    latest = client.post(_url(MLP), json=body, headers=HEADERS).json()
    pinned = client.post(_url(MLP, "1"), json=body, headers=HEADERS).json()
    assert (latest["version"], pinned["version"]) == (2, 1)
    assert latest["outputs"] != pinned["outputs"]
    listed = {m["name"]: m for m in client.get("/v1/models", headers=HEADERS).json()["models"]}
    assert [v["version"] for v in listed[MLP]["versions"]] == [1, 2] and listed[MLP]["latest_version"] == 2


def test_no_keys_means_no_app(served):
    with pytest.raises(ValueError):
        create_app(served.settings, set())



def test_the_deployer_asks_the_gateway_to_list_the_version_before_the_switch(served, monkeypatch):
    """`deploy.announce` against a real gateway on a free port: a listed version passes, a version the
    gateway's registry does not hold, a refused key and no gateway at all each get their answer."""
    import dataclasses
    import threading

    import uvicorn
    from mlops_testing import free_port, wait_for

    from mlops.serving.deploy import DeployError, announce

    settings = dataclasses.replace(served.settings, gateway_port=free_port())
    server = uvicorn.Server(uvicorn.Config(
        create_app(settings, {KEY}), host="127.0.0.1", port=settings.gateway_port, log_level="warning", access_log=False
    ))
    threading.Thread(target=server.run, daemon=True).start()
    try:
        wait_for(lambda: server.started, 30, "the gateway", interval=0.05)
        monkeypatch.setenv("MLOPS_API_KEYS", KEY)  # the deployer's key
        assert announce(settings, MLP, served.versions[MLP][0]) == "knows it"
        with pytest.raises(DeployError, match=rf"does not see {MLP} v99 in its registry \(it lists \[1"):
            announce(settings, MLP, 99)
        with pytest.raises(DeployError, match="does not see no_such_project v1 in its registry \\(it lists \\[\\]\\)"):
            announce(settings, "no_such_project", 1)
        monkeypatch.setenv("MLOPS_API_KEYS", "not-the-key")
        with pytest.raises(DeployError, match="refused the rescan: HTTP Error 403"):
            announce(settings, MLP, served.versions[MLP][0])
    finally:
        server.should_exit = True
    nobody = dataclasses.replace(settings, gateway_port=free_port())
    assert announce(nobody, MLP, served.versions[MLP][0]) == "not running"
