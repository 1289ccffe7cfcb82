"""The serving gateway: one FastAPI app in front of every registered MLX model.

Routes (JSON unless noted):

| route                                                  | key | what                                            |
|--------------------------------------------------------|-----|-------------------------------------------------|
| POST /v1/projects/{project}/models/{model}/predict     | yes | run a batch; {project} = registered model name, |
|                                                        |     | {model} = a version number or "latest"          |
| GET  /v1/models                                        | yes | every model: versions, family, signature,       |
|                                                        |     | backend, device, replicas, deployment           |
| GET  /v1/routes                                        | yes | route-table generation in use, routes, requests |
|                                                        |     | in flight per target (the deployer drains on it)|
| POST /v1/reload[?project=name]                         | yes | rescan the registry (or one model) for new and  |
|                                                        |     | deleted versions; answers what it lists         |
| POST /v1/projects/{project}/feedback                   | yes | ground-truth labels of a served request         |
| GET  /healthz                                          | no  | process is up (always 200)                      |
| GET  /readyz                                           | no  | 200 once every model's latest version is loaded |
|                                                        |     | (loads them), 503 otherwise                     |
| GET  /metrics                                          | no  | Prometheus text: request counts by route/method/|
|                                                        |     | status, latency histogram by route, capture     |
|                                                        |     | counters                                        |

Predict body, validated against the family's signature (names, dtype, shape) -> 422 naming
the field (`detail[0].loc`, e.g. ["body", "inputs", "x"]):

* `{"inputs": {name: nested list with the batch first}}` -> `{"outputs": {name: nested list}}`
* `{"instances": [{name: one record's list}, ...]}` -> `{"predictions": [{name: value}, ...]}`

API key: header `X-API-Key: <key>` or `Authorization: Bearer <key>`; missing -> 401,
wrong -> 403 (constant-time compare). Bodies over `max_body_bytes` -> 413 (Content-Length
and the bytes actually received). Unknown project, version or a non-number version -> 404.

Where a predict goes: a project with a route (`routes.py`, written by the deployer) sends
"latest" and its routed version to that target (a Ray Serve deployment), forwarding the
validated inputs; a target that cannot be reached gives 502 naming it. Every other version
runs in this process: models load lazily (first predict, /readyz) and stay cached, MLX work
runs on one dedicated thread, and requests that wait while a model is busy are batched
into one call (`batching.MicroBatcher`; `batching=False` turns it off).

New registrations appear without a restart. A predict naming a version the catalog does not
hold rescans that model's versions (an unknown project: the whole registry) and waits for
the scan; one scan per model is in flight at a time, and every request that misses while it
runs waits on it (single flight) instead of being refused. A version the route table names
was registered before the table was written, so a scan started after the gateway read the
table settles it: the route's version is served with no 404 and, if it truly does not
exist, one scan answers every request of that table generation (404 naming the version). Any
other miss is answered from a scan at most `rescan_seconds` old (a short negative cache), so
a burst of requests for versions that do not exist costs at most one scan per model per
`rescan_seconds`. `reload()` (or POST /v1/reload) forces a scan; the deployer calls it for
the project before it switches a route (`deploy.py`), so the gateway knows the version first.

Prediction capture (`capture=True`, the default): every successful predict gets a request id
(32 hex digits, 24 of them random: `mlops.monitoring.request_ids`; `"request_id"` in the body; no header: it cost the server and every client a
header line per request) and is handed to a
`monitoring.prediction_log.PredictionLogWriter` with its validated inputs, outputs, version,
backend ("mlx", "pytorch", "ray", "bentoml"), device, latency and the thermal state the writer
thread refreshes; the writer appends it to `<MLOPS_HOME>/monitoring/predictions/` in batches
off the request path, and is flushed at shutdown. Feedback body: `{"request_id": id,
"labels": [one per row]}` or `{"request_id": id, "label": x}` for a one-row request. The last
`prediction_log.RECENT_REQUESTS` ids (rounded up to a power of two) are remembered with their project and row count: a known id answers 200
(404 if it was another project's, 422 for a wrong number of labels); an id older than that (or
from before a restart) cannot be checked and is stored as given with 202 (a wrong one joins no
prediction). A project that is not registered is 404; ids are 32 hex digits (else 422).
Without capture there is no log and feedback answers 503.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from mlops.monitoring.prediction_log import PredictionLogWriter, log_root, read_thermal_state
from mlops.serving.batching import MicroBatcher, predict_many, predict_many_async
from mlops.serving.gc_freeze import freeze_long_lived
from mlops.serving.registry_models import MLX, BackendUnavailable, ModelCatalog
from mlops.serving.routes import Route, RouteWatcher, routes_file

if TYPE_CHECKING:
    import numpy as np

    from mlops.settings import Settings

ALL = ""  # registry-scan key of the whole registry (a model's name is never empty)
NEVER = -math.inf  # scanned_at of a key never scanned
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INT32 = (-(2**31), 2**31 - 1)


class GatewayError(Exception):
    """An HTTP error with a JSON `detail` (raised in the app, rendered by one handler)."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


