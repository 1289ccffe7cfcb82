"""Every family's prediction contract: `signature` is JSON-able and `predict` honours it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlops_testing import example_inputs, trained_session

from mlops.training.artifacts import restore_session, save_model
from mlops.training.families import family_names

pytestmark = pytest.mark.timeout(120)

EXPECTED_IO = {
    "mlp_classifier": (["x"], ["label", "probabilities"]),
    "federated_mlp": (["x"], ["label", "probabilities"]),
    "tiny_lm": (["tokens"], ["next_token_logits"]),
    "dual_encoder": (["image"], ["embedding"]),
    "tiny_diffusion": (["noise"], ["samples"]),
    "meta_learner": (["x"], ["y"]),
}


def _check(signature: dict, outputs: dict, batch: int) -> None:
    assert sorted(outputs) == sorted(signature["outputs"])
    for name, spec in signature["outputs"].items():
        value = outputs[name]
        assert isinstance(value, np.ndarray), name
        assert value.dtype == np.dtype(spec["dtype"]), (name, value.dtype)
        assert list(value.shape) == [batch if i == 0 else d for i, d in enumerate(spec["shape"])], (name, value.shape)
        assert np.isfinite(value).all(), name


@pytest.mark.parametrize("name", family_names())
def test_predict_follows_the_signature(name: str):
    family, hp, session = trained_session(name, [])
    signature = family.signature(hp)
    assert json.loads(json.dumps(signature)) == signature
    inputs_names, output_names = EXPECTED_IO[name]
    assert sorted(signature["inputs"]) == inputs_names
    assert sorted(signature["outputs"]) == output_names
    for spec in [*signature["inputs"].values(), *signature["outputs"].values()]:
        assert spec["dtype"] in ("float32", "int32") and spec["shape"][0] == -1

    inputs = example_inputs(signature, batch=5)
    first = session.predict(inputs)
    _check(signature, first, 5)
    again = session.predict(inputs)  # deterministic, and predict changes no weights
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    single = session.predict({k: v[:1] for k, v in inputs.items()})  # batching does not change a row
    _check(signature, single, 1)
    for key in first:
        np.testing.assert_allclose(single[key], first[key][:1], rtol=1e-4, atol=1e-5)


def test_family_outputs_mean_what_they_say():
    family, hp, session = trained_session("mlp_classifier", [])
    out = session.predict(example_inputs(family.signature(hp), 4))
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["label"], out["probabilities"].argmax(axis=1))

    family, hp, session = trained_session("dual_encoder", [])
    out = session.predict(example_inputs(family.signature(hp), 4))
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-4)

    family, hp, session = trained_session("tiny_lm", [])
    tokens = example_inputs(family.signature(hp), 2)["tokens"]
    import mlx.core as mx

    full = np.array(session.model(mx.array(tokens)))[:, -1, :]
    np.testing.assert_allclose(session.predict({"tokens": tokens})["next_token_logits"], full, rtol=1e-5, atol=1e-5)


CASES = [
    ("mlp_classifier", ["quantization"]),
    ("tiny_lm", ["lora"]),
    ("meta_learner", ["lora", "quantization"]),
    ("tiny_diffusion", ["quantization"]),
]


@pytest.mark.parametrize(("name", "techniques"), CASES, ids=[f"{n}-{'+'.join(t)}" for n, t in CASES])
def test_restored_model_predicts_the_same(name: str, techniques: list[str], tmp_path: Path):
    family, hp, session = trained_session(name, techniques)
    signature = family.signature(hp)
    inputs = example_inputs(signature, batch=3, seed=1)
    before = session.predict(inputs)
    save_model(tmp_path / "m", session, {"family": name, "hyperparameters": hp, "techniques": techniques, "seed": 0})
    after = restore_session(tmp_path / "m").predict(inputs)
    _check(signature, after, 3)
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)
