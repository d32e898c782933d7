"""A weighted mixture of registered strategies, one chosen per sequence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mlmkit.masking.base import MaskingStrategy, Selection
from mlmkit.masking.registry import build_strategy

#: parameters the mixture owns; components may not set them (they would be silently ignored)
SHARED_PARAMETERS = ("ratio", "mask_replace_prob", "random_replace_prob", "schedule")


class MixtureMasking(MaskingStrategy):
    """Mask each sequence with one strategy drawn from a weighted list.

    Every row of a batch draws one component with probability proportional to its
    weight; the rows of each component are masked by that component in one vectorized
    call, and the results are put back in place. The components share the mixture's
    ``ratio`` (and so its schedule) and its mask / random / keep split, applied per unit
    of whatever the component chose (words for ``whole_word``, spans for ``span``, ...).
    Per-token features are the union of the components' features, computed once at
    data preparation; loss feedback is passed on to the components that want it.

    Args:
        strategies: The components: a list of mappings, each with ``name``, an optional
            ``weight`` (default 1) and the component's own parameters, e.g.
            ``[{name: span, weight: 0.5, max_span: 5}, {name: random, weight: 0.5}]``.
    """

    name = "mixture"
    description = "A weighted mix of other strategies, one drawn per sequence (e.g. span + random)."
    paper = "Mixed masking objectives, e.g. Tay et al., UL2 (mixture of denoisers), ICLR 2023"

    def __init__(self, strategies: Sequence[Mapping[str, Any]] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)

        if not strategies:
            raise ValueError("mixture needs masking.strategies, e.g. "
                             "[{name: span, weight: 0.5}, {name: random, weight: 0.5}]")
        self.components: list[MaskingStrategy] = []
        weights: list[float] = []
        for index, spec in enumerate(strategies):
            if not isinstance(spec, Mapping) or "name" not in spec:
                raise ValueError(f"masking.strategies[{index}] must be a mapping with a 'name'")
            spec = dict(spec)
            weight = float(spec.pop("weight", 1.0))
            if weight < 0:
                raise ValueError(f"masking.strategies[{index}].weight must be >= 0")
            shared = sorted(set(spec) & set(SHARED_PARAMETERS))
            if shared:
                raise ValueError(f"masking.strategies[{index}] sets {', '.join(shared)}; set them on the mixture, "
                                 "which all components share")
            if spec["name"] == self.name:
                raise ValueError("a mixture cannot contain another mixture")
            component = build_strategy(dict(spec, ratio=self.ratio, mask_replace_prob=self.mask_replace_prob,
                                            random_replace_prob=self.random_replace_prob))
            self.components.append(component)
            weights.append(weight)
        if sum(weights) <= 0:
            raise ValueError("the mixture's weights must not all be zero")
        self.weights = torch.tensor(weights, dtype=torch.float64) / sum(weights)
        self.features = tuple(dict.fromkeys(f for c in self.components for f in c.features))
        self.group_features = tuple(dict.fromkeys(f for c in self.components for f in c.group_features))
        self.wants_feedback = any(c.wants_feedback for c in self.components)
        self._last_choice: torch.Tensor | None = None
        self._rows_seen = torch.zeros(len(self.components), dtype=torch.long)

    # ------------------------------------------------------------------ setup
    def bind(self, tokenizer: Any) -> None:
        super().bind(tokenizer)
        for component in self.components:
            component.bind(tokenizer)

    def detect_language(self, texts: list[str]) -> None:
        """Settle ``language=auto`` of the word-based components on a sample of the corpus."""
        for component in self.components:
            if callable(getattr(component, "detect_language", None)):
                component.detect_language(texts)

    @property
    def resolved_language(self) -> str:
        """The language of the first word-based component (``en`` without one), e.g. for corpus statistics."""
        return next((c.resolved_language for c in self.components if hasattr(c, "resolved_language")), "en")

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        merged: dict[str, list[list[int]]] = {}
        for component in self.components:
            for key, values in component.token_features(texts, encodings).items():
                merged.setdefault(key, values)
        return merged

    # ------------------------------------------------------------------ masking
    def choose(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Component index of each row, drawn with the mixture's weights."""
        if len(self.components) == 1:
            return torch.zeros(batch_size, dtype=torch.long)
        return torch.multinomial(self.weights.float(), batch_size, replacement=True, generator=generator)

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        shape = batch["input_ids"].shape
        choice = self.choose(shape[0], generator)
        predicted = torch.zeros(shape, dtype=torch.bool)
        units = torch.full(shape, -1, dtype=torch.long)
        positions = torch.arange(shape[1]).expand(shape)
        for index, component in enumerate(self.components):
            rows = (choice == index).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            sub = {k: v[rows] for k, v in batch.items() if isinstance(v, torch.Tensor) and v.shape[:1] == shape[:1]}
            part = component.select(sub, ratio, generator)
            part_predicted = part.predicted & ~sub["special_tokens_mask"]
            part_units = part.units if part.units is not None else positions[: rows.numel()]
            predicted[rows] = part_predicted
            units[rows] = torch.where(part_predicted, part_units, torch.full_like(part_units, -1))
        self._last_choice = choice
        self._rows_seen += torch.bincount(choice, minlength=len(self.components))
        return Selection(predicted=predicted, units=units)

    # ------------------------------------------------------------------ feedback, logging, state
    def observe(self, batch: dict[str, torch.Tensor], token_losses: torch.Tensor) -> None:
        choice = self._last_choice
        if choice is None or choice.shape[0] != token_losses.shape[0]:
            return
        for index, component in enumerate(self.components):
            if not component.wants_feedback:
                continue
            rows = (choice == index).nonzero().squeeze(1)
            if rows.numel():
                sub = {k: v[rows] for k, v in batch.items() if isinstance(v, torch.Tensor)
                       and v.shape[:1] == token_losses.shape[:1]}
                component.observe(sub, token_losses[rows])

    def log_values(self) -> dict[str, float]:
        values: dict[str, float] = {}
        total = max(int(self._rows_seen.sum()), 1)
        for index, component in enumerate(self.components):
            label = f"{index}_{component.name}"
            values[f"mixture/{label}/share"] = round(float(self._rows_seen[index]) / total, 4)
            for key, value in component.log_values().items():
                values[f"mixture/{label}/{key}"] = value
        return values

    def state_dict(self) -> dict[str, Any]:
        states = {str(i): c.state_dict() for i, c in enumerate(self.components)}
        states = {k: v for k, v in states.items() if v}
        return {"components": states} if states else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.get("components", {}).items():
            self.components[int(key)].load_state_dict(value)
