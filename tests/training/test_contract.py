"""The family contract at run time: every built-in keeps its declared signature; a broken one is named."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.training.families import BUILT_IN, get_family
from mlops.training.families.contract import FamilyCodeError, check_predict, family_step, output_problems

SIGNATURE = {
    "inputs": {"x": {"dtype": "float32", "shape": [-1, 3]}},
    "outputs": {"label": {"dtype": "int32", "shape": [-1]}, "probabilities": {"dtype": "float32", "shape": [-1, 2]}},
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_predicts_what_it_declares(name):
    family = get_family(name)
    hp = dict(family.default_hyperparameters)
    data = family.make_dataset(0, 128, hp)
    session = family.create(hp, [], 0)
    assert check_predict(session, family, data, hp) == []


def test_outputs_that_break_the_signature_are_each_named():
    outputs = {"label": np.zeros(2, np.float32), "probabilities": np.zeros((2, 3), np.float32), "extra": np.zeros(2)}
    assert output_problems(SIGNATURE, outputs, 2) == [
        "predict() returned 'extra', which the signature does not declare",
        "output 'label' has dtype float32, the signature declares int32",
        "output 'probabilities' has shape [2, 3] for 2 rows, the signature declares [-1, 2]",
    ]
    assert output_problems(SIGNATURE, {"label": np.zeros(3, np.int32)}, 2) == [
        "predict() returned no output 'probabilities'",
        "output 'label' has shape [3] for 2 rows, the signature declares [-1]",
    ]
    assert output_problems(SIGNATURE, [1, 2], 2) == ["predict() must return a dict of named arrays, not list"]


def test_a_failing_step_names_the_project_the_family_and_its_file():
    with pytest.raises(FamilyCodeError) as caught:
        with family_step("own_proj", "model:OwnFamily", "projects/own_proj/model.py", "create"):
            raise ValueError("width must be even")
    assert str(caught.value) == (
        "project 'own_proj': model family 'model:OwnFamily' (projects/own_proj/model.py) failed in create: "
        "ValueError: width must be even"
    )
    assert isinstance(caught.value.__cause__, ValueError)  # the task log keeps the original traceback


def test_running_out_of_memory_stays_a_memory_error_with_the_family_noted():
    """The failure diagnosis reads MemoryError as out of memory: it is the machine's limit, not the family's bug."""
    with pytest.raises(MemoryError) as caught:
        with family_step("own_proj", "model:OwnFamily", "projects/own_proj/model.py", "training"):
            raise MemoryError("[metal::malloc] Attempting to allocate 68719476736 bytes")
    assert caught.value.__notes__ == [
        "project 'own_proj': model family 'model:OwnFamily' (projects/own_proj/model.py) failed in training"
    ]


def test_the_signature_is_read_from_the_manifest_without_importing_the_family(tmp_path):
    """The gateway and the deploy step take the signature recorded at training: a family only its own
    environment can import (issue 14) still gets served."""
    import json

    from mlops.training.artifacts import MANIFEST_FILE, model_signature

    manifest = {"family": "only_in_its_env.model:Family", "hyperparameters": {}, "signature": SIGNATURE}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert model_signature(tmp_path) == SIGNATURE
    legacy = {"family": "mlp_classifier", "hyperparameters": get_family("mlp_classifier").default_hyperparameters}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(legacy))  # saved before signatures were recorded
    assert model_signature(tmp_path) == get_family("mlp_classifier").signature(legacy["hyperparameters"])
