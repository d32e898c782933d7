"""Classification metrics as offline ``evaluate.Metric`` modules.

``evaluate.load("accuracy")`` fetches a script from the Hugging Face Hub, which fails on
air-gapped machines. The ``evaluate`` API also accepts ``Metric`` subclasses defined in
code, so the modules below keep its interface (``add_batch`` / ``compute``, distributed
gathering through its cache files) while running anywhere.

Everything is derived from one confusion matrix (rows: true class, columns: predicted
class); a class with no predictions (or no examples) gets precision (or recall) 0, as
scikit-learn does with ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

AVERAGES = ("macro", "micro", "weighted")

_INPUTS = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    num_labels (`int`, optional): Number of classes; classes 0..num_labels-1 all count in macro averages
        even when absent from both lists. Default: the classes that occur in either list.
"""


def _features() -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})


def _class_ids(predictions: np.ndarray, references: np.ndarray, num_labels: int | None) -> np.ndarray:
    """The classes that count: 0..num_labels-1, or the sorted union of observed ids."""
    if num_labels is not None:
        observed = np.concatenate([predictions, references])
        if observed.size and (observed.min() < 0 or observed.max() >= num_labels):
            raise ValueError(f"class ids must lie in [0, {num_labels}), got {observed.min()}..{observed.max()}")
        return np.arange(num_labels)
    observed = np.unique(np.concatenate([predictions, references]))
    if observed.size and observed[0] < 0:
        raise ValueError(f"class ids must not be negative, got {observed[0]}")
    return observed


def confusion_matrix(predictions: Sequence[int], references: Sequence[int],
                     num_labels: int | None = None) -> np.ndarray:
    """Counts ``[true class, predicted class]`` over 0..num_labels-1 or the observed class ids.

    Args:
        predictions: Predicted class ids.
        references: True class ids.
        num_labels: Number of classes (ids 0..num_labels-1); default: the observed ids.

    Returns:
        A square ``int64`` array; row ``i`` holds the examples whose true class is the i-th class.
    """
    preds = np.asarray(predictions, dtype=np.int64).reshape(-1)
    refs = np.asarray(references, dtype=np.int64).reshape(-1)
    if preds.shape != refs.shape:
        raise ValueError(f"{preds.size} predictions but {refs.size} references")
    classes = _class_ids(preds, refs, num_labels)
    position = np.full(int(classes.max()) + 1 if classes.size else 0, -1, dtype=np.int64)
    position[classes] = np.arange(classes.size)
    matrix = np.zeros((classes.size, classes.size), dtype=np.int64)
    np.add.at(matrix, (position[refs], position[preds]), 1)
    return matrix


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ``numerator / denominator`` with 0 where the denominator is 0."""
    num = numerator.astype(np.float64)
    den = denominator.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of every class of a confusion matrix."""
    true_positive = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = _safe_ratio(true_positive, predicted)
    recall = _safe_ratio(true_positive, support)
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _average(values: np.ndarray, support: np.ndarray, average: str) -> float:
    if average == "macro":
        return float(values.mean()) if values.size else 0.0
    if average == "weighted":
        return float((values * support).sum() / support.sum()) if support.sum() else 0.0
    raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")


class Accuracy(evaluate.Metric):
    """Share of predictions equal to the reference."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Accuracy: the share of examples whose predicted class is the true class.",
            citation="",
            inputs_description=_INPUTS,
            features=_features(),
            format="numpy",
        )

    def _compute(self, predictions: Any = None, references: Any = None) -> dict[str, float]:
        preds = np.asarray(predictions)
        refs = np.asarray(references)
        return {"accuracy": float((preds == refs).mean()) if refs.size else 0.0}


class F1(evaluate.Metric):
    """F1 score averaged over classes: ``macro`` (default), ``micro`` or ``weighted`` by support."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="F1 score (harmonic mean of precision and recall), averaged over classes.",
            citation="",
            inputs_description=_INPUTS + "    average (`str`): 'macro' (default), 'micro' or 'weighted'.\n",
            features=_features(),
            format="numpy",
        )

    def _compute(self, predictions: Any = None, references: Any = None, average: str = "macro",
                 num_labels: int | None = None) -> dict[str, float]:
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
        matrix = confusion_matrix(predictions, references, num_labels)
        if average == "micro":
            # single-label classification: micro precision = micro recall = accuracy
            total = matrix.sum()
            return {"f1": float(np.trace(matrix) / total) if total else 0.0}
        scores = per_class_scores(matrix)
        return {"f1": _average(scores["f1"], scores["support"], average)}


