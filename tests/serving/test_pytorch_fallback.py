"""The gateway's PyTorch fallback against a real MLflow registry, next to a real MLX project.

Registered here (own MLOPS_HOME): a trained MLX project; a version whose MLmodel has only a
`pytorch` flavor and a tensor signature (written by hand, so no torch is needed to log it);
one without a signature; a scikit-learn-only one; one whose artifacts are missing. torch is
not in the default environment, so the pytorch version is listed but answers 503 naming the
extra. The last test runs a real torch model and needs the extra (`uv sync --extra pytorch`).

Unservable versions answer 503, not 409: the fix is on the server's side (install the extra,
re-log the model with a signature or an MLX form, restore the artifact store), never in the
request, and it is the same answer as for the missing extra.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving_support import train_and_register

from mlops.serving import torch_backend
from mlops.serving.gateway import create_app
from mlops.serving.registry_models import ModelCatalog

pytestmark = pytest.mark.timeout(180)

KEY = "fallback-key"
HEADERS = {"X-API-Key": KEY}
MLX_PROJECT, TORCH_ONLY, UNSIGNED, SKLEARN_ONLY, BROKEN = (
    "fb_mlx", "fb_torch_only", "fb_torch_unsigned", "fb_sklearn_only", "fb_broken"
)
TENSOR_SIGNATURE = {
    "inputs": json.dumps([
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "x"},
        {"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1, 3]}, "name": "tokens"},
    ]),
    "outputs": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}]),
}
PYTORCH_FLAVOR = {"pytorch": {"model_data": "data", "pytorch_version": "2.13.0", "code": None}}


def _url(project: str, model: str = "latest") -> str:
    return f"/v1/projects/{project}/models/{model}/predict"


def _write_mlmodel(folder, flavors: dict, signature: dict | None) -> None:
    import yaml

    (folder / "data").mkdir(parents=True)
    (folder / "data" / "model.pt2").write_bytes(b"weights would be here")
    mlmodel = {"artifact_path": "model", "flavors": flavors, "mlflow_version": "3.17.2"}
    if signature is not None:
        mlmodel["signature"] = signature
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def _register(settings, name: str, source: str, run_id: str | None = None) -> int:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # already registered: add a version
    return int(client.create_model_version(name, source=source, run_id=run_id).version)


def _register_mlmodel(settings, name: str, flavors: dict, signature: dict | None, tmp) -> int:
    """Log a hand-written MLflow model folder as a run's artifacts and register it."""
    import mlflow

    from mlops.tracking.client import configure, ensure_experiment

    configure(settings)
    folder = tmp / name / "model"
    _write_mlmodel(folder, flavors, signature)
    mlflow.set_experiment(experiment_id=ensure_experiment(settings, name, {}))  # artifacts under MLOPS_HOME
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), artifact_path="model")
    return _register(settings, name, f"{run.info.artifact_uri}/model", run.info.run_id)


