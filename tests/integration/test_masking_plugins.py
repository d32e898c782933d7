"""Third-party strategies: an "installed" plugin package (entry point group mlmkit.masking) and dotted paths."""

import sys
import textwrap

import pytest
import torch

from mlmkit.config import PretrainConfig, load_config
from mlmkit.errors import UserError
from mlmkit.io.outputs import read_metrics
from mlmkit.masking import registry
from mlmkit.masking.registry import build_strategy, get_strategy_class, register_strategy, strategy_names
from mlmkit.training.pretrain import pretrain

PLUGIN_MODULE = '''
"""A masking plugin: predict the first tokens of every row."""

import torch

from mlmkit.masking import MaskingStrategy, Selection


class LeadingTokensMasking(MaskingStrategy):
    """Predict the first round(ratio * n) ordinary tokens of each row, after skipping ``skip`` of them."""

    name = "leading_tokens"
    description = "The first tokens of every row (a plugin for tests)."
    paper = "none"

    def __init__(self, skip: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.skip = int(skip)

    def select(self, batch, ratio, generator):
        candidates = ~batch["special_tokens_mask"]
        rank = candidates.long().cumsum(dim=1) - 1
        count = torch.round(candidates.sum(dim=1).double() * ratio).long().unsqueeze(1)
        return Selection(candidates & (rank >= self.skip) & (rank < self.skip + count))
'''


def install_plugin(root, package, entry_points, monkeypatch):
    """Write ``package`` with a strategies module and a dist-info declaring ``entry_points``, put it on sys.path."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "strategies.py").write_text(PLUGIN_MODULE)
    dist = root / f"{package}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[mlmkit.masking]\n{lines}\n")
    monkeypatch.syspath_prepend(str(root))
    registry.reset_entry_points()


@pytest.fixture()
def plugin_env(monkeypatch):
    """Undo plugin installs: forget their entry points and modules after the test."""
    yield monkeypatch
    monkeypatch.undo()
    registry.reset_entry_points()
    for name in [m for m in sys.modules if m.startswith("mlmkit_plugin_")]:
        del sys.modules[name]


def tiny_batch():
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 3, 0, 0]])
    special = torch.tensor([[True] + [False] * 10 + [True] * 3])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "special_tokens_mask": special,
            "word_ids": torch.where(special, -1, torch.arange(14))}


def test_entry_point_plugin_from_a_recipe(tmp_path, plugin_env, tiny_model_dir, corpus_file, wordpiece_tokenizer):
    install_plugin(tmp_path / "site", "mlmkit_plugin_lead",
                   {"leading_tokens": "mlmkit_plugin_lead.strategies:LeadingTokensMasking"}, plugin_env)
    assert "leading_tokens" in strategy_names()
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        # a recipe using a plugin strategy
        model:
          name_or_path: {tiny_model_dir}
        data:
          source: {corpus_file}
          max_seq_length: 32
          eval_fraction: 0.2
        masking:
          name: leading_tokens
          skip: 2
          ratio: 0.3
          mask_replace_prob: 1.0
          random_replace_prob: 0.0
        train:
          max_steps: 2
          batch_size: 8
          log_every: 1
        output:
          dir: {tmp_path / 'run'}
        """))
    cfg = load_config(PretrainConfig, str(recipe))
    strategy = build_strategy(cfg.masking)
    assert type(strategy).__module__ == "mlmkit_plugin_lead.strategies" and strategy.skip == 2
    strategy.bind(wordpiece_tokenizer)
    corrupted, labels = strategy(tiny_batch())
    # 10 ordinary tokens, ratio 0.3: three predictions after skipping two
    assert (labels != -100).nonzero()[:, 1].tolist() == [3, 4, 5]
    assert (corrupted[0, 3:6] == wordpiece_tokenizer.mask_token_id).all()
    result = pretrain(cfg)
    assert result.steps == 2
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2] and all(r["mask_ratio"] == 0.3 for r in train)
    assert "name: leading_tokens" in (tmp_path / "run" / "config.yaml").read_text()


def test_dotted_path_in_a_recipe(tmp_path, plugin_env, wordpiece_tokenizer):
    # on sys.path but without any entry point: reachable only through package.module:Class
    install_plugin(tmp_path / "site", "mlmkit_plugin_dotted", {}, plugin_env)
    assert "leading_tokens" not in strategy_names()
    recipe = tmp_path / "dotted.yaml"
    recipe.write_text("# dotted strategy path\nmasking:\n"
                      "  name: mlmkit_plugin_dotted.strategies:LeadingTokensMasking\n  ratio: 0.2\n")
    strategy = build_strategy(load_config(PretrainConfig, str(recipe)).masking)
    strategy.bind(wordpiece_tokenizer)
    _, labels = strategy(tiny_batch())
    assert (labels != -100).nonzero()[:, 1].tolist() == [1, 2]
    with pytest.raises(UserError, match="cannot import masking strategy"):
        get_strategy_class("mlmkit_plugin_dotted.strategies:Missing")
    with pytest.raises(UserError, match="not a subclass"):
        get_strategy_class("mlmkit_plugin_dotted.strategies:Selection")


def test_duplicate_names_are_errors(tmp_path, plugin_env):
    install_plugin(tmp_path / "a", "mlmkit_plugin_clash",
                   {"random": "mlmkit_plugin_clash.strategies:LeadingTokensMasking"}, plugin_env)
    with pytest.raises(UserError, match="'random' from entry point .* clashes with mlmkit.masking.random_token"):
        strategy_names()
    plugin_env.undo()
    registry.reset_entry_points()
    install_plugin(tmp_path / "b", "mlmkit_plugin_one", {"lead": "mlmkit_plugin_one.strategies:LeadingTokensMasking"},
                   plugin_env)
    install_plugin(tmp_path / "c", "mlmkit_plugin_two", {"lead": "mlmkit_plugin_two.strategies:LeadingTokensMasking"},
                   plugin_env)
    with pytest.raises(UserError, match="'lead' from entry point .* clashes with"):
        strategy_names()
    with pytest.raises(ValueError, match="'whole_word' is already registered"):

        @register_strategy("whole_word")
        class Another(get_strategy_class("random")):
            pass


def test_unknown_names_suggest_the_closest(plugin_env):
    with pytest.raises(UserError, match="unknown masking strategy 'pos_weigthed'. Did you mean 'pos_weighted'"):
        get_strategy_class("pos_weigthed")
    with pytest.raises(UserError, match="Did you mean 'random'") as info:
        build_strategy({"name": "randon"})
    assert "Available:" in str(info.value) and "pmi" in str(info.value)
    with pytest.raises(UserError, match="unknown masking strategy 'zzz'. Available"):
        get_strategy_class("zzz")
