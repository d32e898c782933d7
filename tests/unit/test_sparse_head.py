"""Sparse MLM head: same loss and gradients as each model's own full head, standard checkpoints."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from mlmkit.masking.base import IGNORE_INDEX
from mlmkit.modeling.sparse_head import SparseMLM, check_mlm_head_split, locate_mlm_head, split_mlm_head

VOCAB = 97
SEQ = 16
PAD = 0


def _bert():
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=48, max_position_embeddings=64, pad_token_id=PAD))


def _roberta():
    from transformers import RobertaConfig, RobertaForMaskedLM

    # RoBERTa numbers positions from padding_idx + 1, so it needs a few spare positions
    return RobertaForMaskedLM(RobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=48, max_position_embeddings=64,
                                            pad_token_id=1, bos_token_id=0, eos_token_id=2))


def _distilbert():
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=48,
                                                  max_position_embeddings=64, pad_token_id=PAD))


def _electra():
    from transformers import ElectraConfig, ElectraForMaskedLM

    # embedding_size != hidden_size exercises the generator head's projection back to the embedding width
    return ElectraForMaskedLM(ElectraConfig(vocab_size=VOCAB, embedding_size=16, hidden_size=32,
                                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                                            max_position_embeddings=64, pad_token_id=PAD))


def _modernbert():
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    # two layers of which one is local (sliding window smaller than the sequence), so both mask kinds are used
    return ModernBertForMaskedLM(ModernBertConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=64, local_attention=8, global_attn_every_n_layers=2,
        pad_token_id=PAD, bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3,
    ))


BUILDERS = {"bert": _bert, "roberta": _roberta, "distilbert": _distilbert, "electra": _electra,
            "modernbert": _modernbert}


def build(arch: str):
    torch.manual_seed(0)
    return BUILDERS[arch]().eval()  # eval: no dropout, so both paths compute the same function


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two rows, the second padded; ~30% of real positions carry a label."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (3, SEQ), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -5:] = 0
    input_ids[1, -5:] = PAD
    predicted = (torch.rand(input_ids.shape, generator=g) < 0.3) & attention_mask.bool()
    predicted[0, 1] = True  # at least one label
    labels = torch.where(predicted, torch.randint(5, VOCAB, input_ids.shape, generator=g),
                         torch.full_like(input_ids, IGNORE_INDEX))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: (p.grad.detach().clone() if p.grad is not None else None) for name, p in model.named_parameters()}


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_sparse_loss_and_gradients_match_full_head(arch):
    model = build(arch)
    twin = copy.deepcopy(model)
    batch = make_batch()

    full = model(**batch).loss
    full.backward()
    wrapped = SparseMLM(twin)
    assert wrapped.sparse, f"{arch}: the head should be separable"
    out = wrapped(**batch)
    out["loss"].backward()

    assert torch.allclose(out["loss"], full, rtol=1e-5, atol=1e-6), (out["loss"].item(), full.item())
    n_predicted = int((batch["labels"] != IGNORE_INDEX).sum())
    assert out["logits"].shape == (n_predicted, VOCAB)
    assert out["token_loss"].shape == (n_predicted,)
    assert torch.equal(out["targets"], batch["labels"][batch["labels"] != IGNORE_INDEX])

    expected, got = grads_of(model), grads_of(twin)
    assert expected.keys() == got.keys()
    compared = 0
    for name, g_full in expected.items():
        g_sparse = got[name]
        if g_full is None or g_sparse is None:
            assert g_full is None and g_sparse is None, f"{arch}: gradient presence differs for {name}"
            continue
        assert torch.allclose(g_sparse, g_full, rtol=1e-4, atol=1e-6), \
            f"{arch}: gradient of {name} differs by {(g_sparse - g_full).abs().max().item():.3g}"
        compared += 1
    assert compared > 10


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_split_reproduces_full_logits(arch):
    model = build(arch)
    parts = locate_mlm_head(model)
    assert parts is not None
    assert check_mlm_head_split(model, parts) is None
    batch = make_batch(1)
    encoder, head = parts
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        split = head(encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0])
    assert torch.allclose(split, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_checkpoint_after_wrapping_stays_standard(arch, tmp_path):
    from transformers import AutoModelForMaskedLM

    model = build(arch).train()
    wrapped = SparseMLM(model)
    assert set(wrapped.state_dict()) == {f"model.{k}" for k in model.state_dict()}
    # one optimizer step through the wrapper, so the saved weights are not the initial ones
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.5)
    wrapped(**make_batch())["loss"].backward()
    optimizer.step()

    wrapped.model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    reference = model.state_dict()
    restored = loaded.state_dict()
    assert set(restored) == set(reference)
    for key, value in reference.items():
        assert torch.equal(restored[key], value), key
    batch = make_batch(2)
    with torch.no_grad():
        expected = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(got, expected)


def test_modernbert_own_sparse_prediction_gives_the_same_loss():
    """ModernBERT can itself drop unlabelled positions (config.sparse_prediction); all three losses agree."""
    model = build("modernbert")
    batch = make_batch()
    dense = model(**batch).loss
    model.sparse_prediction = True
    own_sparse = model(**batch).loss
    ours = SparseMLM(model)(**batch)["loss"]
    assert torch.allclose(own_sparse, dense, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours, dense, rtol=1e-5, atol=1e-6)


class _Doubled(torch.nn.Module):
    """A BERT MLM whose forward rescales the logits: the structure looks separable but is not."""

    base_model_prefix = "bert"

    def __init__(self, inner) -> None:
        super().__init__()
        self.bert, self.cls, self.config = inner.bert, inner.cls, inner.config

    def forward(self, input_ids, attention_mask=None, labels=None):
        from transformers.modeling_outputs import MaskedLMOutput

        logits = 2.0 * self.cls(self.bert(input_ids=input_ids, attention_mask=attention_mask)[0])
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return MaskedLMOutput(loss=loss, logits=logits)


class _Opaque(torch.nn.Module):
    """An MLM with no recognisable encoder/head structure."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 8)
        self.out = torch.nn.Linear(8, VOCAB)

    def forward(self, input_ids, attention_mask=None, labels=None):
        from transformers.modeling_outputs import MaskedLMOutput

        return MaskedLMOutput(logits=self.out(self.embed(input_ids)))


