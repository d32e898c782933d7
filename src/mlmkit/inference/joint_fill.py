"""Joint filling of several masks, and masks that stand for words of several sub-tokens.

Independent filling (:func:`~mlmkit.inference.fill_mask.fill_mask`, like
``pipeline("fill-mask")``) predicts every mask as if the others were still masks, so
"The [MASK] [MASK] is in Paris." gets the best word per position, not coherent pairs.
Here a beam search fills one mask at a time, as mask-predict decoding does
(Ghazvininejad et al., EMNLP 2019): each beam fills the mask it is most confident about
(the highest top-1 probability among the tokens allowed there), the model runs again on
the partly filled text, and so on until no mask is left. A filling's ``log_prob`` is the
sum of its tokens' log-probabilities, each conditioned on the fills made before it. All
beams of all texts share forward passes, and the encoder's vocabulary projection runs at
the unfilled positions only.

With ``max_tokens`` N a mask may become a word of 1..N sub-tokens: every combination of
word lengths is its own search (the mask expanded to n mask tokens), and fillings of
different lengths are ranked by ``score = log_prob / num_tokens ** length_penalty``.
With 0 that is the raw sum, which favours short words because every extra token adds a
negative term; with 1 it is the mean per token, which favours long words whose extra
pieces are cheap (punctuation joining two words); the default 0.5 sits between. Only whole words are
returned: the first piece of a mask written after a space must start a word, a piece
that continues a word may only follow a piece it can join without a space, a word of
several pieces has punctuation inside only (``self-driving``, not ``great!!``), and a filled
word must tokenize back, in its place in the text, into exactly the pieces that were
scored (no dangling ``##`` pieces, no word-internal BPE fragments, no non-canonical splits).

Example::

    model, tokenizer = load_fill_mask_model("runs/demo/mlm")
    [result] = joint_fill(model, tokenizer, ["The [MASK] [MASK] is in Paris."], top_k=3)
    for filling in result.fillings:
        print(round(filling.log_prob, 2), filling.sequence)
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mlmkit.errors import UserError
from mlmkit.inference.fill_mask import MaskedText, encode_masked_texts, mlm_logits, pad_batch, pad_id, replace_spans
from mlmkit.modeling.sparse_head import split_mlm_head

#: at most this many word-length combinations per text (``max_tokens ** masks``)
MAX_LENGTH_COMBINATIONS = 256


@dataclass
class Alternative:
    """A token the model proposed at one fill step."""

    token: str
    """The token as the tokenizer decodes it on its own."""
    token_id: int
    """Its vocabulary id."""
    log_prob: float
    """Its log-probability at that step (natural log, softmax over the whole vocabulary)."""


@dataclass
class FillStep:
    """One step of a filling: which mask piece was filled, with what, and what else was proposed there."""

    mask: int
    """Index of the mask in the text (0-based, in reading order)."""
    piece: int
    """Index of the sub-token inside that mask's word (0-based; always 0 with one token per mask)."""
    token: str
    """The chosen token as decoded on its own."""
    token_id: int
    """Its vocabulary id."""
    log_prob: float
    """Its log-probability given the text and the fills made before this step."""
    alternatives: list[Alternative] = field(default_factory=list)
    """The best allowed tokens at this step, best first (the chosen one among them when it ranks there)."""


