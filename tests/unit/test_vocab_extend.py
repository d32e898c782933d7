"""mlmkit.tokenization.extend: old ids and embeddings untouched, new rows = mean of old pieces."""

from collections import Counter

import pytest
import torch

from conftest import build_tiny_bert
from mlmkit.errors import UserError
from mlmkit.tokenization.extend import extend_vocabulary_on_corpus
from mlmkit.tokenization.train import train_tokenizer

DOMAIN = (["the patient has cardiomyopathy today"] * 30 + ["an echocardiogram shows cardiomyopathy again"] * 20
          + ["hypertension and tachycardia"] * 12 + ["tachycardia"] * 3 + ["rare bradycardia"])


@pytest.fixture
def domain_file(tmp_path):
    path = tmp_path / "clinic.txt"
    path.write_text("\n".join(DOMAIN) + "\n", encoding="utf-8")
    return path


def expected_words(tokenizer, n):
    """Independent reference: whitespace words (the corpus is lowercase, no punctuation) split into >1 piece."""
    counts = Counter(word for line in DOMAIN for word in line.split())
    split = [w for w, c in counts.most_common() if c >= 2 and len(tokenizer.tokenize(w)) > 1]
    return split[:n]


def test_extension_keeps_old_ids_and_embeddings_and_averages_new_rows(tiny_model_dir, domain_file, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    old_tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    old_model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    out = tmp_path / "extended"
    result = extend_vocabulary_on_corpus(str(tiny_model_dir), [str(domain_file)], 3, out)

    assert [w.word for w in result.words] == expected_words(old_tok, 3)
    assert result.old_vocab_size == len(old_tok) and result.new_vocab_size == len(old_tok) + 3 and result.tied_output
    new_tok = AutoTokenizer.from_pretrained(out)
    new_model = AutoModelForMaskedLM.from_pretrained(out)
    old_vocab, new_vocab = old_tok.get_vocab(), new_tok.get_vocab()
    assert all(new_vocab[token] == i for token, i in old_vocab.items())
    assert new_model.config.vocab_size == len(new_tok)

    old_emb = old_model.get_input_embeddings().weight
    new_emb = new_model.get_input_embeddings().weight
    assert torch.equal(new_emb[: len(old_tok)], old_emb)
    old_bias, new_bias = old_model.cls.predictions.bias, new_model.cls.predictions.bias
    assert torch.equal(new_bias[: len(old_tok)], old_bias)
    for offset, word in enumerate(result.words):
        assert word.token_id == len(old_tok) + offset == new_tok.convert_tokens_to_ids(word.word)
        pieces = old_tok(word.word, add_special_tokens=False)["input_ids"]
        assert word.piece_ids == pieces and len(pieces) > 1
        torch.testing.assert_close(new_emb[word.token_id], old_emb[pieces].mean(dim=0))
        torch.testing.assert_close(new_bias[word.token_id], old_bias[pieces].mean())
    # tied output layer follows the input rows
    assert new_model.get_output_embeddings().weight.data_ptr() == new_emb.data_ptr()


def test_only_the_added_words_tokenize_differently(tiny_model_dir, domain_file, tmp_path, corpus):
    from transformers import AutoTokenizer

    old_tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    result = extend_vocabulary_on_corpus(str(tiny_model_dir), [str(domain_file)], 2, tmp_path / "x")
    new_tok = AutoTokenizer.from_pretrained(tmp_path / "x")
    added = {w.word for w in result.words}
    assert added == set(expected_words(old_tok, 2))
    for text in corpus[:50] + ["bradycardia and echocardiograms", "cardiomyopathyx"]:
        assert new_tok(text)["input_ids"] == old_tok(text)["input_ids"]
    for word in result.words:
        text = f"my neighbour likes {word.word}, again {word.word}!"
        ids = new_tok(text)["input_ids"]
        assert ids.count(word.token_id) == 2
        # decoding gives back what the old tokenizer gave back
        assert new_tok.decode(ids) == old_tok.decode(old_tok(text)["input_ids"])
        enc = new_tok(text)
        assert len({enc.word_ids()[i] for i, t in enumerate(ids) if t == word.token_id}) == 2


def test_untied_output_layer_gets_the_same_initialisation(wordpiece_tokenizer, domain_file, tmp_path):
    from transformers import AutoModelForMaskedLM

    model = build_tiny_bert(wordpiece_tokenizer, seed=1)
    model.config.tie_word_embeddings = False
    untied = type(model)(model.config)
    untied.save_pretrained(tmp_path / "m")
    wordpiece_tokenizer.save_pretrained(tmp_path / "m")
    before = AutoModelForMaskedLM.from_pretrained(tmp_path / "m")
    assert before.get_output_embeddings().weight.data_ptr() != before.get_input_embeddings().weight.data_ptr()
    result = extend_vocabulary_on_corpus(str(tmp_path / "m"), [str(domain_file)], 2, tmp_path / "out")
    assert not result.tied_output
    after = AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    old_out, new_out = before.get_output_embeddings().weight, after.get_output_embeddings().weight
    assert torch.equal(new_out[: len(wordpiece_tokenizer)], old_out)
    for word in result.words:
        torch.testing.assert_close(new_out[word.token_id], old_out[word.piece_ids].mean(dim=0))
        assert not torch.equal(new_out[word.token_id], after.get_input_embeddings().weight[word.token_id])


def test_byte_level_bpe_extension(domain_file, tmp_path, corpus):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, RobertaConfig, RobertaForMaskedLM

    tok = train_tokenizer(corpus, kind="bpe", family="roberta", vocab_size=320, lowercase=True).tokenizer
    torch.manual_seed(0)
    model = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64, pad_token_id=1,
                                             max_position_embeddings=130, type_vocab_size=1))
    model.save_pretrained(tmp_path / "rb")
    tok.save_pretrained(tmp_path / "rb")
    result = extend_vocabulary_on_corpus(str(tmp_path / "rb"), [str(domain_file)], 2, tmp_path / "out")
    new_tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    new_model = AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    # byte-level pieces carry the space: the word was counted in its "Ġword" form
    assert all(w.pieces[0].startswith("Ġ") for w in result.words)
    old_emb = model.get_input_embeddings().weight
    for word in result.words:
        ids = new_tok(f"my neighbour likes {word.word} today")["input_ids"]
        assert word.token_id in ids
        before_word = tok("my neighbour likes")["input_ids"][:-1]
        assert ids[: len(before_word)] == before_word  # the space went into the new token, not a token of its own
        torch.testing.assert_close(new_model.get_input_embeddings().weight[word.token_id],
                                   old_emb[word.piece_ids].mean(dim=0))
    for text in corpus[:30]:
        assert new_tok(text)["input_ids"] == tok(text)["input_ids"]


def test_extension_errors(tiny_model_dir, domain_file, tmp_path, corpus_file):
    with pytest.raises(UserError, match="at least 1"):
        extend_vocabulary_on_corpus(str(tiny_model_dir), [str(domain_file)], 0, tmp_path / "a")
    with pytest.raises(UserError, match="nothing to add"):
        extend_vocabulary_on_corpus(str(tiny_model_dir), [str(domain_file)], 3, tmp_path / "b", min_count=1000)
    with pytest.raises(UserError, match="no such file"):
        extend_vocabulary_on_corpus(str(tiny_model_dir), [str(tmp_path / "none.txt")], 3, tmp_path / "c")
