"""Run the encoder's last layer only where the MLM loss needs its output.

The MLM loss reads the last hidden state at the predicted positions only (about 15%).
Every earlier layer's output is needed everywhere (it feeds the next layer's keys and
values), but in the last layer only the keys and values need every position: its
queries, attention output projection and feed-forward block can run on the predicted
positions alone. For a 6-layer encoder that is about an eighth of the encoder's matrix
work.

This applies to the BERT layer layout (``attention.self.{query,key,value}``,
``attention.output``, ``intermediate``, ``output``), shared by BERT, RoBERTa, XLM-R,
ELECTRA and their relatives. The attention output, intermediate and output modules run
through their own ``forward``; only the attention of the selected queries is computed
here. :class:`~mlmkit.modeling.sparse_head.SparseMLM` checks the result against the
model's own logits on a probe input before using it, and uses the plain sparse head
otherwise.

While the earlier layers run, the last layer's slot in the encoder's ``ModuleList``
holds a pass-through module, so nothing is computed twice; it is put back right after,
also when the forward pass fails. That swap is why this runs in eager mode only, and
not with parameters sharded by FSDP or DeepSpeed ZeRO-3 (their hooks live on the
wrapped modules): the training loops turn it off there.
"""

from __future__ import annotations

import torch
from torch import nn

from mlmkit.modeling.fast_dropout import math_attention


class _PassThrough(nn.Module):
    """Stands in for the last layer while the earlier ones run: returns the hidden states unchanged."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:  # noqa: D102
        return hidden_states


_PASS_THROUGH = _PassThrough()


def _layers(encoder: nn.Module) -> nn.ModuleList | None:
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    return layers if isinstance(layers, nn.ModuleList) and len(layers) > 0 else None


def locate_last_layer(encoder: nn.Module) -> nn.Module | None:
    """The encoder's last layer when it has the BERT layer layout (and is not a decoder), else None."""
    layers = _layers(encoder)
    if layers is None:
        return None
    last = layers[-1]
    attention = getattr(last, "attention", None)
    self_attention = getattr(attention, "self", None)
    needed = [(self_attention, ("query", "key", "value", "num_attention_heads", "attention_head_size", "dropout")),
              (attention, ("output",)), (last, ("intermediate", "output"))]
    if any(owner is None or not all(hasattr(owner, name) for name in names) for owner, names in needed):
        return None
    if getattr(last, "is_decoder", False) or getattr(last, "add_cross_attention", False):
        return None
    return last


def predicted_rows_layout(predicted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of each row's predicted positions, left-aligned and padded, and which of them are real.

    Args:
        predicted: ``(B, L)`` bool.

    Returns:
        ``index`` ``(B, P)`` with each row's predicted positions first, in order (then
        other positions as filler), and ``valid`` ``(B, P)`` marking the real ones; ``P`` is
        the largest number of predictions in a row. ``x.gather(...)[valid]`` lists the
        positions in the same order as ``x[predicted]``.
    """
    counts = predicted.sum(dim=1)
    width = int(counts.max()) if predicted.numel() else 0
    order = torch.argsort((~predicted).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=predicted.device)[None, :] < counts[:, None]
    return order, valid


def last_layer_at(layer: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                  predicted: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` at the predicted positions, ``(N, hidden)`` in ``hidden[predicted]`` order.

    Args:
        layer: A layer found by :func:`locate_last_layer`.
        hidden: Its input, ``(B, L, hidden)``.
        attention_mask: ``(B, L)`` with 1 for real tokens, or None.
        predicted: ``(B, L)`` bool.
    """
    batch, length, width = hidden.shape
    index, valid = predicted_rows_layout(predicted)
    selected = index.shape[1]
    if selected == 0:
        return hidden.new_zeros((0, width))
    rows = hidden.gather(1, index[..., None].expand(-1, -1, width))  # (B, P, H)
    attention = layer.attention.self
    heads, head_size = attention.num_attention_heads, attention.attention_head_size
    query = attention.query(rows).view(batch, selected, heads, head_size).transpose(1, 2)
    key = attention.key(hidden).view(batch, length, heads, head_size).transpose(1, 2)
    value = attention.value(hidden).view(batch, length, heads, head_size).transpose(1, 2)
    scale = getattr(attention, "scaling", head_size**-0.5)
    keys_kept = None
    if attention_mask is not None and not bool(attention_mask.all()):
        keys_kept = attention_mask[:, None, None, :].bool()  # padding keys get no weight, as in the full layer
    dropout = attention.dropout.p if attention.training else 0.0
    if dropout > 0.0 and hidden.device.type == "cpu":
        # the layer's own dropout module (FastDropout when the loop swapped it in)
        context = math_attention(query, key, value, keys_kept, scale, attention.dropout)
    else:
        context = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=keys_kept,
                                                             dropout_p=dropout, scale=scale)
    context = context.transpose(1, 2).reshape(batch, selected, heads * head_size)
    attention_output = layer.attention.output(context, rows)
    output = layer.output(layer.intermediate(attention_output), attention_output)
    return output[valid]


def encode_predicted(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     predicted: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden state at the predicted positions, running its last layer only there.

    Args:
        encoder: The base model (``model.bert``, ``model.roberta``, ...) whose last layer
            :func:`locate_last_layer` accepts.
        input_ids: ``(B, L)``.
        attention_mask: ``(B, L)`` or None.
        predicted: ``(B, L)`` bool.

    Returns:
        ``(N, hidden)``, equal (to float tolerance) to ``encoder(...)[0][predicted]``.
    """
    layers = _layers(encoder)
    last = layers[-1]
    layers[-1] = _PASS_THROUGH
    try:
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
    finally:
        layers[-1] = last
    return last_layer_at(last, hidden, attention_mask, predicted)
