"""What the gateway serves, and how fast: its `/v1/models` (with an API key, as every client), its
`/metrics`, the route table, and the served-prediction log.

Per-project latency and traffic come from the prediction log every served request is written to
(`mlops.monitoring.prediction_log`, flushed every `MLOPS_CAPTURE_FLUSH_SECONDS`): p50/p99 and
requests over the last `WINDOW_MINUTES`, the request rate being those requests over the window.
`/metrics` counts predict requests by project and status since the gateway started
(`mlops_gateway_predictions_total`): `errors` are the 5xx answers, `rejected` the 4xx ones (bad
input, unknown version). A gateway that is not running refuses the connection at once; one that
hangs is given `TIMEOUT_S`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.serving.routes import Route
    from mlops.settings import Settings

TIMEOUT_S = 1.0
WINDOW_MINUTES = 15
_PREDICTIONS = re.compile(r'^mlops_gateway_predictions_total\{project="([^"]*)",status="(\d+)"\} (\d+)', re.M)


@dataclass
class GatewayView:
    """One read of the gateway: its models by name (None when it could not be read) and why not."""

    base: str
    models: dict[str, dict[str, Any]] | None = None
    down: bool = False
    answers: dict[str, dict[str, int]] | None = None  # project -> {"errors": 5xx, "rejected": 4xx} since start
    routes: dict[str, Route] = field(default_factory=dict)
    note: str | None = None


def gateway_base(settings: Settings) -> str:
    return f"http://{settings.bind_host}:{settings.gateway_port}"


def read_gateway(settings: Settings, timeout: float = TIMEOUT_S) -> GatewayView:
    """`/v1/models` and `/metrics` of the gateway, and the route table; never raises."""
    from mlops.serving.api_keys import load_api_keys
    from mlops.serving.routes import read_routes, routes_file

    view = GatewayView(gateway_base(settings))
    try:
        view.routes = read_routes(routes_file(settings))[1]
    except (OSError, ValueError, TypeError) as exc:
        view.note = f"route table {routes_file(settings)} unreadable: {exc}"
    keys = sorted(load_api_keys(settings))
    headers = {"X-API-Key": keys[0]} if keys else {}
    try:
        listed = json.loads(_get(f"{view.base}/v1/models", headers, timeout))
        view.models = {m["name"]: m for m in listed.get("models", [])}
    except urllib.error.HTTPError as exc:
        why = "no API key in MLOPS_API_KEYS or secrets/api_keys" if exc.code == 401 else f"HTTP {exc.code}"
        view.note = f"the gateway at {view.base} did not list its models ({why})"
        return view
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        view.down = True
        view.note = f"gateway down: {view.base} does not answer ({reason}); start it with `mlops up`"
        return view
    try:
        view.answers = predict_answers(_get(f"{view.base}/metrics", {}, timeout))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        view.note = f"gateway /metrics unreadable: {getattr(exc, 'reason', exc)}"
    return view


def predict_answers(metrics_text: str) -> dict[str, dict[str, int]]:
    """Per project, the predict requests the gateway answered with a 5xx (errors) or a 4xx (rejected)."""
    found: dict[str, dict[str, int]] = {}
    for project, status, count in _PREDICTIONS.findall(metrics_text):
        counts = found.setdefault(project.replace('\\"', '"').replace("\\\\", "\\"), {"errors": 0, "rejected": 0})
        code = int(status)
        if code >= 500:
            counts["errors"] += int(count)
        elif code >= 400:
            counts["rejected"] += int(count)
    return found


def project_serving(settings: Settings, project: str, view: GatewayView, now: datetime | None = None) -> dict[str, Any]:
    """The project's `serving` entry: status, version, backend, device, replicas, latency and traffic."""
    route = view.routes.get(project)
    url = f"{view.base}/v1/projects/{project}/models/latest/predict"
    entry: dict[str, Any] = {"status": "unknown", "version": None, "backend": None, "device": None, "replicas": None,
                             "p50_ms": None, "p99_ms": None, "request_rate": None, "errors": None,
                             "rejected": None, "source": "", "url": None, "deployed": route is not None}
    if view.answers is not None:
        entry.update(view.answers.get(project, {"errors": 0, "rejected": 0}))
    if route is not None:
        entry.update(version=route.version, backend=route.backend, device=route.device,
                     replicas=_replicas(route.replicas))
    if view.models is None:
        entry["status"] = "gateway down" if view.down else "unknown"
        entry["source"] = "route table" if route is not None else ""
        return entry
    model = view.models.get(project)
    servable = [v for v in (model or {}).get("versions", []) if v.get("servable")]
    if model is None or not servable:
        entry["status"] = "not deployed"
        entry["source"] = "gateway /v1/models"
        return entry
    entry.update(status="serving", url=url)
    if route is None:  # served in the gateway's own process
        entry.update(version=model.get("latest_version"), backend=model.get("backend"), device=model.get("device"),
                     replicas=_replicas(model.get("replicas")))
    window = traffic(settings, project, entry["version"], now)
    entry.update(window)
    return entry


def traffic(settings: Settings, project: str, version: int | None, now: datetime | None = None) -> dict[str, Any]:
    """p50/p99 and request rate of the served version over the last WINDOW_MINUTES of the prediction log."""
    from mlops.analytics.report_data import serving_from_log

    since = (now or datetime.now(UTC)) - timedelta(minutes=WINDOW_MINUTES)
    source = f"gateway /v1/models; prediction log, last {WINDOW_MINUTES} min"
    try:
        logged = serving_from_log(settings, project, since)
    except Exception as exc:  # noqa: BLE001 - a damaged Parquet file must not take the page down
        return {"source": f"{source} (unreadable: {type(exc).__name__}: {exc})", "request_rate": None}
    rows = {v.version: v for v in logged.versions}
    served = rows.get(str(version)) if version is not None else None
    if served is None:
        # no row for it: none served in the window; no rows at all may also be a gateway run with --no-capture
        return {"source": source if rows else f"{source}: nothing logged", "request_rate": 0.0 if rows else None}
    return {"p50_ms": served.p50_ms, "p99_ms": served.p99_ms,
            "request_rate": served.requests / (WINDOW_MINUTES * 60), "source": source}


def deployments(view: GatewayView, project: str) -> list[dict[str, Any]]:
    """The project's current deployment (the route table keeps only the current one)."""
    route = view.routes.get(project)
    if route is None:
        return []
    deployed = datetime.fromtimestamp(route.deployed_at, UTC).isoformat() if route.deployed_at else None
    return [{"version": route.version, "backend": route.backend, "device": route.device,
             "replicas": _replicas(route.replicas), "deployed_at": deployed, "url": route.url, "app": route.app}]


def _replicas(value: Any) -> int | None:
    """A replica count: the number the gateway lists, or a deployment's upper bound (`max`, after memory sizing)."""
    if isinstance(value, dict):
        value = value.get("max", value.get("min"))
    return int(value) if isinstance(value, (int, float)) else None


def _get(url: str, headers: dict[str, str], timeout: float) -> str:
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    with opener.open(request, timeout=timeout) as response:
        return response.read().decode("utf-8", errors="replace")