@dataclass
class JointFilling:
    """One complete filling of every mask of a text."""

    sequence: str
    """The text as given with every mask replaced by its word."""
    words: list[str]
    """The word put in each mask, in reading order."""
    token_ids: list[list[int]]
    """The sub-token ids of each word."""
    log_prob: float
    """Sum of the log-probabilities of all filled tokens (the joint score)."""
    score: float
    """``log_prob / num_tokens ** length_penalty``; fillings are ranked by it."""
    steps: list[FillStep]
    """The fills in the order they were made."""

    @property
    def num_tokens(self) -> int:
        """How many sub-tokens were filled in all."""
        return sum(len(ids) for ids in self.token_ids)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``num_tokens`` included)."""
        return {**asdict(self), "num_tokens": self.num_tokens}


@dataclass
class JointFillResult:
    """The best complete fillings of one text."""

    text: str
    """The text as given."""
    fillings: list[JointFilling] = field(default_factory=list)
    """Best first; fewer than ``top_k`` when the search found fewer whole-word fillings."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``{"text": ..., "fillings": [{sequence, words, token_ids, log_prob, ...}, ...]}``."""
        return {"text": self.text, "fillings": [f.to_dict() for f in self.fillings]}


@dataclass(frozen=True)
class TokenClasses:
    """What each vocabulary entry can do inside a word (see :func:`token_classes`)."""

    starts_word: torch.Tensor
    """Bool per id: the token carries the space before a word (``Ġcars``, ``▁cars``, WordPiece ``cars``)."""
    punctuation: torch.Tensor
    """Bool per id: the token's text is punctuation or symbols only (words such as ``self-driving`` join there)."""
    special: torch.Tensor
    """Bool per id: never a fill (special tokens, ids beyond the tokenizer's vocabulary)."""

    def may_follow(self, left: int) -> torch.Tensor:
        """Tokens that can come right after ``left`` inside one word (no space between)."""
        if bool(self.punctuation[left]):
            return ~self.special
        return (~self.starts_word | self.punctuation) & ~self.special

    def may_precede(self, right: int) -> torch.Tensor:
        """Tokens that can come right before ``right`` inside one word."""
        if not bool(self.starts_word[right]) or bool(self.punctuation[right]):
            return ~self.special
        return self.punctuation & ~self.special


def _is_punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(ch)[0] in "PS" for ch in text)


def token_classes(tokenizer: Any, vocab_size: int) -> TokenClasses:
    """Classify every vocabulary entry by decoding it after a reference word.

    A token starts a word when decoding ``[a, token]`` puts a space before it; this reads
    the same for WordPiece (``##`` pieces join), byte-level BPE (``Ġ`` marks the space)
    and SentencePiece (``▁``), without knowing which one the tokenizer is.

    Args:
        tokenizer: A Hugging Face tokenizer.
        vocab_size: The model's vocabulary size (ids the tokenizer lacks are never fills).
    """
    known = min(len(tokenizer), vocab_size)
    reference = tokenizer("a", add_special_tokens=False)["input_ids"][-1]
    prefix = tokenizer.decode([reference])
    after = tokenizer.batch_decode([[reference, i] for i in range(known)])
    alone = tokenizer.batch_decode([[i] for i in range(known)])
    starts = torch.zeros(vocab_size, dtype=torch.bool)
    punctuation = torch.zeros(vocab_size, dtype=torch.bool)
    special = torch.ones(vocab_size, dtype=torch.bool)
    special[:known] = False
    for i, (pair, single) in enumerate(zip(after, alone, strict=True)):
        rest = pair[len(prefix):] if pair.startswith(prefix) else pair
        starts[i] = rest[:1].isspace()
        punctuation[i] = _is_punctuation(single.strip())
    special[[i for i in tokenizer.all_special_ids if i < vocab_size]] = True
    return TokenClasses(starts_word=starts, punctuation=punctuation, special=special)


@dataclass
class Slot:
    """One mask token to fill, with the constraints a whole word puts on it."""

    position: int
    """Index of the mask token in the problem's ``input_ids``."""
    allowed: torch.Tensor | None = None
    """Bool per vocabulary id; None allows every token that is not special."""
    left: int | None = None
    """Index of the slot directly before this one inside the same word (pair rule once it is filled)."""
    right: int | None = None
    """Index of the slot directly after it inside the same word."""
    left_token: int | None = None
    """A text token glued to the word's start (``un`` in ``un[MASK]``)."""
    right_token: int | None = None
    """A text token glued to the word's end."""


