"""Joint filling: constructed logits, brute force over all fillings, whole words per tokenizer family, text kept."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertForMaskedLM

from conftest import build_tiny_bert, train_tokenizer
from constructed_lm import neighbour_log_prob, neighbour_model, word_tokenizer
from mlmkit.errors import UserError
from mlmkit.inference.fill_mask import fill_mask, load_fill_mask_model
from mlmkit.inference.joint_fill import (
    FillProblem,
    Slot,
    beam_fill,
    is_whole_word,
    joint_fill,
    token_classes,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["the", "new", "york", "los", "angeles", "is", "big", "."]


@pytest.fixture(scope="module")
def cities():
    """Logits written so that the masks of "the [MASK] [MASK] is big." disagree when filled on their own.

    Alone, the first mask prefers "new" (2.0 against "los" 1.7) and the second "angeles" (2.0 against
    "york" 1.9): independent filling answers "new angeles". Once "new" is in place, "york" scores 4.0.
    """
    tokenizer = word_tokenizer(WORDS)
    model = neighbour_model(tokenizer, left={"the": {"new": 2.0, "los": 1.7}, "[MASK]": {"angeles": 2.0, "york": 1.9},
                                             "new": {"york": 4.0}, "los": {"angeles": 4.0}},
                            right={"york": {"new": 3.0}, "angeles": {"los": 3.0}})
    return model, tokenizer


def test_joint_filling_beats_independent_filling(cities):
    model, tokenizer = cities
    text = "The [MASK] [MASK] is big."
    [alone] = fill_mask(model, tokenizer, text, top_k=1)
    assert [m[0].token for m in alone.masks] == ["new", "angeles"]  # incoherent pair

    [joint] = joint_fill(model, tokenizer, text, top_k=3, beam=2)
    best, second = joint.fillings[:2]
    assert best.sequence == "The new york is big." and best.words == ["new", "york"]
    assert second.sequence == "The los angeles is big."
    ids = tokenizer("the [MASK] [MASK] is big.")["input_ids"]
    new, york, los, angeles = tokenizer.convert_tokens_to_ids(["new", "york", "los", "angeles"])
    # the first mask is the more confident one, so it is filled first, on the all-masked text
    expected = neighbour_log_prob(model, ids, 2, new) + neighbour_log_prob(model, [*ids[:2], new, *ids[3:]], 3, york)
    assert best.log_prob == pytest.approx(expected, abs=1e-5)
    assert best.score == pytest.approx(expected / 2 ** 0.5, abs=1e-5)  # default length_penalty 0.5
    # the independent answer, scored the same way, is far worse than the joint one
    independent = neighbour_log_prob(model, ids, 2, new) + \
        neighbour_log_prob(model, [*ids[:2], new, *ids[3:]], 3, angeles)
    assert best.log_prob > independent + 3
    assert [(s.mask, s.token) for s in best.steps] == [(0, "new"), (1, "york")]
    assert [a.token for a in best.steps[0].alternatives[:2]] == ["new", "los"]
    assert best.steps[0].alternatives[0].log_prob == pytest.approx(neighbour_log_prob(model, ids, 2, new), abs=1e-5)
    assert best.token_ids == [[new], [york]] and second.token_ids == [[los], [angeles]]


def _tiny_vocab_bert(seed: int) -> BertForMaskedLM:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, pad_token_id=0)
    return BertForMaskedLM(config).eval()


SPECIAL = [0, 1, 2, 3]  # pad, cls, sep, mask; words are 4..9
MASK = 3


def _brute_force(model, ids, positions):
    """Every complete filling scored along the order the search uses (most confident open mask first)."""
    cache = {}

    def log_probs(sequence):
        if sequence not in cache:
            with torch.no_grad():
                cache[sequence] = torch.log_softmax(model(input_ids=torch.tensor([sequence])).logits[0].float(), -1)
        return cache[sequence]

    words = range(4, 10)
    scores = {}
    for assignment in itertools.product(words, repeat=len(positions)):
        sequence, total, open_slots = list(ids), 0.0, list(range(len(positions)))
        while open_slots:
            lp = log_probs(tuple(sequence))
            best = max(open_slots, key=lambda s: (lp[positions[s], 4:].max().item(), -s))
            total += lp[positions[best], assignment[best]].item()
            sequence[positions[best]] = assignment[best]
            open_slots.remove(best)
        scores[assignment] = total
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def test_beam_search_finds_the_brute_force_best():
    model = _tiny_vocab_bert(seed=5)
    ids = [1, 5, MASK, MASK, 7, MASK, 2]
    positions = [2, 3, 5]
    exact = _brute_force(model, ids, positions)
    problem = FillProblem(input_ids=ids, slots=[Slot(position=p) for p in positions])
    # a beam as wide as the number of two-mask prefixes (6 x 6) never prunes a prefix of any filling: exact
    [beams] = beam_fill(model, [problem], pad_token_id=0, width=36, special_ids=SPECIAL)
    assert [b.tokens for b in beams[:10]] == [a for a, _ in exact[:10]]
    assert [b.log_prob for b in beams[:10]] == pytest.approx([s for _, s in exact[:10]], abs=1e-5)
    # a narrow beam is approximate, but what it returns is scored exactly as the brute force scores it
    table = dict(exact)
    [narrow] = beam_fill(model, [problem], pad_token_id=0, width=2, special_ids=SPECIAL)
    assert len(narrow) == 2
    for found in narrow:
        assert found.log_prob == pytest.approx(table[found.tokens], abs=1e-5)
        assert found.log_prob <= exact[0][1] + 1e-6


def test_beam_search_is_batched_and_deterministic():
    model = _tiny_vocab_bert(seed=6)
    a = FillProblem(input_ids=[1, 5, MASK, MASK, 7, MASK, 2], slots=[Slot(2), Slot(3), Slot(5)])
    b = FillProblem(input_ids=[1, MASK, 8, 2], slots=[Slot(1)])
    together = beam_fill(model, [a, b], pad_token_id=0, width=4, batch_size=64, special_ids=SPECIAL)
    for problem, expected in zip([a, b], together, strict=True):
        for batch_size in (1, 3):
            [alone] = beam_fill(model, [problem], pad_token_id=0, width=4, batch_size=batch_size, special_ids=SPECIAL)
            assert [x.tokens for x in alone] == [x.tokens for x in expected]
            assert [x.log_prob for x in alone] == pytest.approx([x.log_prob for x in expected], abs=1e-5)
    assert all(t >= 4 for beam in together[0] for t in beam.tokens)  # special tokens are never fills


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_multi_token_masks_return_whole_words_only(corpus, kind):
    tokenizer = train_tokenizer(kind, corpus, vocab_size=300)
    model = build_tiny_bert(tokenizer, seed=4, dropout=0.0).eval()
    text = "a dog  chases [MASK] vehicles today!"
    results = joint_fill(model, tokenizer, [text], top_k=40, beam=8, max_tokens=3, length_penalty=1.0)
    fillings = results[0].fillings
    assert fillings, "the search found no whole-word filling"
    lengths = set()
    for filling in fillings:
        [word], [pieces] = filling.words, filling.token_ids
        lengths.add(len(pieces))
        assert filling.sequence == text.replace("[MASK]", word)
        # a whole word: tokenized on its own after a space, it gives exactly the pieces that were scored
        assert tokenizer(" " + word, add_special_tokens=False)["input_ids"] == pieces
        tokens = tokenizer.convert_ids_to_tokens(pieces)
        assert not tokens[0].startswith("##")
        if kind == "bpe":
            assert tokens[0].startswith("Ġ") and not any(t.startswith("Ġ") for t in tokens[1:])
        if kind == "unigram":
            assert tokens[0].startswith("▁") and not any(t.startswith("▁") for t in tokens[1:])
        assert filling.score == pytest.approx(filling.log_prob / len(pieces), abs=1e-6)
    assert len(lengths) > 1  # words of different lengths compete on the length-normalised score
    scores = [f.score for f in fillings]
    assert scores == sorted(scores, reverse=True)


def test_length_penalty_zero_ranks_by_the_sum(wordpiece_tokenizer):
    model = build_tiny_bert(wordpiece_tokenizer, seed=4, dropout=0.0).eval()
    [result] = joint_fill(model, wordpiece_tokenizer, "the [MASK] likes rainy afternoons.", top_k=20, beam=6,
                          max_tokens=2, length_penalty=0.0)
    assert [f.score for f in result.fillings] == [f.log_prob for f in result.fillings]
    assert [f.log_prob for f in result.fillings] == sorted((f.log_prob for f in result.fillings), reverse=True)


def test_glued_mask_takes_a_word_piece(wordpiece_tokenizer):
    model = build_tiny_bert(wordpiece_tokenizer, seed=4, dropout=0.0).eval()
    [result] = joint_fill(model, wordpiece_tokenizer, "the cat likes inte[MASK] today.", top_k=10, max_tokens=2)
    for filling in result.fillings:
        tokens = wordpiece_tokenizer.convert_ids_to_tokens(filling.token_ids[0])
        # glued to "inte": the word continues it (a ## piece), or joins it at punctuation ("inte-...")
        assert tokens[0].startswith("##") or all(not c.isalnum() for c in tokens[0]), tokens
        assert filling.sequence == f"the cat likes inte{filling.words[0]} today."
        start = filling.sequence.index("inte") + 4
        assert is_whole_word(wordpiece_tokenizer, filling.sequence, (start, start + len(filling.words[0])),
                             filling.token_ids[0])


def test_token_classes(corpus):
    for kind, start, inner in (("wordpiece", "dog", "##s"), ("bpe", "Ġdog", "e"), ("unigram", "▁train", "s")):
        tokenizer = train_tokenizer(kind, corpus, vocab_size=400)
        classes = token_classes(tokenizer, len(tokenizer) + 3)
        s, i = tokenizer.convert_tokens_to_ids([start, inner])
        assert bool(classes.starts_word[s]) and not bool(classes.starts_word[i]), kind
        assert bool(classes.special[tokenizer.mask_token_id]) and bool(classes.special[len(tokenizer) + 2])
        dash = tokenizer("-", add_special_tokens=False)["input_ids"][-1]
        assert bool(classes.punctuation[dash]) and not bool(classes.punctuation[s])


ODD = st.text(alphabet=st.sampled_from(list("aBcDeF xyZ  \t,.;:!?'\"-()é")), max_size=20)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=ODD, after=ODD, alias=st.sampled_from(["[MASK]", "<mask>"]))
def test_the_text_comes_back_with_only_the_mask_replaced(tiny_model_dir, before, after, alias):
    model, tokenizer = _tiny(tiny_model_dir)
    text = before + alias + after
    assume(text.strip() == text)  # texts from files arrive stripped; a mask must remain
    [single] = fill_mask(model, tokenizer, text, top_k=3)
    for candidate in single.masks[0]:
        assert candidate.sequence == before + candidate.token.strip() + after
    [joint] = joint_fill(model, tokenizer, text, top_k=3, beam=3, max_tokens=2)
    for filling in joint.fillings:
        assert filling.sequence == before + filling.words[0] + after


_MODELS = {}


def _tiny(path):
    if path not in _MODELS:
        _MODELS[path] = load_fill_mask_model(str(path), device="cpu")
    return _MODELS[path]


def test_several_masks_of_several_texts(tiny_model_dir):
    model, tokenizer = _tiny(tiny_model_dir)
    texts = ["The [MASK] likes [MASK] pancakes!", "a   DOG chases <mask>.", "[MASK] [MASK] [MASK] every day."]
    together = joint_fill(model, tokenizer, texts, top_k=4, beam=4, batch_size=2)
    for text, result in zip(texts, together, strict=True):
        [alone] = joint_fill(model, tokenizer, text, top_k=4, beam=4, batch_size=7)
        assert [f.sequence for f in result.fillings] == [f.sequence for f in alone.fillings]
        assert [f.log_prob for f in result.fillings] == pytest.approx([f.log_prob for f in alone.fillings], abs=1e-5)
        for filling in result.fillings:
            assert sorted(s.mask for s in filling.steps) == list(range(len(filling.words)))
            assert filling.log_prob == pytest.approx(math.fsum(s.log_prob for s in filling.steps), abs=1e-5)
    assert together[0].fillings[0].sequence.startswith("The ") and together[1].text == texts[1]


def test_option_errors(tiny_model_dir):
    model, tokenizer = _tiny(tiny_model_dir)
    with pytest.raises(UserError, match="beam must be at least 1"):
        joint_fill(model, tokenizer, "a [MASK]", beam=0)
    with pytest.raises(UserError, match="length_penalty"):
        joint_fill(model, tokenizer, "a [MASK]", length_penalty=-1)
    with pytest.raises(UserError, match=r"text 1 has 9 masks: with --max-tokens 2 that is 512 word-length"):
        joint_fill(model, tokenizer, " ".join(["[MASK]"] * 9), max_tokens=2)
    with pytest.raises(UserError, match="text 2 has no mask"):
        joint_fill(model, tokenizer, ["a [MASK]", "no mask"])
