"""Language codes for word-based masking, and ``auto`` detection from a sample of the corpus.

Word-based strategies (``whole_word``, ``span``, ``pmi``, ``content_word``, ``pos_weighted``)
read ``masking.language``: an ISO 639-1 code (``en``, ``fr``, ``zh``, ...; the codes of
spaCy's ``spacy.lang`` packages, plus any other two- or three-letter code), or ``auto``.
The language decides three things, all at data preparation:

* how text is cut into words: scripts written without spaces (Chinese, Japanese, Thai)
  get a word segmenter (:mod:`mlmkit.masking.segmentation`), the others keep the
  tokenizer's pre-tokenization;
* the closed-class (function) words of ``content_word``, from spaCy's per-language stop
  words;
* the spaCy pipeline ``pos_weighted`` tags with.

``auto`` looks at a sample of documents: the dominant script (counted letter by letter
over Unicode ranges) settles scripts that one language dominates (Han without kana is
Chinese, Hangul is Korean, Greek is Greek, ...); for scripts shared by many languages
(Latin, Cyrillic, Arabic, Devanagari) the candidate whose spaCy stop-word list covers the
largest share of the sample's words wins. No model and no extra dependency: the stop-word
lists are plain Python modules inside spaCy.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import cache

from mlmkit.errors import UserError

AUTO = "auto"
#: the default: English, as mlmkit always masked
DEFAULT_LANGUAGE = "en"
#: how many characters of the sample ``auto`` reads at most (enough for a stable vote, cheap on any corpus)
SAMPLE_CHARS = 200_000
#: documents of a corpus handed to detection
SAMPLE_DOCUMENTS = 200

#: (first, last code point, script) of the scripts told apart; letters elsewhere count as "other"
SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "latin"), (0x1E00, 0x1EFF, "latin"),
    (0x0370, 0x03FF, "greek"), (0x1F00, 0x1FFF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0530, 0x058F, "armenian"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"), (0x0750, 0x077F, "arabic"), (0xFB50, 0xFDFF, "arabic"), (0xFE70, 0xFEFF, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0980, 0x09FF, "bengali"),
    (0x0A80, 0x0AFF, "gujarati"),
    (0x0B80, 0x0BFF, "tamil"),
    (0x0C00, 0x0C7F, "telugu"),
    (0x0C80, 0x0CFF, "kannada"),
    (0x0D00, 0x0D7F, "malayalam"),
    (0x0D80, 0x0DFF, "sinhala"),
    (0x0E00, 0x0E7F, "thai"),
    (0x0F00, 0x0FFF, "tibetan"),
    (0x10A0, 0x10FF, "georgian"),
    (0x1200, 0x139F, "ethiopic"),
    (0x1100, 0x11FF, "hangul"), (0x3130, 0x318F, "hangul"), (0xAC00, 0xD7AF, "hangul"),
    (0x3040, 0x309F, "kana"), (0x30A0, 0x30FF, "kana"), (0x31F0, 0x31FF, "kana"), (0xFF66, 0xFF9D, "kana"),
    (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"), (0xF900, 0xFAFF, "han"), (0x20000, 0x2FA1F, "han"),
)

#: candidate languages of each script, the most likely first (it wins when stop words cannot tell)
SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {
    "latin": ("en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "nb", "fi", "pl", "cs", "sk", "sl", "hr",
              "ro", "hu", "tr", "id", "ca", "et", "lv", "lt", "vi", "tl", "af", "ga", "eu", "is", "sq", "lb"),
    "cyrillic": ("ru", "uk", "bg", "sr", "mk", "ky", "tt"),
    "arabic": ("ar", "fa", "ur"),
    "devanagari": ("hi", "mr", "ne", "sa"),
    "greek": ("el",), "armenian": ("hy",), "hebrew": ("he",), "bengali": ("bn",), "gujarati": ("gu",),
    "tamil": ("ta",), "telugu": ("te",), "kannada": ("kn",), "malayalam": ("ml",), "sinhala": ("si",),
    "thai": ("th",), "tibetan": ("bo",), "georgian": ("ka",), "ethiopic": ("am", "ti"), "hangul": ("ko",),
    "kana": ("ja",), "han": ("zh",),
}

_CODE = re.compile(r"^[a-z]{2,3}$")
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize_language(code: str | None) -> str:
    """Validate ``masking.language``: a lower-case ISO 639 code (``en``, ``zh``, ``fr``...) or ``auto``.

    Region and script suffixes are dropped (``zh-Hans``, ``pt_BR`` -> ``zh``, ``pt``).

    Raises:
        UserError: for anything that is not a language code.
    """
    if code is None:
        return DEFAULT_LANGUAGE
    text = str(code).strip().lower().replace("_", "-")
    if text == AUTO:
        return AUTO
    base = text.split("-", 1)[0]
    if not _CODE.match(base):
        raise UserError(f"masking.language must be an ISO 639 language code such as 'en', 'fr', 'zh' or 'auto', "
                        f"got {code!r}")
    return base


def script_of(char: str) -> str | None:
    """The script of a letter (see :data:`SCRIPT_RANGES`), "other" for letters elsewhere, None for non-letters."""
    if not (char.isalpha() or unicodedata.category(char) == "Lo"):
        return None
    point = ord(char)
    for first, last, script in SCRIPT_RANGES:
        if first <= point <= last:
            return script
    return "other"


def script_counts(texts: Iterable[str], max_chars: int = SAMPLE_CHARS) -> Counter:
    """Letters per script over (at most ``max_chars`` characters of) ``texts``."""
    counts: Counter = Counter()
    seen = 0
    for text in texts:
        for char in text[: max_chars - seen]:
            script = script_of(char)
            if script is not None:
                counts[script] += 1
        seen += len(text)
        if seen >= max_chars:
            break
    return counts


@cache
def spacy_stop_words(code: str) -> frozenset[str] | None:
    """The stop words of spaCy for language ``code`` (``spacy.lang.<code>.stop_words``), None where it has none."""
    if importlib.util.find_spec("spacy") is None:
        return None
    try:
        module = importlib.import_module(f"spacy.lang.{code}.stop_words")
    except ImportError:
        return None
    words = getattr(module, "STOP_WORDS", None)
    return frozenset(w.lower() for w in words) if words else None


def stop_word_share(words: list[str], code: str) -> float:
    """Share of ``words`` (lower-cased) in spaCy's stop-word list of ``code`` (0 without a list)."""
    stops = spacy_stop_words(code)
    if not stops or not words:
        return 0.0
    return sum(w in stops for w in words) / len(words)


