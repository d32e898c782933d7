"""A masked LM whose logits are written down by hand, for tests whose expected answers must be exact.

``NeighbourForMaskedLM`` predicts the token at position ``i`` from its two neighbours only:
``logits[i] = left[ids[i - 1]] + right[ids[i + 1]]`` (rows of two ``V x V`` tables; the
first and last positions see a zero row on their open side). Every probability it gives
can therefore be computed in the test from the tables alone. It is a real
``PreTrainedModel``: registered with the Auto classes, it saves with ``save_pretrained``
and loads through ``AutoModelForMaskedLM.from_pretrained``, so the CLI can load it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class NeighbourConfig(PretrainedConfig):
    model_type = "mlmkit-test-neighbour"

    def __init__(self, vocab_size: int = 16, max_position_embeddings: int = 64, **kwargs):
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class NeighbourForMaskedLM(PreTrainedModel):
    config_class = NeighbourConfig

    def __init__(self, config: NeighbourConfig):
        super().__init__(config)
        self.left = nn.Parameter(torch.zeros(config.vocab_size, config.vocab_size))
        self.right = nn.Parameter(torch.zeros(config.vocab_size, config.vocab_size))
        self.post_init()

    def _init_weights(self, module):  # the tables are set by the test, never initialised at random
        pass

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        zero = torch.zeros(input_ids.shape[0], 1, self.config.vocab_size, dtype=self.left.dtype,
                           device=input_ids.device)
        from_left = torch.cat([zero, self.left[input_ids[:, :-1]]], dim=1)
        from_right = torch.cat([self.right[input_ids[:, 1:]], zero], dim=1)
        return MaskedLMOutput(logits=from_left + from_right)


try:
    AutoConfig.register(NeighbourConfig.model_type, NeighbourConfig)
    AutoModelForMaskedLM.register(NeighbourConfig, NeighbourForMaskedLM)
except ValueError:  # already registered in this process
    pass


def word_tokenizer(words: list[str]):
    """A lower-casing WordPiece tokenizer whose vocabulary is the specials, then ``words`` (ids 5, 6, ...)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def neighbour_model(tokenizer, left: dict[str, dict[str, float]], right: dict[str, dict[str, float]],
                    floor: float = -20.0) -> NeighbourForMaskedLM:
    """A model whose tables hold ``floor`` except the given entries: ``left[a][b]`` scores b right after a."""
    size = len(tokenizer)
    model = NeighbourForMaskedLM(NeighbourConfig(vocab_size=size, architectures=["NeighbourForMaskedLM"]))
    with torch.no_grad():
        for table, entries in ((model.left, left), (model.right, right)):
            table.fill_(floor)
            for context, row in entries.items():
                for token, value in row.items():
                    table[tokenizer.convert_tokens_to_ids(context), tokenizer.convert_tokens_to_ids(token)] = value
    return model.eval()


def neighbour_log_prob(model: NeighbourForMaskedLM, ids: list[int], position: int, token: int) -> float:
    """log p(token at position | neighbours), from the tables alone (float64)."""
    with torch.no_grad():
        left = model.left[ids[position - 1]].double() if position > 0 else 0.0
        right = model.right[ids[position + 1]].double() if position + 1 < len(ids) else 0.0
        return float(torch.log_softmax(left + right, dim=-1)[token])