@dataclass
class FillProblem:
    """Token ids with mask tokens at the slots' positions."""

    input_ids: list[int]
    slots: list[Slot]


@dataclass
class Beam:
    """A partial filling: one token id per slot (-1 while unfilled) and how it was reached."""

    tokens: tuple[int, ...]
    log_prob: float = 0.0
    steps: tuple[tuple[int, int, float, tuple[tuple[int, float], ...]], ...] = ()
    """``(slot, token_id, log_prob, alternatives)`` per fill, in order; alternatives are ``(token_id, log_prob)``."""

    @property
    def done(self) -> bool:
        return -1 not in self.tokens


def _allowed(slot: Slot, beam: Beam, classes: TokenClasses | None, base: torch.Tensor) -> torch.Tensor:
    allowed = slot.allowed if slot.allowed is not None else base
    if classes is None:
        return allowed
    left = slot.left_token if slot.left_token is not None else (
        beam.tokens[slot.left] if slot.left is not None and beam.tokens[slot.left] >= 0 else None)
    right = slot.right_token if slot.right_token is not None else (
        beam.tokens[slot.right] if slot.right is not None and beam.tokens[slot.right] >= 0 else None)
    if left is not None:
        allowed = allowed & classes.may_follow(left)
    if right is not None:
        allowed = allowed & classes.may_precede(right)
    return allowed


@torch.no_grad()
def beam_fill(model: Any, problems: Sequence[FillProblem], *, pad_token_id: int, width: int = 5,
              batch_size: int = 32, classes: TokenClasses | None = None, special_ids: Sequence[int] = (),
              alternatives: int = 3) -> list[list[Beam]]:
    """Fill the slots of each problem jointly with a beam search; all problems' beams share forward passes.

    Every step, each unfinished beam fills its most confident unfilled slot (largest top-1
    log-probability among the tokens allowed there; the first such slot on a tie) with its
    ``width`` best tokens; each problem then keeps its ``width`` best distinct partial fillings
    (ties broken by token ids, so the search is deterministic).

    Args:
        model: A masked-LM.
        problems: Token ids with masks at the slots.
        pad_token_id: Pads rows of different lengths.
        width: Beam width.
        batch_size: Rows (beams) per forward pass.
        classes: Whole-word pair rules between neighbouring slots (None: no such rules).
        special_ids: Never used as fills (when a slot has no ``allowed`` of its own).
        alternatives: How many proposals to record at each step.

    Returns:
        Per problem, its finished beams, best first (empty when no allowed filling exists).
    """
    model_was_training = model.training
    model.eval()
    parts = split_mlm_head(model)
    device = next(model.parameters()).device
    base: torch.Tensor | None = None  # allowed where a slot says nothing: not special
    beams = [[Beam(tokens=(-1,) * len(p.slots))] for p in problems]
    keep = max(width, alternatives)
    while True:
        live = [(p, b) for p, group in enumerate(beams) for b in group if not b.done]
        if not live:
            break
        expansions: list[list[Beam]] = [[] for _ in problems]
        live.sort(key=lambda pb: len(problems[pb[0]].input_ids))  # similar lengths share a batch
        for start in range(0, len(live), batch_size):
            chunk = live[start:start + batch_size]
            rows, open_slots = [], []
            for p, beam in chunk:
                ids = list(problems[p].input_ids)
                for slot, token in zip(problems[p].slots, beam.tokens, strict=True):
                    if token >= 0:
                        ids[slot.position] = token
                rows.append(ids)
                open_slots.append([s for s, token in enumerate(beam.tokens) if token < 0])
            input_ids, attention = pad_batch(rows, pad_token_id=pad_token_id)
            row_index = torch.tensor([r for r, slots in enumerate(open_slots) for _ in slots])
            positions = torch.tensor([problems[p].slots[s].position
                                      for (p, _), slots in zip(chunk, open_slots, strict=True) for s in slots])
            logits = mlm_logits(model, parts, input_ids.to(device), attention.to(device),
                                (row_index.to(device), positions.to(device)))
            log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
            if base is None:
                base = torch.ones(log_probs.shape[-1], dtype=torch.bool)
                base[[i for i in special_ids if i < len(base)]] = False
            offset = 0
            for (p, beam), slots in zip(chunk, open_slots, strict=True):
                allowed = torch.stack([_allowed(problems[p].slots[s], beam, classes, base) for s in slots])
                scores = log_probs[offset:offset + len(slots)].masked_fill(~allowed, -math.inf)
                offset += len(slots)
                choice = int(scores.max(dim=-1).values.argmax())
                ranked, order = scores[choice].sort(descending=True, stable=True)
                ranked, order = ranked[:keep].tolist(), order[:keep].tolist()
                proposals = tuple((t, v) for t, v in zip(order[:alternatives], ranked[:alternatives], strict=True)
                                  if v > -math.inf)
                slot = slots[choice]
                for token, value in zip(order[:width], ranked[:width], strict=True):
                    if value == -math.inf:
                        break
                    tokens = beam.tokens[:slot] + (token,) + beam.tokens[slot + 1:]
                    expansions[p].append(Beam(tokens=tokens, log_prob=beam.log_prob + value,
                                              steps=(*beam.steps, (slot, token, value, proposals))))
        for p, candidates in enumerate(expansions):
            if any(not b.done for b in beams[p]):
                best: dict[tuple[int, ...], Beam] = {}
                for candidate in sorted(candidates, key=lambda b: (-b.log_prob, b.tokens)):
                    best.setdefault(candidate.tokens, candidate)
                beams[p] = list(best.values())[:width]
    model.train(model_was_training)
    return [sorted(group, key=lambda b: (-b.log_prob, b.tokens)) for group in beams]


