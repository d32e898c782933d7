"""Content-word masking: whole words, with function words chosen less often than content words."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from mlmkit.errors import UserError
from mlmkit.masking.base import Selection, WordMaskingStrategy
from mlmkit.masking.language import spacy_stop_words
from mlmkit.masking.segmentation import word_spans
from mlmkit.masking.units import candidate_mask, select_units, word_unit_ids

#: Per-token feature: 1 inside a content word, 0 inside a function word, -1 on special / padding tokens.
CONTENT_FEATURE = "content_word"

# Closed-class English words: determiners, pronouns, prepositions, conjunctions, auxiliary
# and modal verbs, particles, and the pieces word-level pre-tokenizers cut contractions into.
# Compiled for this project; lower-case; matched against the whole word with surrounding
# punctuation removed.
_ENGLISH_FUNCTION_WORDS = """
a an the this that these those such what which whichever whatever whose
some any no none every each either neither both all half several few many much more most less least
other another own same enough
i me my mine myself we us our ours ourselves you your yours yourself yourselves
he him his himself she her hers herself it its itself they them their theirs themselves
one ones oneself someone somebody something anyone anybody anything everyone everybody everything
nobody nothing who whom whoever whomever
about above across after against along amid among amongst around as at before behind below beneath beside
besides between beyond by despite down during except for from in inside into like near of off on onto
opposite out outside over past per round since than through throughout till to toward towards under
underneath unlike until unto up upon via with within without
and but or nor so yet if unless because although though while whereas whether once whenever wherever
when where why how then else also too very just only even ever still already again not
there here thus hence therefore however
be am is are was were been being
have has had having do does did doing done
will would shall should can could may might must ought
get gets got
n't s t d ll m re ve o y
let's i'm you're he's she's it's we're they're i've you've we've they've i'd you'd he'd she'd we'd
they'd i'll you'll he'll she'll we'll they'll isn't aren't wasn't weren't hasn't haven't hadn't
doesn't don't didn't won't wouldn't shan't shouldn't can't cannot couldn't mustn't mightn't needn't
that's there's here's what's who's where's how's
"""

ENGLISH_FUNCTION_WORDS: frozenset[str] = frozenset(_ENGLISH_FUNCTION_WORDS.split())


def _word_key(word: str) -> str:
    """Lower-case a word and strip surrounding non-alphanumeric characters (quotes, punctuation)."""
    word = word.strip().lower().replace("\u2019", "'")
    start, end = 0, len(word)
    while start < end and not word[start].isalnum():
        start += 1
    while end > start and not word[end - 1].isalnum():
        end -= 1
    return word[start:end]


def function_words_for(language: str) -> frozenset[str]:
    """The closed-class words of ``language``: the built-in list for ``en``, spaCy's stop words otherwise.

    spaCy's ``spacy.lang.<code>.stop_words`` are plain word lists (no model download); they
    are normalised as words are matched (lower case, surrounding punctuation removed).

    Raises:
        UserError: when spaCy is missing or has no stop words for ``language``.
    """
    if language == "en":
        return ENGLISH_FUNCTION_WORDS
    words = spacy_stop_words(language)
    if words is None:
        raise UserError(f"no function-word list for masking.language={language}: content_word takes it from "
                        f"spaCy's stop words (`pip install spacy`), which have none for this language; give one "
                        f"with masking.function_words=PATH (one word a line)")
    return frozenset(k for k in (_word_key(w) for w in words) if k)


def load_word_list(spec: str | Sequence[str] | None, language: str = "en") -> frozenset[str]:
    """Resolve ``function_words``: None (the list of ``language``), a file (one word a line), or words.

    Raises:
        ValueError: when a path-like string names no file.
    """
    if spec is None:
        return function_words_for(language)
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ValueError(f"function-word list {spec!r} is not a file (give a path, or a list of words)")
        words: Iterable[str] = (line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
    else:
        words = spec
    return frozenset(k for k in (_word_key(str(w)) for w in words) if k)


def is_content_word(word: str, function_words: frozenset[str], punctuation_is_function: bool = True) -> bool:
    """True for a content word: not in ``function_words`` and (by default) not pure punctuation."""
    key = _word_key(word)
    if not key:
        return not punctuation_is_function
    return key not in function_words


def content_word_feature(
    texts: list[str],
    encodings: Any,
    function_words: frozenset[str],
    punctuation_is_function: bool = True,
    tokenizer: Any = None,
    word_ids: list[list[int]] | None = None,
) -> list[list[int]]:
    """Label every token 1 (content word), 0 (function word) or -1 (special token), per document.

    A word's text is the span of the original document its tokens cover (from the fast
    tokenizer's offsets), so matching does not depend on the sub-word scheme. Without
    offsets (slow tokenizers) the word is rebuilt from its token strings. ``word_ids``
    (one list per document, -1 on special tokens) replaces the tokenizer's words, e.g.
    with segmented ones (:mod:`mlmkit.masking.segmentation`).
    """
    offsets_all = encodings.get("offset_mapping") if hasattr(encodings, "get") else None
    out: list[list[int]] = []
    for index, text in enumerate(texts):
        if word_ids is not None:
            words = [None if w < 0 else w for w in word_ids[index]]
        else:
            try:
                words = encodings.word_ids(index)
            except (ValueError, AttributeError):
                words = None
        ids = encodings["input_ids"][index]
        if words is None:  # slow tokenizer: every ordinary token is its own word
            special = set(tokenizer.all_special_ids) if tokenizer is not None else set()
            words = [None if t in special else i for i, t in enumerate(ids)]
        if offsets_all is not None:
            word_text = {w: text[s:e] for w, (s, e) in word_spans(text, words, offsets_all[index]).items()}
        else:
            pieces: dict[int, list[str]] = {}
            tokens = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(t) for t in ids]
            for word, token in zip(words, tokens, strict=True):
                if word is not None:
                    pieces.setdefault(word, []).append(token.replace("##", "").lstrip("\u0120\u2581"))
            word_text = {w: "".join(p) for w, p in pieces.items()}
        label = {w: int(is_content_word(t, function_words, punctuation_is_function)) for w, t in word_text.items()}
        out.append([-1 if w is None else label[w] for w in words])
    return out


class ContentWordMasking(WordMaskingStrategy):
    """Whole-word masking that picks content words more often than function words.

    Each word is labelled once, at data preparation, as a function word (in a closed-class
    list; by default a built-in English list of determiners, pronouns, prepositions,
    conjunctions, auxiliaries and contraction pieces; punctuation counts as function) or a
    content word, and the label travels with the tokens as the ``content_word`` feature.
    The list follows ``masking.language``: the built-in English list for ``en``, spaCy's
    stop words (``spacy.lang.<code>.stop_words``) for the other languages spaCy covers;
    words are the segmented ones for scripts without spaces (jieba for Chinese).
    At masking time words are drawn without replacement with probability proportional
    to their class weight until ``ratio`` of the tokens are predicted; the mask / random /
    keep decision is made per word. It needs no tagger: the function-word list is all.

    Args:
        content_weight: Relative weight of content words.
        function_weight: Relative weight of function words (0 never masks them while content words remain).
        function_words: The closed-class list: None for the language's (the built-in English
            one for ``en``, spaCy's stop words otherwise), a path to a text file with one word a
            line (``#`` starts a comment), or a list of words.
        punctuation_is_function: Treat words without letters or digits as function words.
        language: ISO 639 code of the corpus or ``auto`` (see :class:`WordMaskingStrategy`).
        segmenter: Word segmenter (see :class:`WordMaskingStrategy`).
    """

    name = "content_word"
    description = "Whole words, content words weighted above a configurable function-word list; no model needed."
    paper = "Content-word masking in the spirit of Yang, Zhang and Zhao, ACL 2023 (POS-weighted), list-based"
    features = (CONTENT_FEATURE,)

    def __init__(
        self,
        content_weight: float = 1.0,
        function_weight: float = 0.25,
        function_words: str | list[str] | None = None,
        punctuation_is_function: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if float(content_weight) <= 0 or float(function_weight) < 0:
            raise ValueError("masking.content_weight must be > 0 and masking.function_weight >= 0")
        self.content_weight = float(content_weight)
        self.function_weight = float(function_weight)
        # with language=auto and no list given, the list is settled once the language is detected
        deferred = function_words is None and self.language == "auto"
        self.function_words = None if deferred else load_word_list(function_words, self.language)
        self._auto_function_words: frozenset[str] | None = None
        self.punctuation_is_function = bool(punctuation_is_function)

    def on_language(self, language: str) -> None:
        if self.function_words is None:
            self._auto_function_words = function_words_for(language)

    @property
    def function_word_set(self) -> frozenset[str]:
        """The closed-class words in use (for ``auto``, those of the detected language)."""
        if self.function_words is not None:
            return self.function_words
        return self._auto_function_words or function_words_for(self.resolved_language)

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        words = self.word_ids(texts, encodings) if "word_ids" in self.features else None
        labels = content_word_feature(texts, encodings, self.function_word_set, self.punctuation_is_function,
                                      self.tokenizer, word_ids=words)
        out = {CONTENT_FEATURE: labels}
        if words is not None:
            out["word_ids"] = words
        return out

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        if CONTENT_FEATURE not in batch:
            raise KeyError(f"the batch has no {CONTENT_FEATURE!r} feature: prepare the data with this strategy "
                           "(its token_features run once at tokenization)")
        # feature -1 (special) / 0 (function) / 1 (content) -> weight, by table lookup
        table = torch.tensor([0.0, self.function_weight, self.content_weight])
        weights = table[batch[CONTENT_FEATURE] + 1]
        return select_units(word_unit_ids(batch), candidate_mask(batch), ratio, generator, weights)
