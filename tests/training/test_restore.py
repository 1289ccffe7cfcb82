"""A trained model restored from its saved weights scores exactly as it did (what evaluate relies on)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlops_testing import trained_session

from mlops.training.artifacts import restore_session, save_model

CASES = [
    ("mlp_classifier", []),
    ("mlp_classifier", ["quantization"]),
    ("mlp_classifier", ["distillation", "pruning"]),
    ("tiny_lm", ["lora"]),
    ("tiny_lm", ["lora", "quantization"]),
    ("dual_encoder", ["lora"]),
    ("tiny_diffusion", ["quantization"]),
    ("federated_mlp", []),
    ("meta_learner", ["lora"]),
    ("meta_learner", ["lora", "quantization"]),
]


@pytest.mark.parametrize(("name", "techniques"), CASES, ids=[f"{n}-{'+'.join(t) or 'plain'}" for n, t in CASES])
def test_saved_model_restores_with_identical_metrics(name: str, techniques: list[str], tmp_path: Path):
    family, hp, session = trained_session(name, techniques)
    data = family.make_dataset(0, 256, hp)
    before = session.evaluate(data)
    save_model(tmp_path / "model", session, {"family": name, "hyperparameters": hp, "techniques": techniques, "seed": 0})
    after = restore_session(tmp_path / "model").evaluate(data)
    assert after == pytest.approx(before, rel=1e-4, abs=1e-5)