def _mask_context(text: str, span: tuple[int, int]) -> tuple[bool, bool, bool]:
    """``(at_start, glued_left, glued_right)`` of a mask written at ``span`` in ``text``."""
    start, end = span
    return start == 0, start > 0 and not text[start - 1].isspace(), end < len(text) and not text[end].isspace()


def _problem(text: MaskedText, lengths: Sequence[int], classes: TokenClasses) -> tuple[FillProblem, list[tuple]]:
    """Expand mask ``k`` of ``text`` into ``lengths[k]`` slots; return the problem and ``(mask, piece)`` per slot."""
    assert text.mask_spans is not None
    ids: list[int] = []
    slots: list[Slot] = []
    owners: list[tuple[int, int]] = []
    first_slot: dict[int, int] = {}
    mask_of_position = {p: k for k, p in enumerate(text.mask_positions)}
    not_special = ~classes.special
    for position, token in enumerate(text.input_ids):
        k = mask_of_position.get(position)
        if k is None:
            ids.append(token)
            continue
        at_start, glued_left, _ = _mask_context(text.text, text.mask_spans[k])
        first_slot[k] = len(slots)
        for piece in range(lengths[k]):
            slot = Slot(position=len(ids))
            if piece == 0 and not at_start and not glued_left:
                slot.allowed = classes.starts_word & not_special  # the mask is written after a space
            if lengths[k] > 1 and piece in (0, lengths[k] - 1):  # punctuation only inside a word: self-driving
                slot.allowed = (slot.allowed if slot.allowed is not None else not_special) & ~classes.punctuation
            if piece > 0:
                slot.left = len(slots) - 1
                slots[-1].right = len(slots)
            ids.append(token)
            slots.append(slot)
            owners.append((k, piece))
    # words glued to the text (or to another mask) around them: pair rules with that token or slot
    for k, span in enumerate(text.mask_spans):
        _, glued_left, glued_right = _mask_context(text.text, span)
        first, last = first_slot[k], first_slot[k] + lengths[k] - 1
        if glued_left:
            before = slots[first].position - 1
            neighbour = next((s for s, slot in enumerate(slots) if slot.position == before), None)
            if neighbour is not None:
                slots[first].left, slots[neighbour].right = neighbour, first
            elif not bool(classes.special[ids[before]]):
                slots[first].left_token = ids[before]
        if glued_right:
            after = slots[last].position + 1
            if after < len(ids) and not any(slot.position == after for slot in slots) \
                    and not bool(classes.special[ids[after]]):
                slots[last].right_token = ids[after]
    return FillProblem(input_ids=ids, slots=slots), owners


