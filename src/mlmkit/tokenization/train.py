"""Train a fast tokenizer (WordPiece, byte-level BPE or Unigram) on a text corpus.

The result is a plain Hugging Face tokenizer directory (``tokenizer.json`` plus
``tokenizer_config.json``) that ``AutoTokenizer.from_pretrained`` loads with the special
tokens of the chosen model family:

* ``bert``: ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4), single sequences as ``[CLS] X [SEP]``;
* ``roberta``: ``<s> <pad> </s> <unk> <mask>`` (ids 0-4, so ``pad`` is 1 as RoBERTa's
  position ids expect), single sequences as ``<s> X </s>``.

The requested vocabulary size is rounded up to a multiple of 64 by default: embedding
and output matrices whose row count is a multiple of 64 suit GPU matrix units. A corpus
too small to support that many tokens gives a smaller vocabulary; callers report it.

Scripts other than Latin, Greek and Cyrillic (Chinese, Japanese, Korean, Thai, Indic,
Arabic...): the first batch of the corpus decides (:func:`corpus_script`). Accent stripping
(Unicode decomposition, then dropping combining marks) would destroy letters there
(Hangul syllables fall apart into jamo, Japanese が loses its voicing mark, Devanagari and
Thai lose their vowel signs), so it is off unless asked for; lowercasing is harmless (these
scripts have no case). For Han, kana and Hangul the WordPiece alphabet may take up to half
the vocabulary (:data:`CJK_ALPHABET_SHARE`) instead of BERT's 1,000 characters, so common
characters do not become ``[UNK]``. How the three types cut unsegmented text:

* ``wordpiece``: BERT's pre-tokenizer makes every CJK character a word of its own (as
  Google's Chinese BERT does); words are then recovered by a segmenter when masking
  (``masking.language=zh``).
* ``unigram``: spaces only split, so a run of Chinese is one piece of text within which
  Unigram learns multi-character pieces (the SentencePiece setting of XLM-R and mT5,
  the usual choice for CJK); lossless up to NFKC (full-width punctuation becomes ASCII).
* ``bpe``: byte-level, so no character is ever unknown; a CJK character is three bytes
  that merges usually rebuild; lossless up to NFKC as well.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from mlmkit.data.sources import load_corpora
from mlmkit.errors import UserError
from mlmkit.io.outputs import prepare_output_dir
from mlmkit.io.progress import training_progress
from mlmkit.masking.language import script_counts
from mlmkit.modeling.presets import is_from_scratch, model_family, source_has_tokenizer

TOKENIZER_TYPES = ("wordpiece", "bpe", "unigram")
#: the directory inside a run directory that holds a tokenizer trained for the run
RUN_TOKENIZER_DIR = "tokenizer"
#: documents handed to the trainer per batch (also the progress-bar granularity)
FEED_BATCH = 1000
#: scripts with letter case, where BERT-style accent stripping keeps the letters readable
CASED_SCRIPTS = frozenset({"latin", "greek", "cyrillic", "armenian", "georgian"})
#: scripts with thousands of characters: the WordPiece alphabet may take this share of the vocabulary
CJK_SCRIPTS = frozenset({"han", "kana", "hangul"})
CJK_ALPHABET_SHARE = 0.5
#: BERT's WordPiece alphabet limit, for other scripts
DEFAULT_ALPHABET = 1000


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens of a model family, in vocabulary order (ids 0, 1, ...)."""

    pad: str
    unk: str
    cls: str
    sep: str
    mask: str
    bos: str | None
    eos: str | None
    order: tuple[str, ...]

    def template(self) -> tuple[str, str]:
        """``(single, pair)`` post-processing templates."""
        if self.bos is not None:  # RoBERTa: <s> A </s></s> B </s>
            return f"{self.cls} $A {self.sep}", f"{self.cls} $A {self.sep} {self.sep} $B {self.sep}"
        return f"{self.cls} $A:0 {self.sep}:0", f"{self.cls} $A:0 {self.sep}:0 $B:1 {self.sep}:1"


FAMILIES: dict[str, SpecialTokens] = {
    "bert": SpecialTokens(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]", bos=None, eos=None,
                          order=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")),
    "roberta": SpecialTokens(pad="<pad>", unk="<unk>", cls="<s>", sep="</s>", mask="<mask>", bos="<s>", eos="</s>",
                             order=("<s>", "<pad>", "</s>", "<unk>", "<mask>")),
}
#: tokenizer type used when none is given
DEFAULT_TYPE = {"bert": "wordpiece", "roberta": "bpe"}


