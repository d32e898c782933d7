"""The last encoder layer run only at predicted positions: same loss and gradients, clean fallbacks."""

from __future__ import annotations

import copy

import pytest
import torch
from test_sparse_head import VOCAB, build, grads_of, make_batch

from mlmkit.masking.base import IGNORE_INDEX
from mlmkit.modeling.last_layer import encode_predicted, locate_last_layer, predicted_rows_layout
from mlmkit.modeling.sparse_head import SparseMLM

BERT_LAYOUT = ["bert", "electra", "roberta"]


def test_rows_layout_lists_predicted_positions_in_mask_order():
    predicted = torch.tensor([[False, True, False, True, True],
                              [False, False, False, False, False],
                              [True, False, False, False, True]])
    index, valid = predicted_rows_layout(predicted)
    assert index.shape == valid.shape == (3, 3)
    assert valid.tolist() == [[True, True, True], [False, False, False], [True, True, False]]
    assert index[0].tolist() == [1, 3, 4] and index[2, :2].tolist() == [0, 4]
    values = torch.arange(15.0).view(3, 5)
    assert torch.equal(values.gather(1, index)[valid], values[predicted])


@pytest.mark.parametrize("arch", BERT_LAYOUT)
def test_encode_predicted_equals_the_full_encoder(arch):
    model = build(arch)
    encoder = model.base_model
    batch = make_batch(3)
    predicted = batch["labels"] != IGNORE_INDEX
    with torch.no_grad():
        full = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0][predicted]
        ours = encode_predicted(encoder, batch["input_ids"], batch["attention_mask"], predicted)
    assert ours.shape == full.shape and torch.allclose(ours, full, atol=1e-5)
    # the last layer is back in place afterwards
    assert locate_last_layer(encoder) is encoder.encoder.layer[-1]
    assert type(encoder.encoder.layer[-1]).__name__.endswith("Layer")


@pytest.mark.parametrize("arch", BERT_LAYOUT)
def test_loss_and_gradients_match_the_plain_sparse_head(arch):
    model = build(arch)
    twin = copy.deepcopy(model)
    batch = make_batch(1)
    plain, pruned = SparseMLM(model), SparseMLM(twin, last_layer=True)
    assert pruned.last_layer and not plain.last_layer
    a, b = plain(**batch), pruned(**batch)
    a["loss"].backward()
    b["loss"].backward()
    assert torch.allclose(a["loss"], b["loss"], rtol=1e-5, atol=1e-6)
    assert torch.equal(a["targets"], b["targets"]) and b["logits"].shape == a["logits"].shape
    expected, got = grads_of(model), grads_of(twin)
    for name, g in expected.items():
        if g is None:
            assert got[name] is None, name
            continue
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("arch", ["distilbert", "modernbert"])
def test_other_layouts_fall_back_to_the_plain_sparse_head(arch):
    wrapped = SparseMLM(build(arch), last_layer=True)
    assert wrapped.sparse and not wrapped.last_layer
    out = wrapped(**make_batch())
    assert torch.isfinite(out["loss"])


def test_training_mode_with_dropout_and_no_predictions():
    model = build("bert").train()
    wrapped = SparseMLM(model, last_layer=True)
    batch = make_batch(2)
    torch.manual_seed(0)
    one = wrapped(**batch)["loss"]
    torch.manual_seed(0)
    two = wrapped(**batch)["loss"]
    assert torch.isfinite(one) and one.item() == two.item()
    empty = {**batch, "labels": torch.full_like(batch["labels"], IGNORE_INDEX)}
    out = wrapped(**empty)
    assert out["logits"].shape == (0, VOCAB) and out["loss"].item() == 0.0


def test_a_failing_forward_puts_the_layer_back():
    model = build("bert")
    encoder = model.base_model
    last = encoder.encoder.layer[-1]
    with pytest.raises(IndexError):  # a token id beyond the embedding table
        encode_predicted(encoder, torch.full((1, 4), VOCAB + 50), None, torch.ones(1, 4, dtype=torch.bool))
    assert encoder.encoder.layer[-1] is last
