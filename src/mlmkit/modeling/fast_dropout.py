"""Dropout that is cheap on the CPU, for training Hugging Face encoders.

On the CPU, ``torch.nn.functional.dropout`` draws its keep mask with ``bernoulli_``, one
Mersenne-Twister draw and one float comparison per element. For an encoder in training
that is a large share of the step: profiling MiniLM-L6-H384 at 32 x 128 tokens on two
cores, ``bernoulli_`` alone took 21% of the step, most of it in attention-probability
dropout (12 heads x 128 x 128 values per sequence and layer). The attention kernels
also leave the fused SDPA path whenever dropout is on and fall back to the same
``bernoulli_``.

Here each 64-bit random word gives four keep decisions: its four 16-bit pieces, each
with its low 15 bits compared against ``round(p * 2**15)``. An element is dropped with
probability ``p`` rounded to a multiple of 2**-15 (for p = 0.1: 0.100006), and kept
values are scaled by ``1 / (1 - p_rounded)``, so the layer stays unbiased. ``torch``'s
``random_`` fills int64 tensors with values in ``[0, 2**63)``; the 15-bit pieces used
are bits 0-14, 16-30, 32-46 and 48-62, all uniform. Masks are drawn from the default
CPU generator, so ``torch.manual_seed`` makes them reproducible (exact resume relies on
that). On other devices the standard kernels are used unchanged: they are fast there.

Nothing here holds weights: swapping ``nn.Dropout`` modules for :class:`FastDropout`
changes no state dict, and the attention implementation name is restored before a
model is saved.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: name under which the attention function is registered with transformers
ATTENTION_NAME = "mlmkit_sdpa"
_PIECE_BITS = 15
_PIECE_MASK = (1 << _PIECE_BITS) - 1
_PIECES_PER_WORD = 4


def rounded_probability(p: float) -> float:
    """The drop probability actually used for ``p`` (a multiple of 2**-15)."""
    return round(p * (1 << _PIECE_BITS)) / (1 << _PIECE_BITS)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A boolean CPU tensor of ``shape`` whose entries are False with probability ``rounded_probability(p)``."""
    count = 1
    for size in shape:
        count *= size
    words = torch.empty((count + _PIECES_PER_WORD - 1) // _PIECES_PER_WORD, dtype=torch.int64).random_()
    pieces = words.view(torch.int16)[:count].view(shape)
    return pieces.bitwise_and_(_PIECE_MASK) >= round(p * (1 << _PIECE_BITS))


class _MaskedScale(torch.autograd.Function):
    """``x * keep * scale``, saving only the boolean mask (one byte per element) for the backward pass.

    Multiplying by the mask as a float tensor of 0 and ``scale`` took about two thirds of the
    time of ``torch.where`` on two cores (forward and backward of a 32 x 12 x 128 x 128 tensor).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * keep.to(x.dtype).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: D102
        (keep,) = ctx.saved_tensors
        return grad * keep.to(grad.dtype).mul_(ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout of ``x`` with probability ``p``; a cheaper mask on the CPU, ``F.dropout`` elsewhere."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training=True)
    dropped = rounded_probability(p)
    if dropped <= 0.0:
        return x
    return _MaskedScale.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - dropped))


class FastDropout(nn.Dropout):
    """Drop-in for ``nn.Dropout`` (same ``p`` attribute, no weights) using :func:`fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return fast_dropout(x, self.p, self.training)


def sdpa_with_fast_dropout(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           **kwargs):
    """Transformers' SDPA attention, with attention-probability dropout done by :func:`fast_dropout` on the CPU.

    Without dropout (evaluation, or ``p = 0``), on other devices, and for anything beyond plain
    multi-head attention (grouped key/value heads, position biases, causal masks) it calls
    transformers' own ``sdpa_attention_forward`` unchanged.
    """
    # lazy: transformers internals that move between versions; last_layer imports this module without them
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (getattr(module, "num_key_value_groups", 1) == 1 and kwargs.get("position_bias") is None
             and not kwargs.get("is_causal", getattr(module, "is_causal", False)))
    if dropout <= 0.0 or query.device.type != "cpu" or not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    context = math_attention(query, key, value, attention_mask, scale, lambda probs: fast_dropout(probs, dropout))
    return context.transpose(1, 2).contiguous(), None


def math_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scale: float,
                   dropout: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``dropout(softmax(q k^T * scale + mask)) v`` over ``(batch, heads, length, head_size)`` tensors.

    ``attention_mask`` is boolean (True: attend), additive, or None; ``dropout`` is applied
    to the attention probabilities.
    """
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    return torch.matmul(dropout(torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)), value)


def _register() -> None:
    # lazy: transformers internals that move between versions; last_layer imports this module without them
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if ATTENTION_NAME not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_with_fast_dropout)
    if ATTENTION_NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)  # the same masks as "sdpa"


def use_fast_dropout(model: nn.Module) -> int:
    """Swap the model's ``nn.Dropout`` modules for :class:`FastDropout`, and its SDPA attention for ours.

    Only modules whose type is exactly ``nn.Dropout`` are swapped (subclasses may do more);
    the attention is switched only from ``sdpa`` and only for models that dispatch through
    transformers' attention interface. Call :func:`restore_attention` before saving.

    Args:
        model: A transformers model, on the CPU or about to be trained there.

    Returns:
        How many dropout modules were swapped.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = FastDropout(child.p, inplace=child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped += 1
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
        _register()
        config._attn_implementation = ATTENTION_NAME
    return swapped


def restore_attention(model: nn.Module) -> None:
    """Put back ``sdpa`` where :func:`use_fast_dropout` switched it, so saved configs name a standard kernel."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == ATTENTION_NAME:
        config._attn_implementation = "sdpa"
