"""Offline classification metrics: hand-computed values and agreement with scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as skm

from mlmkit.training.classification_metrics import (
    F1,
    Accuracy,
    ClassificationReport,
    classification_report,
    confusion_matrix,
    majority_baseline,
)

# 3 classes, 8 examples. Confusion matrix (true rows, predicted columns):
#   class 0: [2, 1, 0]   class 1: [0, 2, 1]   class 2: [1, 0, 1]
REFS = [0, 0, 0, 1, 1, 1, 2, 2]
PREDS = [0, 0, 1, 1, 1, 2, 0, 2]


def test_accuracy_by_hand():
    assert Accuracy(keep_in_memory=True).compute(predictions=PREDS, references=REFS) == {"accuracy": 5 / 8}


def test_confusion_matrix_by_hand():
    assert confusion_matrix(PREDS, REFS).tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]
    # an unused class keeps its row and column when num_labels says it exists
    assert confusion_matrix([0, 1], [0, 0], num_labels=3).tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_report_by_hand():
    report = ClassificationReport(keep_in_memory=True).compute(
        predictions=PREDS, references=REFS, label_names=["neg", "neu", "pos"])
    # class 0: precision 2/3, recall 2/3 -> F1 2/3; class 1: 2/3, 2/3 -> 2/3; class 2: 1/2, 1/2 -> 1/2
    rows = {row["label"]: row for row in report["per_class"]}
    assert rows["neg"]["precision"] == pytest.approx(2 / 3) and rows["neg"]["recall"] == pytest.approx(2 / 3)
    assert rows["pos"]["f1"] == pytest.approx(0.5)
    assert [row["support"] for row in report["per_class"]] == [3, 3, 2]
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert report["weighted_f1"] == pytest.approx((3 * 2 / 3 + 3 * 2 / 3 + 2 * 1 / 2) / 8)
    assert report["accuracy"] == pytest.approx(5 / 8)
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]


def test_batches_accumulate_like_one_call():
    metric = F1(keep_in_memory=True)
    metric.add_batch(predictions=PREDS[:3], references=REFS[:3])
    metric.add_batch(predictions=PREDS[3:], references=REFS[3:])
    assert metric.compute()["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)


def test_never_predicted_class_scores_zero():
    # class 2 is never predicted: precision 0 (no division error), recall 0, F1 0
    report = classification_report([0, 1, 1, 0], [0, 1, 2, 2], ["a", "b", "c"])
    assert report["per_class"][2] == {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["per_class"][1]["precision"] == pytest.approx(0.5)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_labels", [2, 3, 5])
def test_agrees_with_sklearn(seed, num_labels):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, num_labels, size=200)
    # predictions right about 60% of the time, with one class sometimes never predicted
    preds = np.where(rng.random(200) < 0.6, refs, rng.integers(0, max(num_labels - 1, 1), size=200))
    labels = list(range(num_labels))
    report = classification_report(preds, refs, [f"c{i}" for i in labels])
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(refs, preds))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(refs, preds, average="macro", labels=labels,
                                                            zero_division=0))
    assert report["weighted_f1"] == pytest.approx(skm.f1_score(refs, preds, average="weighted", labels=labels,
                                                               zero_division=0))
    precision, recall, f1, support = skm.precision_recall_fscore_support(refs, preds, labels=labels, zero_division=0)
    np.testing.assert_allclose([r["precision"] for r in report["per_class"]], precision)
    np.testing.assert_allclose([r["recall"] for r in report["per_class"]], recall)
    np.testing.assert_allclose([r["f1"] for r in report["per_class"]], f1)
    assert [r["support"] for r in report["per_class"]] == support.tolist()
    assert report["confusion_matrix"] == skm.confusion_matrix(refs, preds, labels=labels).tolist()
    for average in ("macro", "micro", "weighted"):
        ours = F1(keep_in_memory=True).compute(predictions=preds.tolist(), references=refs.tolist(),
                                               average=average, num_labels=num_labels)["f1"]
        assert ours == pytest.approx(skm.f1_score(refs, preds, average=average, labels=labels, zero_division=0))


def test_without_num_labels_only_observed_classes_count():
    # like sklearn without `labels`: classes 0 and 3 only
    preds, refs = [0, 3, 3, 0], [0, 3, 0, 0]
    ours = F1(keep_in_memory=True).compute(predictions=preds, references=refs)["f1"]
    assert ours == pytest.approx(skm.f1_score(refs, preds, average="macro"))


def test_majority_baseline_by_hand():
    # training majority: class 1; evaluation: 2 of 5 are class 1
    baseline = majority_baseline([1, 1, 1, 0, 2], [1, 0, 1, 2, 2], ["neg", "neu", "pos"])
    assert baseline["label"] == "neu"
    assert baseline["accuracy"] == pytest.approx(2 / 5)
    # F1 of the majority class: precision 2/5, recall 1 -> 4/7; the others 0; macro over 3 classes
    assert baseline["macro_f1"] == pytest.approx((4 / 7) / 3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix([0, 3], [0, 1], num_labels=3)
    with pytest.raises(ValueError, match="average"):
        F1(keep_in_memory=True).compute(predictions=[0], references=[0], average="samples")
