"""Sentence scoring with a masked language model: pseudo-log-likelihood per text, optionally ranked.

A thin layer over :func:`mlmkit.evaluation.pll.pseudo_log_likelihood` (the function
``mlmkit evaluate`` uses too): it names each scored token, keeps where each text came
from, and ranks. Higher PLL (closer to 0) means the model finds the text more natural;
pseudo-perplexity ``exp(-PLL / N)`` puts texts of different lengths on one scale.

Example::

    model, tokenizer = load_fill_mask_model("runs/demo/mlm")
    for scored in score_texts(model, tokenizer, ["I love my car.", "Car my love I."], rank=True):
        print(round(scored.pll, 2), scored.text)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mlmkit.errors import UserError
from mlmkit.evaluation.pll import pseudo_log_likelihood


@dataclass
class TokenScore:
    """One token's contribution to a text's PLL."""

    token: str
    """The token as the vocabulary writes it (``##ing``, ``Ġcar``, ...)."""
    token_id: int
    """Its vocabulary id."""
    log_prob: float
    """Its log-probability (natural log) with this token alone masked."""


@dataclass
class TextScore:
    """The pseudo-log-likelihood of one text."""

    index: int
    """Position of the text in the input (0-based), so ranked output can be traced back."""
    text: str
    """The text as given."""
    pll: float
    """Sum of the tokens' log-probabilities, each masked on its own (Salazar et al., 2020)."""
    num_tokens: int
    """How many tokens were scored (special tokens are not)."""
    pseudo_perplexity: float
    """``exp(-pll / num_tokens)``."""
    tokens: list[TokenScore] = field(default_factory=list)
    """Per-token contributions, in text order."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def score_texts(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 64,
                rank: bool = False, labels: Sequence[str] | None = None) -> list[TextScore]:
    """Pseudo-log-likelihood of every text; the masked copies of all texts share forward passes.

    Args:
        model: A masked-LM.
        tokenizer: Its tokenizer (must have a mask token).
        texts: The texts to score.
        batch_size: Masked copies per forward pass.
        rank: Sort by PLL, highest (most natural) first; ties keep input order.
        labels: How errors name each text (e.g. ``"line 4"``).

    Returns:
        One :class:`TextScore` per text, in input order unless ``rank``.

    Raises:
        UserError: No texts, ``batch_size`` below 1, or a text with no token to score.
    """
    if not texts:
        raise UserError("no text given: pass one or more texts to score")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1 (got {batch_size})")
    results = pseudo_log_likelihood(model, tokenizer, list(texts), batch_size=batch_size)
    scored = []
    for index, result in enumerate(results):
        if result.num_tokens == 0:
            label = labels[index] if labels is not None else f"text {index + 1}"
            raise UserError(f"{label} has no token to score ({texts[index]!r})")
        names = tokenizer.convert_ids_to_tokens(result.token_ids)
        tokens = [TokenScore(token=name, token_id=token_id, log_prob=value)
                  for name, token_id, value in zip(names, result.token_ids, result.token_log_probs, strict=True)]
        scored.append(TextScore(index=index, text=texts[index], pll=result.pll, num_tokens=result.num_tokens,
                                pseudo_perplexity=result.pseudo_perplexity, tokens=tokens))
    if rank:
        scored.sort(key=lambda s: -s.pll)
    return scored