def word_text(tokenizer: Any, pieces: Sequence[int]) -> str:
    """The text of a one-word filling: its pieces decoded, with no whitespace inside."""
    return "".join(tokenizer.decode(list(pieces)).split())


def is_whole_word(tokenizer: Any, text: str, span: tuple[int, int], pieces: Sequence[int]) -> bool:
    """True when the word at ``span`` of the filled ``text`` tokenizes, in its place, into exactly ``pieces``.

    The whitespace-delimited chunk holding the word is tokenized as it stands in the text
    (after a space, or at the start); the tokens of whatever is glued before the word
    must come first, then the pieces.
    """
    start, end = span
    chunk_start = max((i + 1 for i in range(start) if text[i].isspace()), default=0)
    chunk_end = next((i for i in range(end, len(text)) if text[i].isspace()), len(text))
    lead = " " if chunk_start > 0 else ""
    glued_before = text[chunk_start:start]
    before = tokenizer(lead + glued_before, add_special_tokens=False)["input_ids"] if glued_before else []
    whole = tokenizer(lead + text[chunk_start:chunk_end], add_special_tokens=False)["input_ids"]
    return whole[:len(before)] == before and whole[len(before):len(before) + len(pieces)] == list(pieces)


def _check_options(top_k: int, beam: int, max_tokens: int, batch_size: int, length_penalty: float) -> None:
    for name, value in (("top_k", top_k), ("beam", beam), ("max_tokens", max_tokens), ("batch_size", batch_size)):
        if value < 1:
            raise UserError(f"{name} must be at least 1 (got {value})")
    if not math.isfinite(length_penalty) or length_penalty < 0:
        raise UserError(f"length_penalty must be a number >= 0 (got {length_penalty})")


