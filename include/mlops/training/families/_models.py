"""The nn.Module classes of the families, kept apart so family modules import without MLX.

All tiny on purpose: MLX's CPU build here uses a reference BLAS, so width is expensive.
ReLU everywhere (GELU's erf is slow on that backend).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn


class MLP(nn.Module):
    """`layers` hidden ReLU layers of width `hidden`, then a linear head."""

    def __init__(self, in_dims: int, hidden: int, out_dims: int, layers: int):
        super().__init__()
        widths = [in_dims] + [hidden] * layers
        self.layers = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
        self.head = nn.Linear(widths[-1], out_dims)

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = nn.relu(layer(x))
        return self.head(x)


class CausalBlock(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a ReLU feed-forward."""

    def __init__(self, dims: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dims), nn.LayerNorm(dims)
        self.qkv = nn.Linear(dims, 3 * dims)
        self.proj = nn.Linear(dims, dims)
        self.ff_in, self.ff_out = nn.Linear(dims, 2 * dims), nn.Linear(2 * dims, dims)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        batch, length, dims = x.shape
        q, k, v = (
            t.reshape(batch, length, self.heads, -1).transpose(0, 2, 1, 3)
            for t in mx.split(self.qkv(self.norm1(x)), 3, axis=-1)
        )
        scores = (q @ k.swapaxes(-1, -2)) * (dims // self.heads) ** -0.5 + mask
        attended = (mx.softmax(scores, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(batch, length, dims)
        x = x + self.proj(attended)
        return x + self.ff_out(nn.relu(self.ff_in(self.norm2(x))))


class TinyLM(nn.Module):
    """Token + position embeddings, causal blocks, a linear head over the vocabulary."""

    def __init__(self, vocab: int, seq_len: int, dims: int, heads: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dims)
        self.position = nn.Embedding(seq_len, dims)
        self.blocks = [CausalBlock(dims, heads) for _ in range(layers)]
        self.norm = nn.LayerNorm(dims)
        self.head = nn.Linear(dims, vocab)

    def __call__(self, tokens: mx.array) -> mx.array:
        length = tokens.shape[1]
        mask = nn.MultiHeadAttention.create_additive_causal_mask(length)
        x = self.embed(tokens) + self.position(mx.arange(length))
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


class DualEncoder(nn.Module):
    """CLIP in miniature: MLP image tower, embedding-bag text tower, both projected and L2-normalised."""

    def __init__(self, image_dims: int, vocab: int, hidden: int, embed: int):
        super().__init__()
        self.image_tower = MLP(image_dims, hidden, hidden, layers=1)
        self.image_proj = nn.Linear(hidden, embed)
        self.token_embed = nn.Embedding(vocab, hidden)
        self.text_proj = nn.Linear(hidden, embed)
        self.logit_scale = mx.array([math.log(1 / 0.07)])  # learnable temperature, as in CLIP

    @staticmethod
    def _normalise(x: mx.array) -> mx.array:
        return x / mx.linalg.norm(x, axis=-1, keepdims=True)

    def encode_image(self, image: mx.array) -> mx.array:
        return self._normalise(self.image_proj(nn.relu(self.image_tower(image))))

    def encode_text(self, tokens: mx.array) -> mx.array:
        return self._normalise(self.text_proj(self.token_embed(tokens).mean(axis=1)))


class NoisePredictor(nn.Module):
    """DDPM epsilon-network: an MLP over the noisy point plus a sinusoidal timestep embedding."""

    def __init__(self, data_dims: int, hidden: int, layers: int, time_dims: int = 32):
        super().__init__()
        self.time_dims = time_dims
        self.x_in = nn.Linear(data_dims, hidden)
        self.t_in = nn.Linear(time_dims, hidden)
        self.layers = [nn.Linear(hidden, hidden) for _ in range(layers)]
        self.out = nn.Linear(hidden, data_dims)

    def __call__(self, x: mx.array, t: mx.array) -> mx.array:
        half = self.time_dims // 2
        freqs = mx.exp(-math.log(1000.0) * mx.arange(half) / half)
        angles = t.astype(mx.float32)[:, None] * freqs[None]
        h = nn.relu(self.x_in(x) + self.t_in(mx.concatenate([mx.sin(angles), mx.cos(angles)], axis=-1)))
        for layer in self.layers:
            h = nn.relu(layer(h))
        return self.out(h)


class TaskLinear(nn.Linear):
    """A Linear whose weight/bias may carry a leading task axis: (tasks, out, in) / (tasks, 1, out).

    That lets the meta-learner adapt one copy of the weights per task in a single batched matmul.
    """

    def __call__(self, x: mx.array) -> mx.array:
        return x @ self.weight.swapaxes(-1, -2) + self.bias


class TaskMLP(nn.Module):
    """Scalar regression MLP built from TaskLinear layers (inputs shaped (tasks, points, 1))."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        widths = [1] + [hidden] * layers + [1]
        self.layers = [TaskLinear(a, b) for a, b in zip(widths[:-1], widths[1:])]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers[:-1]:
            x = nn.relu(layer(x))
        return self.layers[-1](x)