def detect_language(texts: Iterable[str], max_chars: int = SAMPLE_CHARS) -> str:
    """Guess the language code of a sample of documents (see the module docstring for how).

    Raises:
        UserError: when the sample holds no letters, or when Latin, Cyrillic, Arabic or
            Devanagari text needs spaCy's stop-word lists and spaCy is not installed.
    """
    sample = []
    total = 0
    for text in texts:
        sample.append(text)
        total += len(text)
        if total >= max_chars:
            break
    counts = script_counts(sample, max_chars)
    if not counts:
        raise UserError("masking.language=auto found no letters in the corpus sample; set masking.language")
    script = counts.most_common(1)[0][0]
    if script == "han" and counts.get("kana", 0) >= 0.05 * counts["han"]:
        script = "kana"  # Japanese mixes kanji with kana; Chinese has none
    candidates = SCRIPT_LANGUAGES.get(script)
    if not candidates:
        raise UserError("masking.language=auto cannot tell the language of this corpus (most letters are in a "
                        "script it does not know); set masking.language")
    if len(candidates) == 1:
        return candidates[0]
    if importlib.util.find_spec("spacy") is None:
        raise UserError(f"masking.language=auto reads spaCy's stop-word lists to tell {script}-script languages "
                        f"apart: `pip install spacy`, or set masking.language")
    words = [w.lower() for w in _WORD.findall(" ".join(sample)[:max_chars])]
    shares = {code: stop_word_share(words, code) for code in candidates}
    best = max(shares.values())
    return next(code for code in candidates if shares[code] == best)  # ties go to the likelier language
