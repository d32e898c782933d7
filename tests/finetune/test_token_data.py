"""NER / token-classification data: sub-token alignment for three tokenizer families, the CoNLL reader,
seqeval figures checked by hand, word-level scoring of dropped words."""

import json

import pytest

from conftest import SPECIALS, make_corpus, train_tokenizer
from mlmkit.data.ner import (
    IGNORE,
    align_tags,
    encode_tags,
    prefix_space_tokenizer,
    read_conll,
    tokenize_tagged,
    word_predictions,
)
from mlmkit.errors import UserError
from mlmkit.training.token_metrics import Seqeval, is_chunk_tagging, token_report

# word 4 splits into many pieces in every family; word 5 (empty) gives no token in any family
WORDS = ["The", "cat", "likes", "the", "internationalization", "", "today", "."]
TAGS = [0, 1, 0, 0, 2, 3, 0, 0]


def encoded_row(tokenizer):
    import datasets

    names = ["O", "B-ANIMAL", "B-THING", "B-NONE"]
    data, _ = encode_tags(datasets.Dataset.from_dict({"tokens": [WORDS], "tags": [[names[t] for t in TAGS]]}),
                          "tokens", "tags", "test", known_names=names)
    return tokenize_tagged(data, prefix_space_tokenizer(tokenizer), max_length=128)[0]


def test_first_sub_token_gets_the_tag_and_the_rest_is_ignored(any_tokenizer):
    row = encoded_row(any_tokenizer)
    word_ids = any_tokenizer(WORDS, is_split_into_words=True).word_ids()
    labels = row["labels"]
    assert len(labels) == len(row["input_ids"]) == len(word_ids)
    seen = set()
    for position, word in enumerate(word_ids):
        if word is None or word in seen:
            assert labels[position] == IGNORE  # specials and later pieces
        else:
            assert labels[position] == TAGS[word]  # first piece of each word
            seen.add(word)
    assert word_ids.count(4) >= 3  # the long word really is split
    assert 5 not in word_ids and 5 not in row["labelled_words"]  # the empty word has no token, no label
    assert row["labelled_words"] == sorted(seen) == [0, 1, 2, 3, 4, 6, 7]
    assert sum(label != IGNORE for label in labels) == 7


def test_wordpiece_drops_a_format_character_word(wordpiece_tokenizer):
    labels, labelled = align_tags(wordpiece_tokenizer(["a", "\u200b", "cat"], is_split_into_words=True).word_ids(),
                                  [1, 2, 3])
    assert labelled == [0, 2] and [x for x in labels if x != IGNORE] == [1, 3]
    # scoring puts 'O' where the dropped word had no prediction
    assert word_predictions([1, 3], labelled, 3, ["O", "B-A", "B-B", "B-C"]) == ["B-A", "O", "B-C"]


def test_byte_level_words_get_the_prefix_space_of_running_text():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(make_corpus(), trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    words = ["the", "cat", "likes", "pancakes"]
    before = tokenizer(words, is_split_into_words=True).tokens()
    fixed = prefix_space_tokenizer(tokenizer)
    # every word, the first too, is encoded as it is inside a sentence (after a space)
    assert fixed(words, is_split_into_words=True).tokens() == fixed(" " + " ".join(words)).tokens()
    assert before != fixed(words, is_split_into_words=True).tokens()
    assert prefix_space_tokenizer(train_tokenizer("wordpiece", make_corpus())).backend_tokenizer is not None


CONLL = """-DOCSTART- -X- -X- O

# sent_id = 1
# text = EU rejects German call
EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

#fun\tO
Peter\tB-PER
Blackburn\tI-PER
-DOCSTART- -X- -X- O
London B-LOC
"""


def test_conll_reader_skips_docstart_and_comments(tmp_path):
    path = tmp_path / "sample.conll"
    path.write_text(CONLL, encoding="utf-8")
    sentences = read_conll(path)
    assert sentences["tokens"] == [["EU", "rejects", "German", "call"], ["#fun", "Peter", "Blackburn"], ["London"]]
    assert sentences["tags"] == [["B-ORG", "O", "B-MISC", "O"], ["O", "B-PER", "I-PER"], ["B-LOC"]]
    bad = tmp_path / "bad.conll"
    bad.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(UserError, match="bad.conll:2"):
        read_conll(bad)


def test_tag_names_put_o_first_and_group_entity_types():
    import datasets

    data = datasets.Dataset.from_dict({"tokens": [["a", "b", "c", "d"]], "tags": [["I-PER", "B-LOC", "O", "B-PER"]]})
    encoded, names = encode_tags(data, "tokens", "tags", "x")
    assert names == ["O", "B-LOC", "B-PER", "I-PER"] and encoded["tags"] == [[3, 1, 0, 2]]
    with pytest.raises(UserError, match="3 tokens but 2 tags"):
        encode_tags(datasets.Dataset.from_dict({"tokens": [["a", "b", "c"]], "tags": [["O", "O"]]}),
                    "tokens", "tags", "x")


def test_seqeval_figures_checked_by_hand():
    references = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    predictions = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "I-ORG", "O", "O"]]
    scores = Seqeval(keep_in_memory=True).compute(predictions=predictions, references=references)
    # gold entities: PER(0-1), LOC(3), ORG(0-2); predicted: PER(0-1) right, ORG(3) wrong type, ORG(0-1) wrong span
    assert scores["overall_precision"] == pytest.approx(1 / 3)
    assert scores["overall_recall"] == pytest.approx(1 / 3)
    assert scores["overall_f1"] == pytest.approx(1 / 3)
    assert scores["overall_accuracy"] == pytest.approx(7 / 9)
    assert scores["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 1}
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}
    assert scores["per_type"]["ORG"]["precision"] == 0.0 and scores["per_type"]["ORG"]["number"] == 1
    assert scores["macro_f1"] == pytest.approx(1 / 3)


def test_token_report_scores_missing_words_as_wrong_for_plain_tags():
    names = ["NOUN", "VERB", "DET"]
    assert not is_chunk_tagging(names) and is_chunk_tagging(["O", "B-PER", "I-PER"])
    report = token_report([["DET", "NOUN", ""]], [["DET", "NOUN", "VERB"]], names)
    assert report["accuracy"] == pytest.approx(2 / 3) and report["scoring"] == "token tags"
    assert {row["label"]: row["support"] for row in report["per_class"]} == {"NOUN": 1, "VERB": 0, "DET": 1}


def test_jsonl_tags_with_label_names(tmp_path):
    import datasets

    path = tmp_path / "tags.jsonl"
    path.write_text(json.dumps({"tokens": ["Ann", "runs"], "tags": [1, 0]}) + "\n", encoding="utf-8")
    data = datasets.load_dataset("json", data_files=str(path), split="train")
    encoded, names = encode_tags(data, "tokens", "tags", "tags.jsonl", label_names=["O", "B-PER"])
    assert names == ["O", "B-PER"] and encoded["tags"] == [[1, 0]]
    with pytest.raises(UserError, match="outside 0..0"):
        encode_tags(data, "tokens", "tags", "tags.jsonl", label_names=["O"])