def joint_fill(model: Any, tokenizer: Any, texts: str | Sequence[str], *, top_k: int = 5, beam: int = 5,
               max_tokens: int = 1, length_penalty: float = 0.5, batch_size: int = 32, alternatives: int = 3,
               labels: Sequence[str] | None = None,
               progress: Callable[[int], None] | None = None) -> list[JointFillResult]:
    """The best complete fillings of every text's masks, ranked by joint (length-normalised) score.

    Args:
        model: An ``AutoModelForMaskedLM`` model (see
            :func:`~mlmkit.inference.fill_mask.load_fill_mask_model`).
        tokenizer: Its tokenizer.
        texts: One text or several, each with one or more masks.
        top_k: Fillings per text.
        beam: Beam width (raised to ``top_k`` when smaller, so that ``top_k`` fillings can survive).
        max_tokens: Longest word, in sub-tokens, a mask may become.
        length_penalty: Exponent ``a`` in ``score = log_prob / num_tokens ** a``.
        batch_size: Beams per forward pass; texts are searched ``batch_size`` at a time.
        alternatives: Proposals recorded at each fill step.
        labels: How errors name each text (e.g. ``"line 4"``).
        progress: Called with the number of texts finished after each group of texts.

    Returns:
        One :class:`JointFillResult` per text, in order.

    Raises:
        UserError: A text has no mask, a mask lies beyond the model's limit, an option is
            out of range, or ``max_tokens ** masks`` exceeds :data:`MAX_LENGTH_COMBINATIONS`.
    """
    if isinstance(texts, str):
        texts = [texts]
    _check_options(top_k, beam, max_tokens, batch_size, length_penalty)
    encoded = encode_masked_texts(model, tokenizer, texts, labels)
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    for i, text in enumerate(encoded):
        label = labels[i] if labels is not None else f"text {i + 1}"
        if text.mask_spans is None:
            raise UserError(f"cannot locate the masks of {label} in its text")
        combinations = max_tokens ** len(text.mask_positions)
        if combinations > MAX_LENGTH_COMBINATIONS:
            raise UserError(f"{label} has {len(text.mask_positions)} masks: with --max-tokens {max_tokens} that is "
                            f"{combinations:,} word-length combinations (at most {MAX_LENGTH_COMBINATIONS}); "
                            f"lower --max-tokens or fill fewer masks at once")
    vocab = int(model.config.vocab_size)
    classes = token_classes(tokenizer, vocab)
    special_ids = classes.special.nonzero().flatten().tolist()
    width = max(beam, top_k)
    results: list[JointFillResult] = []
    for group_start in range(0, len(encoded), batch_size):
        group = encoded[group_start:group_start + batch_size]
        problems, owners, origin = [], [], []
        for t, text in enumerate(group):
            for lengths in itertools.product(range(1, max_tokens + 1), repeat=len(text.mask_positions)):
                if len(text.input_ids) + sum(lengths) - len(lengths) > limit:
                    continue  # this expansion would not fit the model
                problem, owner = _problem(text, lengths, classes)
                problems.append(problem)
                owners.append(owner)
                origin.append(t)
        found = beam_fill(model, problems, pad_token_id=pad_id(tokenizer), width=width, batch_size=batch_size,
                          classes=classes, special_ids=special_ids, alternatives=alternatives)
        per_text: list[list[JointFilling]] = [[] for _ in group]
        for beams, owner, t in zip(found, owners, origin, strict=True):
            for done in beams:
                filling = _filling(tokenizer, group[t], done, owner, length_penalty)
                if filling is not None:
                    per_text[t].append(filling)
        for text, fillings in zip(group, per_text, strict=True):
            unique: dict[str, JointFilling] = {}
            for filling in sorted(fillings, key=lambda f: (-f.score, f.sequence)):
                unique.setdefault(filling.sequence, filling)  # the best-scored of equal texts
            results.append(JointFillResult(text=text.text, fillings=list(unique.values())[:top_k]))
        if progress is not None:
            progress(len(group))
    return results


def _filling(tokenizer: Any, text: MaskedText, beam: Beam, owners: Sequence[tuple[int, int]],
             length_penalty: float) -> JointFilling | None:
    """Turn a finished beam into a filling of the user's text, or None when a word is not whole."""
    assert text.mask_spans is not None
    pieces: list[list[int]] = [[] for _ in text.mask_positions]
    for (mask, _), token in zip(owners, beam.tokens, strict=True):
        pieces[mask].append(token)
    words = [word_text(tokenizer, p) for p in pieces]
    if not all(words):
        return None
    filled, spans = replace_spans(text.text, zip(text.mask_spans, words, strict=True))
    if not all(is_whole_word(tokenizer, filled, span, p) for span, p in zip(spans, pieces, strict=True)):
        return None

    def decoded(token_id: int) -> str:
        return tokenizer.decode([token_id])

    steps = [FillStep(mask=owners[slot][0], piece=owners[slot][1], token=decoded(token), token_id=token,
                      log_prob=value, alternatives=[Alternative(decoded(t), t, v) for t, v in proposals])
             for slot, token, value, proposals in beam.steps]
    num_tokens = len(beam.tokens)
    return JointFilling(sequence=filled, words=words, token_ids=pieces, log_prob=beam.log_prob,
                        score=beam.log_prob / num_tokens ** length_penalty, steps=steps)
