"""The toolkit dashboard's FastAPI app, mounted by Airflow's api-server at ``/toolkit``.

Airflow does not protect plugin apps, so every route here depends on Airflow's own ``get_user`` (the
``Authorization: Bearer`` token, or the ``_token`` cookie Airflow's UI sets and refreshes). Without a
valid login the JSON and static routes answer Airflow's 401/403, and the pages redirect to Airflow's login
with ``next`` pointing back at them.

The data is built by ``mlops.dashboard`` (MLflow, the gateway, YAMLs, reports) from the Airflow state
``airflow_state`` reads. Both run on this app's own two worker threads, never on the event loop nor on the
threadpool Airflow's sync routes share, and each answer is cached for a few seconds with one computation in
flight per key (``answer_cache``): a dashboard left open in many tabs costs one build per few seconds, an
answer past that comes back at once while the next one is built, and nothing here can starve Airflow's UI.
"""

from __future__ import annotations

import html
import math
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlencode

from mlops_airflow.dashboard.answer_cache import FRESH_SECONDS, AnswerCache

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mlops.settings import Settings

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"
STATIC = HERE / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # project names, report names: no paths
REPORT_COMMAND = "mlops report"


class LoginRequired(Exception):
    """A page asked for without a valid Airflow login: answered by a redirect to Airflow's login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def create_app(
    settings: Settings | None = None,
    read_airflow: Callable[[], Any] | None = None,
    cache_seconds: float = FRESH_SECONDS,
) -> FastAPI:
    """The dashboard app; ``read_airflow`` defaults to reading this process's Airflow metadata DB."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

    from airflow.api_fastapi.core_api.security import get_user

    if read_airflow is None:
        from mlops_airflow.dashboard.airflow_state import read_airflow_state as read_airflow

    def current_settings() -> Settings:
        if settings is not None:
            return settings
        from mlops.settings import get_settings

        return get_settings()

    cache = AnswerCache(fresh=cache_seconds)
    shells = {name: (PAGES / f"{name}.html").read_text() for name in ("overview", "project")}

    app = FastAPI(title="MLOps toolkit dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.cache = cache
    logged_in = [Depends(get_user)]

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        """Pages and reports send a browser without a valid login to Airflow's; the rest answer JSON."""
        if error.status_code in (401, 403) and _is_page(request):
            return _login_redirect(request)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    def airflow_state() -> Any:
        return cache.get("airflow", read_airflow)

    def overview() -> dict:
        from mlops.dashboard.overview import build_overview

        return _json_safe(build_overview(current_settings(), airflow_state()))

    def project(name: str) -> dict:
        from mlops.dashboard.overview import UnknownProject, build_project

        try:
            return _json_safe(build_project(current_settings(), name, airflow_state()))
        except UnknownProject as error:  # cached too: a typo'd URL reloaded in a loop costs nothing
            return {"_unknown": str(error), "name": error.name, "suggestions": list(error.suggestions)}

    @app.get("/", response_class=HTMLResponse, dependencies=logged_in)
    async def overview_page() -> HTMLResponse:
        return HTMLResponse(_shell(shells["overview"], root="", project=""))

    @app.get("/projects/{name}", response_class=HTMLResponse, dependencies=logged_in)
    async def project_page(name: str) -> HTMLResponse:
        return HTMLResponse(_shell(shells["project"], root="../", project=name))

    @app.get("/api/overview", dependencies=logged_in)
    async def overview_json() -> Response:
        answer = await _answer("overview", overview)
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    @app.get("/api/projects/{name}", dependencies=logged_in)
    async def project_json(name: str) -> Response:
        if not NAME.match(name):
            return JSONResponse({"detail": f"no project {name!r}", "suggestions": []}, status_code=404)
        answer = await _answer(("project", name), lambda: project(name))
        if isinstance(answer, dict) and "_unknown" in answer:
            return JSONResponse({"detail": answer["_unknown"], "suggestions": answer["suggestions"]},
                                status_code=404)
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    async def _answer(key: Any, compute: Callable[[], Any]) -> Any:
        """The cached build; a build that raised (the library should not) answers 500 saying why."""
        try:
            answer = await cache.aget(key, compute)
        except Exception as error:
            return JSONResponse({"detail": f"the dashboard could not be built: {type(error).__name__}: {error}"},
                                status_code=500)
        return answer

    @app.get("/reports/{name}", dependencies=logged_in)
    async def report(name: str) -> Response:
        path = _report_path(current_settings(), name) if NAME.match(name) else None
        if path is None or not path.is_file():
            command = REPORT_COMMAND if name == "toolkit" else f"{REPORT_COMMAND} --project {name}"
            what = "the toolkit report" if name == "toolkit" else f"the report of project {name!r}"
            return JSONResponse({"detail": f"{what} has not been generated yet: run `{command}` "
                                           f"(or `{REPORT_COMMAND}` for every project)"}, status_code=404)
        return FileResponse(path, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", dependencies=logged_in)
    async def static(name: str) -> Response:
        path = STATIC / name
        if not NAME.match(name) or path.suffix not in STATIC_TYPES or not path.is_file():
            return JSONResponse({"detail": f"no static file {name!r}"}, status_code=404)
        return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})

    def _login_redirect(request: Request) -> RedirectResponse:
        from airflow.api_fastapi.app import get_auth_manager

        back = _external_path(request)
        try:
            login = get_auth_manager().get_url_login(next_url=back)
        except Exception:  # an auth manager without a login page: Airflow's own login route picks one
            login = "/api/v2/auth/login?" + urlencode({"next": back})
        return RedirectResponse(login, status_code=307)

    return app


def _is_page(request: Any) -> bool:
    """What a browser navigates to (HTML), as opposed to what scripts fetch (JSON, JS, CSS)."""
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return request.method in ("GET", "HEAD") and not path.startswith(("/api/", "/static/"))


def _external_path(request: Any) -> str:
    """The path (and query) the browser asked for, mount prefix included: where the login sends it back."""
    path = request.scope.get("path", "/")
    root = request.scope.get("root_path", "")
    if root and not path.startswith(root):  # servers that strip the mount prefix from path
        path = root + path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _shell(text: str, root: str, project: str) -> str:
    """An HTML shell with where it sits (``root``: relative way back to /toolkit/) and its project."""
    return text.replace("{{root}}", html.escape(root, quote=True)).replace(
        "{{project}}", html.escape(project, quote=True))


def _report_path(settings: Settings, name: str) -> Path:
    from mlops.analytics.report_files import project_report_path, toolkit_report_path

    return toolkit_report_path(settings) if name == "toolkit" else project_report_path(settings, name)


def _json_safe(value: Any) -> Any:
    """Plain JSON: datetimes as ISO text, NaN/inf as null (JSON has neither), tuples/sets as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


_APP: Any = None
_APP_LOCK = threading.Lock()


def shared_app() -> FastAPI:
    """The one app of this process, built on the first request the plugin's lazy mount forwards."""
    global _APP
    with _APP_LOCK:
        if _APP is None:
            _APP = create_app()
        return _APP
