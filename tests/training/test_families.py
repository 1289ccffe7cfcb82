"""Every registered MLX model family: learns, is deterministic, applies its techniques for real.

Runs are small (512 samples, batch 64) so the whole file stays well under a minute on 2 cores.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys

import pytest

from mlops.training.families import family_names, get_family

SEED, SAMPLES, BATCH, EPOCHS = 7, 512, 64, 3

pytestmark = pytest.mark.timeout(120)


def _train(name: str, techniques: tuple[str, ...] = (), epochs: int = EPOCHS, **overrides):
    """(data, metrics before, metrics after, session, epoch stats) of one small seeded run."""
    family = get_family(name)
    hp = {**family.default_hyperparameters, **overrides}
    data = family.make_dataset(SEED, SAMPLES, hp)
    session = family.create(hp, list(techniques), SEED)
    before = session.evaluate(data)
    stats = [session.train_epoch(data, BATCH, epoch) for epoch in range(epochs)]
    return data, before, session.evaluate(data), session, stats


@functools.cache
def _trained(name: str):
    return _train(name)


@functools.cache
def _with_technique(name: str, technique: str):
    """One epoch with `technique`, then apply_techniques: (report, session, data, size before)."""
    from mlx.utils import tree_flatten

    data, _, _, session, _ = _train(name, (technique,), epochs=1)
    size_before = sum(v.nbytes for _, v in tree_flatten(session.model.parameters()))
    return session.apply_techniques([technique], data), session, data, size_before


def _technique_cases():
    return [(n, t) for n in family_names() for t in sorted(get_family(n).supported_techniques)]


def test_registry_has_the_six_families():
    assert family_names() == sorted(
        ["mlp_classifier", "tiny_lm", "dual_encoder", "tiny_diffusion", "federated_mlp", "meta_learner"]
    )
    for name in family_names():
        family = get_family(name)
        assert family.name == name
        assert family.check_hyperparameters(dict(family.default_hyperparameters)) == []
        assert family.check_hyperparameters({"no_such_knob": 1}) == ["no_such_knob"]


def test_family_metadata_does_not_import_mlx():
    code = (
        "import sys\n"
        "from mlops.training.families import family_names, get_family\n"
        "for name in family_names():\n"
        "    f = get_family(name)\n"
        "    (f.name, f.description, f.metrics, f.default_hyperparameters, f.supported_techniques)\n"
        "    f.check_hyperparameters({})\n"
        "loaded = sorted(m for m in sys.modules if m == 'mlx' or m.startswith('mlx.'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", family_names())
def test_dataset_is_synthetic_named_and_typed(name):
    import numpy as np

    data = _trained(name)[0]
    assert any(k.startswith("train_") for k in data) and any(k.startswith("val_") for k in data)
    for key, array in data.items():
        assert key.startswith(("train_", "val_")), key
        assert array.dtype in (np.float32, np.int32), (key, array.dtype)


@pytest.mark.parametrize("name", family_names())
def test_training_improves_the_primary_metric(name):
    family = get_family(name)
    _, before, after, _, stats = _trained(name)
    assert set(before) == set(after) == set(family.metrics)
    assert all(type(v) is float and math.isfinite(v) for v in after.values()), after
    metric = next(iter(family.metrics))  # the first declared metric is the one a project optimises
    if family.metrics[metric] == "max":
        assert after[metric] > before[metric] + 0.05, (metric, before, after)
    else:
        assert after[metric] < 0.9 * before[metric], (metric, before, after)
    assert all(s.samples > 0 and math.isfinite(s.loss) for s in stats)


@pytest.mark.parametrize("name", family_names())
def test_same_seed_same_data_and_metrics(name):
    import numpy as np

    data, _, after, _, _ = _trained(name)
    data2, _, after2, _, _ = _train(name)
    assert data.keys() == data2.keys()
    for key in data:
        np.testing.assert_array_equal(data[key], data2[key])
    assert after2 == pytest.approx(after, rel=1e-5)


@pytest.mark.parametrize(("name", "technique"), _technique_cases())
def test_technique_is_applied_and_reported(name, technique):
    family = get_family(name)
    report, session, data, size_before = _with_technique(name, technique)
    assert {"dtype", "parameters", "size_bytes"} <= report.keys()
    assert all(isinstance(v, (str, int, float)) for v in report.values()), report
    assert set(session.evaluate(data)) == set(family.metrics)
    hp = family.default_hyperparameters
    if technique == "quantization":
        assert report["dtype"] == f"int{hp['quant_bits']}"
        assert report["size_bytes"] < size_before
        assert all(f"{m}_full_precision" in report for m in family.metrics)
    elif technique == "pruning":
        assert abs(report["sparsity"] - hp["prune_sparsity"]) <= 0.01
    elif technique == "lora":
        assert 0 < report["trainable_parameters"] < report["parameters"]
    elif technique == "distillation":
        assert report["teacher_parameters"] > report["parameters"]


@pytest.mark.parametrize("name", family_names())
@pytest.mark.parametrize("quantized", [False, True])
def test_weights_round_trip_through_safetensors(name, quantized, tmp_path):
    import mlx.core as mx
    import numpy as np

    session = _with_technique(name, "quantization")[1] if quantized else _trained(name)[3]
    weights = session.weights()
    path = str(tmp_path / "model.safetensors")
    mx.save_safetensors(path, weights)
    loaded = mx.load(path)
    assert loaded.keys() == weights.keys()
    for key, value in weights.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(np.array(loaded[key]), np.array(value))


def test_pruning_reaches_the_sparsity_in_every_linear_layer():
    """Magnitude pruning, recomputed here from the trained weights: in each Linear, the half of the
    weights with the smallest |w| become 0 and the rest are untouched."""
    import mlx.nn as nn
    import numpy as np

    data, _, _, session, _ = _train("mlp_classifier", ("pruning",), epochs=1)
    trained = {path: np.array(m.weight) for path, m in session.model.named_modules() if isinstance(m, nn.Linear)}
    # MLP(32 features, 2 hidden layers of 64, 4 classes): three Linear layers, weights [out, in].
    assert {path: w.shape for path, w in trained.items()} == {"layers.0": (64, 32), "layers.1": (64, 64), "head": (4, 64)}
    report = session.apply_techniques(["pruning"], data)
    pruned = {path: np.array(m.weight) for path, m in session.model.named_modules() if isinstance(m, nn.Linear)}
    assert sorted(pruned) == sorted(trained)
    zeros = 0
    for path, weight in trained.items():
        k = round(0.5 * weight.size)
        expected = weight.copy()
        expected.flat[np.argsort(np.abs(weight), axis=None, kind="stable")[:k]] = 0.0
        np.testing.assert_array_equal(pruned[path], expected, err_msg=path)
        assert int((pruned[path] == 0).sum()) == k, path
        zeros += k
    assert report["sparsity"] == zeros / sum(w.size for w in trained.values()) == 0.5


def test_tiny_lm_counts_tokens():
    _, _, _, _, stats = _trained("tiny_lm")
    seq_len = get_family("tiny_lm").default_hyperparameters["seq_len"]
    assert stats[0].samples % seq_len == 0 and stats[0].samples > SAMPLES


def test_federated_rounds_report_client_drift():
    _, _, _, _, stats = _trained("federated_mlp")
    assert all(s.extra["client_drift"] > 0 for s in stats)


def test_diffusion_adaptive_schedule_and_self_improvement():
    _, before, after, _, stats = _train(
        "tiny_diffusion", epochs=2, schedule="adaptive", self_improve_rounds=1, self_improve_after=1
    )
    assert "self_improve_round" not in stats[0].extra
    assert stats[1].extra["self_improve_round"] == 1.0 and stats[1].extra["synthetic_kept"] > 0
    assert stats[1].samples > stats[0].samples  # trained on train + kept samples
    assert stats[1].extra["timestep_prob_max"] > 1 / get_family("tiny_diffusion").default_hyperparameters["timesteps"]
    assert after["loss"] < before["loss"]
