"""`build_bento`: a registered MLX model version packaged as a BentoML 1.4 Bento that really serves."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from mlops_testing import example_inputs, free_port, mlx_device, wait_for
from serving_support import DIFFUSION, MLP

from mlops.serving.bento import bento_name, bentoml_store, build_bento, python_packages

pytestmark = pytest.mark.timeout(120)


def _expected(folder: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from mlops.training.artifacts import restore_session

    return restore_session(folder).predict(inputs)


@pytest.fixture(scope="module")
def built(served) -> dict:
    return build_bento(served.settings, MLP, served.versions[MLP][0])


def _creation_time(settings, tag: str):
    import bentoml

    with bentoml_store(settings.home / "bentoml"):
        return bentoml.get(tag).creation_time


def test_tag_labels_and_contents(served, built):
    version = served.versions[MLP][0]
    assert built["created"] is True
    assert built["tag"] == f"{bento_name(MLP)}:v{version}" == f"serve_mlp:v{version}"
    path = Path(built["path"])
    assert path.is_relative_to(served.home / "bentoml" / "bentos")
    labels = built["labels"]
    assert labels["project"] == labels["model"] == MLP
    assert labels["model_version"] == str(version)
    assert labels["family"] == "mlp_classifier"
    assert labels["dtype"] == "float32"
    assert labels["mlx_version"] == importlib.metadata.version("mlx")
    uname = os.uname()
    assert labels["built_for"] == f"{uname.sysname.lower()}-{uname.machine.lower()}"
    # The device MLX runs on here (where `bentoml serve` runs the Bento, from this environment).
    assert labels["device"] == mlx_device()
    src = path / "src"
    assert (src / "service.py").is_file()
    assert (src / "model" / "model.safetensors").is_file() and (src / "model" / "model.json").is_file()
    assert (src / "mlops" / "training" / "artifacts.py").is_file()
    assert (src / "mlops" / "training" / "families" / "mlp_classifier.py").is_file()
    requirements = (path / "env" / "python" / "requirements.txt").read_text()
    assert f"mlx[cpu]=={importlib.metadata.version('mlx')}" in requirements
    assert "numpy==" in requirements


def test_python_packages_per_platform():
    mlx = importlib.metadata.version("mlx")
    assert python_packages("Darwin")[0] == f"mlx=={mlx}"
    assert python_packages("Linux")[0] == f"mlx[cpu]=={mlx}"


def test_bento_names_are_sanitised():
    assert bento_name("My Project/v2_") == "my-project-v2"
    assert bento_name("serve_mlp") == "serve_mlp"
    with pytest.raises(ValueError):
        bento_name("__")


def test_second_build_is_a_no_op(served, built, monkeypatch):
    import bentoml

    before = _creation_time(served.settings, built["tag"])

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt an existing Bento")

    monkeypatch.setattr(bentoml.bentos, "build", no_rebuild)
    again = build_bento(served.settings, MLP, served.versions[MLP][0])
    assert again["created"] is False
    assert again["tag"] == built["tag"] and again["path"] == built["path"] and again["labels"] == built["labels"]
    assert _creation_time(served.settings, built["tag"]) == before


def test_bento_service_predicts_like_the_model(built):
    src = Path(built["path"]) / "src"
    spec = importlib.util.spec_from_file_location("bento_service_under_test", src / "service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service = module.MLXModel()  # the bentoml Service: instantiates the inner class
    inputs = example_inputs(service.signature, 3, seed=7)
    got = service.predict({name: value.tolist() for name, value in inputs.items()})
    expected = _expected(src / "model", inputs)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[name]), value, rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="missing"):
        service.predict({})


def test_bento_src_is_self_contained(built):
    """The Bento's own mlops copy (not the repo's) restores the model."""
    src = Path(built["path"]) / "src"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import mlops, pathlib; "
        "assert pathlib.Path(mlops.__file__).is_relative_to(sys.argv[1]), mlops.__file__; "
        "from mlops.training.artifacts import restore_session; restore_session(pathlib.Path(sys.argv[1]) / 'model')"
    )
    subprocess.run([sys.executable, "-c", code, str(src)], check=True, timeout=60, cwd=src)


@contextlib.contextmanager
def _bento_serving(served, tag: str, tmp_path: Path):
    """`bentoml serve <tag>` on a free 127.0.0.1 port, ready (its /readyz answers 200); stopped by PID.

    Yields {"url", "process", "log"}; stopping it inside the block is allowed (`_stop_bento`).
    """
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(served.home / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(bentoml_cli), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        wait_for(ready, 60, f"bentoml serve {tag} ({log_path})", interval=0.3)
        yield {"url": url, "process": process, "log": log_path}
    finally:
        _stop_bento(process)


def _stop_bento(process: subprocess.Popen) -> None:
    """SIGTERM the arbiter (it stops its workers), SIGKILL its session if it lingers; by PID only."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_bentoml_serve_answers_http(served, built, tmp_path):
    src = Path(built["path"]) / "src"
    from mlops.training.artifacts import read_manifest
    from mlops.training.families import get_family

    manifest = read_manifest(src / "model")
    inputs = example_inputs(get_family(manifest["family"]).signature(manifest["hyperparameters"]), 3, seed=7)
    with _bento_serving(served, built["tag"], tmp_path) as bento:
        got = _post(f"{bento['url']}/predict", {"inputs": {k: v.tolist() for k, v in inputs.items()}})
    expected = _expected(src / "model", inputs)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[name]), value, rtol=1e-5, atol=1e-6)


