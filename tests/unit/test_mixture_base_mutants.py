"""The strategy contract (validation, binding, corruption, run helpers, word strategies) and the mixture of strategies,
pinned down on hand-made batches: exact values, exact messages, state round trips, feedback routing."""

from __future__ import annotations

import importlib.util
import pickle
import re

import pytest
import torch

from mlmkit.errors import UserError
from mlmkit.masking import base
from mlmkit.masking.base import (
    IGNORE_INDEX,
    MaskingStrategy,
    Selection,
    run_starts,
    run_unit_ids,
)
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.random_token import RandomMasking
from mlmkit.masking.registry import build_strategy
from mlmkit.masking.whole_word import WholeWordMasking

ROWS = ["the cat likes the morning train", "a dog", "our team waits for the new station again"]


class Everything(MaskingStrategy):
    """Selects every position, special tokens included (the base class must drop those)."""

    name = "everything"

    def __init__(self, one_unit: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.one_unit = one_unit

    def select(self, batch, ratio, generator):
        predicted = torch.ones_like(batch["input_ids"], dtype=torch.bool)
        return Selection(predicted, torch.zeros_like(batch["input_ids"]) if self.one_unit else None)


class Recorder(MaskingStrategy):
    """A mixture component that predicts its rows' first ordinary token, counts rows and records its feedback."""

    name = "recorder"
    wants_feedback = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows = 0
        self.observed: list[tuple[torch.Tensor, torch.Tensor]] = []

    def select(self, batch, ratio, generator):
        self.rows += batch["input_ids"].shape[0]
        ordinary = ~batch["special_tokens_mask"]
        first = ordinary & (ordinary.cumsum(dim=1) == 1)
        return Selection(first)

    def observe(self, batch, token_losses):
        self.observed.append((batch["input_ids"], token_losses))

    def log_values(self):
        return {"rows": float(self.rows)}

    def state_dict(self):
        return {"rows": self.rows} if self.rows else {}

    def load_state_dict(self, state):
        self.rows = state["rows"]


RECORDER = f"{__name__}:Recorder"


def _batch(tokenizer, strategy, rows=ROWS, **pad):
    collator = MaskingCollator(tokenizer, strategy, pad_to_multiple_of=None, **pad)
    return collator.pad([{"input_ids": ids} for ids in tokenizer(list(rows))["input_ids"]])


def _bound(strategy, tokenizer):
    strategy.bind(tokenizer)
    return strategy


# ---------------------------------------------------------------------------------------------- run helpers
def test_run_starts_and_run_unit_ids_by_hand():
    ids = torch.tensor([[-1, 0, 0, 1, 1, 1, -1, 2],
                        [5, -1, 5, 5, 7, 7, 8, -1]])
    assert run_starts(ids).tolist() == [[False, True, False, True, False, False, False, True],
                                        [True, False, True, False, True, False, True, False]]
    assert run_unit_ids(ids).tolist() == [[-1, 1, 1, 3, 3, 3, -1, 7],
                                          [0, -1, 2, 2, 4, 4, 6, -1]]
    assert run_unit_ids(torch.tensor([[3, 3, 3]])).tolist() == [[0, 0, 0]]
    assert run_starts(torch.tensor([[0, 0, 0]])).tolist() == [[True, False, False]]


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.5}, "masking.ratio must be between 0 and 1, got 1.5"),
        ({"ratio": -0.1}, "masking.ratio must be between 0 and 1, got -0.1"),
        ({"mask_replace_prob": 2}, "masking.mask_replace_prob must be between 0 and 1, got 2"),
        ({"random_replace_prob": -1}, "masking.random_replace_prob must be between 0 and 1, got -1"),
        ({"mask_replace_prob": 0.9, "random_replace_prob": 0.2},
         "masking.mask_replace_prob + masking.random_replace_prob must not exceed 1"),
    ],
)
def test_parameter_errors_word_for_word(kwargs, message):
    with pytest.raises(ValueError) as error:
        RandomMasking(**kwargs)
    assert str(error.value) == message


def test_parameter_bounds_are_inclusive():
    for ratio, mask, rand in [(0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.5, 0.7, 0.3), (0.5, 0.9, 0.1)]:
        strategy = RandomMasking(ratio=ratio, mask_replace_prob=mask, random_replace_prob=rand)
        assert (strategy.ratio, strategy.mask_replace_prob, strategy.random_replace_prob) == (ratio, mask, rand)
    defaults = RandomMasking()
    assert (defaults.ratio, defaults.mask_replace_prob, defaults.random_replace_prob) == (0.15, 0.8, 0.1)
    assert (defaults.mask_token_id, defaults.replacement_ids, defaults.tokenizer) == (None, None, None)
    assert isinstance(RandomMasking(ratio=1).ratio, float)


