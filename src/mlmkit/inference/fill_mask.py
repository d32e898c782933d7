"""Fill-mask inference: top-k candidates for every mask position of one or many texts.

The scores are the ones ``transformers.pipeline("fill-mask")`` reports (a softmax over
the whole vocabulary at each mask position; with ``targets`` the same probabilities,
restricted to the targets and not renormalised), but several masks per text are
answered from one forward pass, texts are processed in batches, and every mistake a
user can make is a :class:`~mlmkit.errors.UserError`.

Example::

    model, tokenizer = load_fill_mask_model("runs/demo/mlm")
    [result] = fill_mask(model, tokenizer, ["Self-driving [MASK] are the future."], top_k=3)
    for candidate in result.masks[0]:
        print(candidate.token, round(candidate.score, 3), candidate.sequence)
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from transformers import AutoModelForMaskedLM

from mlmkit.errors import UserError
from mlmkit.modeling.loading import load_pretrained, load_tokenizer, resolve_model_name
from mlmkit.modeling.sparse_head import split_mlm_head

log = logging.getLogger(__name__)

#: spellings of the mask that every model accepts, whatever its own mask token is
MASK_ALIASES = ("[MASK]", "<mask>")
#: architecture-name endings of checkpoints that carry a masked-language-model head
MLM_ARCHITECTURE_SUFFIXES = ("ForMaskedLM", "ForPreTraining")


@dataclass
class Candidate:
    """One proposal for one mask position."""

    token: str
    """The token as the tokenizer decodes it on its own (as ``pipeline`` reports ``token_str``)."""
    token_id: int
    """Its vocabulary id."""
    score: float
    """Probability at this position (softmax over the whole vocabulary)."""
    sequence: str
    """The text with this mask filled by the token (other masks left as the mask token)."""


@dataclass
class FillMaskResult:
    """The candidates for every mask of one text."""

    text: str
    """The text as given (before mask aliases were rewritten)."""
    masks: list[list[Candidate]] = field(default_factory=list)
    """One list of candidates per mask, in the order the masks appear; each list best first."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``{"text": ..., "masks": [[{token, token_id, score, sequence}, ...], ...]}``."""
        return {"text": self.text, "masks": [[asdict(c) for c in cands] for cands in self.masks]}


@dataclass
class TargetTokens:
    """Candidate words mapped to vocabulary ids (see :func:`resolve_targets`)."""

    words: list[str]
    """The words as the user gave them (duplicates mapping to one token removed)."""
    token_ids: list[int]
    """One vocabulary id per word."""
    notes: list[str] = field(default_factory=list)
    """One line per word that is not a single token (its first sub-token is scored instead)."""