class InputError(GatewayError):
    """A 422 pointing at the offending field."""

    def __init__(self, loc: list[Any], msg: str, kind: str):
        super().__init__(422, [{"loc": ["body", *loc], "msg": msg, "type": kind}])


# --- metrics -----------------------------------------------------------------------------


class Metrics:
    """Request counters and a latency histogram, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.predictions: dict[tuple[str, str], int] = {}  # (project, status) of predict requests

    def observe(self, method: str, route: str, status: int, seconds: float, project: str | None = None) -> None:
        with self._lock:
            if project is not None:
                key_p = (project, str(status))
                self.predictions[key_p] = self.predictions.get(key_p, 0) + 1
            key = (route, method, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            buckets = self.buckets.setdefault(route, [0] * len(LATENCY_BUCKETS))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self.sums[route] = self.sums.get(route, 0.0) + seconds
            self.counts[route] = self.counts.get(route, 0) + 1

    def render(self) -> str:
        def label(value: str) -> str:
            return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        lines = [
            "# HELP mlops_gateway_requests_total HTTP requests by route template, method and status.",
            "# TYPE mlops_gateway_requests_total counter",
        ]
        with self._lock:
            for (route, method, status), count in sorted(self.requests.items()):
                lines.append(
                    f'mlops_gateway_requests_total{{route="{label(route)}",method="{method}",status="{status}"}} {count}'
                )
            lines += [
                "# HELP mlops_gateway_predictions_total Predict requests by project and status (dashboards: errors per project).",
                "# TYPE mlops_gateway_predictions_total counter",
                *(f'mlops_gateway_predictions_total{{project="{label(project)}",status="{status}"}} {count}'
                  for (project, status), count in sorted(self.predictions.items())),
                "# HELP mlops_gateway_request_duration_seconds Request latency by route template.",
                "# TYPE mlops_gateway_request_duration_seconds histogram",
            ]
            for route in sorted(self.buckets):
                name = label(route)
                for bound, count in zip(LATENCY_BUCKETS, self.buckets[route]):
                    lines.append(f'mlops_gateway_request_duration_seconds_bucket{{route="{name}",le="{bound}"}} {count}')
                lines.append(
                    f'mlops_gateway_request_duration_seconds_bucket{{route="{name}",le="+Inf"}} {self.counts[route]}'
                )
                lines.append(f'mlops_gateway_request_duration_seconds_sum{{route="{name}"}} {self.sums[route]}')
                lines.append(f'mlops_gateway_request_duration_seconds_count{{route="{name}"}} {self.counts[route]}')
        return "\n".join(lines) + "\n"


def render_serving_memory(routes: dict[str, Any], budget_bytes: int) -> str:
    """The serving memory every deployed project may take (its replicas' upper bound x each one's memory, as
    the deployer sized them) against the shared budget: what an autoscaler of serving nodes watches."""
    lines = [
        "# HELP mlops_serving_memory_budget_bytes Memory all served replicas together may use (MLOPS_SERVING_MEMORY_GB).",
        "# TYPE mlops_serving_memory_budget_bytes gauge",
        f"mlops_serving_memory_budget_bytes {budget_bytes}",
        "# HELP mlops_serving_memory_reserved_bytes Max replicas x memory per replica of each deployed project.",
        "# TYPE mlops_serving_memory_reserved_bytes gauge",
    ]
    for project, route in sorted(routes.items()):
        replicas = route.replicas or {}
        reserved = int(replicas.get("max", 0) or 0) * int(replicas.get("memory_bytes", 0) or 0)
        lines.append(f'mlops_serving_memory_reserved_bytes{{project="{project}"}} {reserved}')
    return "\n".join(lines) + "\n"


def render_gc() -> str:
    """Python's collector: full collections (each walks every unfrozen object) and what is frozen."""
    import gc

    stats = gc.get_stats()
    return "\n".join([
        "# HELP mlops_gateway_gc_collections_total Garbage collections by generation (2 = full).",
        "# TYPE mlops_gateway_gc_collections_total counter",
        *(f'mlops_gateway_gc_collections_total{{generation="{g}"}} {s["collections"]}' for g, s in enumerate(stats)),
        "# HELP mlops_gateway_gc_frozen_objects Objects gc.freeze() moved out of the collector's reach (gc_freeze.py).",
        "# TYPE mlops_gateway_gc_frozen_objects gauge",
        f"mlops_gateway_gc_frozen_objects {gc.get_freeze_count()}",
    ]) + "\n"