def test_parameters_lists_base_and_own_defaults():
    assert RandomMasking.parameters() == {"ratio": 0.15, "mask_replace_prob": 0.8, "random_replace_prob": 0.1,
                                          "exact": False, "min_predictions": 0}
    assert list(WholeWordMasking.parameters())[:5] == ["ratio", "mask_replace_prob", "random_replace_prob",
                                                        "language", "segmenter"]
    assert WholeWordMasking.parameters()["language"] == "en"
    assert WholeWordMasking.parameters()["segmenter"] == "auto"
    assert "kwargs" not in WholeWordMasking.parameters() and "self" not in RandomMasking.parameters()


# ---------------------------------------------------------------------------------------------- binding, defaults
class NoMask:
    mask_token_id = None


def test_bind(wordpiece_tokenizer):
    strategy = _bound(RandomMasking(), wordpiece_tokenizer)
    assert strategy.tokenizer is wordpiece_tokenizer
    assert strategy.mask_token_id == wordpiece_tokenizer.mask_token_id and isinstance(strategy.mask_token_id, int)
    special = set(wordpiece_tokenizer.all_special_ids)
    assert strategy.replacement_ids.tolist() == [i for i in range(len(wordpiece_tokenizer)) if i not in special]
    assert strategy.replacement_ids.dtype == torch.long
    with pytest.raises(ValueError) as error:
        RandomMasking().bind(NoMask())
    assert str(error.value) == "the tokenizer has no mask token, so it cannot be used for masked language modeling"


def test_base_defaults(wordpiece_tokenizer):
    strategy = MaskingStrategy()
    assert strategy.token_features(["a"], None) == {}
    assert strategy.state_dict() == {} and strategy.log_values() == {}
    assert strategy.load_state_dict({"x": 1}) is None and strategy.observe({}, torch.zeros(1, 1)) is None
    assert not MaskingStrategy.wants_feedback and MaskingStrategy.features == () == MaskingStrategy.group_features
    with pytest.raises(NotImplementedError):
        strategy.select({}, 0.1, torch.Generator())
    with pytest.raises(RuntimeError, match="^call bind\\(tokenizer\\) before masking$"):
        RandomMasking()(_batch(wordpiece_tokenizer, RandomMasking()))


# ---------------------------------------------------------------------------------------------- masking
def test_mask_with_selection_drops_special_tokens_and_builds_labels(wordpiece_tokenizer):
    strategy = _bound(Everything(mask_replace_prob=1.0, random_replace_prob=0.0), wordpiece_tokenizer)
    batch = _batch(wordpiece_tokenizer, strategy)
    ordinary = ~batch["special_tokens_mask"]
    selection, corrupted, labels = strategy.mask_with_selection(batch)
    assert torch.equal(selection.predicted, ordinary)
    assert torch.equal(labels, torch.where(ordinary, batch["input_ids"], IGNORE_INDEX))
    assert torch.equal(corrupted, torch.where(ordinary, wordpiece_tokenizer.mask_token_id, batch["input_ids"]))
    assert IGNORE_INDEX == -100
    again = strategy(batch)
    assert torch.equal(again[0], corrupted) and torch.equal(again[1], labels)
    assert batch["input_ids"].ne(wordpiece_tokenizer.mask_token_id).all()  # never modified in place


def test_default_ratio_and_generator(wordpiece_tokenizer):
    strategy = _bound(RandomMasking(ratio=0.5), wordpiece_tokenizer)
    batch = _batch(wordpiece_tokenizer, strategy)
    default = strategy(batch)
    for got in (strategy(batch), strategy(batch, 0.5, torch.Generator().manual_seed(0)),
                strategy(batch, None, torch.Generator().manual_seed(0))):
        assert torch.equal(got[0], default[0]) and torch.equal(got[1], default[1])
    assert not torch.equal(strategy(batch, 0.5, torch.Generator().manual_seed(1))[1], default[1])
    assert (strategy(batch, 0.0)[1] == IGNORE_INDEX).all()
    assert (strategy(batch, 1)[1] != IGNORE_INDEX).sum() == (~batch["special_tokens_mask"]).sum()


