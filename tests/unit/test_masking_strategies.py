"""Behaviour of whole_word, span, content_word, token_weighted and mixture beyond the shared properties."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from mlmkit.config import PretrainConfig, load_config
from mlmkit.data.packing import pack_blocks, tokenize_corpus
from mlmkit.errors import UserError
from mlmkit.masking.base import IGNORE_INDEX, MaskingStrategy, Selection
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.content_word import CONTENT_FEATURE, ENGLISH_FUNCTION_WORDS, ContentWordMasking
from mlmkit.masking.mixture import MixtureMasking
from mlmkit.masking.preview import corpus_stats, preview_text
from mlmkit.masking.registry import build_strategy, register_strategy
from mlmkit.masking.token_weighted import (
    build_token_weights_from_texts,
    load_token_weights,
    save_token_weights,
)
from mlmkit.masking.units import pick_units, word_unit_ids
from mlmkit.masking.whole_word import WholeWordMasking

datasets.disable_progress_bars()


def packed_batch(tokenizer, corpus, strategy, block=64, seed=0):
    collator = MaskingCollator(tokenizer, strategy, seed=seed)
    texts = datasets.Dataset.from_dict({"text": corpus})
    blocks = pack_blocks(tokenize_corpus(texts, tokenizer, strategy), block, strategy.group_features)
    return collator, collator.pad(blocks.to_list())


def per_unit_first(values: torch.Tensor, units: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """One value per predicted unit (the value at the unit's first predicted position)."""
    batch, length = units.shape
    keys = torch.arange(batch).unsqueeze(1) * length + units.clamp(min=0)
    first = torch.full((batch * length,), -1, dtype=torch.long)
    order = predicted.flatten().nonzero().squeeze(1).flip(0)  # later positions first, so the first one wins
    first[keys.flatten()[order]] = values.flatten()[order].long()
    return first[first >= 0]


# ---------------------------------------------------------------------------------------------- units.py
def test_pick_units_meets_integer_budgets_exactly_for_single_tokens():
    unit_ids = torch.arange(50).repeat(8, 1)
    unit_ids[:, :3] = -1
    budget = torch.tensor([0, 1, 5, 10, 20, 47, 60, 3], dtype=torch.float64)
    predicted = pick_units(unit_ids, budget, torch.Generator().manual_seed(0))
    assert predicted.sum(dim=1).tolist() == [0, 1, 5, 10, 20, 47, 47, 3]
    assert not predicted[:, :3].any()


def test_pick_units_is_unbiased_for_multi_token_units():
    unit_ids = (torch.arange(30) // 3 * 3).repeat(4000, 1)  # ten units of 3 tokens
    predicted = pick_units(unit_ids, torch.full((4000,), 4.0), torch.Generator().manual_seed(1))
    counts = predicted.sum(dim=1)
    assert set(counts.unique().tolist()) == {3, 6}  # never splits a unit, overshoots by at most one unit
    assert counts.double().mean().item() == pytest.approx(4.0, abs=0.1)


def test_fill_rounds_bring_rows_closer_to_their_budget():
    sizes = torch.tensor([9, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    unit_ids = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes).repeat(3000, 1)
    budget = torch.full((3000,), 4.0, dtype=torch.float64)
    plain = pick_units(unit_ids, budget, torch.Generator().manual_seed(0)).sum(dim=1).double()
    filled = pick_units(unit_ids, budget, torch.Generator().manual_seed(0), fill_rounds=2).sum(dim=1).double()
    assert plain.mean().item() == pytest.approx(4.0, abs=0.2)  # unbiased, but lumpy: 9-token unit or not
    assert (plain - 4).abs().mean() > 1.0
    assert (filled - 4).abs().mean() < (plain - 4).abs().mean() / 2


def test_pick_units_draws_proportionally_to_weights_without_replacement():
    rows = 6000
    unit_ids = torch.arange(3).repeat(rows, 1)
    weights = torch.tensor([3.0, 1.0, 0.0]).repeat(rows, 1)
    predicted = pick_units(unit_ids, torch.ones(rows, dtype=torch.float64), torch.Generator().manual_seed(2),
                           weights)
    share = predicted.double().mean(dim=0)
    assert share[0].item() == pytest.approx(0.75, abs=0.03)
    assert share[2].item() == 0.0  # weight 0: never chosen
    both = pick_units(unit_ids, torch.full((rows,), 3.0, dtype=torch.float64), torch.Generator(), weights)
    assert both[:, :2].all() and not both[:, 2].any()  # without replacement; zero weight stays out


# ---------------------------------------------------------------------------------------------- whole_word
def test_whole_word_keeps_the_full_corruption_split_per_word(any_tokenizer, corpus):
    strategy = WholeWordMasking(ratio=0.3)
    _, batch = packed_batch(any_tokenizer, corpus * 3, strategy)
    selection, corrupted, labels = strategy.mask_with_selection(batch, 0.3, torch.Generator().manual_seed(0))
    words = word_unit_ids(batch)
    word_sizes = torch.zeros_like(words).scatter_add_(1, words.clamp(min=0), (words >= 0).long())
    multi = (word_sizes.gather(1, words.clamp(min=0)) > 1) & selection.predicted
    assert multi.any(), "the corpus must exercise words of several sub-tokens"
    original = batch["input_ids"]
    kind = torch.where(corrupted == any_tokenizer.mask_token_id, 0, torch.where(corrupted != original, 1, 2))
    per_word = per_unit_first(kind, selection.units, selection.predicted)
    shares = torch.bincount(per_word, minlength=3).double() / len(per_word)
    # unlike Hugging Face's whole-word collator (100% mask), 80 / 10 / 10 decided per word
    assert shares.tolist() == pytest.approx([0.8, 0.1, 0.1], abs=0.05)
    assert abs(int((labels != IGNORE_INDEX).sum()) / int((~batch["special_tokens_mask"]).sum()) - 0.3) < 0.02


def test_whole_word_uses_tokenizer_word_ids_not_prefixes(any_tokenizer):
    strategy = WholeWordMasking()
    collator = MaskingCollator(any_tokenizer, strategy, seed=0)
    enc = any_tokenizer(["unbelievabletrain tastyautonomous"])
    example = {"input_ids": enc["input_ids"][0], "word_ids": [-1 if w is None else w for w in enc.word_ids(0)]}
    batch = collator.pad([example])
    words = batch["word_ids"][0]
    assert (words == 0).sum() > 1 and (words == 1).sum() > 1  # both words have several sub-tokens
    single = 0
    for seed in range(8):
        selection = strategy.select(batch, 0.5, torch.Generator().manual_seed(seed))
        predicted = selection.predicted[0] & ~batch["special_tokens_mask"][0]
        chosen = words[predicted].unique()
        assert torch.equal(predicted, torch.isin(words, chosen) & (words >= 0))  # whole words only
        single += len(chosen) == 1
    assert single >= 4  # half the tokens: mostly one of the two words


# ---------------------------------------------------------------------------------------------- content_word
def test_content_word_labels_every_tokenizer_alike(any_tokenizer):
    strategy = ContentWordMasking()
    strategy.bind(any_tokenizer)
    text = "The cat likes unbelievably tasty pancakes, and it waits for the train!"
    enc = any_tokenizer([text], return_offsets_mapping=True)
    labels = strategy.token_features([text], enc)[CONTENT_FEATURE][0]
    word_of = enc.word_ids(0)
    by_word = {}
    for word, label, (start, end) in zip(word_of, labels, enc["offset_mapping"][0], strict=True):
        if word is None:
            assert label == -1
            continue
        by_word.setdefault(word, [set(), ""])
        by_word[word][0].add(label)
        by_word[word][1] += text[start:end]
    assert all(len(v[0]) == 1 for v in by_word.values())  # one label per word
    decided = {}
    for labels_of_word, spelled in by_word.values():
        key = spelled.strip().strip(",!").lower()
        if key:
            decided[key] = labels_of_word.pop()
    for word in ("the", "and", "it", "for"):
        assert decided[word] == 0, word
    for word in ("cat", "likes", "unbelievably", "tasty", "pancakes", "waits", "train"):
        assert decided[word] == 1, word


def test_function_word_list_is_configurable(tmp_path, wordpiece_tokenizer):
    listing = tmp_path / "stop.txt"
    listing.write_text("# my list\ncat\nPancakes  # capitals are fine\n", encoding="utf-8")
    for spec in (str(listing), ["cat", "pancakes"]):
        strategy = ContentWordMasking(function_words=spec, punctuation_is_function=False)
        strategy.bind(wordpiece_tokenizer)
        text = "the cat likes pancakes ."
        enc = wordpiece_tokenizer([text], return_offsets_mapping=True)
        labels = strategy.token_features([text], enc)[CONTENT_FEATURE][0]
        tokens = wordpiece_tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
        assert dict(zip(tokens, labels, strict=True)) == {"[CLS]": -1, "the": 1, "cat": 0, "likes": 1,
                                                          "pancakes": 0, ".": 1, "[SEP]": -1}
    assert "the" in ENGLISH_FUNCTION_WORDS and "pancakes" not in ENGLISH_FUNCTION_WORDS
    with pytest.raises(UserError, match="not a file"):
        build_strategy({"name": "content_word", "function_words": str(tmp_path / "missing.txt")})


def test_content_words_are_preferred(wordpiece_tokenizer, corpus):
    shares = {}
    for weight in (1.0, 0.25, 0.0):
        strategy = ContentWordMasking(function_weight=weight)
        _, batch = packed_batch(wordpiece_tokenizer, corpus, strategy)
        selection, _, _ = strategy.mask_with_selection(batch, 0.15, torch.Generator().manual_seed(0))
        content = batch[CONTENT_FEATURE]
        shares[weight] = (selection.predicted & (content == 1)).sum().item() / selection.predicted.sum().item()
        corpus_share = ((content == 1) & ~batch["special_tokens_mask"]).sum().item() / (
            ~batch["special_tokens_mask"]).sum().item()
    assert shares[1.0] == pytest.approx(corpus_share, abs=0.05)  # equal weights: like whole-word masking
    assert shares[0.25] > corpus_share + 0.1
    assert shares[0.0] == 1.0  # function words never chosen while content words remain


def test_content_word_needs_its_feature(wordpiece_tokenizer):
    strategy = ContentWordMasking()
    collator = MaskingCollator(wordpiece_tokenizer, strategy)
    batch = collator.pad([{"input_ids": wordpiece_tokenizer("a dog")["input_ids"]}])
    with pytest.raises(KeyError, match="content_word"):
        strategy(batch)


# ---------------------------------------------------------------------------------------------- token_weighted
@pytest.fixture(scope="module")
def weights_table(wordpiece_tokenizer, corpus):
    return build_token_weights_from_texts(corpus, wordpiece_tokenizer)


def test_built_table_scores_informative_tokens_above_function_words(weights_table, wordpiece_tokenizer):
    weights, stats = weights_table
    assert weights.shape == (len(wordpiece_tokenizer),)
    assert (weights >= 0).all() and (weights <= 1).all()
    assert all(weights[i] == 0 for i in wordpiece_tokenizer.all_special_ids)
    vocab = wordpiece_tokenizer.get_vocab()
    assert weights[vocab["the"]] < 0.05 < weights[vocab["pancakes"]]
    assert stats["tokens"] > 1000 and stats["windows"] == 200 and stats["pairs"] > 100
    # a token never seen keeps the prior ratio
    unseen = [i for t, i in vocab.items() if t not in wordpiece_tokenizer.all_special_tokens
              and weights[i] == pytest.approx(0.15)]
    assert unseen or stats["distinct_tokens"] == len(vocab) - len(wordpiece_tokenizer.all_special_ids)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_weight_files_round_trip(tmp_path, weights_table, suffix):
    weights, stats = weights_table
    path = save_token_weights(tmp_path / f"w{suffix}", weights, {**stats, "tokenizer": "tiny"})
    loaded, meta = load_token_weights(path)
    assert torch.allclose(loaded, torch.as_tensor(weights), atol=1e-6)
    assert meta["tokenizer"] == "tiny" and meta["vocab_size"] == len(weights)
    assert meta["format"] == "mlmkit-token-weights"
    if suffix == ".json":
        assert json.loads(path.read_text())["weights"][0] == pytest.approx(float(weights[0]), abs=1e-6)


def test_weight_file_errors(tmp_path, wordpiece_tokenizer):
    with pytest.raises(UserError, match="weights_file"):
        build_strategy({"name": "token_weighted"})
    with pytest.raises(UserError, match="not found"):
        build_strategy({"name": "token_weighted", "weights_file": str(tmp_path / "none.json")})
    with pytest.raises(UserError, match=".json or .safetensors"):
        save_token_weights(tmp_path / "w.pkl", torch.ones(3).numpy(), {})
    small = save_token_weights(tmp_path / "small.json", torch.ones(5).numpy(), {})
    strategy = build_strategy({"name": "token_weighted", "weights_file": str(small)})
    with pytest.raises(UserError, match="tokenizer"):
        strategy.bind(wordpiece_tokenizer)
    (tmp_path / "neg.json").write_text(json.dumps({"weights": [1.0, -1.0]}))
    with pytest.raises(UserError, match="non-negative"):
        load_token_weights(tmp_path / "neg.json")


def test_token_weighted_follows_the_table(tmp_path, wordpiece_tokenizer, corpus):
    vocab = wordpiece_tokenizer.get_vocab()
    table = torch.ones(len(wordpiece_tokenizer))
    table[vocab["the"]] = 0.0
    table[vocab["cat"]] = 50.0
    path = save_token_weights(tmp_path / "hand.safetensors", table.numpy(), {})
    strategy = build_strategy({"name": "token_weighted", "weights_file": str(path)})
    _, batch = packed_batch(wordpiece_tokenizer, corpus, strategy)
    selection, _, labels = strategy.mask_with_selection(batch, 0.15, torch.Generator().manual_seed(0))
    ids = batch["input_ids"]
    assert not selection.predicted[ids == vocab["the"]].any()
    cat_rate = selection.predicted[ids == vocab["cat"]].double().mean().item()
    other = ~batch["special_tokens_mask"] & (ids != vocab["cat"]) & (ids != vocab["the"])
    assert cat_rate > 0.9 > 0.2 > selection.predicted[other].double().mean().item()
    assert abs((labels != IGNORE_INDEX).sum().item() / (~batch["special_tokens_mask"]).sum().item() - 0.15) < 0.02

    whole = build_strategy({"name": "token_weighted", "weights_file": str(path), "whole_words": True})
    whole.bind(wordpiece_tokenizer)
    selection = whole.select(batch, 0.15, torch.Generator().manual_seed(0))
    words = word_unit_ids(batch)
    predicted_words = set((torch.arange(len(ids)).unsqueeze(1) * ids.shape[1] + words)[selection.predicted].tolist())
    all_tokens_of_those = (torch.arange(len(ids)).unsqueeze(1) * ids.shape[1] + words)
    in_chosen = torch.isin(all_tokens_of_those, torch.tensor(sorted(predicted_words))) & (words >= 0)
    assert torch.equal(in_chosen, selection.predicted)


# ---------------------------------------------------------------------------------------------- mixture
class FeedbackProbe(MaskingStrategy):
    """A strategy that predicts the first ordinary token and records the losses it is fed."""

    name = "test_feedback_probe"
    wants_feedback = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen_rows = 0

    def select(self, batch, ratio, generator):
        candidates = ~batch["special_tokens_mask"]
        first = candidates & (candidates.long().cumsum(dim=1) == 1)
        return Selection(first)

    def observe(self, batch, token_losses):
        assert token_losses.shape == batch["input_ids"].shape
        self.seen_rows += token_losses.shape[0]

    def log_values(self):
        return {"rows": float(self.seen_rows)}

    def state_dict(self):
        return {"seen_rows": self.seen_rows}

    def load_state_dict(self, state):
        self.seen_rows = state["seen_rows"]


register_strategy("test_feedback_probe")(FeedbackProbe)


def test_mixture_chooses_one_strategy_per_sequence(wordpiece_tokenizer, corpus):
    mixture = build_strategy({"name": "mixture", "ratio": 0.2, "strategies": [
        {"name": "whole_word", "weight": 1}, {"name": "test_feedback_probe", "weight": 3}]})
    assert mixture.wants_feedback
    _, batch = packed_batch(wordpiece_tokenizer, corpus * 8, mixture, block=32)
    selection, _, _ = mixture.mask_with_selection(batch, 0.2, torch.Generator().manual_seed(4))
    choice = mixture._last_choice
    assert choice.float().mean().item() == pytest.approx(0.75, abs=0.08)
    probe_rows = selection.predicted[choice == 1]
    assert (probe_rows.sum(dim=1) == 1).all()  # the probe predicts exactly one token per row
    ww_rows = selection.predicted[choice == 0]
    maskable = ~batch["special_tokens_mask"][choice == 0]
    assert ww_rows.sum().item() / maskable.sum().item() == pytest.approx(0.2, abs=0.03)
    # feedback goes to the rows each component masked
    mixture.observe(batch, torch.rand(batch["input_ids"].shape))
    assert mixture.components[1].seen_rows == int((choice == 1).sum())
    logged = mixture.log_values()
    assert logged["mixture/1_test_feedback_probe/share"] == pytest.approx(choice.float().mean().item(), abs=1e-3)
    assert logged["mixture/1_test_feedback_probe/rows"] == float(int((choice == 1).sum()))
    state = mixture.state_dict()
    assert state == {"components": {"1": {"seen_rows": int((choice == 1).sum())}}}
    mixture.components[1].seen_rows = 0
    mixture.load_state_dict(state)
    assert mixture.components[1].seen_rows == int((choice == 1).sum())


def test_mixture_features_are_the_union_of_its_components(wordpiece_tokenizer, corpus):
    mixture = build_strategy({"name": "mixture", "strategies": [{"name": "span"}, {"name": "content_word"}]})
    assert mixture.features == (CONTENT_FEATURE,)
    _, batch = packed_batch(wordpiece_tokenizer, corpus, mixture)
    assert CONTENT_FEATURE in batch
    corrupted, labels = mixture(batch, 0.15, torch.Generator().manual_seed(0))
    assert (labels != IGNORE_INDEX).any()


def test_mixture_from_command_line_overrides():
    cfg = load_config(PretrainConfig, None, [
        "masking.name=mixture",
        "masking.strategies=[{name: span, weight: 0.5, max_span: 4}, {name: random, weight: 0.5}]",
    ])
    mixture = build_strategy(cfg.masking)
    assert isinstance(mixture, MixtureMasking)
    assert [c.name for c in mixture.components] == ["span", "random"]
    assert mixture.components[0].max_span == 4
    assert mixture.weights.tolist() == [0.5, 0.5]


@pytest.mark.parametrize(
    ("strategies", "message"),
    [
        (None, "needs masking.strategies"),
        ([{"name": "span", "ratio": 0.3}], "set them on the mixture"),
        ([{"name": "mixture", "strategies": [{"name": "random"}]}], "another mixture"),
        ([{"name": "spam"}], "Did you mean 'span'"),
        ([{"name": "span", "weight": 0}], "must not all be zero"),
        (["span"], "mapping with a 'name'"),
    ],
)
def test_mixture_errors(strategies, message):
    with pytest.raises(UserError, match=message):
        build_strategy({"name": "mixture", "strategies": strategies})


# ---------------------------------------------------------------------------------------------- preview
def test_preview_is_what_training_would_do(any_tokenizer):
    text = "Self-driving cars are unbelievably tasty, said the young engineer."
    strategy = build_strategy({"name": "span", "ratio": 0.4})
    enc = any_tokenizer([text])
    seen_units = 0
    for seed in range(5):
        preview = preview_text(text, strategy, any_tokenizer, seed=seed)
        collator = MaskingCollator(any_tokenizer, strategy, seed=seed, pad_to_multiple_of=None)
        batch = collator.pad([{"input_ids": enc["input_ids"][0],
                               "word_ids": [-1 if w is None else w for w in enc.word_ids(0)]}])
        expected = collator.mask(batch, step=0)
        assert preview.corrupted_tokens == any_tokenizer.convert_ids_to_tokens(expected["input_ids"][0].tolist())
        assert preview.predicted == (expected["labels"][0] != IGNORE_INDEX).tolist()
        assert sum(len(u.tokens) for u in preview.units) == preview.predicted_tokens
        seen_units += len(preview.units)
        for unit in preview.units:
            assert unit.text == text[unit.start:unit.end]
            assert unit.corruption in {"mask", "random", "kept"}
            assert (unit.corruption == "random") == bool(unit.replacements)
        payload = preview.to_dict()
        json.dumps(payload)
        assert payload["realized_ratio"] == pytest.approx(preview.predicted_tokens / preview.maskable_tokens,
                                                          abs=1e-4)
    assert seen_units > 0


def test_corpus_stats(wordpiece_tokenizer, corpus):
    texts = datasets.Dataset.from_dict({"text": corpus})
    stats = corpus_stats(texts, WholeWordMasking(), wordpiece_tokenizer, block_size=64)
    assert stats["realized_ratio"] == pytest.approx(0.15, abs=0.02)
    assert stats["unit_words_histogram"]["1"] == stats["units"]  # whole words: one word per unit
    assert sum(stats["unit_tokens_histogram"].values()) == stats["units"]
    assert sum(stats["corruption"].values()) == pytest.approx(1.0)
    spans = corpus_stats(texts, build_strategy({"name": "span"}), wordpiece_tokenizer, block_size=64)
    assert spans["mean_unit_words"] > 2.0
    content = corpus_stats(texts, ContentWordMasking(function_weight=0.1), wordpiece_tokenizer, block_size=64)
    assert content["content_share_predicted"] > content["content_share_corpus"] + 0.1
    assert content["content_share_corpus"] == stats["content_share_corpus"]
