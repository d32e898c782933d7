"""Run the MLM head only where a label is set.

With ~15% of positions predicted, computing vocabulary logits for every position is
mostly wasted work (for MiniLM-L6-H384 the 30,522-way projection costs as much as the
whole encoder, and its softmax over every position dominates the step's memory). We run
the encoder, gather the hidden states of predicted positions, and apply the head to
those alone. The loss is the same as the full-head loss with ``ignore_index=-100``;
weights stay in the model's own modules, so ``save_pretrained`` writes a standard
checkpoint.

Which modules form "the encoder" and "the head" is read from the model's structure
(BERT, RoBERTa, DistilBERT, ELECTRA, ModernBERT and their relatives) and then checked
once on a small probe input: the split is only used when ``head(encoder(x))`` matches
the model's own logits. Anything else falls back to the full head with a logged note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mlmkit.modeling.last_layer import encode_predicted, locate_last_layer

log = logging.getLogger(__name__)

#: the label of a position that is not predicted (the loss ignores it), as in PyTorch and transformers
IGNORE_INDEX = -100

Head = Callable[[torch.Tensor], torch.Tensor]

#: probe shape used to check a split against the model's own forward
PROBE_SHAPE = (2, 8)


def _encoder_of(model: nn.Module) -> nn.Module | None:
    prefix = getattr(model, "base_model_prefix", "")
    encoder = getattr(model, prefix, None) if prefix else None
    return encoder if isinstance(encoder, nn.Module) else None


def locate_mlm_head(model: nn.Module) -> tuple[nn.Module, Head] | None:
    """Find ``(encoder, head)`` by the model's structure, without checking them.

    The head is looked up afresh on every call (cheap attribute access), so wrappers that
    replace submodules (FSDP, ``torch.compile``) or copies of the model are always honoured.

    Args:
        model: An MLM model such as ``BertForMaskedLM``.

    Returns:
        The encoder module (whose first output is the last hidden state) and a callable
        mapping hidden states ``(..., hidden)`` to vocabulary logits, or None when the
        structure is not one we know.
    """
    encoder = _encoder_of(model)
    if encoder is None:
        return None
    # BERT family: BertOnlyMLMHead (transform + tied decoder) under ``cls``
    cls_head = getattr(model, "cls", None)
    if isinstance(cls_head, nn.Module) and hasattr(cls_head, "predictions"):
        return encoder, cls_head
    # RoBERTa family (XLM-R, CamemBERT, Data2Vec-text, ...): dense + norm + decoder under ``lm_head``
    lm_head = getattr(model, "lm_head", None)
    if isinstance(lm_head, nn.Module):
        return encoder, lm_head
    if all(hasattr(model, n) for n in ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector")):
        def distilbert_head(hidden: torch.Tensor) -> torch.Tensor:
            hidden = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))
            return model.vocab_projector(hidden)
        return encoder, distilbert_head
    if hasattr(model, "generator_predictions") and hasattr(model, "generator_lm_head"):  # ELECTRA generator
        def electra_head(hidden: torch.Tensor) -> torch.Tensor:
            return model.generator_lm_head(model.generator_predictions(hidden))
        return encoder, electra_head
    # ModernBERT: the final norm lives in the encoder; the head is dense + act + norm, then the decoder
    if isinstance(getattr(model, "head", None), nn.Module) and isinstance(getattr(model, "decoder", None), nn.Module):
        def decoder_head(hidden: torch.Tensor) -> torch.Tensor:
            return model.decoder(model.head(hidden))
        return encoder, decoder_head
    return None


def _probe_inputs(model: nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    config = getattr(model, "config", None)
    vocab = int(getattr(config, "vocab_size", 0) or model.get_input_embeddings().num_embeddings)
    low = min(5, vocab - 1)  # keep clear of the usual special-token ids at the start of the vocabulary
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(low, vocab, PROBE_SHAPE, generator=generator)
    attention_mask = torch.ones(PROBE_SHAPE, dtype=torch.long)
    attention_mask[1, -2:] = 0  # one padded row, so padding is handled the same way too
    return input_ids.to(device), attention_mask.to(device)


def _unmaterialised(params: list[torch.Tensor]) -> bool:
    """No weights here to compute with (meta device, DeepSpeed ZeRO-3 shards)."""
    return any(p.is_meta or hasattr(p, "ds_id") for p in params)


def _compare_on_probe(model: nn.Module, compute: Callable[..., tuple[torch.Tensor, torch.Tensor]],
                      what: str) -> str | None:
    """Run ``compute(input_ids, attention_mask) -> (reference, candidate)`` on the probe and compare.

    The model runs in eval mode (no dropout) without gradients and is put back in its
    previous mode. Returns None when the two agree to float tolerance (relative to the
    largest reference value; looser for half-precision weights), else a short reason
    naming ``what`` was compared.
    """
    params = list(model.parameters())
    was_training = model.training
    model.eval()
    try:
        input_ids, attention_mask = _probe_inputs(model, params[0].device)
        with torch.no_grad():
            reference, candidate = compute(input_ids, attention_mask)
    except Exception as exc:  # any failure means we cannot rely on the shortcut
        return f"probe failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    finally:
        model.train(was_training)
    if reference.shape != candidate.shape:
        return f"{what} has shape {tuple(candidate.shape)}, the model's logits {tuple(reference.shape)}"
    reference, candidate = reference.float(), candidate.float()
    tolerance = (1e-4 if params[0].dtype == torch.float32 else 2e-2) * reference.abs().max().clamp(min=1.0)
    difference = (reference - candidate).abs().max()
    if not bool(difference <= tolerance):
        return f"{what} differs from the model's logits by {difference.item():.3g}"
    return None


def check_mlm_head_split(model: nn.Module, parts: tuple[nn.Module, Head]) -> str | None:
    """Compare ``head(encoder(x))`` with ``model(x).logits`` on a small probe in eval mode.

    Args:
        model: The MLM model.
        parts: ``(encoder, head)`` from :func:`locate_mlm_head`.

    Returns:
        None when they agree, otherwise a short reason.
    """
    params = list(model.parameters())
    if not params:
        return "the model has no parameters"
    if _unmaterialised(params):
        return None  # nothing to probe with; trust the structure
    encoder, head = parts

    def compute(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (model(input_ids=input_ids, attention_mask=attention_mask).logits,
                head(encoder(input_ids=input_ids, attention_mask=attention_mask)[0]))

    return _compare_on_probe(model, compute, "head(encoder(x))")


def check_last_layer(model: nn.Module, parts: tuple[nn.Module, Head]) -> str | None:
    """Compare the last-layer-at-predicted-positions path with the model's own logits on a probe.

    Returns:
        None when :func:`~mlmkit.modeling.last_layer.encode_predicted` reproduces the
        model's logits at the predicted positions, otherwise a short reason.
    """
    encoder, head = parts
    if locate_last_layer(encoder) is None:
        return "its layers do not have the BERT layout"
    params = list(model.parameters())
    if not params or _unmaterialised(params):
        return "its weights are not materialised here"

    def compute(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        predicted = torch.zeros_like(attention_mask, dtype=torch.bool)
        predicted[0, [1, 4, 5]] = True
        predicted[1, 2] = True
        return (model(input_ids=input_ids, attention_mask=attention_mask).logits[predicted],
                head(encode_predicted(encoder, input_ids, attention_mask, predicted)))

    return _compare_on_probe(model, compute, "the last layer at predicted positions")


def split_mlm_head(model: nn.Module, verify: bool = True) -> tuple[nn.Module, Head] | None:
    """Return ``(encoder, head)`` for MLM models whose head can be run on its own, else None.

    Args:
        model: An MLM model (``AutoModelForMaskedLM``).
        verify: Check the split on a small probe input (see :func:`check_mlm_head_split`)
            and return None, with a logged note, when it does not reproduce the model's logits.

    Returns:
        The encoder and a head callable, or None when the head cannot be separated.
    """
    parts = locate_mlm_head(model)
    if parts is None or not verify:
        return parts
    reason = check_mlm_head_split(model, parts)
    if reason is not None:
        log.warning("cannot separate the MLM head of %s: %s", type(model).__name__, reason)
        return None
    return parts


class SparseMLM(nn.Module):
    """Wraps an ``AutoModelForMaskedLM`` and returns the loss of predicted positions only.

    ``forward`` returns a dict with ``loss`` (mean over predicted positions), ``token_loss``
    (one value per predicted position), ``logits`` (``(N, vocab)``, predicted positions
    only), ``targets`` (``(N,)``) and ``predicted`` (the ``(B, L)`` bool mask).

    The wrapper holds no weights of its own: its state dict is the model's under the
    ``model.`` prefix, and ``wrapper.model.save_pretrained`` writes a standard checkpoint.

    Args:
        model: The MLM model.
        sparse: Gather before the head when the architecture allows; otherwise (or when
            False) run the full head and gather the logits afterwards.
        last_layer: With ``sparse``, also run the encoder's last layer only at the
            predicted positions (see :mod:`mlmkit.modeling.last_layer`) when its layout
            allows and a probe confirms the result; eager mode, unsharded weights only.
    """

    def __init__(self, model: nn.Module, sparse: bool = True, last_layer: bool = False) -> None:
        super().__init__()
        self.model = model
        parts = split_mlm_head(model) if sparse else None
        if sparse and parts is None:
            log.warning("sparse MLM head not available for %s; using the full head", type(model).__name__)
        self.sparse = parts is not None
        self.last_layer = False
        if self.sparse and last_layer:
            reason = check_last_layer(model, parts)
            if reason is not None:
                log.info("the last layer of %s runs at every position: %s", type(model).__name__, reason)
            self.last_layer = reason is None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        predicted = labels != IGNORE_INDEX
        targets = labels[predicted]
        parts = locate_mlm_head(self.model) if self.sparse else None
        if parts is not None:
            encoder, head = parts
            if self.last_layer:
                logits = head(encode_predicted(encoder, input_ids, attention_mask, predicted))
            else:
                hidden = encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
                logits = head(hidden[predicted])
        else:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[predicted]
        token_loss = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        loss = token_loss.mean() if token_loss.numel() else logits.sum() * 0.0
        return {"loss": loss, "token_loss": token_loss, "logits": logits, "targets": targets, "predicted": predicted}