def _shares(strategy, tokenizer, seeds=40):
    batch = _batch(tokenizer, strategy, rows=ROWS * 20)
    counts = {"mask": 0, "random": 0, "kept": 0}
    for seed in range(seeds):
        corrupted, labels = strategy(batch, 1.0, torch.Generator().manual_seed(seed))
        predicted = labels != IGNORE_INDEX
        masked = predicted & (corrupted == tokenizer.mask_token_id)
        kept = predicted & (corrupted == batch["input_ids"])
        counts["mask"] += int(masked.sum())
        counts["kept"] += int(kept.sum())
        counts["random"] += int((predicted & ~masked & ~kept).sum())
        assert not torch.isin(corrupted[predicted & ~masked & ~kept], torch.tensor(tokenizer.all_special_ids)).any()
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}, total


@pytest.mark.parametrize(("mask", "rand"), [(0.5, 0.3), (0.2, 0.6), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0)])
def test_corruption_split_per_token(wordpiece_tokenizer, mask, rand):
    strategy = _bound(RandomMasking(mask_replace_prob=mask, random_replace_prob=rand), wordpiece_tokenizer)
    shares, n = _shares(strategy, wordpiece_tokenizer)
    # a random replacement equals the original once in len(replacement_ids): those read as kept
    same = rand / len(strategy.replacement_ids)
    expected = {"mask": mask, "random": rand - same, "kept": 1 - mask - rand + same}
    for kind, p in expected.items():
        tolerance = 5 * (p * (1 - p) / n) ** 0.5 + 1e-9
        assert abs(shares[kind] - p) <= tolerance, (kind, shares, expected)


def test_unit_zero_has_its_own_draw(wordpiece_tokenizer):
    strategy = _bound(RandomMasking(mask_replace_prob=0.5, random_replace_prob=0.0), wordpiece_tokenizer)
    ids = torch.tensor([[10, 11, 12, 13]] * 50)
    predicted = torch.ones_like(ids, dtype=torch.bool)
    units = torch.arange(4).expand(50, 4)
    corrupted, _ = strategy.corrupt(ids, Selection(predicted, units), torch.Generator().manual_seed(0))
    masked = corrupted == wordpiece_tokenizer.mask_token_id
    assert (masked[:, 0] != masked[:, 1]).any()  # units 0 and 1 decide independently


def test_corruption_is_decided_once_per_unit(wordpiece_tokenizer):
    strategy = _bound(Everything(one_unit=True, mask_replace_prob=0.5, random_replace_prob=0.5), wordpiece_tokenizer)
    batch = _batch(wordpiece_tokenizer, strategy, rows=ROWS * 4)
    decisions = set()
    for seed in range(10):
        corrupted, labels = strategy(batch, 1.0, torch.Generator().manual_seed(seed))
        masked = (corrupted == wordpiece_tokenizer.mask_token_id) & (labels != IGNORE_INDEX)
        ordinary = ~batch["special_tokens_mask"]
        for row in range(len(ROWS) * 4):
            row_masked = masked[row][ordinary[row]]
            assert row_masked.all() or not row_masked.any()  # the whole row is one unit
            decisions.add(bool(row_masked.all()))
    assert decisions == {True, False}


# ---------------------------------------------------------------------------------------------- word strategies
def test_word_strategy_languages_and_features(wordpiece_tokenizer):
    plain = WholeWordMasking()
    assert (plain.language, plain.segmenter, plain.resolved_language, plain.resolved_segmenter) == (
        "en", "tokenizer", "en", "tokenizer")
    assert plain.features == ()
    auto = WholeWordMasking(language="auto")
    assert (auto.language, auto.segmenter, auto.resolved_language, auto.resolved_segmenter) == (
        "auto", "auto", "en", "tokenizer")
    assert auto.features == ("word_ids",)
    chinese = WholeWordMasking(language="zh")
    assert (chinese.segmenter, chinese.resolved_segmenter, chinese.features) == ("jieba", "jieba", ("word_ids",))
    with pytest.raises(UserError, match="unknown masking.segmenter 'nope'"):
        WholeWordMasking(language="auto", segmenter="nope")
    assert WholeWordMasking(language="fr").detect_language(["the cat likes the train"]) == "fr"


def test_auto_language_is_settled_once(monkeypatch):
    calls: list[list[str]] = []

    def detect(texts):
        calls.append(list(texts))
        return "zh"

    monkeypatch.setattr(base, "detect_language", detect)
    strategy = WholeWordMasking(language="auto")
    heard: list[str] = []
    strategy.on_language = heard.append
    assert strategy.detect_language(["第一"]) == "zh" and strategy.resolved_language == "zh"
    assert strategy.resolved_segmenter == "jieba"
    assert strategy.detect_language(["second"]) == "zh"
    assert calls == [["第一"]] and heard == ["zh"]


