"""Train tokenizers from a corpus and extend an existing tokenizer's vocabulary."""