class ClassificationReport(evaluate.Metric):
    """Accuracy, macro/weighted averages, per-class precision/recall/F1/support and the confusion matrix."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="A full single-label classification report derived from one confusion matrix.",
            citation="",
            inputs_description=_INPUTS + "    label_names (`list` of `str`, optional): class names for 'per_class'.\n",
            features=_features(),
            format="numpy",
        )

    def _compute(self, predictions: Any = None, references: Any = None, num_labels: int | None = None,
                 label_names: Sequence[str] | None = None) -> dict[str, Any]:
        if label_names is not None and num_labels is None:
            num_labels = len(label_names)
        preds = np.asarray(predictions, dtype=np.int64)
        refs = np.asarray(references, dtype=np.int64)
        classes = _class_ids(preds, refs, num_labels)
        matrix = confusion_matrix(preds, refs, num_labels)
        scores = per_class_scores(matrix)
        total = int(matrix.sum())
        per_class = [
            {
                "label": label_names[c] if label_names is not None else str(c),
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, c in enumerate(classes.tolist())
        ]
        return {
            "accuracy": float(np.trace(matrix) / total) if total else 0.0,
            "macro_precision": _average(scores["precision"], scores["support"], "macro"),
            "macro_recall": _average(scores["recall"], scores["support"], "macro"),
            "macro_f1": _average(scores["f1"], scores["support"], "macro"),
            "weighted_f1": _average(scores["f1"], scores["support"], "weighted"),
            "num_examples": total,
            "per_class": per_class,
            "confusion_matrix": matrix.tolist(),
        }


def classification_report(predictions: Sequence[int], references: Sequence[int],
                          label_names: Sequence[str]) -> dict[str, Any]:
    """Run :class:`ClassificationReport` through ``evaluate`` (kept in memory, no cache files).

    Args:
        predictions: Predicted class ids.
        references: True class ids.
        label_names: Class names; their count fixes the number of classes.

    Returns:
        The report dict: ``accuracy``, ``macro_f1``, ``per_class``, ``confusion_matrix``, ...
    """
    metric = ClassificationReport(keep_in_memory=True)
    return metric.compute(predictions=list(map(int, predictions)), references=list(map(int, references)),
                          label_names=list(label_names))


def majority_baseline(train_labels: Sequence[int], references: Sequence[int],
                      label_names: Sequence[str]) -> dict[str, Any]:
    """Scores of always predicting the most frequent training class (ties: the lower class id).

    Args:
        train_labels: Class ids of the training set (decides the majority class).
        references: True class ids of the evaluation set.
        label_names: Class names.

    Returns:
        ``{"label", "accuracy", "macro_f1"}`` of the constant prediction on ``references``.
    """
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(label_names))
    majority = int(counts.argmax())
    constant = [majority] * len(references)
    accuracy = Accuracy(keep_in_memory=True).compute(predictions=constant, references=list(map(int, references)))
    f1 = F1(keep_in_memory=True).compute(predictions=constant, references=list(map(int, references)),
                                         num_labels=len(label_names))
    return {"label": label_names[majority], "accuracy": accuracy["accuracy"], "macro_f1": f1["f1"]}


#: decision thresholds tried when a multi-label threshold is tuned on the evaluation split
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


class MultiLabelReport(evaluate.Metric):
    """Multi-label scores from multi-hot rows: micro/macro F1, exact-match accuracy and per-label scores."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Multi-label classification: every label is a binary decision; micro-F1 pools all "
                        "decisions, macro-F1 averages the F1 of each label.",
            citation="",
            inputs_description="Args:\n    predictions (`list` of `list` of `int`): predicted multi-hot rows.\n"
                               "    references (`list` of `list` of `int`): true multi-hot rows.\n"
                               "    label_names (`list` of `str`, optional): names for 'per_class'.\n",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int8")),
                                        "references": datasets.Sequence(datasets.Value("int8"))}),
        )

    def _compute(self, predictions: Any = None, references: Any = None,
                 label_names: Sequence[str] | None = None) -> dict[str, Any]:
        preds = np.asarray(predictions, dtype=bool)
        refs = np.asarray(references, dtype=bool)
        if preds.shape != refs.shape or preds.ndim != 2:
            raise ValueError(f"predictions {preds.shape} and references {refs.shape} must be equal (rows, labels)")
        true_positive = (preds & refs).sum(axis=0)
        predicted, support = preds.sum(axis=0), refs.sum(axis=0)
        precision = _safe_ratio(true_positive, predicted)
        recall = _safe_ratio(true_positive, support)
        f1 = _safe_ratio(2 * precision * recall, precision + recall)
        micro_p = _safe_ratio(true_positive.sum(keepdims=True), predicted.sum(keepdims=True))[0]
        micro_r = _safe_ratio(true_positive.sum(keepdims=True), support.sum(keepdims=True))[0]
        micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0
        names = list(label_names) if label_names is not None else [str(i) for i in range(preds.shape[1])]
        return {
            "micro_f1": float(micro_f1), "micro_precision": float(micro_p), "micro_recall": float(micro_r),
            "macro_f1": float(f1.mean()) if f1.size else 0.0,
            "exact_match": float((preds == refs).all(axis=1).mean()) if len(refs) else 0.0,
            "num_examples": int(len(refs)),
            "per_class": [{"label": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                          for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)],
        }


def multi_label_report(probabilities: np.ndarray, references: np.ndarray, label_names: Sequence[str],
                       threshold: float | None = None) -> dict[str, Any]:
    """:class:`MultiLabelReport` at a fixed ``threshold``, or at the grid threshold with the best micro-F1.

    Args:
        probabilities: ``(examples, labels)`` sigmoid outputs.
        references: ``(examples, labels)`` multi-hot truth.
        label_names: Label names.
        threshold: Decide "label present" when the probability is at least this; None tunes it over
            :data:`THRESHOLD_GRID` on these very examples (ties: the lower threshold).

    Returns:
        The report plus ``threshold`` and ``threshold_tuned``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    refs = np.asarray(references).astype(np.int8).tolist()
    metric = MultiLabelReport(keep_in_memory=True)

    def at(cut: float) -> dict[str, Any]:
        return metric.compute(predictions=(probabilities >= cut).astype(np.int8).tolist(), references=refs,
                              label_names=list(label_names))

    if threshold is not None:
        return {**at(threshold), "threshold": float(threshold), "threshold_tuned": False}
    # micro-F1 of every grid point straight from counts; the full report only at the winner
    truth = np.asarray(references, dtype=bool)
    best, best_f1 = THRESHOLD_GRID[0], -1.0
    for cut in THRESHOLD_GRID:
        decided = probabilities >= cut
        tp = float((decided & truth).sum())
        denominator = float(decided.sum() + truth.sum())
        f1 = 2 * tp / denominator if denominator else 0.0
        if f1 > best_f1:
            best, best_f1 = cut, f1
    return {**at(best), "threshold": best, "threshold_tuned": True}
