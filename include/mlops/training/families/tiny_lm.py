"""`tiny_lm`: a one-block causal transformer on a synthetic Markov-chain language (LoRA, quantization).

The language is a fixed random bigram chain where each token has only `branching` possible
successors, so a model that learns it drops from perplexity ~vocab to below `branching`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.training.families._common import Session, merged, split
from mlops.training.families.base import EpochStats, ModelFamily

if TYPE_CHECKING:
    import numpy as np


def markov_chain(rng: np.random.Generator, vocab: int, branching: int) -> np.ndarray:
    """Row-stochastic (vocab, vocab) matrix with `branching` random successors per token."""
    import numpy as np

    chain = np.zeros((vocab, vocab))
    for row in chain:
        row[rng.choice(vocab, branching, replace=False)] = rng.dirichlet(np.ones(branching))
    return chain


def sample_sequences(rng: np.random.Generator, chain: np.ndarray, count: int, length: int) -> np.ndarray:
    """`count` token sequences of `length` walked along `chain` from uniform start tokens."""
    import numpy as np

    cumulative = chain.cumsum(axis=1)
    tokens = np.empty((count, length), dtype=np.int32)
    tokens[:, 0] = rng.integers(0, len(chain), count)
    for i in range(1, length):
        draws = rng.random(count)[:, None]
        tokens[:, i] = np.minimum((cumulative[tokens[:, i - 1]] < draws).sum(axis=1), len(chain) - 1)
    return tokens


class TinyLMSession(Session):
    def __init__(self, hp: dict[str, Any], techniques: list[str], seed: int):
        import mlx.core as mx

        from mlops.training.families._models import TinyLM

        mx.random.seed(seed)
        model = TinyLM(hp["vocab"], hp["seq_len"], hp["dims"], hp["heads"], hp["layers"])
        super().__init__(model, hp, techniques, seed)

    @staticmethod
    def _loss(model, tokens):
        import mlx.nn as nn

        return nn.losses.cross_entropy(model(tokens[:, :-1]), tokens[:, 1:], reduction="mean")

    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        extra: dict[str, float] = {}
        sequences = 0
        if self.lora_pending:
            # LoRA: the first call "pretrains" the full model on the related source chain,
            # then freezes it; from here on only the adapters learn the target chain.
            for pretrain_epoch in range(self.hp["pretrain_epochs"]):
                extra["pretrain_loss"], seen = self.run_epoch(
                    self._loss, [data["train_source_tokens"]], batch_size, pretrain_epoch, stream=1
                )
                sequences += seen
            self.start_lora()
        loss, seen = self.run_epoch(self._loss, [data["train_tokens"]], batch_size, epoch)
        return EpochStats(loss=loss, samples=(sequences + seen) * self.hp["seq_len"], extra=extra)

    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        import math

        import mlx.core as mx

        from mlops.training.families._common import batches

        tokens = data["val_tokens"]
        total = 0.0
        for idx in batches(len(tokens), 256):
            total += self._loss(self.model, mx.array(tokens[idx])).item() * len(idx)
        loss = total / len(tokens)
        return {"perplexity": math.exp(loss), "loss": loss}


    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"tokens": int32 [B, T]} (1 <= T <= seq_len) -> {"next_token_logits": [B, vocab]} after the last token."""
        import mlx.core as mx
        import numpy as np

        logits = self.model(mx.array(inputs["tokens"], dtype=mx.int32))[:, -1, :]
        mx.eval(logits)
        return {"next_token_logits": np.array(logits, dtype=np.float32)}


class TinyLMFamily(ModelFamily):
    name = "tiny_lm"
    description = "One-block causal transformer LM on a low-entropy synthetic Markov language; LoRA, quantization."
    metrics = {"perplexity": "min", "loss": "min"}
    default_hyperparameters = {
        "vocab": 64,
        "seq_len": 32,
        "dims": 32,
        "heads": 2,
        "layers": 1,
        "branching": 4,
        "learning_rate": 3e-3,
        "quant_bits": 8,
        "lora_rank": 4,
        "lora_alpha": 8.0,
        "pretrain_epochs": 1,
        "source_shift": 0.3,
    }
    supported_techniques = frozenset({"lora", "quantization"})
    throughput_unit = "tokens"

    def reference_inputs(self, data: dict[str, np.ndarray], hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Served prompts are up to seq_len tokens: the training windows without their target token."""
        hp = merged(self.default_hyperparameters, hyperparameters)
        return {"tokens": data["train_tokens"][:, : hp["seq_len"]]}

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        hp = merged(self.default_hyperparameters, hyperparameters)
        return {
            "inputs": {
                "tokens": {
                    "dtype": "int32",
                    "shape": [-1, -1],
                    "max_shape": [-1, hp["seq_len"]],
                    "range": [0, hp["vocab"]],
                }
            },
            "outputs": {"next_token_logits": {"dtype": "float32", "shape": [-1, hp["vocab"]]}},
        }

    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """`num_samples` target-chain sequences, plus as many `train_source_tokens` for LoRA pretraining.

        The source chain is the target chain with a `source_shift` fraction of its rows redrawn:
        different, but related enough that a frozen source model plus adapters fits the target.
        """
        import numpy as np

        hp = merged(self.default_hyperparameters, hyperparameters)
        rng = np.random.default_rng(seed)
        target = markov_chain(rng, hp["vocab"], hp["branching"])
        source = target.copy()
        shifted = rng.choice(hp["vocab"], int(hp["source_shift"] * hp["vocab"]), replace=False)
        source[shifted] = markov_chain(rng, hp["vocab"], hp["branching"])[shifted]
        length = hp["seq_len"] + 1  # inputs are tokens[:-1], targets tokens[1:]
        data = split({"tokens": sample_sequences(rng, target, num_samples, length)}, num_samples // 5)
        data["train_source_tokens"] = sample_sequences(rng, source, len(data["train_tokens"]), length)
        return data

    def create(self, hyperparameters: dict[str, Any], techniques: list[str], seed: int) -> TinyLMSession:
        return TinyLMSession(merged(self.default_hyperparameters, hyperparameters), techniques, seed)
