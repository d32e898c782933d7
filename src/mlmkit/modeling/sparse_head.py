"""Run the MLM head only where a label is set.

With ~15% of positions predicted, computing vocabulary logits for every position is
mostly wasted work (for MiniLM-L6-H384 the 30,522-way projection is the largest
matmul of the step). We run the encoder, gather the hidden states of predicted
positions, and apply the head to those alone. The loss is the same as the full-head
loss with ``ignore_index=-100``; weights stay in the model's own modules, so
``save_pretrained`` writes a standard checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mlmkit.masking.base import IGNORE_INDEX

log = logging.getLogger(__name__)


def split_mlm_head(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """Return ``(encoder, head)`` for known MLM architectures, None when the head can't be separated."""
    if hasattr(model, "bert") and hasattr(model, "cls"):  # BERT and friends
        return model.bert, model.cls
    if hasattr(model, "lm_head") and hasattr(model, "roberta"):  # RoBERTa
        return model.roberta, model.lm_head
    for prefix in ("xlm_roberta", "camembert", "deberta"):
        if hasattr(model, prefix) and hasattr(model, "lm_head"):
            return getattr(model, prefix), model.lm_head
    if hasattr(model, "distilbert") and hasattr(model, "vocab_projector"):  # DistilBERT
        def distil_head(h: torch.Tensor) -> torch.Tensor:
            h = model.activation(model.vocab_transform(h))
            return model.vocab_projector(model.vocab_layer_norm(h))
        return model.distilbert, distil_head
    if hasattr(model, "electra") and hasattr(model, "generator_lm_head"):  # ELECTRA generator
        return model.electra, lambda h: model.generator_lm_head(model.generator_predictions(h))
    if type(model).__name__ == "ModernBertForMaskedLM":
        return model.model, lambda h: model.decoder(model.head(h))
    return None


class SparseMLM(nn.Module):
    """Wraps an ``AutoModelForMaskedLM`` and returns the loss of predicted positions only.

    ``forward`` returns a dict with ``loss`` (mean over predicted positions), ``token_loss``
    (one value per predicted position), ``logits`` (``(N, vocab)``, predicted positions
    only), ``targets`` (``(N,)``) and ``predicted`` (the ``(B, L)`` bool mask).

    Args:
        model: The MLM model.
        sparse: Gather before the head when the architecture allows; otherwise (or when
            False) run the full head and gather the logits afterwards.
    """

    def __init__(self, model: nn.Module, sparse: bool = True) -> None:
        super().__init__()
        self.model = model
        parts = split_mlm_head(model) if sparse else None
        if sparse and parts is None:
            log.warning("sparse MLM head not available for %s; using the full head", type(model).__name__)
        self.sparse = parts is not None
        self._parts = parts

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        predicted = labels != IGNORE_INDEX
        targets = labels[predicted]
        if self.sparse:
            encoder, head = self._parts
            hidden = encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            logits = head(hidden[predicted])
        else:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[predicted]
        token_loss = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        loss = token_loss.mean() if token_loss.numel() else logits.sum() * 0.0
        return {"loss": loss, "token_loss": token_loss, "logits": logits, "targets": targets, "predicted": predicted}