def test_word_strategy_segmenters_and_missing_packages(wordpiece_tokenizer, monkeypatch):
    text = "the cat's train"
    spacy_words = _bound(WholeWordMasking(segmenter="spacy"), wordpiece_tokenizer)
    assert (spacy_words.segmenter, spacy_words.features) == ("spacy", ("word_ids",))
    encodings = wordpiece_tokenizer([text], return_offsets_mapping=True)
    assert spacy_words.word_ids([text], encodings) == [[-1, 0, 1, 2, 2, 3, -1]]  # spaCy: the / cat / 's / train
    # slow-tokenizer encodings (plain lists, no word ids): every ordinary token is its own word
    plain = {"input_ids": wordpiece_tokenizer(["the cat likes"])["input_ids"]}
    assert _bound(WholeWordMasking(), wordpiece_tokenizer).word_ids(["the cat likes"], plain) == [[-1, 1, 2, 3, -1]]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jieba" else real(name, *a))
    with pytest.raises(UserError, match=r"^masking.language=zh segments words with jieba, which is not installed"):
        WholeWordMasking(language="zh")
    monkeypatch.setattr(base, "detect_language", lambda texts: "zh" if list(texts) else "en")
    with pytest.raises(UserError, match=r"^masking.language=zh segments words with jieba"):
        WholeWordMasking(language="auto").detect_language([text])
    with pytest.raises(UserError, match=r"^masking.language=zh segments words with jieba"):
        WholeWordMasking(language="auto").word_ids([text], encodings)


def test_word_ids_and_pickling(wordpiece_tokenizer):
    text = "the internationalization train"
    encodings = wordpiece_tokenizer([text], return_offsets_mapping=True)
    plain = _bound(WholeWordMasking(), wordpiece_tokenizer)
    assert plain.word_ids([text], encodings) == [[-1, 0, 1, 1, 1, 1, 1, 2, -1]]
    assert plain.token_features([text], encodings) == {}
    unbound = WholeWordMasking()
    assert unbound.word_ids([text], encodings) == [[-1, 0, 1, 1, 1, 1, 1, 2, -1]]
    chinese = _bound(WholeWordMasking(language="zh"), wordpiece_tokenizer)
    segmented = chinese.token_features([text], encodings)
    assert segmented == {"word_ids": [[-1, 0, 1, 1, 1, 1, 1, 2, -1]]}
    assert chinese._segment is not None
    copy = pickle.loads(pickle.dumps(chinese))
    assert copy._segment is None and chinese._segment is not None
    assert copy.token_features([text], encodings) == segmented


# ---------------------------------------------------------------------------------------------- mixture
def _mixture(*components, **kwargs):
    return build_strategy({"name": "mixture", "strategies": list(components), **kwargs})


def test_one_component_mixture_is_that_component(wordpiece_tokenizer):
    text = ["the internationalization of the morning train"] * 3
    for name in ("random", "whole_word"):
        mixture = _bound(_mixture({"name": name}, ratio=0.5), wordpiece_tokenizer)
        alone = _bound(build_strategy({"name": name, "ratio": 0.5}), wordpiece_tokenizer)
        encodings = wordpiece_tokenizer(text)
        examples = [{"input_ids": ids, "word_ids": [-1 if w is None else w for w in encodings.word_ids(i)]}
                    for i, ids in enumerate(encodings["input_ids"])]
        batch = MaskingCollator(wordpiece_tokenizer, mixture, pad_to_multiple_of=None).pad(examples)
        for seed in range(3):
            got = mixture.mask_with_selection(batch, None, torch.Generator().manual_seed(seed))
            want = alone.mask_with_selection(batch, None, torch.Generator().manual_seed(seed))
            assert torch.equal(got[0].predicted, want[0].predicted)
            assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
            units = want[0].units if want[0].units is not None else torch.arange(batch["input_ids"].shape[1])
            assert got[0].units.dtype == torch.long
            assert torch.equal(got[0].units, torch.where(want[0].predicted, units, -1))


