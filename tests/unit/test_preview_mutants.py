"""`masking preview` pinned down value by value: the one-text preview, its JSON form, the content labels and the corpus
statistics, on texts small enough to work out by hand (what mutation testing showed the broader tests let through)."""

from __future__ import annotations

import re
from collections import Counter

import datasets
import pytest
import torch

from conftest import make_corpus, train_tokenizer
from mlmkit.config.schema import PretrainDataConfig
from mlmkit.errors import UserError
from mlmkit.masking import base
from mlmkit.masking.base import MaskingStrategy, Selection
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.content_word import CONTENT_FEATURE, content_word_feature, function_words_for
from mlmkit.masking.preview import (
    HISTOGRAM_MAX,
    PreviewUnit,
    TextPreview,
    _WithContentLabels,
    corpus_stats,
    corruption_kinds,
    preview_text,
    unit_lengths,
)
from mlmkit.masking.random_token import RandomMasking
from mlmkit.masking.registry import build_strategy

TEXT = "the cat likes the morning train"
#: TEXT's labels with the built-in English list: [CLS] the cat likes the morning train [SEP]
TEXT_LABELS = [-1, 0, 1, 1, 0, 1, 1, -1]
LONG_WORD = "internationalization"  # five WordPiece pieces in the test vocabulary


def word_pairs(text: str) -> list[tuple[int, int]]:
    """A plug-in segmenter (``masking.segmenter=module:function``): every two whitespace words make one word."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    return [(spans[i][0], spans[min(i + 1, len(spans) - 1)][1]) for i in range(0, len(spans), 2)]


PAIRS = f"{__name__}:word_pairs"


class WithoutOffsets:
    """A tokenizer that reports itself slow: the preview gets no character offsets from it."""

    is_fast = False

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._tokenizer)


class SlowTokenizer(WithoutOffsets):
    """What a slow tokenizer returns: plain lists, no word ids, no offsets."""

    def __call__(self, *args, **kwargs):
        return {k: v for k, v in self._tokenizer(*args, **kwargs).items() if k != "offset_mapping"}


class Minimal:
    """A duck-typed tokenizer that says nothing about being fast or slow."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        if name == "is_fast":
            raise AttributeError(name)
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._tokenizer)


class Unnamed(RandomMasking):
    """A user's strategy that sets no ``name``."""

    name = ""


class WholeRow(MaskingStrategy):
    """Predicts every ordinary token of a row as one unit (unit id 0)."""

    name = "whole_row"

    def select(self, batch, ratio, generator):
        predicted = ~batch["special_tokens_mask"]
        return Selection(predicted, torch.where(predicted, 0, -1))


class DocumentUnits(MaskingStrategy):
    """Predicts every ordinary token, one unit per document, from a group feature (0 on every token of a document)."""

    name = "document_units"
    features = ("doc_group",)
    group_features = ("doc_group",)

    def token_features(self, texts, encodings):
        return {"doc_group": [[-1 if w is None else 0 for w in encodings.word_ids(i)] for i in range(len(texts))]}

    def select(self, batch, ratio, generator):
        self.batch_keys = set(batch)
        predicted = ~batch["special_tokens_mask"]
        return Selection(predicted, torch.where(predicted, batch["doc_group"], -1))


def _positions_of_units(preview: TextPreview) -> list[list[int]]:
    """The predicted positions of each unit, in the preview's unit order (units are contiguous here)."""
    positions = [i for i, p in enumerate(preview.predicted) if p]
    out, at = [], 0
    for unit in preview.units:
        out.append(positions[at:at + len(unit.tokens)])
        at += len(unit.tokens)
    assert at == len(positions)
    return out


# ---------------------------------------------------------------------------------------------- one text
def test_preview_records_its_inputs_and_counts(wordpiece_tokenizer):
    strategy = build_strategy({"name": "random", "exact": True, "ratio": 0.25})
    tokens = wordpiece_tokenizer.convert_ids_to_tokens(wordpiece_tokenizer(TEXT)["input_ids"])
    own = preview_text(TEXT, strategy, wordpiece_tokenizer, seed=4)
    assert (own.text, own.strategy, own.ratio, own.seed) == (TEXT, "random", 0.25, 4)
    assert own.tokens == tokens
    assert own.maskable_tokens == len(tokens) - 2 == 6
    assert own.predicted_tokens == round(0.25 * 6)
    override = preview_text(TEXT, strategy, wordpiece_tokenizer, seed=4, ratio=1)
    assert override.ratio == 1.0 and isinstance(override.ratio, float)
    assert override.predicted == [False] + [True] * 6 + [False]
    assert preview_text(TEXT, strategy, wordpiece_tokenizer, seed=4, ratio=0.5).predicted_tokens == 3


