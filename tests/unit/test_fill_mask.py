"""fill-mask library: agreement with transformers' pipeline, masks, aliases, targets, batching, errors."""

import io
import json
import math
import subprocess
import sys

import pytest
import torch
from tokenizers import AddedToken
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertModel, GPT2Config, GPT2LMHeadModel, pipeline

from conftest import build_tiny_bert, train_tokenizer
from mlmkit.errors import UserError
from mlmkit.inference.fill_mask import (
    TargetTokens,
    fill_mask,
    load_fill_mask_model,
    prepare_texts,
    read_texts,
    resolve_targets,
)

SINGLE = ["the [MASK] likes the morning train.", "a dog chases [MASK] vehicles!", "[MASK] cat waits for a street."]


@pytest.fixture(scope="module")
def wp(tiny_model_dir):
    """The saved tiny WordPiece BERT, loaded through the library."""
    return load_fill_mask_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def bpe_tok(corpus):
    """Byte-level BPE whose own mask token is [MASK] (no lstrip), with real merges (Ġdog, Ġthe, ...)."""
    return train_tokenizer("bpe", corpus, vocab_size=400)


@pytest.fixture(scope="module")
def bpe_model(bpe_tok):
    return build_tiny_bert(bpe_tok, seed=1).eval()


@pytest.fixture(scope="module")
def roberta_style(corpus):
    """Byte-level BPE whose own mask token is <mask> with lstrip, as RoBERTa's; [MASK] is a plain added token."""
    tok = train_tokenizer("bpe", corpus, vocab_size=400)
    tok.add_special_tokens({"mask_token": AddedToken("<mask>", lstrip=True, special=True)})
    return tok, build_tiny_bert(tok, seed=2).eval()


def _probs(model, tokenizer, text):
    enc = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits[0]
    positions = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    return positions, logits.float().softmax(-1)


# --- agreement with transformers.pipeline ------------------------------------------------------------------------


def test_single_mask_agrees_with_pipeline(wp):
    model, tokenizer = wp
    reference = pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    ours = fill_mask(model, tokenizer, SINGLE, top_k=5, batch_size=2)
    for text, result in zip(SINGLE, ours, strict=True):
        expected = reference(text, top_k=5)
        assert len(result.masks) == 1
        got = result.masks[0]
        assert [c.token_id for c in got] == [e["token"] for e in expected]
        assert [c.token for c in got] == [e["token_str"] for e in expected]
        for c, e in zip(got, expected, strict=True):
            assert c.score == pytest.approx(e["score"], abs=1e-6)
            # the user's own text with the mask replaced; the pipeline decodes the whole sequence instead,
            # which agrees here except for word pieces (pipeline: "theliev likes", ours: "the ##liev likes")
            assert c.sequence == text.replace("[MASK]", c.token.strip())
            if not c.token.startswith("##"):
                assert c.sequence == e["sequence"]


def test_targets_agree_with_pipeline(wp):
    model, tokenizer = wp
    reference = pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    words = ["dog", "cat", "train", "street"]
    expected = reference(SINGLE[0], targets=words, top_k=10)
    [result] = fill_mask(model, tokenizer, SINGLE[0], top_k=10, targets=words)
    got = result.masks[0]
    assert len(got) == 4  # top_k is capped at the number of targets
    assert [c.token_id for c in got] == [e["token"] for e in expected]
    assert [c.score for c in got] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def test_bpe_space_before_mask_is_absorbed(bpe_tok, bpe_model):
    # this [MASK] has no lstrip: "the [MASK]" would leave a bare "Ġ" token before the mask
    assert bpe_tok.convert_ids_to_tokens(bpe_tok("the [MASK]", add_special_tokens=False)["input_ids"]) == \
        ["Ġthe", "Ġ", "[MASK]"]
    assert prepare_texts(["the [MASK] likes"], bpe_tok) == ["the[MASK] likes"]
    reference = pipeline("fill-mask", model=bpe_model, tokenizer=bpe_tok, device="cpu")
    expected = reference("the[MASK] likes autonomous vehicles.", top_k=5)
    [result] = fill_mask(bpe_model, bpe_tok, "the [MASK] likes autonomous vehicles.", top_k=5)
    assert [c.token_id for c in result.masks[0]] == [e["token"] for e in expected]
    assert [c.score for c in result.masks[0]] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def test_wordpiece_and_lstrip_masks_keep_the_text(wp, roberta_style):
    _, wordpiece = wp
    roberta_tok, _ = roberta_style
    assert prepare_texts(["the [MASK] likes"], wordpiece) == ["the [MASK] likes"]
    assert prepare_texts(["the <mask> likes"], roberta_tok) == ["the <mask> likes"]