@pytest.mark.parametrize("make", [lambda: _Doubled(build("bert")), _Opaque], ids=["mismatched-split", "unknown"])
def test_inseparable_head_falls_back_to_full_head_with_a_note(make, caplog):
    torch.manual_seed(0)
    model = make().eval()
    batch = make_batch()
    with caplog.at_level(logging.WARNING, logger="mlmkit.modeling.sparse_head"):
        wrapped = SparseMLM(model)
    assert not wrapped.sparse
    assert split_mlm_head(model) is None
    assert any("full head" in r.getMessage() for r in caplog.records)
    out = wrapped(**batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(logits.view(-1, VOCAB), batch["labels"].view(-1))
    assert torch.allclose(out["loss"], expected, rtol=1e-6)


def test_sparse_false_uses_the_full_head_and_the_same_loss():
    model = build("bert")
    batch = make_batch()
    assert torch.allclose(SparseMLM(model, sparse=False)(**batch)["loss"], SparseMLM(model)(**batch)["loss"],
                          rtol=1e-5, atol=1e-6)
    assert not SparseMLM(model, sparse=False).sparse


def test_no_predicted_positions_gives_zero_loss_with_a_graph():
    model = build("bert")
    batch = make_batch()
    batch["labels"] = torch.full_like(batch["labels"], IGNORE_INDEX)
    out = SparseMLM(model)(**batch)
    assert out["loss"].item() == 0.0
    out["loss"].backward()  # still differentiable, so a step with no labels does not crash the loop
    assert out["logits"].shape == (0, VOCAB)


def test_split_follows_the_model_after_deepcopy():
    """The head is looked up on each forward, so a copied wrapper trains its own copy of the weights."""
    model = build("electra")
    wrapped = SparseMLM(model)
    clone = copy.deepcopy(wrapped)
    clone(**make_batch())["loss"].backward()
    assert all(p.grad is None for p in model.parameters())
    assert any(p.grad is not None for p in clone.model.generator_lm_head.parameters())


def test_split_is_trusted_without_materialised_weights():
    """On the meta device (as under DeepSpeed ZeRO-3 sharding) there is nothing to probe with."""
    with torch.device("meta"):
        model = BUILDERS["bert"]()
    parts = locate_mlm_head(model)
    assert parts is not None
    assert check_mlm_head_split(model, parts) is None
    assert split_mlm_head(model) is not None