def load_fill_mask_model(name: str, revision: str | None = None, trust_remote_code: bool = False,
                         device: str | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for fill-mask and check that the model has a trained MLM head.

    Args:
        name: A local model directory or a Hub name (``embedded`` resolves to the packaged
            encoder, which has no trained MLM head and is therefore refused).
        revision: Hub revision (branch, tag or commit).
        trust_remote_code: Allow model code from the Hub to run.
        device: ``"cpu"``, ``"cuda"``, ...; None picks CUDA when available.

    Returns:
        The model in eval mode on ``device`` and its tokenizer.

    Raises:
        UserError: The path is missing, the model cannot be loaded, its tokenizer has no
            mask token, or the checkpoint has no masked-language-model head.
    """
    resolve_model_name(name)  # a missing directory is reported before its tokenizer is looked for
    tokenizer = load_tokenizer(name, revision=revision, trust_remote_code=trust_remote_code)
    model, info = load_pretrained(AutoModelForMaskedLM, name, revision=revision, trust_remote_code=trust_remote_code)
    _check_mlm_head(name, model, info.get("missing_keys", []))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    return model, tokenizer


def _check_mlm_head(name: str, model: Any, missing_keys: Iterable[str]) -> None:
    """Refuse checkpoints whose MLM head would be freshly initialised (random predictions)."""
    prefix = f"{model.base_model_prefix}." if model.base_model_prefix else ""
    head_missing = sorted(k for k in missing_keys if not prefix or not k.startswith(prefix))
    architectures = list(getattr(model.config, "architectures", None) or [])
    no_mlm_architecture = bool(architectures) and not any(a.endswith(MLM_ARCHITECTURE_SUFFIXES)
                                                           for a in architectures)
    if not head_missing and not no_mlm_architecture:
        return
    if head_missing:
        shown = ", ".join(head_missing[:3]) + (", ..." if len(head_missing) > 3 else "")
        why = f"the checkpoint lacks its weights ({shown})"
    else:
        why = f"the checkpoint is a {', '.join(architectures)}"
    raise UserError(f"{name!r} has no trained masked-language-model head: {why}; fill-mask needs an MLM checkpoint "
                    f"such as the output of `mlmkit pretrain`")


def read_texts(source: str | Path, stdin: TextIO | None = None) -> list[tuple[int, str]]:
    """Read one text per line from a file, or from stdin when ``source`` is ``-``.

    Blank lines are skipped; the line numbers of the others are kept for error messages.

    Args:
        source: A path, or ``-`` for standard input.
        stdin: The stream read for ``-`` (defaults to ``sys.stdin``).

    Returns:
        ``(line_number, text)`` pairs, line numbers counted from 1.

    Raises:
        UserError: The file is missing, is a directory, or holds no text.
    """
    if str(source) == "-":
        raw = (stdin or sys.stdin).read()
        where = "standard input"
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise UserError(f"no such file: {source}")
        if not path.is_file():
            raise UserError(f"{source} is not a file")
        raw = path.read_text(encoding="utf-8-sig", errors="replace")
        where = str(source)
    rows = [(number, line.strip()) for number, line in enumerate(raw.splitlines(), start=1) if line.strip()]
    if not rows:
        raise UserError(f"{where} is empty: give one text with a mask per line")
    return rows


def _space_before_mask_is_separate(tokenizer: Any) -> bool:
    """True when ``"a [MASK]"`` yields a token for the space alone before the mask.

    Byte-level BPE and SentencePiece vocabularies mark a word start with a leading
    space (``Ġcars``, ``▁cars``). A mask token without ``lstrip`` leaves that space as
    a token of its own, so the mask would stand for a word *without* its leading space,
    which is not what the model saw in training. Such texts get the space removed.
    """
    mask = tokenizer.mask_token
    with_space = tokenizer("a " + mask, add_special_tokens=False)["input_ids"]
    without = tokenizer("a" + mask, add_special_tokens=False)["input_ids"]
    if len(with_space) <= len(without) or with_space[-1] != tokenizer.mask_token_id:
        return False
    extra = with_space[len(without) - 1:-1]
    return all(tokenizer.decode([i]).strip() == "" for i in extra)


def _shorten(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


def prepare_texts(texts: Sequence[str], tokenizer: Any, labels: Sequence[str] | None = None) -> list[str]:
    """Rewrite the mask aliases to the model's own mask token and check every text has a mask.

    Args:
        texts: Texts with ``[MASK]``, ``<mask>`` or the model's own mask token.
        tokenizer: The model's tokenizer (must have a mask token).
        labels: How errors name each text (e.g. ``"line 4"``); defaults to ``"text 1"``, ...

    Returns:
        The texts ready for the model, in the same order.

    Raises:
        UserError: No texts, or a text (the first one found) has no mask.
    """
    if not texts:
        raise UserError("no text given: pass a text with a mask such as 'Paris is the [MASK] of France.'")
    mask = tokenizer.mask_token
    absorb_space = _space_before_mask_is_separate(tokenizer)
    space_before_mask = re.compile(r"\s+(?=" + re.escape(mask) + ")")
    prepared = []
    for text in texts:
        for alias in MASK_ALIASES:
            if alias != mask:
                text = text.replace(alias, mask)
        if absorb_space:
            text = space_before_mask.sub("", text)
        prepared.append(text)
    encoded = tokenizer(prepared, add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(encoded):
        if tokenizer.mask_token_id not in ids:
            label = labels[i] if labels is not None else f"text {i + 1}"
            aliases = " or ".join(dict.fromkeys([mask, *MASK_ALIASES]))
            raise UserError(f"{label} has no mask: write {aliases} where a word should be predicted "
                            f"({_shorten(texts[i])})")
    return prepared


def resolve_targets(tokenizer: Any, words: Iterable[str]) -> TargetTokens:
    """Map candidate words to the single vocabulary token each stands for at a mask.

    A mask normally stands for a whole word that follows a space, so each word is first
    tokenized in that form (``" cars"``, which gives ``Ġcars`` in a byte-level BPE
    vocabulary, ``▁cars`` in a SentencePiece one and ``cars`` in WordPiece). A word
    typed exactly as a vocabulary entry (``##s``, ``Ġcars``) is taken as is. Anything
    else is scored through its first sub-token, with a note.

    Args:
        tokenizer: The model's tokenizer.
        words: Candidate words; blanks are ignored.

    Returns:
        The ids (duplicates removed, first occurrence kept) and the notes to show.

    Raises:
        UserError: No non-blank word was given, or a word yields no token at all.
    """
    vocab = tokenizer.get_vocab()
    kept_words: list[str] = []
    ids: list[int] = []
    notes: list[str] = []
    for raw in words:
        word = raw.strip()
        if not word:
            continue
        token_id = _single_token_id(tokenizer, vocab, word)
        if token_id is None:
            pieces = _word_start_ids(tokenizer, word)
            meaningful = [i for i in pieces if tokenizer.decode([i]).strip()]
            if not meaningful:
                raise UserError(f"target {word!r} yields no token in this model's vocabulary")
            token_id = meaningful[0]
            shown = " ".join(tokenizer.convert_ids_to_tokens(pieces))
            notes.append(f"target {word!r} is not a single token ({shown}); scoring its first sub-token "
                         f"{tokenizer.convert_ids_to_tokens(token_id)!r}")
        elif token_id == tokenizer.unk_token_id:
            notes.append(f"target {word!r} is not in the vocabulary; it maps to the unknown token "
                         f"{tokenizer.unk_token!r}")
        if token_id not in ids:
            ids.append(token_id)
            kept_words.append(word)
    if not ids:
        raise UserError("--targets is empty: give comma-separated candidate words, e.g. --targets cars,bikes")
    return TargetTokens(words=kept_words, token_ids=ids, notes=notes)


def _word_start_ids(tokenizer: Any, word: str) -> list[int]:
    return tokenizer(" " + word, add_special_tokens=False)["input_ids"]


def _single_token_id(tokenizer: Any, vocab: dict[str, int], word: str) -> int | None:
    as_word = _word_start_ids(tokenizer, word)
    if len(as_word) == 1:
        return as_word[0]
    if word in vocab:
        return vocab[word]
    bare = tokenizer(word, add_special_tokens=False)["input_ids"]
    return bare[0] if len(bare) == 1 else None


def _max_length(model: Any, tokenizer: Any) -> int:
    """Longest input the model takes (tokenizers without a limit report a huge number)."""
    limit = tokenizer.model_max_length
    positions = getattr(model.config, "max_position_embeddings", None)
    if (limit is None or limit > 1_000_000) and positions:
        limit = positions
    return int(limit) if limit and limit <= 1_000_000 else 512


def fill_mask(model: Any, tokenizer: Any, texts: str | Sequence[str], top_k: int = 5,
              targets: Sequence[str] | TargetTokens | None = None, batch_size: int = 32,
              labels: Sequence[str] | None = None,
              progress: Callable[[int], None] | None = None) -> list[FillMaskResult]:
    """Top-k candidates for every mask of every text.

    Texts are batched by length (so a batch pads to similar lengths) and the vocabulary
    projection runs only at the mask positions; results come back in input order.

    Args:
        model: An ``AutoModelForMaskedLM`` model (see :func:`load_fill_mask_model`).
        tokenizer: Its tokenizer.
        texts: One text or several; each holds one or more masks (``[MASK]``, ``<mask>``
            or the model's own mask token).
        top_k: Candidates per mask (at most the number of targets when targets are given).
        targets: Score only these words (see :func:`resolve_targets`; notes about words
            that are not single tokens are logged), or already resolved targets.
        batch_size: Texts per forward pass.
        labels: How errors name each text (e.g. ``"line 4"``).
        progress: Called with the number of texts finished after each batch.

    Returns:
        One :class:`FillMaskResult` per text, in order. Each candidate's ``sequence`` is the
        text as given with that one mask replaced by the token's text.

    Raises:
        UserError: A text has no mask, a mask lies beyond the model's length limit,
            ``top_k`` or ``batch_size`` is below 1, or the targets are empty.
    """
    if isinstance(texts, str):
        texts = [texts]
    if top_k < 1:
        raise UserError(f"top_k must be at least 1 (got {top_k})")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1 (got {batch_size})")
    encoded = encode_masked_texts(model, tokenizer, texts, labels)
    target_ids = None
    if targets is not None:
        resolved = targets if isinstance(targets, TargetTokens) else resolve_targets(tokenizer, targets)
        if not isinstance(targets, TargetTokens):
            for note in resolved.notes:
                log.warning(note)
        target_ids = torch.tensor(resolved.token_ids, dtype=torch.long)
        top_k = min(top_k, len(resolved.token_ids))

    parts = split_mlm_head(model)
    device = next(model.parameters()).device
    surfaces: dict[int, str] = {}
    results: list[FillMaskResult | None] = [None] * len(texts)
    for batch in length_batches([len(e.input_ids) for e in encoded], batch_size):
        input_ids, attention = pad_batch([encoded[i].input_ids for i in batch], pad_id(tokenizer))
        is_mask = input_ids == tokenizer.mask_token_id
        with torch.inference_mode():
            logits = mlm_logits(model, parts, input_ids.to(device), attention.to(device), is_mask.to(device))
        probs = logits.float().softmax(dim=-1).cpu()
        if target_ids is not None:
            probs = probs[:, target_ids]
        scores, picks = probs.topk(top_k, dim=-1)
        if target_ids is not None:
            picks = target_ids[picks]
        row = 0  # rows of probs follow the masks in (text, position) order
        for index in batch:
            text = encoded[index]
            result = FillMaskResult(text=text.text)
            for mask_index in range(len(text.mask_positions)):
                candidates = []
                for score, token_id in zip(scores[row].tolist(), picks[row].tolist(), strict=True):
                    if token_id not in surfaces:
                        surfaces[token_id] = tokenizer.decode([token_id])
                    token = surfaces[token_id]
                    candidates.append(Candidate(token=token, token_id=token_id, score=score,
                                                sequence=text.filled({mask_index: token.strip()})))
                result.masks.append(candidates)
                row += 1
            results[index] = result
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]


@dataclass
class MaskedText:
    """A text with masks, tokenized for the model, and where its masks lie in the text as given."""

    text: str
    """The text as given."""
    input_ids: list[int]
    """Token ids of the prepared text, special tokens included (truncated to the model's limit)."""
    mask_positions: list[int]
    """Indices of the mask tokens in ``input_ids``."""
    mask_spans: list[tuple[int, int]] | None
    """Character spans of the masks in ``text`` (one per mask position), or None when they cannot be matched."""

    def filled(self, words: dict[int, str]) -> str:
        """The text as given with mask ``i`` replaced by ``words[i]`` (other masks left as written)."""
        if self.mask_spans is None:
            raise ValueError("the masks of this text could not be located in it")
        return replace_spans(self.text, [(self.mask_spans[i], word) for i, word in words.items()])[0]


def mask_spans(text: str, tokenizer: Any) -> list[tuple[int, int]]:
    """Character spans of the masks (``[MASK]``, ``<mask>`` or the model's own token) in ``text``, in order."""
    spellings = sorted(dict.fromkeys([tokenizer.mask_token, *MASK_ALIASES]), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(s) for s in spellings))
    return [match.span() for match in pattern.finditer(text)]


def replace_spans(text: str, replacements: Iterable[tuple[tuple[int, int], str]]) -> tuple[str, list[tuple[int, int]]]:
    """Replace non-overlapping character spans of ``text``; everything else stays as it was.

    Returns:
        The new text and where each replacement lies in it (in the order of the spans).
    """
    pieces, placed, last, length = [], [], 0, 0
    for (start, end), word in sorted(replacements):
        pieces += [text[last:start], word]
        length += start - last
        placed.append((length, length + len(word)))
        length += len(word)
        last = end
    return "".join(pieces) + text[last:], placed


def encode_masked_texts(model: Any, tokenizer: Any, texts: Sequence[str],
                        labels: Sequence[str] | None = None) -> list[MaskedText]:
    """Check, prepare and tokenize texts with masks (one tokenizer call for all of them).

    Args:
        model: The model (its position limit caps the length).
        tokenizer: Its tokenizer.
        texts: Texts as the user gave them.
        labels: How errors name each text.

    Returns:
        One :class:`MaskedText` per text.

    Raises:
        UserError: No texts, a text without a mask, or a mask beyond the model's limit.
    """
    prepared = prepare_texts(texts, tokenizer, labels)
    max_length = _max_length(model, tokenizer)
    ids = tokenizer(prepared, truncation=True, max_length=max_length)["input_ids"]
    long = [i for i, row in enumerate(ids) if len(row) >= max_length]
    if long:
        _check_truncation(tokenizer, [prepared[i] for i in long], [ids[i].count(tokenizer.mask_token_id) for i in long],
                          max_length, [labels[i] if labels is not None else f"text {i + 1}" for i in long])
    encoded = []
    for text, row in zip(texts, ids, strict=True):
        positions = [p for p, t in enumerate(row) if t == tokenizer.mask_token_id]
        spans = mask_spans(text, tokenizer)
        encoded.append(MaskedText(text=text, input_ids=row, mask_positions=positions,
                                  mask_spans=spans if len(spans) == len(positions) else None))
    return encoded


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (shortest first; stable, so deterministic)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def pad_batch(rows: Sequence[Sequence[int]], pad_token_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` tensors, right-padded with ``pad_token_id``."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
        attention[i, :len(r)] = 1
    return input_ids, attention


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad id (0 when it has none: attention is masked there anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def mlm_logits(model: Any, parts: Any, input_ids: Any, attention: Any, where: Any) -> Any:
    """Vocabulary logits at the positions ``where`` marks, computing the head there only when it is separable."""
    if parts is not None:
        encoder, head = parts
        return head(encoder(input_ids=input_ids, attention_mask=attention)[0][where])
    return model(input_ids=input_ids, attention_mask=attention).logits[where]


def _check_truncation(tokenizer: Any, texts: Sequence[str], kept_masks: Sequence[int], max_length: int,
                      labels: Sequence[str]) -> None:
    full = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    for ids, kept, label in zip(full, kept_masks, labels, strict=True):
        if len(ids) > max_length and ids.count(tokenizer.mask_token_id) > kept:
            raise UserError(f"{label} is {len(ids)} tokens long and a mask lies beyond the model's limit of "
                            f"{max_length} tokens; shorten it")