def round_vocab_size(size: int, multiple: int = 64) -> int:
    """Round ``size`` up to a multiple of ``multiple`` (``multiple <= 1`` keeps it)."""
    if size < 1:
        raise UserError(f"vocabulary size must be positive, got {size}")
    if multiple <= 1:
        return size
    return -(-size // multiple) * multiple


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """Return ``value`` lowercased if it is one of ``choices``; otherwise a UserError listing them."""
    lowered = value.lower()
    if lowered not in choices:
        raise UserError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return lowered


@dataclass
class TrainedTokenizer:
    """A freshly trained tokenizer and how its size compares with the request."""

    tokenizer: Any
    type: str
    family: str
    requested_vocab_size: int
    target_vocab_size: int
    vocab_size: int
    documents: int
    seconds: float

    @property
    def note(self) -> str | None:
        """A sentence for the user when the vocabulary size differs from the target."""
        if self.vocab_size < self.target_vocab_size:
            return (f"the corpus supports only {self.vocab_size:,} tokens, fewer than the {self.target_vocab_size:,} "
                    f"asked for (requested {self.requested_vocab_size:,}); the vocabulary has {self.vocab_size:,}")
        if self.vocab_size > self.target_vocab_size:
            return (f"the vocabulary has {self.vocab_size:,} tokens, more than the {self.target_vocab_size:,} asked "
                    f"for: the initial alphabet (256 bytes for bpe) and the special tokens alone need that many")
        return None

    def summary(self, output_dir: str | None = None) -> dict[str, Any]:
        """Plain values for tables and ``--json``."""
        tok = self.tokenizer
        specials = {name: getattr(tok, f"{name}_token_id") for name in ("pad", "unk", "cls", "sep", "mask", "bos",
                                                                         "eos")}
        return {"output_dir": output_dir, "type": self.type, "family": self.family,
                "requested_vocab_size": self.requested_vocab_size, "target_vocab_size": self.target_vocab_size,
                "vocab_size": self.vocab_size, "documents": self.documents, "seconds": round(self.seconds, 2),
                "special_token_ids": {k: v for k, v in specials.items() if v is not None}, "note": self.note}


def _normalizer(kind: str, lowercase: bool, strip_accents: bool):
    if kind == "wordpiece":
        return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents,
                                          lowercase=lowercase)
    # NFKC folds compatibility forms (full-width letters, ligatures) as SentencePiece does;
    # stripping accents needs the decomposed form first.
    steps = [normalizers.NFKD(), normalizers.StripAccents()] if strip_accents else [normalizers.NFKC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def corpus_script(texts: Iterable[str]) -> str | None:
    """The script of most letters of ``texts`` (see :mod:`mlmkit.masking.language`); None without letters."""
    counts = script_counts(texts)
    return counts.most_common(1)[0][0] if counts else None


def _build_backend(kind: str, family: SpecialTokens, vocab_size: int, lowercase: bool, strip_accents: bool,
                   min_frequency: int, limit_alphabet: int = DEFAULT_ALPHABET):
    """An untrained ``tokenizers.Tokenizer`` plus its trainer."""
    specials = list(family.order)
    if kind == "wordpiece":
        backend = Tokenizer(models.WordPiece(unk_token=family.unk))
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece()
        # tweets and web text carry thousands of rare symbols; 1000 initial characters is BERT's choice
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=specials, limit_alphabet=limit_alphabet,
                                            show_progress=False)
    elif kind == "bpe":
        # byte-level: every string is representable, so no unknown token is ever produced
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    else:
        backend = Tokenizer(models.Unigram())
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=family.unk,
                                          show_progress=False)
    backend.normalizer = _normalizer(kind, lowercase, strip_accents)
    return backend, trainer


def _finish_backend(backend, kind: str, family: SpecialTokens) -> None:
    """Add post-processing and make the mask token absorb the space before it where spaces are tokens."""
    if kind != "wordpiece":
        # "a <mask> b": without lstrip the space before the mask would become a token of its own
        backend.add_special_tokens([AddedToken(family.mask, lstrip=True, normalized=False, special=True)])
    single, pair = family.template()
    ids = [(token, backend.token_to_id(token)) for token in dict.fromkeys((family.cls, family.sep))]
    template = processors.TemplateProcessing(single=single, pair=pair, special_tokens=ids)
    if kind == "bpe":
        # trim the leading space out of each token's character offsets (needed by offset-based masking)
        backend.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=True), template])
    else:
        backend.post_processor = template


