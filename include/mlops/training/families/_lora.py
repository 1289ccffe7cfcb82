"""Low-rank adapters (LoRA), one implementation for every family that fine-tunes with them."""

from __future__ import annotations

import math
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten


class LoRALinear(nn.Module):
    """y = linear(x) + (alpha / rank) * (x @ A) @ B, with the wrapped Linear frozen.

    B starts at zero, so wrapping changes nothing until A/B are trained. A and B may carry
    a leading task axis (tasks, in, rank) / (tasks, rank, out) for batched per-task adaptation.
    """

    def __init__(self, linear: nn.Module, rank: int, alpha: float):
        super().__init__()
        out_dims, in_dims = linear.weight.shape
        self.linear = linear
        self.linear.freeze()
        self.scale = alpha / rank
        bound = 1.0 / math.sqrt(in_dims)
        self.lora_a = mx.random.uniform(-bound, bound, (in_dims, rank))
        self.lora_b = mx.zeros((rank, out_dims))

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear(x) + self.scale * ((x @ self.lora_a) @ self.lora_b)

    def fused(self) -> nn.Module:
        """The wrapped Linear with the low-rank update merged into its weight."""
        delta = (self.scale * (self.lora_a @ self.lora_b)).T
        self.linear.weight = self.linear.weight + delta.astype(self.linear.weight.dtype)
        self.linear.unfreeze()
        return self.linear


def add_lora(
    model: nn.Module, rank: int, alpha: float, predicate: Callable[[str, nn.Module], bool] | None = None
) -> None:
    """Wrap every nn.Linear (or those `predicate(path, module)` picks) in a LoRALinear, in place."""
    predicate = predicate or (lambda _path, _module: True)
    wrapped = [
        (path, LoRALinear(module, rank, alpha))
        for path, module in model.named_modules()
        if isinstance(module, nn.Linear) and predicate(path, module)
    ]
    model.update_modules(tree_unflatten(wrapped))


def fuse_lora(model: nn.Module) -> None:
    """Merge every adapter into its Linear (before quantizing/pruning the weights)."""
    fused = [(path, module.fused()) for path, module in model.named_modules() if isinstance(module, LoRALinear)]
    if fused:
        model.update_modules(tree_unflatten(fused))


def lora_parameter_count(model: nn.Module) -> int:
    """Number of adapter weights per task (what LoRA trains), ignoring any task axis."""
    return sum(
        m.lora_a.shape[-2] * m.lora_a.shape[-1] + m.lora_b.shape[-2] * m.lora_b.shape[-1]
        for _, m in model.named_modules()
        if isinstance(m, LoRALinear)
    )
