"""`mlops serve` for real: uvicorn in a subprocess on a free 127.0.0.1 port, real HTTP calls, then stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from serving_support import MLP

pytestmark = pytest.mark.timeout(90)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize("capture", [True, False], ids=["capture", "no-capture"])
def test_serve_main_answers_real_http(served, capture):
    port = _free_port()
    env = {**os.environ, "MLOPS_HOME": str(served.home), "MLOPS_API_KEYS": "real-key"}
    env.pop("MLOPS_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops.serving.server", "--port", str(port), *([] if capture else ["--no-capture"])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _call(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        status, body = _call(f"{base}/v1/projects/{MLP}/models/latest/predict", {"inputs": {"x": [[0.1] * 32] * 2}}, "real-key")
        assert status == 200 and len(body["outputs"]["label"]) == 2
        assert ("request_id" in body) is capture
        feedback = _call(f"{base}/v1/projects/{MLP}/feedback", {"request_id": body.get("request_id", "a" * 32), "labels": [0, 1]}, "real-key")
        assert feedback[0] == (200 if capture else 503), feedback
        assert _call(f"{base}/v1/projects/{MLP}/models/latest/predict", {"inputs": {"x": [[0.1] * 32]}})[0] == 401
        assert _call(f"{base}/readyz")[0] == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
            metrics = dict(line.rsplit(" ", 1) for line in response.read().decode().splitlines() if line and line[0] != "#")
        # start-up state and the loaded model are frozen out of full collections (gc_freeze.py)
        assert int(metrics["mlops_gateway_gc_frozen_objects"]) > 10_000, metrics
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # SIGINT is uvicorn's graceful stop: the lifespan ran to its end (the capture writer flushed) and it exited 0.
    stderr = process.stderr.read().decode()
    assert process.returncode == 0, stderr[-3000:]
    assert "Waiting for application shutdown." in stderr and "Application shutdown complete." in stderr, stderr[-3000:]
    assert not os.path.exists(served.home / "secrets" / "api_keys")  # env keys: no file written
