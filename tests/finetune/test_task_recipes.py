"""The packaged task recipes: every fine-tuning and suite recipe loads and validates without the network."""

from pathlib import Path

import pytest

from mlmkit.config import FinetuneConfig, load_config, recipes_root
from mlmkit.training.suite import SuiteConfig, task_config

FINETUNE = sorted((recipes_root() / "finetune").glob("*.yaml"))
SUITES = sorted((recipes_root() / "suite").glob("*.yaml"))
GLUE = ["glue-sst2", "glue-mrpc", "glue-rte", "glue-stsb", "glue-qnli", "glue-mnli"]


def test_the_issue_recipes_are_packaged():
    names = {p.stem for p in FINETUNE}
    assert set(GLUE) | {"conll2003", "wnut17", "embedded-pos"} <= names
    assert "embedded" in {p.stem for p in SUITES}


@pytest.mark.parametrize("name", GLUE + ["conll2003", "wnut17"])
def test_hub_recipes_use_the_bert_paper_settings(name):
    cfg = load_config(FinetuneConfig, name, kind="finetune")
    assert cfg.train.batch_size == 32 and cfg.train.num_epochs == 3 and cfg.train.max_steps == -1
    assert cfg.train.lr in (2e-5, 3e-5, 4e-5, 5e-5)
    assert (recipes_root() / "finetune" / f"{name}.yaml").read_text().startswith("#")
    if name.startswith("glue"):
        assert cfg.data.dataset == "nyu-mll/glue" and cfg.data.config_name == name.removeprefix("glue-")
    else:
        assert cfg.data.task == "token" and cfg.data.extra_eval_splits == ["test"]


def test_task_specific_recipe_settings():
    assert load_config(FinetuneConfig, "glue-stsb", kind="finetune").data.task == "regression"
    mnli = load_config(FinetuneConfig, "glue-mnli", kind="finetune").data
    assert mnli.eval_split == "validation_matched" and mnli.extra_eval_splits == ["validation_mismatched"]
    pos = load_config(FinetuneConfig, "embedded-pos", kind="finetune").data
    assert pos.task == "token" and pos.dataset == "embedded-pos"


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_suite_recipe_and_each_task_resolve(path: Path, tmp_path):
    assert path.read_text().startswith("#"), "recipes open with a comment showing how to run them"
    suite = load_config(SuiteConfig, str(path), kind="suite")
    assert suite.tasks and suite.seeds
    for task in suite.tasks:
        cfg = task_config(suite, task, suite.seeds[0], tmp_path / task.name)
        assert cfg.model.name_or_path == suite.model and cfg.train.seed == suite.seeds[0]
        assert cfg.output.dir == str(tmp_path / task.name) and cfg.train.max_steps > 0


def test_suite_config_rejects_unknown_task_keys(tmp_path):
    from mlmkit.errors import UserError

    bad = tmp_path / "bad.yaml"
    bad.write_text("# bad\ntasks:\n  - name: a\n    recipe: demo\n    steps: 3\n")
    with pytest.raises(UserError, match="steps"):
        load_config(SuiteConfig, str(bad), kind="suite")


@pytest.mark.parametrize(("name", "types"), [("conll2003", {"PER", "ORG", "LOC", "MISC"}),
                                            ("wnut17", {"corporation", "creative-work", "group", "location",
                                                        "person", "product"})])
def test_ner_recipes_name_every_tag_in_iob2(name, types):
    names = load_config(FinetuneConfig, name, kind="finetune").data.label_names
    assert names[0] == "O" and len(names) == 1 + 2 * len(types)
    assert names[1:] == [f"{prefix}-{t}" for t in sorted(types, key=lambda t: names.index(f"B-{t}"))
                         for prefix in ("B", "I")]


def test_hub_datasets_load_at_the_configured_revision_and_script_datasets_get_a_hint(monkeypatch):
    import datasets

    from mlmkit.data.sources import load_any
    from mlmkit.errors import UserError

    calls = []

    def fake_load(name, config_name=None, **kwargs):
        calls.append((name, config_name, kwargs))
        if kwargs.get("revision") is None:
            raise RuntimeError(f"Dataset scripts are no longer supported, but found {name}.py")
        return "loaded"

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_any("someone/tags", split="test", revision="refs/convert/parquet") == "loaded"
    assert calls[-1] == ("someone/tags", None, {"split": "test", "streaming": False,
                                                "revision": "refs/convert/parquet"})
    with pytest.raises(UserError, match=r"loading script.*data\.revision=refs/convert/parquet"):
        load_any("someone/tags")
