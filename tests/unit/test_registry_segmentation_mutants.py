"""The strategy registry's decorator and dotted paths, and the segmenters' edge cases, checked value by value."""

from __future__ import annotations

import re

import pytest

from mlmkit.errors import UserError
from mlmkit.masking import registry
from mlmkit.masking.base import MaskingStrategy
from mlmkit.masking.registry import get_strategy_class, register_strategy, strategy_names
from mlmkit.masking.segmentation import align_words, load_segmenter
from mlmkit.masking.whole_word import WholeWordMasking


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry holding only the lazy built-ins; what a test registers is forgotten afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._BUILTINS))
    return registry._REGISTRY


def make_strategy(name: str) -> type[MaskingStrategy]:
    return type(f"Probe{name.title()}", (MaskingStrategy,), {"name": name, "__module__": "probes"})


# ---------------------------------------------------------------------------------------------- registry
def test_registered_class_is_found_by_name(fresh_registry):
    probe = make_strategy("probe_one")
    assert register_strategy("probe_one")(probe) is probe
    assert get_strategy_class("probe_one") is probe
    assert "probe_one" in strategy_names()


def test_registering_the_same_class_again_is_no_duplicate(fresh_registry):
    probe = make_strategy("probe_twice")
    register_strategy("probe_twice")(probe)
    assert register_strategy("probe_twice")(probe) is probe
    # a built-in still known by its lazy "module:Class" target takes its own class without complaint
    assert isinstance(fresh_registry["whole_word"], str)
    assert register_strategy("whole_word")(WholeWordMasking) is WholeWordMasking
    assert get_strategy_class("whole_word") is WholeWordMasking


def test_a_taken_name_is_refused_naming_the_holder(fresh_registry):
    first, second = make_strategy("probe_taken"), make_strategy("probe_taken")
    register_strategy("probe_taken")(first)
    with pytest.raises(ValueError, match="^" + re.escape("masking strategy 'probe_taken' is already registered "
                                                         "(probes:ProbeProbe_Taken)") + "$"):
        register_strategy("probe_taken")(second)
    with pytest.raises(ValueError, match=re.escape("'random' is already registered "
                                                   "(mlmkit.masking.random_token:RandomMasking)")):
        register_strategy("random")(first)
    assert get_strategy_class("probe_taken") is first


def test_only_strategies_can_be_registered(fresh_registry):
    class NotAStrategy:
        pass

    with pytest.raises(TypeError, match="^NotAStrategy must subclass mlmkit.masking.MaskingStrategy$"):
        register_strategy("probe_plain")(NotAStrategy)
    assert "probe_plain" not in strategy_names()


def test_dotted_paths_resolve_to_strategy_classes():
    assert get_strategy_class("mlmkit.masking.whole_word:WholeWordMasking") is WholeWordMasking
    with pytest.raises(UserError, match="^'collections:OrderedDict' is not a subclass of "
                                        "mlmkit.masking.MaskingStrategy$"):
        get_strategy_class("collections:OrderedDict")
    with pytest.raises(UserError, match="^cannot import masking strategy 'collections:NoSuchThing': "):
        get_strategy_class("collections:NoSuchThing")


# ---------------------------------------------------------------------------------------------- segmentation
def test_plugin_segmenter_must_be_callable():
    with pytest.raises(UserError, match="^masking.segmenter 'math:pi' is not callable$"):
        load_segmenter("math:pi", "en")


def test_spacy_segmenter_of_an_unknown_language_names_spacys_reason():
    with pytest.raises(UserError) as caught:
        load_segmenter("spacy", "zz")
    reason = str(caught.value.__cause__).splitlines()[0]
    assert str(caught.value) == (f"spaCy cannot segment language 'zz' ({reason}); "
                                 "see https://spacy.io/usage/models#languages")


def test_spacy_segmenter_takes_documents_longer_than_spacys_limit():
    segment = load_segmenter("spacy", "xx")  # spaCy's multi-language tokenizer: the lightest to load
    word = "a" * 99
    text = (word + " ") * 10_000  # 1,000,000 characters, spaCy's default max_length
    for document in (text, text + word):
        spans = segment(document)
        assert len(spans) == len(document.split()) and spans[0] == (0, 99) and spans[1] == (100, 199)
        assert spans[-1] == (len(document.rstrip()) - 99, len(document.rstrip()))


def test_alignment_follows_the_segmenter_word_by_word():
    """One token per character: every token takes the word under it, all along the text."""
    text = "ab cd ef gh"
    spans = [(0, 2), (3, 5), (6, 8), (9, 11)]
    chars = [i for i, c in enumerate(text) if c != " "]
    word_ids = [None] + [i // 2 for i in range(len(chars))] + [None]
    offsets = [(0, 0)] + [(c, c + 1) for c in chars] + [(0, 0)]
    assert align_words(text, spans, word_ids, offsets) == [-1, 0, 0, 1, 1, 2, 2, 3, 3, -1]
    # the segmenter may join what the tokenizer split, and split what it joined
    assert align_words(text, [(0, 5), (6, 7), (7, 11)], word_ids, offsets) == [-1, 0, 0, 0, 0, 1, 2, 2, 2, -1]


def test_a_character_no_segmented_word_covers_stays_apart():
    """The segmenter may leave characters out (here the "!"): such a token is a unit of its own."""
    text = "ab cd ! ef"
    chars = [i for i, c in enumerate(text) if c != " "]
    word_ids = [0, 0, 1, 1, 2, 3, 3]
    offsets = [(c, c + 1) for c in chars]
    assert align_words(text, [(0, 2), (3, 5), (8, 10)], word_ids, offsets) == [0, 0, 1, 1, 2, 3, 3]