def _settings_for(home, mp):
    from mlops.settings import Settings

    mp.setenv("MLOPS_HOME", str(home))
    mp.delenv("MLOPS_TRACKING_URI", raising=False)
    return Settings.from_env()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The registry: one MLX project and four versions that are not MLX (one of them broken)."""
    home = tmp_path_factory.mktemp("fallback-home")
    tmp = tmp_path_factory.mktemp("fallback-models")
    with pytest.MonkeyPatch.context() as mp:
        settings = _settings_for(home, mp)
        train_and_register(settings, MLX_PROJECT, "mlp_classifier")
        _register_mlmodel(settings, TORCH_ONLY, PYTORCH_FLAVOR, TENSOR_SIGNATURE, tmp)
        _register_mlmodel(settings, UNSIGNED, PYTORCH_FLAVOR, None, tmp)
        _register_mlmodel(settings, SKLEARN_ONLY, {"sklearn": {"pickled_model": "model.pkl"}}, None, tmp)
        late = tmp / BROKEN / "model"  # registered before its files exist: the download fails
        _register(settings, BROKEN, str(late))
    return {"settings": settings, "late": late}


@pytest.fixture
def client(store):
    """The gateway in the default environment: no torch (hidden where the extra happens to be installed;
    per test, so the real-torch test below sees it)."""
    with pytest.MonkeyPatch.context() as mp:
        if importlib.util.find_spec("torch") is not None:
            mp.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
            mp.setattr(torch_backend, "torch_installed", lambda: False)
        app = create_app(store["settings"], {KEY})
        with TestClient(app) as c:
            yield c


def _models(client) -> dict[str, dict]:
    response = client.get("/v1/models", headers=HEADERS)
    assert response.status_code == 200, response.text
    return {m["name"]: m for m in response.json()["models"]}


def test_models_lists_every_version_with_its_backend(client):
    models = _models(client)
    assert set(models) == {MLX_PROJECT, TORCH_ONLY, UNSIGNED, SKLEARN_ONLY, BROKEN}

    mlx = models[MLX_PROJECT]
    assert (mlx["backend"], mlx["device"], mlx["replicas"], mlx["family"]) == ("mlx", "cpu", 1, "mlp_classifier")
    assert mlx["versions"][0]["servable"] is True and mlx["versions"][0]["reason"] is None

    torch_only = models[TORCH_ONLY]
    assert (torch_only["backend"], torch_only["device"], torch_only["replicas"]) == ("pytorch", None, 0)
    assert torch_only["signature"] == {
        "inputs": {
            "x": {"dtype": "float32", "shape": [-1, 4]},
            "tokens": {"dtype": "int32", "shape": [-1, 3]},  # int64 on the model side
        },
        "outputs": {"output": {"dtype": "float32", "shape": [-1, 2]}},
    }
    version = torch_only["versions"][0]
    assert version["servable"] is False and version["family"] is None
    assert "uv sync --extra pytorch" in version["reason"] and "download.pytorch.org/whl/cpu" in version["reason"]

    unsigned = models[UNSIGNED]["versions"][0]
    assert (unsigned["backend"], unsigned["servable"]) == ("pytorch", False)
    assert "no input signature" in unsigned["reason"] and "signature=infer_signature" in unsigned["reason"]
    assert models[UNSIGNED]["signature"] is None

    sklearn = models[SKLEARN_ONLY]["versions"][0]
    assert (sklearn["backend"], sklearn["device"], sklearn["servable"]) == ("unsupported", None, False)
    assert "['sklearn']" in sklearn["reason"]

    broken = models[BROKEN]["versions"][0]
    assert (broken["backend"], broken["servable"]) == ("unknown", False)
    assert broken["reason"].startswith("could not read it:")


def test_pytorch_version_answers_503_naming_the_extra(client):
    body = {"inputs": {"x": [[0.1, 0.2, 0.3, 0.4]], "tokens": [[1, 2, 3]]}}
    response = client.post(_url(TORCH_ONLY), json=body, headers=HEADERS)
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert f"{TORCH_ONLY} v1 (pytorch)" in detail and "--extra pytorch" in detail
    # the signature still validates the request first: a wrong shape is the client's 422
    bad = client.post(_url(TORCH_ONLY), json={"inputs": {"x": [[0.1]], "tokens": [[1, 2, 3]]}}, headers=HEADERS)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "inputs", "x"]


def test_mlx_version_still_predicts(client):
    response = client.post(_url(MLX_PROJECT), json={"inputs": {"x": [[0.1] * 32] * 3}}, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert len(response.json()["outputs"]["label"]) == 3


@pytest.mark.parametrize(
    ("project", "says"),
    [
        (SKLEARN_ONLY, "(unsupported) cannot be served here: flavors ['sklearn']"),
        (UNSIGNED, "(pytorch) cannot be served here: it has no input signature"),
        (BROKEN, "(unknown) cannot be served here: could not read it:"),
    ],
)
def test_unservable_versions_answer_503_with_the_reason(client, project, says):
    response = client.post(_url(project, "1"), json={"inputs": {"x": [[0.0]]}}, headers=HEADERS)
    assert response.status_code == 503, response.text
    assert f"{project} v1 {says}" in response.json()["detail"]


def test_readiness_ignores_what_can_never_be_served_but_waits_for_a_failed_download(client, store):
    catalog: ModelCatalog = client.app.state.gateway.catalog
    catalog.ensure_scanned()
    assert {e.name for e in catalog.latest()} == {MLX_PROJECT, BROKEN}
    ready = client.get("/readyz")
    assert ready.status_code == 503 and f"{BROKEN} v1" in ready.json()["reason"]

    # the artifacts appear (the store was down): the next reload retries the version, not the others
    mlx_entry = catalog.get(MLX_PROJECT)
    _write_mlmodel(store["late"], PYTORCH_FLAVOR, TENSOR_SIGNATURE)
    client.app.state.reload()
    assert catalog.get(MLX_PROJECT) is mlx_entry  # loaded session kept
    broken = _models(client)[BROKEN]
    assert broken["backend"] == "pytorch" and "--extra pytorch" in broken["versions"][0]["reason"]
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["models"] == {MLX_PROJECT: 1}


def test_signature_conversion_rejects_what_the_gateway_cannot_validate():
    def contract(inputs: list[dict]) -> torch_backend.TensorContract:
        return torch_backend.contract_from_mlmodel({"signature": {"inputs": json.dumps(inputs), "outputs": None}})

    unnamed = contract([{"type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": [-1, 2, 2]}}])
    assert unnamed.signature["inputs"] == {"input": {"dtype": "int32", "shape": [-1, 2, 2], "range": [0, 256]}}
    assert unnamed.input_dtypes == {"input": "uint8"} and unnamed.output_names == []
    with pytest.raises(torch_backend.SignatureProblem, match="column-based"):
        contract([{"type": "double", "name": "a"}])
    with pytest.raises(torch_backend.SignatureProblem, match="'flag' is a bool tensor"):
        contract([{"type": "tensor", "tensor-spec": {"dtype": "bool", "shape": [-1]}, "name": "flag"}])
    with pytest.raises(torch_backend.SignatureProblem, match="scalar"):
        contract([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": []}, "name": "s"}])


# --- with the extra installed: real PyTorch inference ---------------------------------------


def test_real_pytorch_models_predict_through_the_gateway(tmp_path_factory):
    """A torch.export (pt2, MLflow's default) model with two inputs, and a pickled one with dropout."""
    torch = pytest.importorskip("torch", reason="PyTorch is the optional extra: MLOPS_EXTRAS=pytorch ./run test tests/serving/test_pytorch_fallback.py")
    import mlflow
    import mlflow.pytorch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from mlops.tracking.client import configure, ensure_experiment

    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.embed = torch.nn.Linear(4, 2), torch.nn.Embedding(10, 2)

        def forward(self, x, tokens):
            return self.linear(x) + self.embed(tokens).sum(dim=1)

    torch.manual_seed(0)
    exported_model = TwoInputs().eval()
    pickled_model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    tokens = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.int64)
    two_inputs = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 4), "x"), TensorSpec(np.dtype("int64"), (-1, 3), "tokens")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 2))]),
    )
    one_input = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 4))]), outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 2))])
    )
    with pytest.MonkeyPatch.context() as mp:
        settings = _settings_for(tmp_path_factory.mktemp("real-torch-home"), mp)
        configure(settings)
        mlflow.set_experiment(experiment_id=ensure_experiment(settings, "real_torch", {}))
        with mlflow.start_run():
            exported = mlflow.pytorch.log_model(
                exported_model, name="exported", input_example=(x, tokens), signature=two_inputs,
                serialization_format="pt2",
            )
            pickled = mlflow.pytorch.log_model(
                pickled_model, name="pickled", signature=one_input, serialization_format="pickle"
            )
        mlflow.register_model(exported.model_uri, "torch_exported")
        mlflow.register_model(pickled.model_uri, "torch_pickled")

    with TestClient(create_app(settings, {KEY})) as c:
        models = _models(c)
        assert {m["name"]: (m["backend"], m["device"]) for m in models.values()} == {
            "torch_exported": ("pytorch", "cpu"), "torch_pickled": ("pytorch", "cpu")
        }
        assert models["torch_pickled"]["signature"]["inputs"] == {"input": {"dtype": "float32", "shape": [-1, 4]}}

        body = {"inputs": {"x": x.tolist(), "tokens": tokens.tolist()}}
        response = c.post(_url("torch_exported"), json=body, headers=HEADERS)
        assert response.status_code == 200, response.text
        with torch.inference_mode():
            expected = exported_model(torch.from_numpy(x), torch.from_numpy(tokens)).numpy()
        np.testing.assert_allclose(response.json()["outputs"]["output"], expected, rtol=1e-5, atol=1e-6)
        records = c.post(
            _url("torch_exported"),
            json={"instances": [{"x": x[i].tolist(), "tokens": tokens[i].tolist()} for i in range(3)]},
            headers=HEADERS,
        )
        np.testing.assert_allclose([p["output"] for p in records.json()["predictions"]], expected, rtol=1e-5, atol=1e-6)

        # an operator who forbids pickles gets a 503 saying which setting refused it; a failed load is not cached
        body = {"inputs": {"input": x.tolist()}}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
            refused = c.post(_url("torch_pickled"), json=body, headers=HEADERS)
        assert refused.status_code == 503 and "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" in refused.json()["detail"]
        first = c.post(_url("torch_pickled"), json=body, headers=HEADERS)
        second = c.post(_url("torch_pickled"), json=body, headers=HEADERS)
        assert first.status_code == 200, first.text
        with torch.inference_mode():
            expected = pickled_model.eval()(torch.from_numpy(x)).numpy()  # eval: dropout off, deterministic
        np.testing.assert_allclose(first.json()["outputs"]["output"], expected, rtol=1e-5, atol=1e-6)
        assert second.json()["outputs"] == first.json()["outputs"]
        listed = _models(c)["torch_exported"]["versions"][0]
        assert (listed["servable"], listed["loaded"], listed["device"]) == (True, True, "cpu")
