"""Token-classification metrics as offline ``evaluate.Metric`` modules.

``evaluate.load("seqeval")`` fetches its script from the Hub; :class:`Seqeval` wraps the
``seqeval`` package the same way, in code: entity-level precision, recall and F1 per entity
type and overall (an entity counts only when its type and its exact span are right), plus
token accuracy. Tag sets that are not BIO-style (UPOS tags) are scored by token accuracy and
per-tag scores instead (:func:`token_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np
from seqeval import metrics
from seqeval import scheme as schemes

from mlmkit.training.classification_metrics import classification_report

#: tag prefixes of chunking schemes (IOB1/IOB2/IOE/IOBES/BILOU)
CHUNK_PREFIXES = ("B-", "I-", "E-", "S-", "L-", "U-")


def is_chunk_tagging(label_names: Sequence[str]) -> bool:
    """True when the tag set looks like BIO-style entity tags (``O`` plus ``B-``/``I-``... tags)."""
    tags = [name for name in label_names if name != "O"]
    return bool(tags) and all(name[:2] in CHUNK_PREFIXES and len(name) > 2 for name in tags)


class Seqeval(evaluate.Metric):
    """Entity-level scores of ``seqeval`` (conlleval semantics by default; ``mode='strict'`` with a scheme)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Entity-level precision, recall and F1 of sequence labelling, with seqeval.",
            citation="Nakayama, H. (2018). seqeval: A Python framework for sequence labeling evaluation.",
            inputs_description="Args:\n    predictions (`list` of `list` of `str`): predicted tags per sentence.\n"
                               "    references (`list` of `list` of `str`): true tags per sentence.\n"
                               "    mode (`str`, optional): None (conlleval) or 'strict'.\n"
                               "    scheme (`str`, optional): IOB2, IOE2, IOBES, BILOU (with mode='strict').\n",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions: Any = None, references: Any = None, mode: str | None = None,
                 scheme: str | None = None) -> dict[str, Any]:
        scheme_class = getattr(schemes, scheme) if scheme else None
        preds, refs = [list(p) for p in predictions], [list(r) for r in references]
        report = metrics.classification_report(refs, preds, output_dict=True, mode=mode, scheme=scheme_class,
                                               zero_division=0)
        overall = report.pop("micro avg")
        macro = report.pop("macro avg")
        report.pop("weighted avg", None)
        total = sum(len(r) for r in refs)
        correct = sum(p == r for pred, ref in zip(preds, refs, strict=True) for p, r in zip(pred, ref, strict=True))
        return {
            "overall_precision": float(overall["precision"]), "overall_recall": float(overall["recall"]),
            "overall_f1": float(overall["f1-score"]), "macro_f1": float(macro["f1-score"]),
            "overall_accuracy": correct / total if total else 0.0,
            "per_type": {name: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                                "f1": float(v["f1-score"]), "number": int(v["support"])}
                         for name, v in sorted(report.items())},
        }


def token_report(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                 label_names: Sequence[str]) -> dict[str, Any]:
    """Scores of word-level tag sequences: seqeval entities for BIO-style tags, per-tag scores otherwise.

    Returns:
        ``accuracy`` (tokens), ``f1`` (entity micro-F1 for BIO tags; token accuracy otherwise, which is
        micro-F1 of single-label tagging), ``macro_f1`` and ``per_class`` rows (entity types or tags).
    """
    if is_chunk_tagging(label_names):
        scores = Seqeval(keep_in_memory=True).compute(predictions=[list(p) for p in predictions],
                                                      references=[list(r) for r in references])
        per_class = [{"label": name, "precision": v["precision"], "recall": v["recall"], "f1": v["f1"],
                      "support": v["number"]} for name, v in scores["per_type"].items()]
        return {"accuracy": scores["overall_accuracy"], "f1": scores["overall_f1"],
                "precision": scores["overall_precision"], "recall": scores["overall_recall"],
                "macro_f1": scores["macro_f1"], "per_class": per_class, "scoring": "seqeval entities"}
    index = {name: i for i, name in enumerate(label_names)}
    flat_refs = np.array([index[t] for seq in references for t in seq], dtype=np.int64)
    # a word with no prediction (dropped by the tokenizer, cut by truncation) is wrong in the accuracy and
    # left out of the per-tag table (it was predicted as no tag at all)
    flat_preds = np.array([index.get(t, -1) for seq in predictions for t in seq], dtype=np.int64)
    scored = flat_preds >= 0
    report = classification_report(flat_preds[scored], flat_refs[scored], label_names)
    accuracy = float((flat_preds == flat_refs).mean()) if flat_refs.size else 0.0
    return {"accuracy": accuracy, "f1": accuracy, "macro_f1": report["macro_f1"],
            "per_class": report["per_class"], "scoring": "token tags"}
