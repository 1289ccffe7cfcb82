"""Prediction capture through the real gateway: trained models, the MLX path and routed backends, real Parquet."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from monitoring_support import DIFFUSION, LOCAL, ROUTED, THERMAL_STATE
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from mlops_testing import free_port, mlx_device, wait_for

from mlops.monitoring.prediction_log import accuracy, log_root, read_feedback, read_predictions
from mlops.serving.gateway import create_app
from mlops.monitoring.request_ids import RecentRequests
from mlops.settings import Settings

pytestmark = pytest.mark.timeout(300)

KEY = "capture-key"
HEADERS = {"X-API-Key": KEY}
HOUR = timedelta(hours=1)


def _url(project: str, model: str = "latest") -> str:
    return f"/v1/projects/{project}/models/{model}/predict"


def _feedback_url(project: str) -> str:
    return f"/v1/projects/{project}/feedback"


@pytest.fixture(scope="module")
def app(registry):
    return create_app(registry.settings, {KEY})


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        wait_for(lambda: app.state.gateway.capture.thermal_state == THERMAL_STATE, 10, "the thermal state", interval=0.05)
        yield c


def _captured(app, registry, project: str, request_id: str):
    """The logged rows of one request (flushes the writer first)."""
    app.state.gateway.capture.flush()
    frame = read_predictions(registry.settings, project, since=datetime.now(UTC) - HOUR)
    return frame[frame["request_id"] == request_id].reset_index(drop=True)


def _assert_logged(rows, x: np.ndarray, outputs: dict[str, list]) -> None:
    """Logged inputs equal the request's, logged outputs equal the response's."""
    assert rows["row"].tolist() == list(range(len(x))) and set(rows["batch_rows"]) == {len(x)}
    for i in range(x.shape[1]):
        np.testing.assert_array_equal(rows[f"in.x_{i}"].to_numpy(), x[:, i].astype(np.float64))
    assert rows["out.label"].tolist() == [float(v) for v in outputs["label"]]
    probabilities = np.array(outputs["probabilities"], dtype=np.float64)
    for j in range(probabilities.shape[1]):
        np.testing.assert_array_equal(rows[f"out.probabilities_{j}"].to_numpy(), probabilities[:, j])


def test_in_process_predictions_are_captured_as_answered(app, client, registry):
    import pyarrow.dataset as ds

    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    sent, sent_clock = time.time(), time.perf_counter()
    response = client.post(_url(LOCAL), json={"inputs": {"x": x.tolist()}}, headers=HEADERS)
    back_clock, back = time.perf_counter(), time.time()
    assert response.status_code == 200, response.text
    body = response.json()
    request_id = body["request_id"]
    assert len(request_id) == 32 and all(c in "0123456789abcdef" for c in request_id)

    rows = _captured(app, registry, LOCAL, request_id)
    assert len(rows) == 4
    _assert_logged(rows, x, body["outputs"])
    first = rows.iloc[0]
    assert (first["version"], first["backend"], first["device"], first["thermal_state"]) == (
        registry.versions[LOCAL], "mlx", mlx_device(), THERMAL_STATE,
    )
    # Order, not speed: the gateway's latency and timestamp lie within the client's own call.
    assert 0 < first["latency_ms"] <= 1000 * (back_clock - sent_clock) and set(rows["latency_ms"]) == {first["latency_ms"]}
    assert sent - 1e-6 <= first["ts"].timestamp() <= back + 1e-6  # ts is stored to the microsecond

    single = client.post(_url(LOCAL, "1"), json={"instances": [{"x": x[0].tolist()}, {"x": x[1].tolist()}]}, headers=HEADERS)
    assert single.status_code == 200, single.text
    predictions = single.json()["predictions"]
    rows = _captured(app, registry, LOCAL, single.json()["request_id"])
    columns = {name: [p[name] for p in predictions] for name in predictions[0]}
    _assert_logged(rows, x[:2], columns)

    # the layout other code reads: Hive partitions by project and UTC date
    dataset = ds.dataset(log_root(registry.settings) / "predictions", partitioning="hive")
    table = dataset.to_table(filter=ds.field("request_id") == request_id, columns=["project", "date", "row"])
    assert set(table.column("project").to_pylist()) == {LOCAL}
    assert set(map(str, table.column("date").to_pylist())) == {datetime.now(UTC).date().isoformat()}


def test_other_families_are_captured_with_their_own_columns(app, client, registry):
    noise = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    response = client.post(_url(DIFFUSION), json={"inputs": {"noise": noise.tolist()}}, headers=HEADERS)
    assert response.status_code == 200, response.text
    rows = _captured(app, registry, DIFFUSION, response.json()["request_id"])
    assert [c for c in rows.columns if "." in c] == ["in.noise_0", "in.noise_1", "out.samples_0", "out.samples_1"]
    samples = np.array(response.json()["outputs"]["samples"], dtype=np.float32)
    np.testing.assert_array_equal(rows["out.samples_1"].to_numpy(), samples[:, 1].astype(np.float64))


@pytest.fixture(scope="module")
def backend(registry):
    """A served model behind HTTP, answering like a Ray Serve deployment (/ray) and like a Bento (/bento)."""
    import uvicorn

    from mlops.training.artifacts import restore_session

    mlx = ThreadPoolExecutor(1, thread_name_prefix="backend-mlx")  # MLX streams are per thread
    session = mlx.submit(restore_session, registry.home / "serving" / ROUTED / str(registry.versions[ROUTED])).result()
    target = FastAPI()

    async def predict(request: Request) -> dict:
        inputs = {"x": np.asarray((await request.json())["inputs"]["x"], dtype=np.float32)}
        outputs = await asyncio.get_running_loop().run_in_executor(mlx, session.predict, inputs)
        return {name: value.tolist() for name, value in outputs.items()}

    @target.post("/ray")
    async def ray_style(request: Request) -> dict:
        return {"outputs": await predict(request)}

    @target.post("/bento")
    async def bento_style(request: Request) -> dict:
        return await predict(request)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(target, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for(lambda: server.started, 30, "the backend", interval=0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    mlx.shutdown()


@pytest.mark.parametrize(("kind", "device"), [("ray", "gpu"), ("bentoml", "cpu")])
def test_routed_predictions_are_captured_with_the_route_backend(app, client, registry, backend, kind, device):
    from mlops.serving.routes import Route, write_route

    version = registry.versions[ROUTED]
    path = "/ray" if kind == "ray" else "/bento"
    write_route(registry.settings, Route(project=ROUTED, version=version, url=backend + path, backend=kind, device=device))
    try:
        wait_for(lambda: ROUTED in app.state.gateway.routes.current() and app.state.gateway.routes.current()[ROUTED].backend == kind,
                 10, "the route", interval=0.05)
        x = np.random.default_rng(2).standard_normal((3, 32)).astype(np.float32)
        batch = client.post(_url(ROUTED), json={"inputs": {"x": x.tolist()}}, headers=HEADERS)
        assert batch.status_code == 200, batch.text
        rows = _captured(app, registry, ROUTED, batch.json()["request_id"])
        _assert_logged(rows, x, batch.json()["outputs"])
        assert (rows["backend"].unique().tolist(), rows["device"].unique().tolist()) == ([kind], [device])
        assert set(rows["version"]) == {version} and set(rows["thermal_state"]) == {THERMAL_STATE}

        records = client.post(_url(ROUTED), json={"instances": [{"x": x[2].tolist()}]}, headers=HEADERS)
        assert records.status_code == 200, records.text
        rows = _captured(app, registry, ROUTED, records.json()["request_id"])
        prediction = records.json()["predictions"][0]
        _assert_logged(rows, x[2:], {name: [value] for name, value in prediction.items()})
        assert rows["backend"].tolist() == [kind]
    finally:
        write_route(registry.settings, None, ROUTED)


def test_feedback_joins_the_log_and_gives_accuracy(app, client, registry):
    since = datetime.now(UTC) - HOUR
    x = np.random.default_rng(3).standard_normal((4, 32)).astype(np.float32)
    batch = client.post(_url(LOCAL), json={"inputs": {"x": x.tolist()}}, headers=HEADERS).json()
    one = client.post(_url(LOCAL), json={"instances": [{"x": x[0].tolist()}]}, headers=HEADERS).json()
    predicted = batch["outputs"]["label"]
    truth = [predicted[0], predicted[1], (predicted[2] + 1) % 4, (predicted[3] + 1) % 4]  # two right, two wrong

    answer = client.post(_feedback_url(LOCAL), json={"request_id": batch["request_id"], "labels": truth}, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"request_id": batch["request_id"], "rows": 4, "validated": True}
    single = client.post(_feedback_url(LOCAL), json={"request_id": one["request_id"], "label": one["predictions"][0]["label"]}, headers=HEADERS)
    assert single.status_code == 200, single.text

    # what cannot be right is refused
    wrong_count = client.post(_feedback_url(LOCAL), json={"request_id": batch["request_id"], "labels": truth[:3]}, headers=HEADERS)
    assert wrong_count.status_code == 422 and wrong_count.json()["detail"][0]["loc"] == ["body", "labels"]
    assert client.post(_feedback_url(LOCAL), json={"request_id": batch["request_id"], "label": 1}, headers=HEADERS).status_code == 422
    assert client.post(_feedback_url(ROUTED), json={"request_id": batch["request_id"], "labels": truth}, headers=HEADERS).status_code == 404
    for body in (
        {"request_id": "not-an-id", "label": 1},
        {"request_id": batch["request_id"], "label": 1, "labels": [1]},
        {"request_id": batch["request_id"], "labels": [True, 1, 2, 3]},
        {"request_id": batch["request_id"], "labels": []},
        {"request_id": batch["request_id"], "labels": truth, "extra": 1},
        {"label": 1},
    ):
        assert client.post(_feedback_url(LOCAL), json=body, headers=HEADERS).status_code == 422, body
    assert client.post(_feedback_url(LOCAL), json={"request_id": batch["request_id"], "labels": truth}).status_code == 401
    assert client.post(_feedback_url("no_such_project"), json={"request_id": "e" * 32, "label": 1}, headers=HEADERS).status_code == 404

    # an id the gateway no longer remembers (older than its window, or from before a restart): stored as given
    app.state.gateway.capture.recent = RecentRequests(2)
    old = client.post(_url(LOCAL), json={"inputs": {"x": x[:2].tolist()}}, headers=HEADERS).json()
    for _ in range(2):
        client.post(_url(LOCAL), json={"inputs": {"x": x[:1].tolist()}}, headers=HEADERS)
    late = client.post(_feedback_url(LOCAL), json={"request_id": old["request_id"], "labels": old["outputs"]["label"]}, headers=HEADERS)
    assert late.status_code == 202 and late.json()["validated"] is False
    assert len(app.state.gateway.capture.recent) == 2

    app.state.gateway.capture.flush()
    labels = read_feedback(registry.settings, LOCAL, since)
    assert labels[labels["request_id"] == batch["request_id"]]["label"].tolist() == [float(v) for v in truth]
    assert accuracy(registry.settings, LOCAL, since) == {"rows": 4 + 1 + 2, "accuracy": (2 + 1 + 2) / 7}


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{wanted} not in /metrics")


def test_metrics_count_captured_and_written_rows(app, client):
    app.state.gateway.capture.flush()
    before = client.get("/metrics").text
    client.post(_url(LOCAL), json={"inputs": {"x": [[0.0] * 32] * 3}}, headers=HEADERS)
    during = client.get("/metrics").text
    app.state.gateway.capture.flush()
    after = client.get("/metrics").text
    captured = lambda text: _metric(text, "mlops_gateway_capture_rows_total", kind="predictions", state="captured")  # noqa: E731
    written = lambda text: _metric(text, "mlops_gateway_capture_rows_total", kind="predictions", state="written")  # noqa: E731
    assert captured(during) == captured(before) + 3 and _metric(during, "mlops_gateway_capture_buffered_rows") >= 3
    assert written(after) == written(before) + 3 and _metric(after, "mlops_gateway_capture_buffered_rows") == 0
    assert _metric(after, "mlops_gateway_capture_write_failures_total", kind="predictions") == 0
    assert _metric(after, "mlops_gateway_capture_rows_total", kind="predictions", state="dropped") == 0


def _own_home(registry, tmp_path):
    """The same registry, but logs (and the model cache) under `tmp_path`."""
    return dataclasses.replace(registry.settings, home=tmp_path)


def test_the_flush_interval_is_a_setting(registry, tmp_path):
    """MLOPS_CAPTURE_FLUSH_SECONDS: how long predictions wait in memory before the writer puts them in Parquet."""
    env = {"MLOPS_HOME": str(tmp_path), "MLOPS_CAPTURE_FLUSH_SECONDS": "0.3"}
    settings = dataclasses.replace(registry.settings, home=tmp_path, capture_flush_seconds=Settings.from_env(env).capture_flush_seconds)
    assert settings.capture_flush_seconds == 0.3
    with TestClient(create_app(settings, {KEY})) as c:
        assert c.app.state.gateway.capture.flush_seconds == 0.3
        assert c.post(_url(LOCAL), json={"inputs": {"x": [[0.0] * 32]}}, headers=HEADERS).status_code == 200
        wait_for(lambda: list((tmp_path / "monitoring" / "predictions").rglob("part-*.parquet")), 10, "the writer's own flush", interval=0.05)


def test_capture_off_is_the_old_gateway(registry, tmp_path):
    settings = _own_home(registry, tmp_path)
    with TestClient(create_app(settings, {KEY}, capture=False)) as c:
        response = c.post(_url(LOCAL), json={"inputs": {"x": [[0.0] * 32]}}, headers=HEADERS)
        assert response.status_code == 200 and "request_id" not in response.json()
        assert c.post(_feedback_url(LOCAL), json={"request_id": "a" * 32, "label": 1}, headers=HEADERS).status_code == 503
        assert "mlops_gateway_capture" not in c.get("/metrics").text
    assert not (tmp_path / "monitoring").exists()


def test_shutdown_writes_what_is_buffered_and_a_failing_log_never_fails_a_predict(registry, tmp_path):
    settings = _own_home(registry, tmp_path)
    app = create_app(settings, {KEY})
    writer = app.state.gateway.capture
    writer.flush_seconds = 3600  # only the shutdown writes
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring" / "predictions").write_text("in the way")
    with TestClient(app) as c:
        first = c.post(_url(LOCAL), json={"inputs": {"x": [[0.5] * 32] * 2}}, headers=HEADERS)
        assert first.status_code == 200
        writer.flush()  # fails: the rows stay buffered
        assert _metric(c.get("/metrics").text, "mlops_gateway_capture_write_failures_total", kind="predictions") == 1
        (tmp_path / "monitoring" / "predictions").unlink()
        second = c.post(_url(LOCAL), json={"inputs": {"x": [[0.25] * 32]}}, headers=HEADERS)
        assert second.status_code == 200
        assert not list((tmp_path / "monitoring").rglob("*.parquet"))
    frame = read_predictions(settings, LOCAL, since=datetime.now(UTC) - HOUR)
    assert frame["request_id"].tolist() == [first.json()["request_id"]] * 2 + [second.json()["request_id"]]
    assert writer.snapshot()["buffered_rows"] == 0
