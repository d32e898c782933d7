from conftest import build_tiny_bert


def test_tokenizers_split_words_and_have_specials(any_tokenizer):
    enc = any_tokenizer("internationalizations unbelievabletrain", add_special_tokens=True)
    words = [w for w in enc.word_ids() if w is not None]
    # two words, at least one split into several sub-tokens
    assert sorted(set(words)) == [0, 1]
    assert len(words) > 2
    assert any_tokenizer.mask_token_id is not None
    assert enc["input_ids"][0] == any_tokenizer.cls_token_id


def test_tiny_bert_forward(wordpiece_tokenizer):
    import torch

    model = build_tiny_bert(wordpiece_tokenizer)
    ids = torch.tensor([wordpiece_tokenizer("a dog likes pancakes")["input_ids"]])
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(wordpiece_tokenizer))
