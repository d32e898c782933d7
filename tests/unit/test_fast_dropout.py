"""The CPU dropout used in training: its drop rate, scaling, gradient, attention use and model swap."""

import copy
import json

import pytest
import torch
from torch import nn

from conftest import build_tiny_bert
from mlmkit.modeling.fast_dropout import (
    ATTENTION_NAME,
    FastDropout,
    fast_dropout,
    keep_mask,
    restore_attention,
    rounded_probability,
    sdpa_with_fast_dropout,
    use_fast_dropout,
)


def test_rounded_probability_is_within_one_step_of_p():
    for p in (0.1, 0.15, 0.3, 0.5, 0.9):
        assert abs(rounded_probability(p) - p) <= 2**-16
    assert rounded_probability(0.1) == 3277 / 32768


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_drop_rate_and_uniform_pieces(p):
    torch.manual_seed(0)
    keep = keep_mask((250_000, 4), p)  # each row is the four pieces of one random word
    assert keep.dtype == torch.bool and keep.shape == (250_000, 4)
    dropped = (~keep).float().mean(dim=0)
    # binomial standard error at n = 250k is < 0.001; every piece of the word drops at the same rate
    assert torch.allclose(dropped, torch.full((4,), rounded_probability(p)), atol=0.004), dropped
    # neighbouring decisions are independent: P(both dropped) = p^2
    both = ((~keep[:, 0]) & (~keep[:, 1])).float().mean().item()
    assert both == pytest.approx(rounded_probability(p) ** 2, abs=0.004)


def test_keep_mask_follows_the_torch_seed_and_odd_sizes():
    torch.manual_seed(3)
    a = keep_mask((7, 5, 3), 0.2)
    torch.manual_seed(3)
    b = keep_mask((7, 5, 3), 0.2)
    assert a.shape == (7, 5, 3) and torch.equal(a, b)
    assert not torch.equal(a, keep_mask((7, 5, 3), 0.2))


def test_fast_dropout_scales_kept_values_and_its_gradient():
    torch.manual_seed(0)
    x = torch.rand(400, 500) + 0.5  # no zeros, so dropped entries are exactly the zeros of the output
    x.requires_grad_(True)
    y = fast_dropout(x, 0.1)
    kept = y != 0
    scale = 1 / (1 - rounded_probability(0.1))
    assert torch.allclose(y[kept], x.detach()[kept] * scale)
    assert (~kept).float().mean().item() == pytest.approx(0.1, abs=0.003)
    assert y.mean().item() == pytest.approx(x.mean().item(), rel=0.01)  # unbiased
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * scale)


def test_fast_dropout_is_identity_when_off_and_a_module_like_dropout():
    x = torch.randn(8, 16)
    assert fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    module = FastDropout(0.25)
    assert isinstance(module, nn.Dropout) and module.p == 0.25
    module.eval()
    assert module(x) is x
    module.train()
    assert (module(torch.ones(1000, 100)) == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)


class _Attention(nn.Module):
    is_causal = False
    num_key_value_groups = 1


def _qkv(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 6, 4, generator=generator) for _ in range(3)]


def test_attention_without_dropout_is_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = _qkv()
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    mask[1, ..., -2:] = False
    ours, _ = sdpa_with_fast_dropout(_Attention(), q, k, v, mask, dropout=0.0, scaling=0.5)
    theirs, _ = sdpa_attention_forward(_Attention(), q, k, v, mask, dropout=0.0, scaling=0.5)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("padded", [False, True])
def test_attention_with_dropout_matches_the_math_with_the_same_mask(padded):
    q, k, v = _qkv(1)
    mask = None
    if padded:
        mask = torch.ones(2, 1, 6, 6, dtype=torch.bool)
        mask[0, ..., -3:] = False
    torch.manual_seed(7)
    ours, _ = sdpa_with_fast_dropout(_Attention(), q, k, v, mask, dropout=0.2, scaling=0.5)
    torch.manual_seed(7)
    keep = keep_mask((2, 3, 6, 6), 0.2)
    scores = (q @ k.transpose(-1, -2)) * 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(-1) * keep / (1 - rounded_probability(0.2))
    expected = (probs @ v).transpose(1, 2)
    assert ours.shape == (2, 6, 3, 4)
    assert torch.allclose(ours, expected, atol=1e-6)
    if padded:  # padded keys get no weight even before dropout
        assert torch.allclose(ours[0], ((probs[0] @ v[0]).transpose(0, 1)), atol=1e-6)


def test_swap_keeps_weights_logits_and_saved_config(wordpiece_tokenizer, tmp_path):
    model = build_tiny_bert(wordpiece_tokenizer)
    reference = copy.deepcopy(model)
    n_dropout = sum(type(m) is nn.Dropout for m in model.modules())
    assert use_fast_dropout(model) == n_dropout > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model.config._attn_implementation == ATTENTION_NAME
    assert model.state_dict().keys() == reference.state_dict().keys()

    ids = torch.tensor([wordpiece_tokenizer("the cat likes the morning train")["input_ids"]] * 2)
    attention = torch.ones_like(ids)
    attention[1, -2:] = 0
    model.eval()
    reference.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids, attention_mask=attention).logits,
                              reference(input_ids=ids, attention_mask=attention).logits, atol=1e-5)

    model.train()
    torch.manual_seed(0)
    one = model(input_ids=ids, attention_mask=attention, labels=ids).loss
    torch.manual_seed(0)
    two = model(input_ids=ids, attention_mask=attention, labels=ids).loss
    assert torch.isfinite(one) and one.item() == two.item()  # dropout draws follow the torch seed
    one.backward()
    assert all(p.grad is not None for p in model.parameters())

    restore_attention(model)
    assert model.config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path)
    assert ATTENTION_NAME not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
