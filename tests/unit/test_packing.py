import datasets
import pytest

from mlmkit.data.packing import named_output, pack_blocks, split_eval, tokenize_corpus
from mlmkit.errors import UserError


def _tokenized(tokenizer, texts):
    return tokenize_corpus(datasets.Dataset.from_dict({"text": texts}), tokenizer)


@pytest.mark.parametrize("block", [7, 16, 64])
def test_packing_keeps_every_token_in_order(any_tokenizer, corpus, block):
    tokenized = _tokenized(any_tokenizer, corpus[:57])
    blocks = pack_blocks(tokenized, block)
    flat_in = [t for ids in tokenized["input_ids"] for t in ids]
    flat_out = [t for ids in blocks["input_ids"] for t in ids]
    assert flat_out == flat_in  # no token lost, duplicated or reordered
    lengths = [len(ids) for ids in blocks["input_ids"]]
    assert all(n == block for n in lengths[:-1]) and 0 < lengths[-1] <= block


def test_word_ids_follow_tokenizer_and_are_unique_per_document(any_tokenizer):
    texts = ["unbelievably tasty pancakes", "internationalization rocks"]
    tokenized = _tokenized(any_tokenizer, texts)
    for text, ids, words in zip(texts, tokenized["input_ids"], tokenized["word_ids"], strict=True):
        expected = [-1 if w is None else w for w in any_tokenizer(text).word_ids()]
        assert words == expected
        assert ids[0] == any_tokenizer.cls_token_id and words[0] == -1
    blocks = pack_blocks(tokenized, 1000)
    words = [w for w in blocks["word_ids"][0] if w >= 0]
    n_words_doc1 = len(set(w for w in tokenized["word_ids"][0] if w >= 0))
    # the second document's words are offset past the first document's
    assert sorted(set(words)) == list(range(len(set(words))))
    assert min(w for w in blocks["word_ids"][0][len(tokenized["input_ids"][0]):] if w >= 0) == n_words_doc1


def test_split_eval_sizes_and_errors(wordpiece_tokenizer, corpus):
    blocks = pack_blocks(_tokenized(wordpiece_tokenizer, corpus), 16)
    train, held = split_eval(blocks, eval_fraction=0.1, eval_max_blocks=5, seed=0)
    assert len(held) == 5 and len(train) + len(held) == len(blocks)
    with pytest.raises(UserError, match="at least 2"):
        split_eval(blocks.select([0]), 0.1, 10, 0)
    with pytest.raises(UserError):
        pack_blocks(_tokenized(wordpiece_tokenizer, corpus[:3]), 1)


@pytest.mark.parametrize("num_proc", [None, 2])
def test_output_to_a_named_file_is_not_fingerprinted_by_hashing_the_function(wordpiece_tokenizer, corpus, tmp_path,
                                                                              monkeypatch, num_proc):
    import datasets.arrow_dataset

    texts = datasets.Dataset.from_dict({"text": corpus[:40]})
    expected = pack_blocks(tokenize_corpus(texts, wordpiece_tokenizer), 16)

    original = datasets.arrow_dataset.update_fingerprint

    def hashing(fingerprint, transform, transform_args):  # map's call passes the function with its arguments
        if "function" in transform_args:
            raise AssertionError("the map's function was pickled and hashed for a fingerprint")
        return original(fingerprint, transform, transform_args)

    monkeypatch.setattr(datasets.arrow_dataset, "update_fingerprint", hashing)
    tokenized = tokenize_corpus(texts, wordpiece_tokenizer, num_proc=num_proc,
                                cache_file_name=str(tmp_path / "tokenized.arrow"))
    blocks = pack_blocks(tokenized, 16, num_proc=num_proc, cache_file_name=str(tmp_path / "blocks.arrow"))
    assert blocks["input_ids"] == expected["input_ids"] and blocks["word_ids"] == expected["word_ids"]
    assert named_output(str(tmp_path / "a.arrow")) != named_output(str(tmp_path / "b.arrow"))
    assert named_output(None) == {}
    with pytest.raises(AssertionError, match="hashed"):  # unnamed output still gets datasets' own fingerprint
        tokenize_corpus(texts, wordpiece_tokenizer)