def _feed(batches: Iterable[list[str]], progress: Any, total: int | None) -> Iterator[list[str]]:
    """Yield text batches to the trainer while advancing the progress bar."""
    reading = progress.add_task("reading corpus", total=total, stats="")
    for batch in batches:
        yield batch
        progress.advance(reading, len(batch))
    progress.update(reading, total=progress.tasks[reading].completed)
    # the trainer computes the vocabulary once it has read everything; show that it is busy
    progress.add_task("learning vocabulary", total=None, stats="")


def _batched(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_tokenizer(
    texts: Iterable[str] | Iterable[list[str]],
    *,
    kind: str = "wordpiece",
    vocab_size: int = 8192,
    family: str = "bert",
    lowercase: bool | None = None,
    strip_accents: bool | None = None,
    min_frequency: int = 2,
    round_to: int = 64,
    model_max_length: int = 512,
    total: int | None = None,
    console: Any = None,
    batched: bool = False,
) -> TrainedTokenizer:
    """Train a fast tokenizer on ``texts``.

    Args:
        texts: Documents (strings), or batches of documents when ``batched``.
        kind: ``wordpiece``, ``bpe`` (byte-level) or ``unigram``.
        vocab_size: Requested vocabulary size, special tokens included.
        family: ``bert`` or ``roberta``: which special tokens and templates to use.
        lowercase: Lowercase the text; None lowercases for ``bert`` and keeps case for ``roberta``.
        strip_accents: Remove accents; None follows ``lowercase`` (BERT's convention) for Latin,
            Greek and Cyrillic text, and is off for other scripts, where it would break letters.
        min_frequency: Pairs (BPE) / pieces (WordPiece) seen fewer times are not merged.
        round_to: Round ``vocab_size`` up to a multiple of this; 1 keeps it.
        model_max_length: Maximum sequence length stored with the tokenizer.
        total: Number of documents, for the progress bar.
        console: A rich console for the progress bar; None trains silently.
        batched: ``texts`` yields lists of documents.

    Returns:
        The tokenizer (a ``PreTrainedTokenizerFast``) with its size report.
    """
    kind = check_choice(kind, TOKENIZER_TYPES, "tokenizer type")
    family = check_choice(family, tuple(FAMILIES), "tokenizer family")
    specials = FAMILIES[family]
    lowercase = (family == "bert") if lowercase is None else lowercase
    target = round_vocab_size(vocab_size, round_to)
    if target <= len(specials.order):
        raise UserError(f"vocabulary size {vocab_size} leaves no room beyond the {len(specials.order)} special tokens")
    batches = iter(texts if batched else _batched(texts, FEED_BATCH))
    first = next(batches, [])
    batches = itertools.chain([first], batches)
    script = corpus_script(first)
    if strip_accents is None:
        strip_accents = lowercase and (script is None or script in CASED_SCRIPTS)
    alphabet = max(DEFAULT_ALPHABET, int(target * CJK_ALPHABET_SHARE)) if script in CJK_SCRIPTS else DEFAULT_ALPHABET
    backend, trainer = _build_backend(kind, specials, target, lowercase, strip_accents, min_frequency, alphabet)
    documents = 0

    def counted() -> Iterator[list[str]]:
        nonlocal documents
        for batch in batches:
            documents += len(batch)
            yield batch

    start = time.perf_counter()
    with training_progress(console, enabled=console is not None) as progress:
        backend.train_from_iterator(_feed(counted(), progress, total), trainer=trainer, length=total)
        for task in progress.tasks:  # the open-ended "learning vocabulary" bar is complete now
            if task.total is None:
                progress.update(task.id, total=1, completed=1)
    if documents == 0:
        raise UserError("the corpus is empty: nothing to train a tokenizer on")
    _finish_backend(backend, kind, specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=model_max_length, pad_token=specials.pad, unk_token=specials.unk,
        cls_token=specials.cls, sep_token=specials.sep, mask_token=specials.mask, bos_token=specials.bos,
        eos_token=specials.eos,
        model_input_names=["input_ids", "attention_mask"] if family == "roberta" else
        ["input_ids", "token_type_ids", "attention_mask"],
    )
    return TrainedTokenizer(tokenizer=tokenizer, type=kind, family=family, requested_vocab_size=vocab_size,
                            target_vocab_size=target, vocab_size=len(tokenizer), documents=documents,
                            seconds=time.perf_counter() - start)


def iter_text_batches(corpus, size: int = FEED_BATCH) -> Iterator[list[str]]:
    """Batches of documents from a ``text`` dataset."""
    for batch in corpus.iter(batch_size=size):
        yield batch["text"]


def train_tokenizer_on_corpus(
    sources: Sequence[str],
    output_dir: str | Path,
    *,
    text_column: str = "text",
    split: str = "train",
    config_name: str | None = None,
    max_documents: int | None = None,
    overwrite: bool = False,
    console: Any = None,
    **options: Any,
) -> TrainedTokenizer:
    """Train a tokenizer on corpora and save it to ``output_dir`` (``mlmkit tokenizer train``).

    Args:
        sources: Corpora: 'embedded', local files/directories/globs or Hub dataset names.
        output_dir: Directory to save the tokenizer to (must be empty unless ``overwrite``).
        text_column: Column holding the text (csv/json/parquet/Hub).
        split: Split of Hub datasets.
        config_name: Hub dataset configuration.
        max_documents: Use at most this many documents.
        overwrite: Replace a non-empty ``output_dir``.
        console: Rich console for progress; None trains silently.
        **options: Passed to :func:`train_tokenizer` (``kind``, ``vocab_size``, ``family``, ...).
    """
    # fail before reading a large corpus
    if "kind" in options:
        check_choice(options["kind"], TOKENIZER_TYPES, "tokenizer type")
    if "family" in options:
        check_choice(options["family"], tuple(FAMILIES), "tokenizer family")
    corpus = load_corpora(sources, text_column, split, config_name, max_documents)
    out = prepare_output_dir(output_dir, overwrite)
    trained = train_tokenizer(iter_text_batches(corpus), total=len(corpus), console=console, batched=True,
                              **options)
    trained.tokenizer.save_pretrained(out)
    return trained


# ---------------------------------------------------------------------------------------------------------------
# pre-training from scratch: a tokenizer trained on the run's own corpus


def needs_trained_tokenizer(model_cfg: Any, tokenizer_cfg: Any) -> bool:
    """Whether a from-scratch run must train its tokenizer (see ``TokenizerTrainConfig.train``)."""
    if model_cfg.tokenizer:
        return False
    scratch = is_from_scratch(model_cfg)
    if tokenizer_cfg.train is None:
        return scratch and (bool(model_cfg.preset) or not source_has_tokenizer(model_cfg.name_or_path))
    if tokenizer_cfg.train and not scratch:
        raise UserError("tokenizer.train=true needs a model trained from scratch: set model.preset or "
                        "model.from_scratch=true (a pre-trained model keeps its own vocabulary)")
    return bool(tokenizer_cfg.train)


def tokenizer_for_run(cfg: Any, run_dir: Path, accelerator: Any = None, console: Any = None) -> Any:
    """Train the tokenizer of a from-scratch run into ``run_dir/tokenizer`` when it needs one.

    Returns the model config to load (``cfg.model`` itself, or a copy whose ``tokenizer``
    points at the trained one). A tokenizer already in the run directory (a resumed run)
    is reused. With several processes the main one trains and the others wait.
    """
    if not needs_trained_tokenizer(cfg.model, cfg.tokenizer):
        return cfg.model

    tcfg = cfg.tokenizer
    target = Path(run_dir) / RUN_TOKENIZER_DIR
    main = accelerator is None or accelerator.is_main_process
    if main and (target / "tokenizer.json").is_file():
        if console is not None:
            console.print(f"using the tokenizer already in {target}")
    elif main:
        family = tcfg.family or model_family(cfg.model)
        kind = tcfg.type or DEFAULT_TYPE[check_choice(family, tuple(FAMILIES), "tokenizer family")]
        corpus = load_corpora([cfg.data.source], cfg.data.text_column, cfg.data.split, cfg.data.config_name,
                              tcfg.max_documents or cfg.data.max_documents)
        trained = train_tokenizer(iter_text_batches(corpus), kind=kind, vocab_size=tcfg.vocab_size, family=family,
                                  lowercase=tcfg.lowercase, strip_accents=tcfg.strip_accents,
                                  min_frequency=tcfg.min_frequency, round_to=tcfg.round_to, total=len(corpus),
                                  console=console, batched=True)
        target.mkdir(parents=True, exist_ok=True)
        trained.tokenizer.save_pretrained(target)
        if console is not None:
            console.print(f"trained a {kind} tokenizer ({family} special tokens) with {trained.vocab_size:,} tokens "
                          f"on {trained.documents:,} documents in {trained.seconds:.1f} s -> {target}")
            if trained.note:
                console.print(f"[yellow]note:[/] {trained.note}")
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return dataclasses.replace(cfg.model, tokenizer=str(target))