def test_preview_names_the_strategy_or_its_class(wordpiece_tokenizer):
    assert preview_text(TEXT, build_strategy({"name": "whole_word"}), wordpiece_tokenizer).strategy == "whole_word"
    assert preview_text(TEXT, Unnamed(), wordpiece_tokenizer).strategy == "Unnamed"


def test_preview_default_seed_is_the_draw_of_seed_zero_at_step_zero(wordpiece_tokenizer):
    strategy = build_strategy({"name": "random", "ratio": 0.5})
    default = preview_text(TEXT, strategy, wordpiece_tokenizer)
    assert default.seed == 0
    assert default.to_dict() == preview_text(TEXT, strategy, wordpiece_tokenizer, seed=0).to_dict()
    collator = MaskingCollator(wordpiece_tokenizer, strategy, seed=0, pad_to_multiple_of=None)
    masked = collator.mask(collator.pad([{"input_ids": wordpiece_tokenizer(TEXT)["input_ids"]}]), step=0)
    assert default.corrupted_tokens == wordpiece_tokenizer.convert_ids_to_tokens(masked["input_ids"][0].tolist())
    # the seed matters, so the comparison above could fail
    assert [preview_text(TEXT, strategy, wordpiece_tokenizer, seed=s).predicted for s in range(4)] != [
        default.predicted] * 4


@pytest.mark.parametrize("name", ["random", "whole_word"])
def test_preview_units_hold_their_tokens_and_corruption(wordpiece_tokenizer, name):
    text = f"the {LONG_WORD} of the cat likes the morning train"
    strategy = build_strategy({"name": name, "ratio": 0.6, "mask_replace_prob": 0.4, "random_replace_prob": 0.4})
    seen = Counter()
    for seed in range(6):
        preview = preview_text(text, strategy, wordpiece_tokenizer, seed=seed)
        for unit, positions in zip(preview.units, _positions_of_units(preview), strict=True):
            assert unit.tokens == [preview.tokens[i] for i in positions]
            corrupted = [preview.corrupted_tokens[i] for i in positions]
            original = unit.tokens
            if unit.corruption == "mask":
                assert corrupted == ["[MASK]"] * len(positions) and unit.replacements == []
            elif unit.corruption == "kept":
                assert corrupted == original and unit.replacements == []
            else:
                assert unit.corruption == "random"
                assert unit.replacements == [c for c, o in zip(corrupted, original, strict=True) if c != o]
                assert unit.replacements and "[MASK]" not in unit.replacements
            assert unit.text == text[unit.start:unit.end]
            if name == "whole_word":
                assert unit.text in text.split()
            seen[unit.corruption] += 1
    assert set(seen) == {"mask", "random", "kept"}


@pytest.mark.parametrize("name", ["random", "whole_word"])
def test_preview_without_offsets_shows_the_tokens(wordpiece_tokenizer, name):
    text = f"the {LONG_WORD} train"
    preview = preview_text(text, build_strategy({"name": name}), WithoutOffsets(wordpiece_tokenizer), ratio=1.0)
    assert preview.predicted_tokens == preview.maskable_tokens == 7
    for unit in preview.units:
        assert (unit.start, unit.end) == (0, 0)
        assert unit.text == " ".join(unit.tokens)
    texts = [unit.text for unit in preview.units]
    if name == "whole_word":
        assert texts == ["the", "inte ##rnat ##iona ##liza ##tion", "train"]
    else:
        assert texts == ["the", "inte", "##rnat", "##iona", "##liza", "##tion", "train"]