# --- masks and aliases -------------------------------------------------------------------------------------------


def test_multiple_masks_one_pass_scores(wp):
    model, tokenizer = wp
    text = "the [MASK] likes [MASK] pancakes."
    [result] = fill_mask(model, tokenizer, text, top_k=4)
    positions, probs = _probs(model, tokenizer, text)
    assert len(positions) == 2 and len(result.masks) == 2
    for position, candidates in zip(positions, result.masks, strict=True):
        top = probs[position].topk(4)
        assert [c.token_id for c in candidates] == top.indices.tolist()
        assert [c.score for c in candidates] == pytest.approx(top.values.tolist(), abs=1e-6)
    # each sequence fills its own mask and leaves the other one visible
    [result] = fill_mask(model, tokenizer, text, top_k=1, targets=["dog"])
    assert [m[0].sequence for m in result.masks] == ["the dog likes [MASK] pancakes.",
                                                     "the [MASK] likes dog pancakes."]


def test_aliases_give_the_models_mask(wp, bpe_tok, bpe_model, roberta_style):
    model, tokenizer = wp
    a, b = fill_mask(model, tokenizer, ["the cat likes [MASK] pancakes.", "the cat likes <mask> pancakes."])
    assert [c.token_id for c in a.masks[0]] == [c.token_id for c in b.masks[0]]
    assert [c.score for c in a.masks[0]] == pytest.approx([c.score for c in b.masks[0]], abs=1e-6)
    assert b.text == "the cat likes <mask> pancakes."  # results keep the text as given

    a, b = fill_mask(bpe_model, bpe_tok, ["a dog hates [MASK] today.", "a dog hates <mask> today."])
    assert [c.token_id for c in a.masks[0]] == [c.token_id for c in b.masks[0]]

    rtok, rmodel = roberta_style
    assert rtok.mask_token == "<mask>"
    assert prepare_texts(["a dog hates [MASK] today."], rtok) == ["a dog hates <mask> today."]
    own, alias = fill_mask(rmodel, rtok, ["a dog hates <mask> today.", "a dog hates [MASK] today."])
    assert [c.token_id for c in own.masks[0]] == [c.token_id for c in alias.masks[0]]
    reference = pipeline("fill-mask", model=rmodel, tokenizer=rtok, device="cpu")
    expected = reference("a dog hates <mask> today.", top_k=5)
    assert [c.token_id for c in own.masks[0]] == [e["token"] for e in expected]
    assert [c.score for c in own.masks[0]] == pytest.approx([e["score"] for e in expected], abs=1e-6)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_length_and_order(wp, k):
    model, tokenizer = wp
    [result] = fill_mask(model, tokenizer, SINGLE[1], top_k=k)
    scores = [c.score for c in result.masks[0]]
    assert len(scores) == k
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s < 1 for s in scores)


def test_batching_and_padding_do_not_change_results(wp):
    model, tokenizer = wp
    texts = [*SINGLE, "the [MASK] .", "our team admires [MASK] internationalization [MASK] every day."]
    seen = []
    one = fill_mask(model, tokenizer, texts, top_k=3, batch_size=1)
    many = fill_mask(model, tokenizer, texts, top_k=3, batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]
    for x, y in zip(one, many, strict=True):
        assert x.text == y.text
        for cx, cy in zip(x.masks, y.masks, strict=True):
            assert [c.token_id for c in cx] == [c.token_id for c in cy]
            assert [c.score for c in cx] == pytest.approx([c.score for c in cy], abs=1e-5)
    assert [len(r.masks) for r in many] == [1, 1, 1, 1, 2]


def test_to_dict_shape(wp):
    model, tokenizer = wp
    [result] = fill_mask(model, tokenizer, "the [MASK] likes [MASK].", top_k=2)
    payload = result.to_dict()
    assert payload["text"] == "the [MASK] likes [MASK]."
    assert [len(m) for m in payload["masks"]] == [2, 2]
    assert set(payload["masks"][1][0]) == {"token", "token_id", "score", "sequence"}


