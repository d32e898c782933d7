"""The encoder sizes ``model.preset`` can name, for pre-training from scratch.

Sizes follow Turc et al. (2019, "Well-Read Students Learn Better", the BERT-tiny ...
BERT-medium family) and BERT-base; each has a RoBERTa-style twin. The table sits with
the config so that a preset name is checked when the config is loaded; building the
model from a preset is :mod:`mlmkit.modeling.presets`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlmkit.errors import UserError


@dataclass(frozen=True)
class Preset:
    """An encoder size: layers, hidden width, attention heads, feed-forward width."""

    family: str
    layers: int
    hidden: int
    heads: int
    ffn: int

    def describe(self) -> str:
        """A short human-readable size."""
        return f"{self.layers} layers, hidden {self.hidden}, {self.heads} heads, ffn {self.ffn}"


_SIZES = {"tiny": (2, 128, 2, 512), "mini": (4, 256, 4, 1024), "small": (4, 512, 8, 2048),
          "medium": (8, 512, 8, 2048), "base": (12, 768, 12, 3072)}
PRESETS: dict[str, Preset] = {
    f"{family}-{size}": Preset(family, *dims) for family in ("bert", "roberta") for size, dims in _SIZES.items()
}


def preset_names() -> list[str]:
    """All preset names, smallest first within each family."""
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """Look a preset up; an unknown name is a UserError listing the presets."""
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise UserError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}") from None
