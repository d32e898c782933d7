"""mlmkit.tokenization.train: tokenizer types, families, rounding, loading through AutoTokenizer."""

import pytest

from conftest import make_corpus
from mlmkit.errors import UserError
from mlmkit.tokenization.train import FAMILIES, round_vocab_size, train_tokenizer, train_tokenizer_on_corpus

CORPUS = make_corpus(400, seed=3)
# words made only of characters the toy corpus contains, so every type can spell them
PROBES = ["the cat likes unbelievably tasty pancakes", "self driving cars wait for the electric bus",
          "internationalization admires our neighbour"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved tokenizer per (type, family), loaded back with AutoTokenizer."""
    from transformers import AutoTokenizer

    loaded = {}
    for kind in ("wordpiece", "bpe", "unigram"):
        for family in ("bert", "roberta"):
            out = tmp_path_factory.mktemp(f"{kind}-{family}")
            trained = train_tokenizer(CORPUS, kind=kind, family=family, vocab_size=300, lowercase=True)
            trained.tokenizer.save_pretrained(out)
            loaded[kind, family] = (trained, AutoTokenizer.from_pretrained(out))
    return loaded


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_encode_decode_round_trip(saved, kind, family):
    _, tok = saved[kind, family]
    for text in PROBES:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text
        # frequent words became single tokens, rare long ones were split
        assert len(ids) - 2 < len(text.replace(" ", ""))


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_bert_family_special_tokens_and_template(saved, kind):
    _, tok = saved[kind, "bert"]
    assert [tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token] == list(FAMILIES["bert"].order)
    ids = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id]
    assert ids == [0, 1, 2, 3, 4]
    assert tok.bos_token is None and tok.eos_token is None
    enc = tok("a dog", "the cat")
    ids = enc["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and ids.count(3) == 2
    first_sep = ids.index(3)
    assert enc["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_roberta_family_special_tokens_and_template(saved, kind):
    _, tok = saved[kind, "roberta"]
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    ids = (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id)
    assert ids == (0, 1, 2, 3, 4)
    assert tok.cls_token_id == 0 and tok.sep_token_id == 2
    ids = tok("a dog", "the cat")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    assert ids.count(2) == 3  # <s> A </s></s> B </s>
    assert "token_type_ids" not in tok("a dog")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_mask_token_absorbs_the_space_before_it(saved, kind):
    _, tok = saved[kind, "bert"]
    with_mask = tok.convert_ids_to_tokens(tok(f"the cat {tok.mask_token} pancakes")["input_ids"])
    plain = tok.convert_ids_to_tokens(tok("the cat")["input_ids"])
    # the tokens before the mask are exactly those of "the cat": no stray space token
    assert with_mask[: len(plain) - 1] == plain[:-1]
    assert with_mask[len(plain) - 1] == "[MASK]"


def test_word_ids_and_offsets_are_available(saved):
    _, tok = saved["bpe", "roberta"]
    enc = tok("the cat likes pancakes", return_offsets_mapping=True)
    words = [w for w in enc.word_ids() if w is not None]
    assert sorted(set(words)) == [0, 1, 2, 3]
    # byte-level offsets are trimmed: the space is not part of the token's span
    text = "the cat likes pancakes"
    spans = [text[a:b] for a, b in enc["offset_mapping"] if b > a]
    assert not any(span.startswith(" ") for span in spans)
    assert "".join(spans) == text.replace(" ", "")


def test_lowercase_and_accents_options():
    texts = ["Café Crème au lait", "CAFÉ crème"] * 20
    lower = train_tokenizer(texts, kind="wordpiece", vocab_size=100, lowercase=True).tokenizer
    assert lower.tokenize("Café") == lower.tokenize("cafe")
    cased = train_tokenizer(texts, kind="bpe", family="roberta", vocab_size=300).tokenizer  # roberta: keep case
    assert cased.decode(cased("Café Crème")["input_ids"], skip_special_tokens=True) == "Café Crème"
    keep_accents = train_tokenizer(texts, kind="unigram", vocab_size=60, lowercase=True,
                                   strip_accents=False).tokenizer
    assert keep_accents.decode(keep_accents("café")["input_ids"], skip_special_tokens=True) == "café"


def test_vocab_size_is_rounded_up_to_64():
    assert [round_vocab_size(n) for n in (1, 64, 65, 8000, 30522)] == [64, 64, 128, 8000, 30528]
    assert round_vocab_size(1000, 1) == 1000
    big = make_corpus(2000, seed=1) + [f"word{i} token{i * 7} x{i}y" for i in range(3000)]
    trained = train_tokenizer(big, kind="wordpiece", vocab_size=300, min_frequency=1)
    assert trained.target_vocab_size == 320 and trained.vocab_size == 320 and trained.note is None
    unrounded = train_tokenizer(big, kind="wordpiece", vocab_size=300, round_to=1, min_frequency=1)
    assert unrounded.vocab_size == 300


def test_small_corpus_gives_a_smaller_vocabulary_and_says_so():
    trained = train_tokenizer(CORPUS, kind="wordpiece", vocab_size=5000)
    assert trained.target_vocab_size == 5056
    assert trained.vocab_size == len(trained.tokenizer) < 5056
    assert f"{trained.vocab_size:,}" in trained.note and "5,056" in trained.note


def test_bad_options_are_user_errors(tmp_path, corpus_file):
    with pytest.raises(UserError, match="unknown tokenizer type 'sentencepiece'.*wordpiece, bpe, unigram"):
        train_tokenizer(CORPUS, kind="sentencepiece")
    with pytest.raises(UserError, match="family"):
        train_tokenizer(CORPUS, family="gpt")
    with pytest.raises(UserError, match="no room"):
        train_tokenizer(CORPUS, vocab_size=3, round_to=1)
    with pytest.raises(UserError, match="no such file"):
        train_tokenizer_on_corpus([str(tmp_path / "missing.txt")], tmp_path / "out")


def test_train_on_corpus_files_saves_a_loadable_directory(corpus_file, tmp_path):
    from transformers import AutoTokenizer

    trained = train_tokenizer_on_corpus([str(corpus_file), str(corpus_file)], tmp_path / "tok", kind="wordpiece",
                                        vocab_size=120)
    assert trained.documents == 2 * len(corpus_file.read_text().splitlines())
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert len(tok) == trained.vocab_size and tok.mask_token == "[MASK]" and tok.is_fast
    summary = trained.summary(str(tmp_path / "tok"))
    assert summary["special_token_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
