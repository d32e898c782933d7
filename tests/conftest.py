"""Shared fixtures: tiny tokenizers trained here, a tiny BERT built from a config, small corpora.

Nothing is downloaded: the Hub is switched off for the whole session.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# caches the tests write (prepared corpora, datasets' Arrow files) live in a per-session folder, not the user's
_HF_HOME = tempfile.mkdtemp(prefix="mlmkit-tests-hf-")
os.environ["HF_HOME"] = _HF_HOME
atexit.register(shutil.rmtree, _HF_HOME, True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

#: folders whose tests run training loops, whole commands or statistical checks; `make test-fast` leaves them
#: out (with every test marked ``slow`` elsewhere), `make test` and CI run everything
SLOW_FOLDERS = frozenset({"integration", "study", "teeth", "e2e", "fidelity"})


def pytest_collection_modifyitems(config, items):
    """Mark every test in a :data:`SLOW_FOLDERS` folder ``slow``."""
    here = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(here).parts
        if SLOW_FOLDERS.intersection(parts[:-1]):
            item.add_marker(pytest.mark.slow)

SUBJECTS = ["the cat", "a dog", "my neighbour", "the old car", "self-driving cars", "our team", "this phone",
            "the electric bus", "a young engineer", "the weather"]
VERBS = ["likes", "hates", "chases", "drives past", "talks about", "waits for", "ignores", "admires"]
OBJECTS = ["the morning train", "unbelievably tasty pancakes", "a quiet street", "the new station",
           "autonomous vehicles", "rainy afternoons", "the tokenizer", "internationalization"]
ENDINGS = [".", "!", " today.", " again.", " every day.", " , surprisingly."]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it), for multi-process runs."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_corpus(n: int = 200, seed: int = 0) -> list[str]:
    """Deterministic toy sentences with repeated words (so tokenizers learn sub-words)."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}"
            for _ in range(n)]


def fixed_wordpiece_vocab(corpus: list[str], whole_word_max: int = 8, piece: int = 4) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: specials, characters, ``##`` characters and the corpus words.

    Words longer than ``whole_word_max`` characters are kept out and added as pieces of ``piece`` characters
    (``inte ##rnat ##iona ...``), so the vocabulary has multi-piece words for whole-word masking to group.
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in corpus for word, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    tokens = list(SPECIALS) + chars + [f"##{c}" for c in chars]
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(word) <= whole_word_max:
            tokens.append(word)
        else:
            tokens.append(word[:piece])
            tokens.extend(f"##{word[i:i + piece]}" for i in range(piece, len(word), piece))
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def train_tokenizer(kind: str, corpus: list[str], vocab_size: int = 200):
    """A tiny fast tokenizer of ``kind`` (wordpiece: fixed vocabulary; bpe, unigram: trained), BERT specials."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    trainer = None
    if kind == "wordpiece":
        # The WordPiece trainer breaks ties in hash order, so its vocabulary changes from one process to the next;
        # a fixed vocabulary keeps every test that trains a tiny model reproducible.
        tok = Tokenizer(models.WordPiece(vocab=fixed_wordpiece_vocab(corpus), unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="[UNK]")
    else:
        raise ValueError(kind)
    if trainer is not None:
        tok.train_from_iterator(corpus, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)


def build_tiny_bert(tokenizer, seed: int = 0, dropout: float = 0.1):
    """A 2-layer, 32-wide BertForMaskedLM sized to ``tokenizer``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForMaskedLM(config)


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return make_corpus()


@pytest.fixture(scope="session", params=["wordpiece", "bpe", "unigram"])
def any_tokenizer(request, corpus):
    """Each test using this runs once per tokenizer family."""
    return train_tokenizer(request.param, corpus)


@pytest.fixture(scope="session")
def wordpiece_tokenizer(corpus):
    return train_tokenizer("wordpiece", corpus)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, wordpiece_tokenizer):
    """A saved tiny BERT MLM + tokenizer directory, loadable with from_pretrained."""
    path = tmp_path_factory.mktemp("tiny-bert")
    build_tiny_bert(wordpiece_tokenizer).save_pretrained(path)
    wordpiece_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus):
    """The toy corpus as a .txt file, one sentence per line."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy CPU those threads wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def preparations(monkeypatch) -> list[int]:
    """Counts the calls of the prepared-corpus cache's preparation function (load, tokenize, pack)."""
    from mlmkit.data import cache

    calls: list[int] = []
    original = cache.prepare_blocks

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(cache, "prepare_blocks", counted)
    return calls
