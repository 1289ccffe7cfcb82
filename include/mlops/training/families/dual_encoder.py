"""`dual_encoder`: CLIP-style contrastive image/text encoders on synthetic paired data (LoRA, quantization).

Each pair shares latent attributes (`attributes` of `values` each, so 8^3 = 512 combinations):
the "image" is the sum of one random prototype vector per attribute value plus noise, the
"caption" names each attribute value with a token, padded with filler tokens. Matching them
needs both towers to learn the attributes; retrieval in a batch of 64 is rarely ambiguous.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlops.training.families._common import Session, merged, split
from mlops.training.families.base import EpochStats, ModelFamily

if TYPE_CHECKING:
    import numpy as np

CANDIDATES = 64  # retrieval is scored within chunks of this many val pairs
FILLER_PER_CAPTION = 3  # uninformative tokens mixed into every caption


def _pairs(rng: np.random.Generator, prototypes: np.ndarray, count: int, hp: dict[str, Any]):
    """`count` (image, caption tokens) pairs rendered from random attribute combinations."""
    import numpy as np

    attributes, values = hp["attributes"], hp["values"]
    combos = rng.integers(0, values, (count, attributes))
    image = prototypes[np.arange(attributes), combos].sum(axis=1)
    image += hp["image_noise"] * rng.normal(size=image.shape)
    filler = rng.integers(attributes * values, attributes * values + hp["filler_tokens"], (count, FILLER_PER_CAPTION))
    tokens = np.concatenate([combos + values * np.arange(attributes), filler], axis=1)
    return image.astype(np.float32), tokens.astype(np.int32)


class DualEncoderSession(Session):
    @staticmethod
    def lora_layers(path: str, module: Any) -> bool:
        """Adapters on the two projection heads only: the towers stay frozen."""
        return path in ("image_proj", "text_proj")

    def __init__(self, hp: dict[str, Any], techniques: list[str], seed: int):
        import mlx.core as mx

        from mlops.training.families._models import DualEncoder

        mx.random.seed(seed)
        vocab = hp["attributes"] * hp["values"] + hp["filler_tokens"]
        super().__init__(DualEncoder(hp["image_dims"], vocab, hp["hidden"], hp["embed"]), hp, techniques, seed)

    @staticmethod
    def _logits(model, image, tokens):
        import mlx.core as mx

        scale = mx.exp(mx.minimum(model.logit_scale, math.log(100.0)))  # CLIP caps the scale at 100
        return scale * (model.encode_image(image) @ model.encode_text(tokens).T)

    @classmethod
    def _loss(cls, model, image, tokens):
        """Symmetric InfoNCE: each image must pick its caption among the batch, and vice versa."""
        import mlx.core as mx
        import mlx.nn as nn

        logits = cls._logits(model, image, tokens)
        labels = mx.arange(len(image))
        return (
            nn.losses.cross_entropy(logits, labels, reduction="mean")
            + nn.losses.cross_entropy(logits.T, labels, reduction="mean")
        ) / 2

    def train_epoch(self, data: dict[str, np.ndarray], batch_size: int, epoch: int) -> EpochStats:
        extra: dict[str, float] = {}
        seen = 0
        if self.lora_pending:
            # LoRA: pretrain everything on the source domain, freeze, adapt only the projections.
            source = [data["train_source_image"], data["train_source_tokens"]]
            for pretrain_epoch in range(self.hp["pretrain_epochs"]):
                extra["pretrain_loss"], rows = self.run_epoch(self._loss, source, batch_size, pretrain_epoch, stream=1)
                seen += rows
            self.start_lora(self.lora_layers)
        loss, rows = self.run_epoch(self._loss, [data["train_image"], data["train_tokens"]], batch_size, epoch)
        extra["temperature"] = 1.0 / math.exp(min(self.model.logit_scale.item(), math.log(100.0)))
        return EpochStats(loss=loss, samples=seen + rows, extra=extra)

    def evaluate(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        import mlx.core as mx

        from mlops.training.families._common import batches

        image, tokens = data["val_image"], data["val_tokens"]
        loss = hits = 0.0
        for idx in batches(len(image), CANDIDATES):
            batch = mx.array(image[idx]), mx.array(tokens[idx])
            logits = self._logits(self.model, *batch)
            hits += (logits.argmax(axis=1) == mx.arange(len(idx))).sum().item()
            loss += self._loss(self.model, *batch).item() * len(idx)
        return {"recall_at_1": hits / len(image), "loss": loss / len(image)}


    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"image": [B, image_dims]} -> {"embedding": [B, embed]}: the L2-normalised image embedding."""
        import mlx.core as mx
        import numpy as np

        embedding = self.model.encode_image(mx.array(inputs["image"], dtype=mx.float32))
        mx.eval(embedding)
        return {"embedding": np.array(embedding, dtype=np.float32)}


class DualEncoderFamily(ModelFamily):
    name = "dual_encoder"
    description = "CLIP-style image/text dual encoder, symmetric InfoNCE with learnable temperature; LoRA, quantization."
    metrics = {"recall_at_1": "max", "loss": "min"}
    default_hyperparameters = {
        "image_dims": 64,
        "attributes": 3,
        "values": 8,
        "filler_tokens": 8,
        "image_noise": 1.0,
        "hidden": 64,
        "embed": 32,
        "learning_rate": 3e-3,
        "quant_bits": 8,
        "lora_rank": 4,
        "lora_alpha": 8.0,
        "pretrain_epochs": 1,
        "source_shift": 0.5,
    }
    supported_techniques = frozenset({"lora", "quantization"})

    def signature(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        hp = merged(self.default_hyperparameters, hyperparameters)
        return {
            "inputs": {"image": {"dtype": "float32", "shape": [-1, hp["image_dims"]]}},
            "outputs": {"embedding": {"dtype": "float32", "shape": [-1, hp["embed"]]}},
        }

    def make_dataset(self, seed: int, num_samples: int, hyperparameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Target pairs plus `train_source_*` pairs whose image prototypes are shifted (LoRA pretraining)."""
        import numpy as np

        hp = merged(self.default_hyperparameters, hyperparameters)
        rng = np.random.default_rng(seed)
        shape = (hp["attributes"], hp["values"], hp["image_dims"])
        prototypes = rng.normal(size=shape) / np.sqrt(hp["attributes"])
        image, tokens = _pairs(rng, prototypes, num_samples, hp)
        data = split({"image": image, "tokens": tokens}, num_samples // 5)
        source_prototypes = prototypes + hp["source_shift"] * rng.normal(size=shape) / np.sqrt(hp["attributes"])
        data["train_source_image"], data["train_source_tokens"] = _pairs(
            rng, source_prototypes, len(data["train_image"]), hp
        )
        return data

    def create(self, hyperparameters: dict[str, Any], techniques: list[str], seed: int) -> DualEncoderSession:
        return DualEncoderSession(merged(self.default_hyperparameters, hyperparameters), techniques, seed)