def test_long_text_is_truncated_but_a_late_mask_is_an_error(wp):
    model, tokenizer = wp
    filler = " the dog" * 100  # 200 tokens, model limit 128
    [result] = fill_mask(model, tokenizer, "the [MASK] likes" + filler, top_k=2)
    assert len(result.masks) == 1
    with pytest.raises(UserError, match=r"text 2 is \d+ tokens long and a mask lies beyond .* 128 tokens"):
        fill_mask(model, tokenizer, ["a [MASK]", filler + " [MASK]"])


# --- targets -----------------------------------------------------------------------------------------------------


def test_targets_restrict_and_keep_full_vocabulary_scores(wp):
    model, tokenizer = wp
    text = SINGLE[0]
    words = ["dog", "cat", "train"]
    [result] = fill_mask(model, tokenizer, text, top_k=5, targets=words)
    ids = {tokenizer.convert_tokens_to_ids(w) for w in words}
    got = result.masks[0]
    assert {c.token_id for c in got} == ids and len(got) == 3
    (position,), probs = _probs(model, tokenizer, text)
    for c in got:
        assert c.score == pytest.approx(probs[position, c.token_id].item(), abs=1e-6)
    assert math.fsum(c.score for c in got) < 1.0  # not renormalised over the targets


def test_resolve_targets_wordpiece(wp):
    _, tokenizer = wp
    resolved = resolve_targets(tokenizer, ["dog", " Dog ", "##s", "", "cats"])
    cat, dog, suffix = tokenizer.convert_tokens_to_ids(["cat", "dog", "##s"])
    assert resolved.token_ids == [dog, suffix, cat]  # "Dog" lower-cases to "dog": one token, kept once
    assert resolved.words == ["dog", "##s", "cats"]
    assert resolved.notes == ["target 'cats' is not a single token (cat ##s); scoring its first sub-token 'cat'"]


def test_resolve_targets_byte_level_bpe_uses_word_start_tokens(bpe_tok):
    resolved = resolve_targets(bpe_tok, ["dog", "Ġthe", "cars"])
    dog, the, car = bpe_tok.convert_tokens_to_ids(["Ġdog", "Ġthe", "Ġcar"])
    assert resolved.token_ids == [dog, the, car]
    assert len(resolved.notes) == 1 and "'cars'" in resolved.notes[0] and "'Ġcar'" in resolved.notes[0]


def test_resolve_targets_without_prefix_space_tokenizer(roberta_style):
    # like RoBERTa: the pre-tokenizer adds no prefix space, so "dog" alone would be the mid-word form
    tok, _ = roberta_style
    tok.backend_tokenizer.pre_tokenizer.add_prefix_space = False
    try:
        assert tok.convert_ids_to_tokens(tok("dog", add_special_tokens=False)["input_ids"])[0] != "Ġdog"
        assert resolve_targets(tok, ["dog"]).token_ids == [tok.convert_tokens_to_ids("Ġdog")]
    finally:
        tok.backend_tokenizer.pre_tokenizer.add_prefix_space = True


def test_resolve_targets_sentencepiece(corpus):
    tok = train_tokenizer("unigram", corpus, vocab_size=200)
    vocab = tok.get_vocab()
    assert "▁train" in vocab and "train" not in vocab
    assert resolve_targets(tok, ["train"]).token_ids == [vocab["▁train"]]
    # "the" is "▁" + "the" in this small vocabulary: the vocabulary entry "the" is taken as is
    assert tok.convert_ids_to_tokens(tok(" the", add_special_tokens=False)["input_ids"]) == ["▁", "the"]
    assert resolve_targets(tok, ["the"]).token_ids == [vocab["the"]]
    # a word split into a bare "▁" and pieces: the first real piece is scored, never the bare marker
    pieces = tok.convert_ids_to_tokens(tok(" internationalization", add_special_tokens=False)["input_ids"])
    resolved = resolve_targets(tok, ["internationalization"])
    assert pieces[0] == "▁" and len(pieces) > 2 and len(resolved.notes) == 1
    assert tok.convert_ids_to_tokens(resolved.token_ids[0]) == pieces[1]
    assert f"first sub-token {pieces[1]!r}" in resolved.notes[0]


def test_resolved_targets_are_accepted(wp):
    model, tokenizer = wp
    resolved = TargetTokens(words=["dog"], token_ids=[tokenizer.convert_tokens_to_ids("dog")])
    [result] = fill_mask(model, tokenizer, SINGLE[0], targets=resolved)
    assert [c.token for c in result.masks[0]] == ["dog"]