def render_batching(local: dict[tuple[str, int], MicroBatcher], routed: dict[str, MicroBatcher]) -> str:
    """Micro-batching by model version (in-process) and by deployment URL: requests per batch is batches' yield."""
    lines = [
        "# HELP mlops_gateway_batches_total Model calls made by the micro-batcher.",
        "# TYPE mlops_gateway_batches_total counter",
        "# HELP mlops_gateway_batched_requests_total Requests answered by those calls.",
        "# TYPE mlops_gateway_batched_requests_total counter",
    ]
    targets = [(f'model="{name}",version="{version}"', b) for (name, version), b in sorted(local.items())]
    targets += [(f'target="{url}"', b) for url, b in sorted(routed.items())]
    for labels, batcher in targets:
        lines.append(f"mlops_gateway_batches_total{{{labels}}} {batcher.batches}")
        lines.append(f"mlops_gateway_batched_requests_total{{{labels}}} {batcher.requests}")
    return "\n".join(lines) + "\n"


def render_scans(scans: dict[str, int]) -> str:
    """Registry scans the gateway ran: the whole registry, or one model's versions."""
    lines = [
        "# HELP mlops_gateway_registry_scans_total Registry scans: the whole registry (scope all), or one model's "
        "versions (scope model: a request named a version the catalog did not hold, or a deployer asked).",
        "# TYPE mlops_gateway_registry_scans_total counter",
    ]
    for key, count in sorted(scans.items()):
        labels = 'scope="all"' if key == ALL else f'scope="model",model="{key}"'
        lines.append(f"mlops_gateway_registry_scans_total{{{labels}}} {count}")
    return "\n".join(lines) + "\n"


def render_capture(snapshot: dict[str, Any]) -> str:
    """The prediction log's counters in the Prometheus text format."""
    counts = snapshot["counts"]
    lines = [
        "# HELP mlops_gateway_capture_rows_total Prediction-log rows by kind and state: captured (buffered), "
        "written (in Parquet), dropped (buffer full).",
        "# TYPE mlops_gateway_capture_rows_total counter",
    ]
    for (state, kind), count in sorted(counts.items()):
        if state != "write_failures":
            lines.append(f'mlops_gateway_capture_rows_total{{kind="{kind}",state="{state}"}} {count}')
    lines += [
        "# HELP mlops_gateway_capture_write_failures_total Parquet writes that failed (their rows are kept and retried).",
        "# TYPE mlops_gateway_capture_write_failures_total counter",
    ]
    for (state, kind), count in sorted(counts.items()):
        if state == "write_failures":
            lines.append(f'mlops_gateway_capture_write_failures_total{{kind="{kind}"}} {count}')
    lines += [
        "# HELP mlops_gateway_capture_buffered_rows Rows waiting to be written.",
        "# TYPE mlops_gateway_capture_buffered_rows gauge",
        f"mlops_gateway_capture_buffered_rows {snapshot['buffered_rows']}",
        "# HELP mlops_gateway_capture_flush_cpu_seconds_total CPU time the writer spent turning rows into Parquet.",
        "# TYPE mlops_gateway_capture_flush_cpu_seconds_total counter",
        f"mlops_gateway_capture_flush_cpu_seconds_total {snapshot['flush_cpu_seconds']:.6f}",
    ]
    return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead): time every HTTP request."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            project = (scope.get("path_params") or {}).get("project") if route.endswith("/predict") else None
            self.metrics.observe(scope.get("method", ""), route, status, time.perf_counter() - start, project)


# --- input validation --------------------------------------------------------------------


def _shape_text(shape: list[int] | tuple[int, ...]) -> str:
    return "[" + ", ".join("B" if i == 0 and d == -1 else ("*" if d == -1 else str(d)) for i, d in enumerate(shape)) + "]"