def test_mixture_weights_and_rows(wordpiece_tokenizer):
    mixture = _bound(_mixture({"name": RECORDER, "weight": 0}, {"name": RECORDER, "weight": 2}), wordpiece_tokenizer)
    assert mixture.weights.tolist() == [0.0, 1.0]
    batch = _batch(wordpiece_tokenizer, mixture)
    selection = mixture.select(batch, 0.15, torch.Generator().manual_seed(0))
    idle, busy = mixture.components
    assert (idle.rows, busy.rows) == (0, 3)
    assert selection.predicted.sum(dim=1).tolist() == [1, 1, 1]  # every row masked by the chosen component
    assert selection.units[~selection.predicted].eq(-1).all()
    one_row = {k: v[:1] for k, v in batch.items()}
    assert mixture.select(one_row, 0.15, torch.Generator()).predicted.sum() == 1
    assert mixture.log_values() == {"mixture/0_recorder/share": 0.0, "mixture/0_recorder/rows": 0.0,
                                    "mixture/1_recorder/share": 1.0, "mixture/1_recorder/rows": 4.0}
    assert _mixture({"name": "random", "weight": 1}, {"name": "span", "weight": 3}).weights.tolist() == [0.25, 0.75]
    assert _mixture({"name": "random"}, {"name": "span", "weight": 3}).weights.tolist() == [0.25, 0.75]  # default 1
    assert _mixture({"name": "random"}, {"name": "span", "weight": 2}).weights.tolist() == [1 / 3, 2 / 3]


def test_mixture_ignores_what_is_not_per_row(wordpiece_tokenizer):
    mixture = _bound(_mixture({"name": RECORDER}, {"name": RECORDER}), wordpiece_tokenizer)
    batch = _batch(wordpiece_tokenizer, mixture)
    batch["step"] = torch.tensor(7)
    batch["texts"] = list(ROWS)
    selection = mixture.select(batch, 0.15, torch.Generator().manual_seed(1))
    assert selection.predicted.sum() == 3
    mixture.observe(batch, torch.ones(batch["input_ids"].shape))
    seen = [len(losses) for c in mixture.components for _, losses in c.observed]
    assert sum(seen) == 3


def test_mixture_feedback_goes_to_each_components_rows(wordpiece_tokenizer):
    mixture = _bound(_mixture({"name": RECORDER}, {"name": "random"}, {"name": RECORDER}), wordpiece_tokenizer)
    assert mixture.wants_feedback
    batch = _batch(wordpiece_tokenizer, mixture, rows=ROWS * 4)
    losses = torch.arange(batch["input_ids"].numel(), dtype=torch.float).reshape(batch["input_ids"].shape)
    mixture.observe(batch, losses)  # before any selection: nothing to route
    assert all(not c.observed for c in mixture.components if isinstance(c, Recorder))
    mixture.select(batch, 0.15, torch.Generator().manual_seed(3))
    mixture.observe({k: v[:2] for k, v in batch.items()}, losses[:2])  # not the batch just masked
    assert all(not c.observed for c in mixture.components if isinstance(c, Recorder))
    mixture.observe(batch, losses)
    first, _, last = mixture.components
    got = torch.cat([first.observed[0][1], last.observed[0][1]])
    assert len(got) == first.rows + last.rows
    rows_of = {tuple(row.tolist()) for row in got}
    assert rows_of <= {tuple(row.tolist()) for row in losses}
    for component in (first, last):
        ids, component_losses = component.observed[0]
        for row_ids, row_losses in zip(ids, component_losses, strict=True):
            index = int(row_losses[0].item()) // batch["input_ids"].shape[1]
            assert torch.equal(batch["input_ids"][index], row_ids)


def test_mixture_log_values_accumulate_and_round(wordpiece_tokenizer):
    mixture = _bound(_mixture({"name": RECORDER}, {"name": RECORDER}, {"name": "random"}), wordpiece_tokenizer)
    assert mixture.log_values()["mixture/0_recorder/share"] == 0.0
    batch = _batch(wordpiece_tokenizer, mixture)
    single = _bound(_mixture({"name": RECORDER}), wordpiece_tokenizer)
    single.select({k: v[:1] for k, v in batch.items()}, 0.15, torch.Generator())
    assert single.log_values()["mixture/0_recorder/share"] == 1.0  # one row seen, all of it by the only component
    totals = 0
    for seed in range(3):
        mixture.select(batch, 0.15, torch.Generator().manual_seed(seed))
        totals += 3
        values = mixture.log_values()
        for index in (0, 1):
            rows = mixture.components[index].rows
            assert values[f"mixture/{index}_recorder/share"] == round(rows / totals, 4)
            assert values[f"mixture/{index}_recorder/rows"] == float(rows)
        assert set(values) == {"mixture/0_recorder/share", "mixture/0_recorder/rows", "mixture/1_recorder/share",
                               "mixture/1_recorder/rows", "mixture/2_random/share"}
    shares = [v for k, v in values.items() if k.endswith("share")]
    assert sum(shares) == pytest.approx(1.0, abs=2e-4)
    assert any(len(repr(v)) > 5 for v in shares) or totals % 9 == 0


