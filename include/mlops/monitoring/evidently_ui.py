"""`mlops evidently-ui`: Evidently's own UI over the drift workspace, behind a login.

Evidently 0.7's UI (`evidently.ui.service.app.create_app`) guards only writes (with its
`secret`); reads are open to anyone who reaches the port. We serve the same app with uvicorn
on 127.0.0.1 wrapped in HTTP Basic authentication (user `admin`, password generated in
`<state>/secrets/evidently_ui_password`), and give it that password as its write secret too.
"""

from __future__ import annotations

import base64
import hmac
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.settings import Settings

USER = "admin"
PASSWORD_SECRET = "evidently_ui_password"
DEFAULT_PORT = 8002


class BasicAuth:
    """Pure ASGI middleware: every HTTP request needs `Authorization: Basic` with the right user and password."""

    def __init__(self, app: Any, user: str, password: str, realm: str = "mlops"):
        self.app = app
        self.expected = ("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()).encode()
        self.realm = realm

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send({
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"www-authenticate", f'Basic realm="{self.realm}"'.encode()), (b"content-type", b"text/plain")],
                })
                await send({"type": "http.response.body", "body": b"login required (user admin; password in secrets/)"})
                return
        await self.app(scope, receive, send)


def create_ui_app(settings: Settings, host: str, port: int) -> Any:
    from evidently.ui.service.app import create_app, get_config

    from mlops.monitoring.evidently_workspace import workspace_dir
    from mlops.secrets import ensure_secret

    password = ensure_secret(settings, PASSWORD_SECRET)
    workspace = workspace_dir(settings)
    workspace.mkdir(parents=True, exist_ok=True)
    config = get_config(host=host, port=port, workspace=str(workspace), secret=password)
    return BasicAuth(create_app(config), USER, password)


def main(argv: list[str] | None = None) -> int:
    """`mlops evidently-ui [--host H] [--port N]`."""
    import argparse

    import uvicorn

    from mlops.settings import get_settings

    parser = argparse.ArgumentParser(prog="mlops evidently-ui", description="Evidently's UI over the drift reports.")
    parser.add_argument("--host", default=None, help="bind address (default: MLOPS_BIND_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    settings = get_settings()
    host = args.host or settings.bind_host
    uvicorn.run(create_ui_app(settings, host, args.port), host=host, port=args.port, log_level="warning")
    return 0