def to_array(value: Any, spec: dict[str, Any], loc: list[Any], record: bool = False) -> np.ndarray:
    """One input as a numpy array of the signature's dtype, or an InputError naming `loc`.

    `record`: `value` is one instance (the signature's shape without the batch axis).
    """
    import numpy as np

    shape = list(spec["shape"])[1 if record else 0 :]
    max_shape = list(spec.get("max_shape", spec["shape"]))[1 if record else 0 :]
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise InputError(loc, f"ragged nested list; expected shape {_shape_text(spec['shape'])}", "shape") from None
    kind = array.dtype.kind
    if kind not in "iuf" or array.dtype == object:
        raise InputError(loc, f"expected {spec['dtype']} numbers, got {array.dtype.name} values", "dtype")
    if array.ndim != len(shape) or any(
        got == 0 or (want != -1 and got != want) or (limit != -1 and got > limit)
        for got, want, limit in zip(array.shape, shape, max_shape)
    ):
        limit_text = f" (at most {_shape_text(max_shape)})" if "max_shape" in spec else ""
        raise InputError(
            loc, f"expected shape {_shape_text(shape)}{limit_text}, got {list(array.shape)}", "shape"
        )
    if spec["dtype"] == "int32":
        if kind == "f":
            raise InputError(loc, "expected int32 integers, got floats", "dtype")
        low, high = spec.get("range", (INT32[0], INT32[1] + 1))
        if array.min() < max(low, INT32[0]) or array.max() >= min(high, INT32[1] + 1):
            raise InputError(loc, f"int32 values must lie in [{low}, {high})", "value")
        return array.astype(np.int32)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(loc, "float32 values must be finite", "value")
    return array


def parse_inputs(payload: Any, signature: dict[str, Any]) -> tuple[dict[str, np.ndarray], str]:
    """(arrays by input name, "inputs" | "instances") from a predict body, validated."""
    import numpy as np

    specs = signature["inputs"]
    if not isinstance(payload, dict) or len({"inputs", "instances"} & set(payload)) != 1:
        raise InputError([], 'body must be an object with exactly one of "inputs" or "instances"', "missing")
    unknown = sorted(set(payload) - {"inputs", "instances"})
    if unknown:
        raise InputError([unknown[0]], f"unknown field {unknown[0]!r}", "extra")

    def check_names(record: Any, loc: list[Any]) -> None:
        if not isinstance(record, dict):
            raise InputError(loc, f"expected an object with inputs {sorted(specs)}", "type")
        for name in sorted(set(record) - set(specs)):
            raise InputError([*loc, name], f"unknown input {name!r}; expected {sorted(specs)}", "extra")
        for name in sorted(set(specs) - set(record)):
            raise InputError([*loc, name], f"missing input {name!r}", "missing")

    if "inputs" in payload:
        form, inputs = "inputs", payload["inputs"]
        check_names(inputs, ["inputs"])
        arrays = {name: to_array(inputs[name], specs[name], ["inputs", name]) for name in sorted(specs)}
    else:
        form, instances = "instances", payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise InputError(["instances"], "expected a non-empty list of records", "type")
        rows: dict[str, list[np.ndarray]] = {name: [] for name in specs}
        for i, record in enumerate(instances):
            check_names(record, ["instances", i])
            for name in sorted(specs):
                rows[name].append(to_array(record[name], specs[name], ["instances", i, name], record=True))
        arrays = {}
        for name, values in rows.items():
            if len({v.shape for v in values}) > 1:
                raise InputError(["instances", name], "records differ in shape", "shape")
            arrays[name] = np.stack(values)
    batch = {name: len(a) for name, a in arrays.items()}
    if len(set(batch.values())) > 1:
        name = sorted(batch)[-1]
        raise InputError([form, name], f"batch sizes differ across inputs: {batch}", "shape")
    return arrays, form


def parse_feedback(payload: Any) -> tuple[str, list[float]]:
    """(request id, labels) from a feedback body, or an InputError naming the field."""
    if not isinstance(payload, dict) or "request_id" not in payload:
        raise InputError(["request_id"], "missing field 'request_id'", "missing")
    request_id = payload["request_id"]
    if not isinstance(request_id, str) or len(request_id) != 32 or any(c not in "0123456789abcdef" for c in request_id):
        raise InputError(["request_id"], "expected the 32-hex-digit request id a predict returned", "value")
    given = sorted({"label", "labels"} & set(payload))
    if len(given) != 1:
        raise InputError([], 'body needs exactly one of "label" or "labels"', "missing")
    unknown = sorted(set(payload) - {"request_id", "label", "labels"})
    if unknown:
        raise InputError([unknown[0]], f"unknown field {unknown[0]!r}", "extra")
    labels = [payload["label"]] if given == ["label"] else payload["labels"]
    if not isinstance(labels, list) or not labels:
        raise InputError(["labels"], "expected a non-empty list, one label per row of the request", "type")
    for i, label in enumerate(labels):
        loc = ["label"] if given == ["label"] else ["labels", i]
        if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
            raise InputError(loc, "labels must be finite numbers", "value")
    return request_id, [float(label) for label in labels]