def test_preview_of_a_slow_tokenizer_masks_tokens_as_words(wordpiece_tokenizer):
    text = f"the {LONG_WORD} train"
    for tokenizer in (SlowTokenizer(wordpiece_tokenizer), Minimal(wordpiece_tokenizer)):
        preview = preview_text(text, build_strategy({"name": "whole_word"}), tokenizer, ratio=1.0)
        texts = [unit.text for unit in preview.units]
        if isinstance(tokenizer, SlowTokenizer):  # without word ids every token is its own word
            assert texts == ["the", "inte", "##rnat", "##iona", "##liza", "##tion", "train"]
        else:
            assert texts == ["the", "inte ##rnat ##iona ##liza ##tion", "train"]


def test_preview_of_a_long_text_is_whole_and_quiet(capfd, caplog):
    tokenizer = train_tokenizer("wordpiece", make_corpus())  # its own: the length warning is given once per tokenizer
    text = " ".join([TEXT] * 30)
    preview = preview_text(text, build_strategy({"name": "random"}), tokenizer)
    assert len(preview.tokens) == 6 * 30 + 2 > tokenizer.model_max_length  # not truncated
    assert "longer than the specified maximum" not in capfd.readouterr().err + caplog.text


def test_preview_with_token_features(wordpiece_tokenizer):
    strategy = build_strategy({"name": "content_word", "function_weight": 0.0, "ratio": 0.5})
    for seed in range(4):
        preview = preview_text(TEXT, strategy, wordpiece_tokenizer, seed=seed)
        assert preview.predicted_tokens == 3
        assert all(label == 1 for label, p in zip(TEXT_LABELS, preview.predicted, strict=True) if p)


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_preview_of_an_empty_text_is_a_user_error(wordpiece_tokenizer, text):
    with pytest.raises(UserError, match=r"^the text to preview is empty$"):
        preview_text(text, build_strategy({"name": "random"}), wordpiece_tokenizer)


def test_preview_to_dict_is_the_documented_json():
    unit = PreviewUnit(text="cat", start=4, end=7, tokens=["cat"], corruption="random", replacements=["dog"])
    preview = TextPreview(text="the cat", strategy="random", ratio=0.15, seed=3, tokens=["[CLS]", "the", "cat"],
                          corrupted_tokens=["[CLS]", "the", "dog"], predicted=[False, False, True],
                          maskable_tokens=7, units=[unit])
    assert preview.to_dict() == {
        "text": "the cat", "strategy": "random", "ratio": 0.15, "seed": 3, "maskable_tokens": 7,
        "predicted_tokens": 1, "realized_ratio": 0.1429, "tokens": ["[CLS]", "the", "cat"],
        "corrupted_tokens": ["[CLS]", "the", "dog"], "predicted": [False, False, True],
        "units": [{"text": "cat", "start": 4, "end": 7, "tokens": ["cat"], "corruption": "random",
                   "replacements": ["dog"]}],
    }
    preview.maskable_tokens = 1
    assert preview.to_dict()["realized_ratio"] == 1.0
    preview.maskable_tokens, preview.predicted = 0, []
    assert preview.to_dict()["realized_ratio"] == 0.0


def test_corruption_kinds_by_hand():
    original = torch.tensor([[5, 6, 7, 8, 9]])
    corrupted = torch.tensor([[5, 4, 11, 8, 4]])  # mask id 4
    predicted = torch.tensor([[False, True, True, True, False]])
    assert corruption_kinds(original, corrupted, predicted, 4).tolist() == [[0, 1, 2, 3, 0]]


# ---------------------------------------------------------------------------------------------- content labels
def _encode(tokenizer, texts, offsets=True):
    return tokenizer(texts, return_offsets_mapping=offsets)


def test_content_labels_of_a_plain_strategy(wordpiece_tokenizer):
    strategy = build_strategy({"name": "whole_word"})
    strategy.bind(wordpiece_tokenizer)
    labelled = _WithContentLabels(strategy)
    assert labelled.features == (CONTENT_FEATURE,)
    assert labelled.token_features([TEXT], _encode(wordpiece_tokenizer, [TEXT]))[CONTENT_FEATURE] == [TEXT_LABELS]
    # without offsets the words are rebuilt from the tokenizer's token strings: same labels
    plain = _encode(wordpiece_tokenizer, [TEXT], offsets=False)
    assert labelled.token_features([TEXT], plain)[CONTENT_FEATURE] == [TEXT_LABELS]


