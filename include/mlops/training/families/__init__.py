"""Registry of MLX model families, looked up by the name a project YAML gives in `model.family`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.training.families.base import ModelFamily

# name -> "module:Class"; importing a family imports MLX, so the registry stays lazy.
FAMILIES: dict[str, str] = {
    "dual_encoder": "mlops.training.families.dual_encoder:DualEncoderFamily",
    "federated_mlp": "mlops.training.families.federated_mlp:FederatedMLPFamily",
    "meta_learner": "mlops.training.families.meta_learner:MetaLearnerFamily",
    "mlp_classifier": "mlops.training.families.mlp_classifier:MLPClassifierFamily",
    "tiny_diffusion": "mlops.training.families.tiny_diffusion:TinyDiffusionFamily",
    "tiny_lm": "mlops.training.families.tiny_lm:TinyLMFamily",
}


def family_names() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> ModelFamily:
    """Instantiate the family registered under `name` (raises KeyError with the known names)."""
    import importlib

    try:
        target = FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(family_names())}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