def test_empty_targets_are_an_error(wp):
    model, tokenizer = wp
    with pytest.raises(UserError, match="--targets is empty"):
        fill_mask(model, tokenizer, SINGLE[0], targets=["", " "])


# --- files -------------------------------------------------------------------------------------------------------


def test_read_texts_skips_blank_lines_and_keeps_numbers(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("\ufefffirst [MASK]\n\n  second <mask>  \n", encoding="utf-8")
    assert read_texts(path) == [(1, "first [MASK]"), (3, "second <mask>")]
    assert read_texts("-", stdin=io.StringIO("a [MASK]\nb [MASK]")) == [(1, "a [MASK]"), (2, "b [MASK]")]


@pytest.mark.parametrize("content,message", [(None, "no such file"), ("", "is empty"), ("\n \n", "is empty")])
def test_read_texts_errors(tmp_path, content, message):
    path = tmp_path / "in.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_texts(path)
    with pytest.raises(UserError, match="is not a file"):
        read_texts(tmp_path)


# --- errors ------------------------------------------------------------------------------------------------------


def test_text_without_mask_names_it(wp):
    model, tokenizer = wp
    with pytest.raises(UserError, match=r"^text 2 has no mask: write \[MASK\] or <mask> .*'the dog'"):
        fill_mask(model, tokenizer, ["a [MASK]", "the dog", "[mask] is lower case"])
    with pytest.raises(UserError, match=r"^line 7 has no mask"):
        prepare_texts(["a [MASK]", "no mask"], tokenizer, labels=["line 1", "line 7"])
    with pytest.raises(UserError, match="no text given"):
        fill_mask(model, tokenizer, [])


def test_bad_top_k_and_batch_size(wp):
    model, tokenizer = wp
    with pytest.raises(UserError, match="top_k"):
        fill_mask(model, tokenizer, SINGLE[0], top_k=0)
    with pytest.raises(UserError, match="batch_size"):
        fill_mask(model, tokenizer, SINGLE[0], batch_size=0)


def test_no_mlm_head_is_refused(tmp_path, wordpiece_tokenizer, tiny_model_dir):
    encoder_only = tmp_path / "encoder"
    mlm = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    BertModel(mlm.config).save_pretrained(encoder_only)
    wordpiece_tokenizer.save_pretrained(encoder_only)
    with pytest.raises(UserError, match=r"has no trained masked-language-model head: .*cls\.predictions"):
        load_fill_mask_model(str(encoder_only))

    # an MLM-shaped checkpoint whose config names no MLM architecture
    mislabelled = tmp_path / "mislabelled"
    mlm.save_pretrained(mislabelled)
    wordpiece_tokenizer.save_pretrained(mislabelled)
    config = json.loads((mislabelled / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (mislabelled / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="has no trained masked-language-model head: the checkpoint is a Bert"):
        load_fill_mask_model(str(mislabelled))

    # a model type with no masked-LM class at all
    gpt = tmp_path / "gpt"
    gpt_config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(wordpiece_tokenizer))
    GPT2LMHeadModel(gpt_config).save_pretrained(gpt)
    wordpiece_tokenizer.save_pretrained(gpt)
    with pytest.raises(UserError, match="has no masked-language-model head: transformers has no masked-LM class"):
        load_fill_mask_model(str(gpt))


def test_missing_paths_and_tokenizer_without_mask(tmp_path, tiny_model_dir):
    with pytest.raises(UserError, match="no such model directory"):
        load_fill_mask_model(str(tmp_path / "absent"))
    with pytest.raises(UserError, match="not a model directory"):
        load_fill_mask_model(str(tmp_path))
    no_mask = tmp_path / "no-mask"
    AutoModelForMaskedLM.from_pretrained(tiny_model_dir).save_pretrained(no_mask)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.mask_token = None
    tok.save_pretrained(no_mask)
    with pytest.raises(UserError, match="has no mask token"):
        load_fill_mask_model(str(no_mask))


def test_loaded_model_is_ready(wp, tiny_model_dir):
    model, tokenizer = wp
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert tokenizer.mask_token == "[MASK]"


def test_cli_module_imports_no_torch():
    code = "import sys, mlmkit.cli.fill_mask; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