def test_content_labels_follow_segmented_words(wordpiece_tokenizer):
    encodings = _encode(wordpiece_tokenizer, [TEXT])
    # "the cat" / "likes the" / "morning train": no pair is a function word
    paired = [-1, 1, 1, 1, 1, 1, 1, -1]
    for spec in ({"name": "whole_word", "segmenter": PAIRS},
                 {"name": "mixture", "strategies": [{"name": "whole_word", "segmenter": PAIRS}, {"name": "random"}]}):
        strategy = build_strategy(spec)
        strategy.bind(wordpiece_tokenizer)
        labelled = _WithContentLabels(strategy)
        features = labelled.token_features([TEXT], encodings)
        assert features["word_ids"] == [[-1, 0, 0, 1, 1, 2, 2, -1]]
        assert features[CONTENT_FEATURE] == [paired]
        assert labelled.features == ("word_ids", CONTENT_FEATURE)
    assert content_word_feature([TEXT], encodings, function_words_for("en"))[0] == TEXT_LABELS


def test_content_labels_keep_the_strategys_own(wordpiece_tokenizer):
    strategy = build_strategy({"name": "content_word", "function_words": ["cat"]})
    strategy.bind(wordpiece_tokenizer)
    labelled = _WithContentLabels(strategy)
    assert labelled.features == (CONTENT_FEATURE,)
    labels = labelled.token_features([TEXT], _encode(wordpiece_tokenizer, [TEXT]))[CONTENT_FEATURE]
    assert labels == [[-1, 1, 0, 1, 1, 1, 1, -1]]


def test_content_labels_detect_on_the_texts_given(monkeypatch):
    heard: list[list[str]] = []

    def detect(texts):
        heard.append(list(texts))
        return "fr"

    monkeypatch.setattr(base, "detect_language", detect)
    labelled = _WithContentLabels(build_strategy({"name": "whole_word", "language": "auto"}))
    assert labelled.detect_language(["le chat"]) == "fr" and heard == [["le chat"]]
    assert labelled.language == "fr"


def test_content_labels_language(wordpiece_tokenizer):
    french = ["le chat aime les trains du matin et la pluie", "nous prenons le train avec les enfants"]
    labelled = _WithContentLabels(build_strategy({"name": "whole_word", "language": "fr"}))
    assert labelled.language == "fr" and labelled.detect_language(french) == "fr"
    random_labels = _WithContentLabels(build_strategy({"name": "random"}))
    assert random_labels.detect_language(french) == "en" and random_labels.language == "en"
    assert random_labels.group_features == () and random_labels.features == (CONTENT_FEATURE,)


# ---------------------------------------------------------------------------------------------- unit lengths
def test_unit_lengths_by_hand():
    predicted = torch.tensor([[False, True, True, True, False, True],
                              [False, True, True, False, True, True]])
    units = torch.tensor([[-1, 1, 1, 1, -1, 5],
                          [-1, 1, 1, -1, 4, 4]])
    word_ids = torch.tensor([[-1, 0, 0, 1, -1, 2],
                             [-1, 0, 1, -1, 3, 3]])
    tokens, words = unit_lengths(Selection(predicted, units), word_ids)
    assert tokens.tolist() == [3, 1, 2, 2] and words.tolist() == [2, 1, 2, 1]
    assert words.dtype == torch.long
    tokens, words = unit_lengths(Selection(predicted), word_ids)  # per-token units
    assert tokens.tolist() == [1] * 8 and words.tolist() == [1] * 8
    # a predicted piece after an unpredicted piece of the same word still counts one word
    tokens, words = unit_lengths(Selection(torch.tensor([[False, True, False, True]])), torch.tensor([[0, 0, 1, 1]]))
    assert tokens.tolist() == [1, 1] and words.tolist() == [1, 1]
    # a packed block may start with an ordinary token: position 0 is a unit of its own
    tokens, words = unit_lengths(Selection(torch.tensor([[True, True, False]])), torch.tensor([[4, 5, -1]]))
    assert tokens.tolist() == [1, 1] and words.tolist() == [1, 1]


# ---------------------------------------------------------------------------------------------- corpus statistics
CORPUS = [TEXT + ".", f"the {LONG_WORD} of the train", "a dog", "our team waits for the new station again"]


def _texts(rows=CORPUS):
    return datasets.Dataset.from_dict({"text": list(rows)})


