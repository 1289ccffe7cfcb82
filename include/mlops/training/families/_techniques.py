"""Post-training techniques every family shares: quantization, magnitude pruning, size accounting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from mlops.training.families._lora import fuse_lora, lora_parameter_count

if TYPE_CHECKING:
    from mlops.training.families._common import Session

# mx.quantize supports groups of 32/64/128 along the input axis; 32 fits every hidden width here.
GROUP_SIZE = 32
_QUANTIZED = (nn.QuantizedLinear, nn.QuantizedEmbedding)


def quantize(model: nn.Module, bits: int, group_size: int = GROUP_SIZE) -> int:
    """nn.quantize the Linear/Embedding layers whose input width is a multiple of the group size.

    Narrow layers (e.g. a 2-d input projection) stay float32: they cannot be grouped and are tiny.
    Returns how many layers were quantized.
    """

    def fits(_path: str, module: nn.Module) -> bool:
        return hasattr(module, "to_quantized") and module.weight.shape[-1] % group_size == 0

    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=fits)
    return sum(isinstance(m, _QUANTIZED) for _, m in model.named_modules())


def prune(model: nn.Module, sparsity: float) -> float:
    """Zero the `sparsity` fraction of smallest-magnitude weights in each Linear; return the zero fraction."""
    zeros = total = 0
    for _, module in model.named_modules():
        if not isinstance(module, nn.Linear):  # QuantizedLinear is not a Linear subclass
            continue
        weight = np.array(module.weight)
        k = int(round(sparsity * weight.size))
        weight.flat[np.argsort(np.abs(weight), axis=None)[:k]] = 0.0
        module.weight = mx.array(weight)
        zeros += int((weight == 0).sum())
        total += weight.size
    return zeros / max(total, 1)


def parameter_count(model: nn.Module) -> int:
    """Weights the model represents: a quantized matrix counts its unpacked entries, not scales/biases."""
    bits = {path: m.bits for path, m in model.named_modules() if isinstance(m, _QUANTIZED)}
    count = 0
    for key, value in tree_flatten(model.parameters()):
        owner, _, leaf = key.rpartition(".")
        if owner in bits and leaf == "weight":
            count += value.size * 32 // bits[owner]
        elif not (owner in bits and leaf in ("scales", "biases")):
            count += value.size
    return count


def size_bytes(model: nn.Module) -> int:
    """Bytes of the stored arrays (packed weights, scales and biases included)."""
    return sum(value.nbytes for _, value in tree_flatten(model.parameters()))


def post_training(session: Session, techniques: list[str], data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Apply pruning then quantization to `session.model` in place; report what was done.

    LoRA (a training-time technique) is only reported here; adapters are merged into their
    Linear before pruning/quantizing unless the session keeps them (`keep_adapters`).
    """
    model, hp = session.model, session.hp
    report: dict[str, Any] = {}
    if "lora" in techniques:
        report["trainable_parameters"] = (
            parameter_count(model) if session.lora_pending else lora_parameter_count(model)
        )
        report["lora_rank"] = int(hp["lora_rank"])
    if {"pruning", "quantization"} & set(techniques) and not getattr(session, "keep_adapters", False):
        fuse_lora(model)
    if "pruning" in techniques:
        report["sparsity"] = prune(model, float(hp["prune_sparsity"]))
    if "quantization" in techniques:
        report.update({f"{name}_full_precision": value for name, value in session.evaluate(data).items()})
        report["quantized_layers"] = quantize(model, int(hp["quant_bits"]))
        report["dtype"] = f"int{int(hp['quant_bits'])}"
    report.setdefault("dtype", "float32")
    report["parameters"] = parameter_count(model)
    report["size_bytes"] = size_bytes(model)
    mx.eval(model.parameters())
    return report