# --- the app -----------------------------------------------------------------------------


class Gateway:
    """State behind the app: the catalog, the single MLX thread, metrics, the keys."""

    def __init__(
        self,
        settings: Settings,
        api_keys: set[str],
        max_body_bytes: int,
        rescan_seconds: float,
        batching: bool = True,
        max_batch_size: int = 32,
        batch_wait_ms: float = 1.0,
        capture: bool = True,
        freeze_gc: bool = False,
    ):
        keys = {k for k in api_keys if k}
        if not keys:
            raise ValueError("the gateway needs at least one API key (MLOPS_API_KEYS or the keys file)")
        self._keys = [k.encode() for k in sorted(keys)]
        self.settings = settings
        self.max_body_bytes = max_body_bytes
        self.rescan_seconds = rescan_seconds
        self.catalog = ModelCatalog(settings)
        self.freeze_gc = freeze_gc  # a server process of its own: keep full GCs off start-up state (gc_freeze.py)
        if freeze_gc:
            self.catalog.on_session_loaded = freeze_long_lived
        self.metrics = Metrics()
        self.mlx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx")
        # registry scans by key (a model's name, ALL = the whole registry): when the last finished
        # one started, the one in flight, and how many ran (for /metrics)
        self.scanned_at: dict[str, float] = {}
        self._scanning: dict[str, asyncio.Future] = {}
        self.scans: dict[str, int] = {}
        self.routes = RouteWatcher(routes_file(settings))
        self.inflight: dict[str, int] = {}  # forwarded requests not answered yet, by target URL
        self.batching, self.max_batch_size, self.batch_wait_s = batching, max_batch_size, batch_wait_ms / 1000
        self.batchers: dict[tuple[str, int], MicroBatcher] = {}
        self._client: Any = None  # aiohttp.ClientSession, made in the event loop on first use
        self.route_batchers: dict[str, MicroBatcher] = {}  # by target URL
        self.capture = (
            PredictionLogWriter(log_root(settings), flush_seconds=settings.capture_flush_seconds, thermal=lambda: read_thermal_state(settings))
            if capture
            else None
        )

    def captured(
        self, project: str, version: int, backend: str, device: str | None, started: float,
        inputs: dict[str, np.ndarray], outputs: dict[str, Any],
    ) -> str:
        """Hand one served prediction to the prediction log (no I/O here); returns its request id."""
        request_id = self.capture.request_id()
        latency_ms = 1000 * (time.perf_counter() - started)
        self.capture.record(project, request_id, version, backend, device, latency_ms, inputs, outputs, len(next(iter(inputs.values()))))
        return request_id

    def client(self) -> Any:
        """One keep-alive HTTP client for every deployment (aiohttp: httpx's pool costs ~1 ms a request here)."""
        if self._client is None:
            import aiohttp

            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=128),
                timeout=aiohttp.ClientTimeout(total=60, connect=5),
            )
        return self._client

    async def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        for batcher in self.route_batchers.values():
            batcher.close()
        if self._client is not None:
            await self._client.close()
        self.mlx.shutdown(wait=False, cancel_futures=True)
        if self.capture is not None:
            await self.in_thread(self.capture.close)  # the last batch reaches Parquet before we exit

    def route_for(self, project: str, model: str) -> Route | None:
        """The routed target of this request, if the project has one and it serves `model`."""
        route = self.routes.current().get(project)
        if route is None or (model != "latest" and int(model) != route.version):
            return None
        return route

    async def run_local(self, entry: Any, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """In-process predict on the MLX thread, batched with the requests waiting for the same model."""
        if not self.batching:
            return await self.in_mlx(lambda: self.catalog.session(entry).predict(arrays))
        key = (entry.name, entry.version)
        batcher = self.batchers.get(key)
        if batcher is None:

            async def run_batch(requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
                return await self.in_mlx(lambda: predict_many(self.catalog.session(entry).predict, requests))

            batcher = self.batchers[key] = MicroBatcher(run_batch, self.max_batch_size, self.batch_wait_s)
        return await batcher.submit(arrays)

    async def run_routed(self, route: Route, arrays: dict[str, np.ndarray], body: bytes | None) -> dict[str, Any]:
        """The route's answer (columns) for these validated inputs: batched with the requests waiting for
        the same target into one multi-row request (`body` unused), else `body` forwarded as is.

        Counted in flight from here to the answer (queue time included): the deployer drains on it.
        """
        import json as json_module

        url = route.url
        self.inflight[url] = self.inflight.get(url, 0) + 1
        try:
            if not self.batching or int((route.replicas or {}).get("max_batch_size", 2)) <= 1:
                return await self.forward(route, body or json_module.dumps({"inputs": {k: v.tolist() for k, v in arrays.items()}}).encode())
            batcher = self.route_batchers.get(url)
            if batcher is None:

                async def post(joined: dict[str, np.ndarray]) -> dict[str, Any]:
                    import numpy

                    payload = json_module.dumps({"inputs": {k: v.tolist() for k, v in joined.items()}}).encode()
                    return {k: numpy.asarray(v) for k, v in (await self.forward(route, payload)).items()}

                async def run_batch(requests: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
                    return await predict_many_async(post, requests)

                replicas = route.replicas or {}
                concurrent = math.ceil(replicas.get("max", 1) * replicas.get("target_ongoing_requests", 2))
                rows = min(self.max_batch_size, int(replicas.get("max_batch_size", self.max_batch_size)))
                batcher = self.route_batchers[url] = MicroBatcher(
                    run_batch, rows, self.batch_wait_s, max_concurrent=min(64, concurrent)
                )
            return await batcher.submit(arrays)
        finally:
            self.inflight[url] -= 1
            if not self.inflight[url]:
                del self.inflight[url]
                if url not in {r.url for r in self.routes.current().values()}:
                    old = self.route_batchers.pop(url, None)  # a drained, switched-away target
                    if old is not None:
                        old.close()

    async def forward(self, route: Route, body: bytes) -> dict[str, Any]:
        """POST a predict body to the route's target; its output columns, or 502 naming it."""
        import aiohttp

        url = route.url
        try:
            async with self.client().post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(502, f"{route.backend} backend of {route.project} v{route.version} at {url}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            raise GatewayError(
                502, f"{route.backend} backend of {route.project} v{route.version} at {url} answered {status}: {text[:300]}"
            )
        answer = json.loads(text)
        return answer if route.backend == "bentoml" else answer["outputs"]  # a Bento's predict returns the columns

    def reload(self) -> dict[str, list[int]]:
        """Pick up newly registered versions (and drop deleted ones): a whole-registry scan, now (blocks)."""
        started = time.monotonic()
        self.scans[ALL] = self.scans.get(ALL, 0) + 1
        names = self.catalog.reload()
        self.scanned_at[ALL] = max(self.scanned_at.get(ALL, NEVER), started)
        return names

    def scanned_since(self, key: str) -> float:
        """When the newest finished scan covering `key` started (NEVER if none did)."""
        whole = self.scanned_at.get(ALL, NEVER)
        return whole if key == ALL else max(whole, self.scanned_at.get(key, NEVER))

    async def ensure_scanned(self) -> None:
        """The whole registry has been scanned once (the first caller scans; the others wait on it)."""
        if not self.catalog.scanned:
            await self.rescan(ALL, NEVER)

    async def rescan(self, key: str, needed: float) -> None:
        """Return once a scan of `key` (a model's name, or ALL) that started at or after `needed` has
        finished (`needed` = NEVER: any finished scan of the whole registry).

        Single flight: at most one scan per key runs; callers wait on it. A caller whose `needed`
        is later than the running scan's start waits for it to end, then starts the next one,
        which every later caller shares. Raises a 503 GatewayError when the registry cannot be read.
        """
        while (since := self.scanned_since(key)) == NEVER or since < needed:
            task = self._scanning.get(key)
            if task is None:
                task = self._scanning[key] = asyncio.ensure_future(self._scan(key))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())  # no "never retrieved" warning
            await asyncio.shield(task)  # a caller that goes away does not cancel the others' scan

    async def _scan(self, key: str) -> None:
        started = time.monotonic()
        self.scans[key] = self.scans.get(key, 0) + 1
        try:
            if key == ALL:
                await self.in_thread(self.catalog.reload)
            else:
                await self.in_thread(self.catalog.reload_project, key)
            self.scanned_at[key] = max(self.scanned_at.get(key, NEVER), started)
        except Exception as exc:
            raise GatewayError(503, f"the model registry could not be read: {type(exc).__name__}: {exc}") from None
        finally:
            del self._scanning[key]

    def key_ok(self, given: str) -> bool:
        given_bytes = given.encode()
        ok = False
        for key in self._keys:  # compare against every key: timing reveals neither match nor position
            ok |= hmac.compare_digest(given_bytes, key)
        return ok

    async def in_mlx(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.mlx, fn, *args)

    async def in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def lookup(self, project: str, model: str, route: Route | None = None):
        if model != "latest" and not model.isdigit():
            raise GatewayError(404, f"unknown version {model!r}: use a version number or 'latest'")
        version: int | str = route.version if route else ("latest" if model == "latest" else int(model))
        entry = self.catalog.get(project, version)
        return entry if entry is not None else await self._lookup_missing(project, version, route)

    async def _lookup_missing(self, project: str, version: int | str, route: Route | None):
        """A version the catalog does not hold: wait for a scan that settles it (see the module docstring)."""
        if route is not None:
            needed = self.routes.loaded_at  # the route's version was registered before the table was read
        else:
            needed = time.monotonic() - self.rescan_seconds
        if not self.catalog.scanned:
            await self.ensure_scanned()
        entry = self.catalog.get(project, version)
        if entry is None:
            await self.rescan(project if self.catalog.knows(project) else ALL, needed)
            entry = self.catalog.get(project, version)
        if entry is None:
            known = self.catalog.names()
            if project not in known:
                raise GatewayError(404, f"unknown project/model {project!r}; registered: {sorted(known)}")
            routed = f" (the route table sends {project!r} to it)" if route is not None else ""
            raise GatewayError(404, f"{project!r} has no version {version}{routed}; versions: {known[project]}")
        return entry

    async def read_body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise GatewayError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def create_app(
    settings: Settings,
    api_keys: set[str],
    max_body_bytes: int = 1_000_000,
    rescan_seconds: float = 1.0,
    batching: bool = True,
    max_batch_size: int = 32,
    batch_wait_ms: float = 1.0,
    capture: bool = True,
    freeze_gc: bool = False,
) -> FastAPI:
    """The gateway app serving every project's registered versions (see the module docstring)."""
    gateway = Gateway(
        settings, api_keys, max_body_bytes, rescan_seconds, batching, max_batch_size, batch_wait_ms, capture, freeze_gc
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if gateway.capture is not None:
            gateway.capture.start()  # reads the thermal state before the first request
        if gateway.freeze_gc:
            freeze_long_lived("start-up")
        yield
        await gateway.close()

    app = FastAPI(title="mlops serving gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway
    app.state.reload = gateway.reload
    app.add_middleware(MetricsMiddleware, metrics=gateway.metrics)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    async def require_key(request: Request) -> None:  # async: FastAPI runs sync dependencies on a thread
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                given = token.strip()
        if not given:
            raise GatewayError(
                401, "API key required: X-API-Key header or Authorization: Bearer", {"WWW-Authenticate": "Bearer"}
            )
        if not gateway.key_ok(given):
            raise GatewayError(403, "invalid API key")

    @app.exception_handler(BackendUnavailable)
    async def _backend_unavailable(request: Request, exc: BackendUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready when every project's serving version answers: its deployment, or the model loaded here."""
        try:
            await gateway.ensure_scanned()
            latest = gateway.catalog.latest()
            if not latest:
                reason = "no servable model (see /v1/models)" if gateway.catalog.names() else "no registered models"
                return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
            routes = gateway.routes.current()
            serving: dict[str, int] = {}
            for entry in latest:
                route = routes.get(entry.name)
                if route is None:
                    await gateway.in_mlx(gateway.catalog.session, entry)
                    serving[entry.name] = entry.version
                    continue
                import aiohttp

                probe = route.url.rsplit("/", 1)[0] + "/readyz" if route.backend == "bentoml" else route.url
                try:
                    async with gateway.client().get(probe) as answer:
                        status = answer.status
                except (aiohttp.ClientError, TimeoutError) as exc:  # down: say which deployment, as predict's 502 does
                    raise GatewayError(503, f"{route.backend} deployment of {entry.name} at {probe}: {type(exc).__name__}: {exc}") from None
                if status != 200:
                    raise GatewayError(503, f"{route.backend} deployment of {entry.name} at {probe}: {status}")
                serving[entry.name] = route.version
        except Exception as exc:  # registry down, artifact missing, weights not loadable, deployment down
            return JSONResponse({"status": "not ready", "reason": f"{type(exc).__name__}: {exc}"}, status_code=503)
        return JSONResponse({"status": "ready", "models": serving, "device": gateway.catalog.device})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = gateway.metrics.render()
        if gateway.capture is not None:
            text += render_capture(gateway.capture.snapshot())
        text += render_gc()
        text += render_batching(gateway.batchers, gateway.route_batchers)
        text += render_scans(gateway.scans)
        text += render_serving_memory(gateway.routes.current(), gateway.settings.serving_memory_bytes)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def list_models() -> dict[str, Any]:
        await gateway.ensure_scanned()
        routes = gateway.routes.current()
        models = gateway.catalog.describe()
        for model in models:
            route = routes.get(model["name"])
            if route is not None:  # "latest" is the deployed version, served by its backend
                model.update(
                    serving_version=route.version,
                    backend=route.backend,
                    device=route.device,
                    replicas=route.replicas,
                    deployment={"url": route.url, "app": route.app, "deployed_at": route.deployed_at},
                )
        return {"models": models}

    @app.get("/v1/routes", dependencies=[Depends(require_key)])
    async def list_routes() -> dict[str, Any]:
        routes = gateway.routes.current()
        return {
            "generation": gateway.routes.generation,
            "routes": {name: {"version": r.version, "url": r.url, "backend": r.backend} for name, r in routes.items()},
            "inflight": dict(gateway.inflight),
        }

    @app.post("/v1/reload", dependencies=[Depends(require_key)])
    async def reload(project: str | None = None) -> dict[str, Any]:
        """Scan now (shared with a scan that starts later than this call, never an older one)."""
        await gateway.rescan(project or ALL, time.monotonic())
        return {"models": gateway.catalog.names()}

    @app.post("/v1/projects/{project}/models/{model}/predict", dependencies=[Depends(require_key)])
    async def predict(project: str, model: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = await gateway.read_body(request)
        route = gateway.route_for(project, model) if model == "latest" or model.isdigit() else None
        entry = await gateway.lookup(project, model, route)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError([], f"invalid JSON: {exc}", "json") from None
        arrays, form = parse_inputs(payload, entry.signature)
        result: dict[str, Any] = {"model": entry.name, "version": entry.version}
        if route is not None:
            routed = await gateway.run_routed(route, arrays, body if form == "inputs" else None)
            columns = {name: value.tolist() if hasattr(value, "tolist") else value for name, value in routed.items()}
            served = (route.backend, route.device, routed)
        else:
            outputs = await gateway.run_local(entry, arrays)
            columns = {name: value.tolist() for name, value in outputs.items()}
            device = gateway.catalog.device if entry.backend == MLX else gateway.catalog.torch_device
            served = (entry.backend, device, outputs)
        if gateway.capture is not None:
            backend, device, captured_outputs = served
            result["request_id"] = gateway.captured(project, entry.version, backend, device, started, arrays, captured_outputs)
        if form == "inputs":
            result["outputs"] = columns
        else:
            batch = len(next(iter(arrays.values())))
            result["predictions"] = [{name: column[i] for name, column in columns.items()} for i in range(batch)]
        return JSONResponse(result)

    @app.post("/v1/projects/{project}/feedback", dependencies=[Depends(require_key)])
    async def feedback(project: str, request: Request) -> JSONResponse:
        """Ground-truth labels of a served request, for accuracy (rules in the module docstring)."""
        if gateway.capture is None:
            raise GatewayError(503, "prediction capture is off in this gateway: there is no log to attach labels to")
        body = await gateway.read_body(request)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError([], f"invalid JSON: {exc}", "json") from None
        request_id, labels = parse_feedback(payload)
        known = gateway.capture.lookup(request_id)
        if known is None:
            await gateway.ensure_scanned()
            if not gateway.catalog.knows(project):
                raise GatewayError(404, f"unknown project/model {project!r}")
        else:
            known_project, rows = known
            if known_project != project:
                raise GatewayError(404, f"request {request_id} is not a prediction of {project!r}")
            if len(labels) != rows:
                field = "labels" if "labels" in payload else "label"
                raise InputError([field], f"request {request_id} had {rows} rows: expected {rows} labels, got {len(labels)}", "shape")
        if not gateway.capture.record_feedback(project, request_id, labels):
            raise GatewayError(503, "the prediction log buffer is full (its writes are failing); retry later")
        answer = {"request_id": request_id, "rows": len(labels), "validated": known is not None}
        return JSONResponse(answer, status_code=200 if known is not None else 202)

    return app


__all__ = [
    "Gateway", "Metrics", "create_app", "parse_feedback", "parse_inputs", "render_batching", "render_capture", "render_gc",
    "render_scans", "to_array",
]