def test_gateway_routes_to_a_real_bento(served, built, tmp_path):
    """The gateway's `bentoml` backend in front of `bentoml serve` of the built Bento: predictions in
    both body forms, readiness through the Bento's /readyz, and a stopped Bento named in the 502/503."""
    from fastapi.testclient import TestClient

    from mlops.monitoring.prediction_log import read_predictions
    from mlops.serving.gateway import create_app
    from mlops.serving.routes import Route, write_route

    version = served.versions[MLP][0]
    key = "bento-route-key"
    headers = {"X-API-Key": key}
    x = np.random.default_rng(11).standard_normal((5, 32)).astype(np.float32)
    expected = _expected(Path(built["path"]) / "src" / "model", {"x": x})
    with _bento_serving(served, built["tag"], tmp_path) as bento:
        target = f"{bento['url']}/predict"
        write_route(served.settings, Route(project=MLP, version=version, url=target, backend="bentoml", device=built["labels"]["device"]))
        try:
            app = create_app(served.settings, {key})
            with TestClient(app) as client:
                # What the gateway answers is what the Bento answers, and what the model predicts.
                direct = _post(target, {"inputs": {"x": x.tolist()}})
                batch = client.post(f"/v1/projects/{MLP}/models/latest/predict", json={"inputs": {"x": x.tolist()}}, headers=headers)
                assert batch.status_code == 200, batch.text
                body = batch.json()
                assert (body["model"], body["version"]) == (MLP, version)
                assert body["outputs"] == direct
                assert body["outputs"]["label"] == expected["label"].tolist()
                np.testing.assert_allclose(body["outputs"]["probabilities"], expected["probabilities"], rtol=1e-5, atol=1e-6)
                # Captured as served by the Bento, with the route's device.
                app.state.gateway.capture.flush()
                logged = read_predictions(served.settings, MLP, since=datetime.now(UTC) - timedelta(hours=1))
                rows = logged[logged["request_id"] == body["request_id"]]
                assert rows["row"].tolist() == list(range(5))
                assert set(zip(rows["backend"], rows["device"], rows["version"])) == {("bentoml", built["labels"]["device"], version)}
                assert rows["out.label"].tolist() == [float(v) for v in expected["label"]]
                records = client.post(
                    f"/v1/projects/{MLP}/models/{version}/predict",
                    json={"instances": [{"x": row.tolist()} for row in x[:2]]}, headers=headers,
                )
                assert records.status_code == 200, records.text
                assert [p["label"] for p in records.json()["predictions"]] == expected["label"][:2].tolist()
                np.testing.assert_allclose(
                    [p["probabilities"] for p in records.json()["predictions"]], expected["probabilities"][:2], rtol=1e-5, atol=1e-6
                )

                listed = {m["name"]: m for m in client.get("/v1/models", headers=headers).json()["models"]}
                assert (listed[MLP]["backend"], listed[MLP]["serving_version"]) == ("bentoml", version)
                assert listed[MLP]["deployment"]["url"] == target
                routes = client.get("/v1/routes", headers=headers).json()
                assert routes["routes"][MLP] == {"version": version, "url": target, "backend": "bentoml"}

                # Ready: the Bento's /readyz answers, the other project's model loads here.
                ready = client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["models"] == {MLP: version, DIFFUSION: served.versions[DIFFUSION][-1]}

                _stop_bento(bento["process"])
                down = client.post(f"/v1/projects/{MLP}/models/latest/predict", json={"inputs": {"x": x.tolist()}}, headers=headers)
                assert down.status_code == 502, down.text
                assert down.json()["detail"].startswith(f"bentoml backend of {MLP} v{version} at {target}: "), down.text
                not_ready = client.get("/readyz")
                assert not_ready.status_code == 503, not_ready.text
                reason = not_ready.json()["reason"]
                assert f"bentoml deployment of {MLP} at {bento['url']}/readyz" in reason, reason
                # Versions the route does not serve still run in the gateway itself.
                assert client.post(f"/v1/projects/{DIFFUSION}/models/latest/predict", json={"inputs": {"noise": [[0.0, 0.0]]}}, headers=headers).status_code == 200
        finally:
            write_route(served.settings, None, MLP)


