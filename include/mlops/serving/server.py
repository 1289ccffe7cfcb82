"""Run the serving gateway with uvicorn: `serve(settings)` for `mlops up`, `main(argv)` for `mlops serve`.

Binds to `settings.bind_host` (127.0.0.1 by default) on `DEFAULT_PORT` unless told otherwise.
Keys come from `MLOPS_API_KEYS` or `$MLOPS_HOME/secrets/api_keys` (created with a fresh key
when neither has one); the key itself is never printed, only where it is stored.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings

DEFAULT_PORT = 8000


def serve(
    settings: Settings,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    max_body_bytes: int = 1_000_000,
    capture: bool = True,
) -> None:
    """Serve every registered model until interrupted (blocks)."""
    import uvicorn

    from mlops.serving.api_keys import ensure_api_key, load_api_keys
    from mlops.serving.gateway import create_app

    ensure_api_key(settings)
    app = create_app(settings, load_api_keys(settings), max_body_bytes=max_body_bytes, capture=capture, freeze_gc=True)
    uvicorn.run(app, host=host or settings.bind_host, port=port, log_level="info", access_log=False)


def main(argv: list[str] | None = None) -> int:
    """`mlops serve [--port N] [--host H] [--max-body-bytes N] [--no-capture]`."""
    import os

    from mlops.serving.api_keys import ENV_VAR, api_keys_file
    from mlops.settings import get_settings

    parser = argparse.ArgumentParser(prog="mlops serve", description="Serve the registered MLX models over HTTP.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=None, help="bind address (default: MLOPS_BIND_HOST, 127.0.0.1)")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000, help="larger request bodies get 413")
    parser.add_argument(
        "--no-capture", dest="capture", action="store_false",
        help="do not log predictions (no drift or accuracy monitoring from this gateway; feedback answers 503)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    source = ENV_VAR if os.environ.get(ENV_VAR, "").strip() else api_keys_file(settings)
    print(
        f"serving gateway on http://{args.host or settings.bind_host}:{args.port} "
        f"(API keys from {source}; prediction capture {'on' if args.capture else 'off'})",
        file=sys.stderr,
    )
    serve(settings, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes, capture=args.capture)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