def _maskable(tokenizer, rows=CORPUS) -> int:
    return sum(len(ids) - 2 for ids in tokenizer(list(rows))["input_ids"])


def _empty_histogram() -> dict[str, int]:
    return {**{str(k): 0 for k in range(1, HISTOGRAM_MAX + 1)}, f">{HISTOGRAM_MAX}": 0}


def test_corpus_stats_when_every_token_is_masked(wordpiece_tokenizer):
    strategy = build_strategy({"name": "random", "mask_replace_prob": 1.0, "random_replace_prob": 0.0})
    stats = corpus_stats(_texts(), strategy, wordpiece_tokenizer, ratio=1, block_size=8, batch_size=2)
    maskable = _maskable(wordpiece_tokenizer)
    total = maskable + 2 * len(CORPUS)
    assert stats == {
        "strategy": "random", "language": "en", "target_ratio": 1.0, "documents": 4,
        "blocks": -(-total // 8), "maskable_tokens": maskable, "predicted_tokens": maskable, "realized_ratio": 1.0,
        "corruption": {"mask": 1.0, "random": 0.0, "kept": 0.0}, "units": maskable,
        "mean_unit_tokens": 1.0, "mean_unit_words": 1.0, "expected_mean_unit_words": None,
        "rows_without_prediction": 0.0,
        "unit_words_histogram": {**_empty_histogram(), "1": maskable},
        "unit_tokens_histogram": {**_empty_histogram(), "1": maskable},
        "content_share_predicted": stats["content_share_corpus"],
        "function_share_predicted": stats["function_share_corpus"],
        "content_share_corpus": stats["content_share_corpus"],
        "function_share_corpus": stats["function_share_corpus"],
    }


def test_corpus_stats_when_nothing_is_masked(wordpiece_tokenizer):
    stats = corpus_stats(_texts(), build_strategy({"name": "random"}), wordpiece_tokenizer, ratio=0.0,
                         block_size=16, batch_size=1)
    assert stats["target_ratio"] == 0.0 and stats["predicted_tokens"] == 0 and stats["realized_ratio"] == 0.0
    assert stats["corruption"] == {"mask": 0.0, "random": 0.0, "kept": 0.0}
    assert stats["units"] == 0 and stats["mean_unit_tokens"] == 0.0 and stats["mean_unit_words"] == 0.0
    assert stats["rows_without_prediction"] == 1.0
    assert stats["unit_words_histogram"] == stats["unit_tokens_histogram"] == _empty_histogram()
    assert (stats["content_share_predicted"], stats["function_share_predicted"]) == (0.0, 1.0)


def test_corpus_stats_content_shares_and_corruption_split(wordpiece_tokenizer):
    rows = [TEXT + ".", TEXT]  # content: cat likes morning train, twice; function: the, the (and ".")
    strategy = build_strategy({"name": "random", "ratio": 1.0})
    stats = corpus_stats(_texts(rows), strategy, wordpiece_tokenizer, block_size=64)
    assert stats["maskable_tokens"] == 13 and stats["blocks"] == 1 and stats["target_ratio"] == 1.0
    assert stats["content_share_corpus"] == stats["content_share_predicted"] == round(8 / 13, 4)
    assert stats["function_share_corpus"] == stats["function_share_predicted"] == round(5 / 13, 4)
    corruption = stats["corruption"]
    assert sum(corruption.values()) == pytest.approx(1.0, abs=1e-3)
    counts = {k: round(v * 13) for k, v in corruption.items()}
    assert {k: round(v / 13, 4) for k, v in counts.items()} == corruption
    half = corpus_stats(_texts(rows), build_strategy({"name": "content_word", "function_weight": 0.0}),
                        wordpiece_tokenizer, ratio=8 / 13, block_size=64)
    assert half["content_share_predicted"] == 1.0 and half["function_share_predicted"] == 0.0
    assert half["content_share_corpus"] == round(8 / 13, 4)


def test_corpus_stats_small_counts(wordpiece_tokenizer):
    # blocks [CLS] the cat likes the morning train [SEP] | [CLS] a [SEP]: 6 + 1 maskable tokens; exact 10% predicts
    # round(0.6) = 1 token in the first block and none in the second, which still had one to predict
    exact = RandomMasking(exact=True, ratio=0.1)
    stats = corpus_stats(_texts([TEXT, "a"]), exact, wordpiece_tokenizer, block_size=8)
    assert (stats["blocks"], stats["maskable_tokens"], stats["predicted_tokens"], stats["units"]) == (2, 7, 1, 1)
    assert stats["realized_ratio"] == 0.1429 and stats["rows_without_prediction"] == 0.5
    assert stats["mean_unit_tokens"] == stats["mean_unit_words"] == 1.0
    assert sorted(stats["corruption"].values()) == [0.0, 0.0, 1.0]
    assert stats["strategy"] == "random"
    # a block of nothing but [SEP] has nothing to predict, so it is not a row without prediction
    stats = corpus_stats(_texts([TEXT]), RandomMasking(), wordpiece_tokenizer, ratio=1.0, block_size=7)
    assert stats["blocks"] == 2 and stats["rows_without_prediction"] == 0.0
    one = corpus_stats(_texts(["cat"]), Unnamed(), wordpiece_tokenizer, ratio=1.0)
    assert (one["maskable_tokens"], one["realized_ratio"], one["strategy"]) == (1, 1.0, "Unnamed")
    assert one["content_share_corpus"] == 1.0 and one["function_share_corpus"] == 0.0 and one["blocks"] == 1
    none = corpus_stats(_texts(["cat"]), Unnamed(), wordpiece_tokenizer, ratio=0.0)
    assert none["rows_without_prediction"] == 1.0
    # three blocks, one without prediction; three units of 6, 6 and 2 words
    thirds = corpus_stats(_texts([TEXT, TEXT, "a dog"]), DocumentUnits(), wordpiece_tokenizer, block_size=8)
    assert thirds["mean_unit_words"] == thirds["mean_unit_tokens"] == 4.667
    third = corpus_stats(_texts([TEXT, TEXT, "a"]), exact, wordpiece_tokenizer, block_size=8)
    assert third["rows_without_prediction"] == 0.3333
    split = RandomMasking(ratio=0.5, mask_replace_prob=0.5, random_replace_prob=0.5)
    shares = corpus_stats(_texts([TEXT] * 3), split, wordpiece_tokenizer, seed=1)["corruption"]
    assert 0 < shares["mask"] < 1 and shares["mask"] + shares["random"] + shares["kept"] == pytest.approx(1, abs=2e-4)


def test_corpus_stats_whole_words_and_long_units(wordpiece_tokenizer):
    rows = [f"the {LONG_WORD} train"] * 3
    words = corpus_stats(_texts(rows), build_strategy({"name": "whole_word"}), wordpiece_tokenizer, ratio=1.0,
                         block_size=9, batch_size=2)
    assert words["blocks"] == 3 and words["units"] == 9
    assert words["unit_words_histogram"] == {**_empty_histogram(), "1": 9}
    assert words["unit_tokens_histogram"] == {**_empty_histogram(), "1": 6, "5": 3}
    assert words["mean_unit_tokens"] == round(21 / 9, 3) and words["mean_unit_words"] == 1.0
    rows = [" ".join([TEXT] * 3)] * 2  # 18 tokens a row: one unit of 18 tokens and 18 words per block
    whole = corpus_stats(_texts(rows), WholeRow(), wordpiece_tokenizer, block_size=20)
    assert whole["units"] == 2 and whole["blocks"] == 2
    assert whole["unit_tokens_histogram"] == whole["unit_words_histogram"] == {**_empty_histogram(), ">10": 2}
    assert whole["mean_unit_tokens"] == whole["mean_unit_words"] == 18.0
    assert whole["strategy"] == "whole_row" and whole["expected_mean_unit_words"] is None
    ten = corpus_stats(_texts(["the cat likes the morning train the cat likes the"]), WholeRow(), wordpiece_tokenizer,
                       block_size=12)
    assert ten["unit_tokens_histogram"] == {**_empty_histogram(), str(HISTOGRAM_MAX): 1}  # 10 is not "more"


def test_corpus_stats_reports_the_span_mean(wordpiece_tokenizer):
    strategy = build_strategy({"name": "span"})
    stats = corpus_stats(_texts(), strategy, wordpiece_tokenizer, block_size=32)
    assert stats["expected_mean_unit_words"] == round(strategy.mean_span, 3)
    assert stats["expected_mean_unit_words"] != round(strategy.mean_span, 2)  # three decimals are kept


def test_corpus_stats_seed_and_steps(wordpiece_tokenizer):
    strategy = build_strategy({"name": "random", "ratio": 0.5})
    rows = [TEXT] * 8

    def run(seed, batch_size):
        return corpus_stats(_texts(rows), strategy, wordpiece_tokenizer, seed=seed, block_size=8,
                            batch_size=batch_size)

    first = run(0, 4)
    assert first == run(0, 4)
    assert corpus_stats(_texts(rows), strategy, wordpiece_tokenizer, block_size=8, batch_size=4) == first
    assert first["blocks"] == 8 and first["documents"] == 8
    # batch i is masked with the generator of step i: two batches of 4 draw differently from one batch of 8
    assert first["predicted_tokens"] == sum(
        int((collator_mask(wordpiece_tokenizer, strategy, rows[i:i + 4], step=i // 4)["labels"] != -100).sum())
        for i in range(0, 8, 4))
    assert {run(seed, 4)["predicted_tokens"] for seed in range(4)} != {first["predicted_tokens"]}


def test_corpus_stats_default_block_and_batch_sizes(wordpiece_tokenizer):
    strategy = build_strategy({"name": "random", "ratio": 0.5})
    # 15 documents of 8 tokens and one of 9: 129 tokens, two blocks of at most 128
    rows = [TEXT] * 15 + [TEXT + " a"]
    assert corpus_stats(_texts(rows), strategy, wordpiece_tokenizer)["blocks"] == 2
    rows = [TEXT] * 65  # 65 blocks of 8: the 65th is masked with the generator of step 1
    default = corpus_stats(_texts(rows), strategy, wordpiece_tokenizer, block_size=8)
    assert default == corpus_stats(_texts(rows), strategy, wordpiece_tokenizer, block_size=8, batch_size=64)
    assert default != corpus_stats(_texts(rows), strategy, wordpiece_tokenizer, block_size=8, batch_size=65)


def test_corpus_stats_keeps_group_features_apart_per_document(wordpiece_tokenizer):
    strategy = DocumentUnits()
    stats = corpus_stats(_texts([TEXT] * 4), strategy, wordpiece_tokenizer, block_size=32)
    assert stats["blocks"] == 1 and stats["units"] == 4
    # the strategy sees the batch pre-training gives it: the content labels are the preview's own
    assert strategy.batch_keys == {"input_ids", "attention_mask", "special_tokens_mask", "word_ids", "doc_group"}
    assert stats["unit_tokens_histogram"] == {**_empty_histogram(), "6": 4}


def collator_mask(tokenizer, strategy, rows, step, seed=0):
    collator = MaskingCollator(tokenizer, strategy, seed=seed)
    return collator.mask(collator.pad([{"input_ids": ids} for ids in tokenizer(rows)["input_ids"]]), step=step)


def test_corpus_stats_from_a_prepared_corpus(wordpiece_tokenizer, tmp_path):
    corpus_path = tmp_path / "corpus.txt"
    corpus_path.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    data = PretrainDataConfig(source=str(corpus_path), cache_dir=str(tmp_path / "prepared"), max_seq_length=8)
    strategy = build_strategy({"name": "random", "mask_replace_prob": 1.0, "random_replace_prob": 0.0})
    notes: list[str] = []
    first = corpus_stats(None, strategy, wordpiece_tokenizer, ratio=1.0, data=data, notify=notes.append)
    assert notes == []
    second = corpus_stats(None, strategy, wordpiece_tokenizer, ratio=1.0, data=data, notify=notes.append)
    assert len(notes) == 1 and re.fullmatch(r"data: reusing the prepared corpus in .+", notes[0])
    assert str(tmp_path / "prepared") in notes[0]
    assert first == second == corpus_stats(_texts(), strategy, wordpiece_tokenizer, ratio=1.0, block_size=8)
    assert first["documents"] == 4
    arrow = next((tmp_path / "prepared").rglob("*.arrow"))
    with arrow.open("ab") as handle:
        handle.write(b"damage")
    notes.clear()
    assert corpus_stats(None, strategy, wordpiece_tokenizer, ratio=1.0, data=data, notify=notes.append) == first
    assert len(notes) == 1 and "is damaged" in notes[0] and notes[0].endswith("rebuilding it")
