"""BERT's random-token masking (Devlin et al., 2019)."""

from __future__ import annotations

import torch

from mlmkit.masking.base import MaskingStrategy, Selection


def pick_exact(candidates: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Choose exactly ``counts[b]`` positions uniformly among ``candidates[b]`` in each row."""
    scores = torch.rand(candidates.shape, generator=generator)
    scores = scores.masked_fill(~candidates, 2.0)  # non-candidates sort last
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return (ranks < counts.unsqueeze(1)) & candidates


class RandomMasking(MaskingStrategy):
    """Predict each ordinary token independently with probability ``ratio``; 80/10/10 corruption.

    Args:
        exact: Predict exactly ``round(ratio * n)`` tokens per sequence instead of independent draws.
        min_predictions: At least this many predictions per sequence (when it has that many tokens).
    """

    name = "random"
    description = "Independent random tokens, BERT's 80% mask / 10% random / 10% keep corruption."
    paper = "Devlin et al., BERT, NAACL 2019"

    def __init__(self, exact: bool = False, min_predictions: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if min_predictions < 0:
            raise ValueError("masking.min_predictions must be >= 0")
        self.exact = bool(exact)
        self.min_predictions = int(min_predictions)

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        candidates = ~batch["special_tokens_mask"]
        if self.exact or self.min_predictions:
            n = candidates.sum(dim=1)
            if self.exact:
                counts = torch.round(n.double() * ratio).long()
            else:
                counts = torch.zeros_like(n)
            counts = torch.minimum(torch.clamp(counts, min=self.min_predictions), n)
            if self.exact:
                return Selection(pick_exact(candidates, counts, generator))
            predicted = (torch.rand(candidates.shape, generator=generator) < ratio) & candidates
            short = predicted.sum(dim=1) < counts
            if bool(short.any()):
                # top up only the rows below the minimum, keeping their existing picks
                extra = pick_exact(candidates & ~predicted, counts - predicted.sum(dim=1), generator)
                predicted = predicted | (extra & short.unsqueeze(1))
            return Selection(predicted)
        return Selection((torch.rand(candidates.shape, generator=generator) < ratio) & candidates)
