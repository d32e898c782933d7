"""The tiny encoder the fine-tuning task tests start from."""

from conftest import build_tiny_bert


def save_no_dropout_bert(path, tokenizer):
    """A 2-layer, 32-wide BERT MLM without dropout, saved with ``tokenizer`` (same seed, so same weights)."""
    build_tiny_bert(tokenizer, dropout=0.0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