def test_another_project_in_the_same_process(served, built):
    """A second build gets its own service module and leaves BENTOML_HOME as it was."""
    home_before = os.environ.get("BENTOML_HOME")
    other = build_bento(served.settings, DIFFUSION, served.versions[DIFFUSION][0])
    assert os.environ.get("BENTOML_HOME") == home_before
    assert other["created"] is True and other["tag"] == f"serve_diffusion:v{served.versions[DIFFUSION][0]}"
    assert other["labels"]["family"] == "tiny_diffusion"
    src = Path(other["path"]) / "src"
    assert "serve_diffusion" in (src / "service.py").read_text()
    spec = importlib.util.spec_from_file_location("bento_service_diffusion", src / "service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service = module.MLXModel()
    inputs = example_inputs(service.signature, 2, seed=7)
    got = service.predict({name: value.tolist() for name, value in inputs.items()})
    for name, value in _expected(src / "model", inputs).items():
        np.testing.assert_allclose(np.asarray(got[name]), value, rtol=1e-5, atol=1e-5)


def test_bentoml_runs_uv_from_the_venv_not_from_path(tmp_path: Path):
    """A newcomer has no uv on PATH and the venv has no pip: BentoML must take the locked uv."""
    code = (
        "import json, shutil, sys, subprocess\n"
        "from bentoml._internal.configuration import get_uv_command\n"
        "cmd = get_uv_command()\n"
        "out = subprocess.run([*cmd, '--version'], capture_output=True, text=True, check=True).stdout\n"
        "print(json.dumps({'cmd': cmd, 'version': out, 'on_path': shutil.which('uv')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PATH")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    # With no uv in the system folders (a newcomer's machine), the venv's: the version uv.lock pins.
    assert found["cmd"] == ([sys.executable, "-m", "uv"] if found["on_path"] is None else [found["on_path"]]), found
    if found["on_path"] is None:
        assert found["version"].startswith(f"uv {importlib.metadata.version('uv')}")