def test_mixture_state_round_trip(wordpiece_tokenizer):
    stateless = _mixture({"name": "random"}, {"name": "span"})
    assert stateless.state_dict() == {}
    assert stateless.group_features == ()
    stateless.load_state_dict({})
    stateless.load_state_dict(stateless.state_dict())
    mixture = _bound(_mixture({"name": "random"}, {"name": RECORDER}), wordpiece_tokenizer)
    assert mixture.state_dict() == {}
    mixture.components[1].rows = 5
    assert mixture.state_dict() == {"components": {"1": {"rows": 5}}}
    fresh = _mixture({"name": "random"}, {"name": RECORDER})
    fresh.load_state_dict(mixture.state_dict())
    assert fresh.components[1].rows == 5


def test_mixture_setup(wordpiece_tokenizer):
    mixture = _mixture({"name": "content_word"}, {"name": "whole_word"}, {"name": "whole_word", "language": "zh"},
                       ratio=0.3, mask_replace_prob=0.6, random_replace_prob=0.2)
    assert mixture.features == ("content_word", "word_ids")
    assert not mixture.wants_feedback
    for component in mixture.components:
        assert (component.ratio, component.mask_replace_prob, component.random_replace_prob) == (0.3, 0.6, 0.2)
    mixture.bind(wordpiece_tokenizer)
    assert all(c.tokenizer is wordpiece_tokenizer for c in mixture.components)
    text = "the cat likes the morning train"
    encodings = wordpiece_tokenizer([text], return_offsets_mapping=True)
    features = mixture.token_features([text], encodings)
    assert set(features) == {"content_word", "word_ids"}
    # the first component that computes a feature provides it
    assert features["content_word"] == mixture.components[0].token_features([text], encodings)["content_word"]


def test_mixture_detects_the_language_of_its_word_components(monkeypatch):
    heard: list[list[str]] = []
    monkeypatch.setattr(base, "detect_language", lambda texts: heard.append(list(texts)) or "fr")
    mixture = _mixture({"name": "random"}, {"name": "whole_word", "language": "auto"})
    assert mixture.detect_language(["le chat"]) is None and heard == [["le chat"]]
    assert mixture.components[1].resolved_language == "fr"


@pytest.mark.parametrize(
    ("strategies", "message"),
    [
        (None, "mixture needs masking.strategies, e.g. [{name: span, weight: 0.5}, {name: random, weight: 0.5}]"),
        ([], "mixture needs masking.strategies, e.g. [{name: span, weight: 0.5}, {name: random, weight: 0.5}]"),
        (["span"], "masking.strategies[0] must be a mapping with a 'name'"),
        ([{"name": "random"}, {"weight": 1}], "masking.strategies[1] must be a mapping with a 'name'"),
        ([{"name": "span", "weight": -1}], "masking.strategies[0].weight must be >= 0"),
        ([{"name": "span", "ratio": 0.3, "schedule": "linear"}],
         "masking.strategies[0] sets ratio, schedule; set them on the mixture, which all components share"),
        ([{"name": "mixture"}], "a mixture cannot contain another mixture"),
        ([{"name": "span", "weight": 0}, {"name": "random", "weight": 0.0}],
         "the mixture's weights must not all be zero"),
    ],
)
def test_mixture_errors_word_for_word(strategies, message):
    with pytest.raises(UserError) as error:
        _mixture(*strategies) if strategies else build_strategy({"name": "mixture", "strategies": strategies})
    assert str(error.value) == f"masking strategy 'mixture': {message}"
    assert re.search(re.escape(message), str(error.value))


def test_a_mixture_reports_the_language_of_its_word_components():
    """Corpus statistics label content words with the mixture's language, not always English."""
    from mlmkit.masking.preview import _WithContentLabels
    from mlmkit.masking.registry import build_strategy

    french = build_strategy({"name": "mixture", "strategies": [{"name": "random"},
                                                               {"name": "whole_word", "language": "fr"}]})
    assert french.resolved_language == "fr" and _WithContentLabels(french).language == "fr"
    assert build_strategy({"name": "mixture", "strategies": [{"name": "random"}]}).resolved_language == "en"
