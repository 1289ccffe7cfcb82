"""The test browser (tests/mlops_testing.py: browser_install, render_page) sees what a person's browser would.

A page whose script throws must report the error; a self-contained plotly report (plotly.js inlined),
served over loopback HTTP, must report none and draw its chart. The browser is Chromium from the
@sparticuz/chromium npm package, installed by `npm ci` from tests/emulators/browser/ (no browser download).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

from mlops_testing import render_page


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """http://127.0.0.1:<port> serving `folder`, stopped on exit."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_throwing_script_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><head><title>broken report</title></head><body><p>before</p>"
        '<script>throw new Error("deliberate failure in the report");</script></body></html>'
    )

    seen = render_page(page.as_uri())

    assert seen["title"] == "broken report"
    assert any("pageerror" in error and "deliberate failure in the report" in error for error in seen["errors"]), seen
    assert seen["charts"] == 0


def test_a_self_contained_plotly_report_renders_without_script_errors(tmp_path: Path) -> None:
    import plotly.graph_objects as go
    import plotly.io as pio

    figure = go.Figure(go.Scatter(x=[1, 2, 3, 4], y=[0.9, 0.7, 0.8, 0.95], mode="lines+markers", name="accuracy"))
    figure.update_layout(title="Model accuracy")
    report = tmp_path / "report.html"
    pio.write_html(figure, report, include_plotlyjs=True, full_html=True)
    assert "cdn.plot.ly" not in report.read_text()[:2000]  # plotly.js is inlined, nothing to fetch

    with serve(tmp_path) as base:
        seen = render_page(f"{base}/report.html")

    assert seen["errors"] == [], seen["errors"]
    assert seen["charts"] >= 1, seen
    assert seen["svgs"] >= 1, seen
