"""Multi-label and regression metrics (offline evaluate.Metric modules) on hand-checked examples."""

import math

import numpy as np
import pytest

from mlmkit.training.classification_metrics import THRESHOLD_GRID, MultiLabelReport, multi_label_report
from mlmkit.training.regression_metrics import regression_report


def test_multi_label_report_by_hand():
    report = MultiLabelReport(keep_in_memory=True).compute(
        predictions=[[1, 0], [1, 1], [0, 0]], references=[[1, 0], [0, 1], [0, 1]], label_names=["a", "b"])
    # a: 1 right of 2 predicted, 1 true -> P 1/2, R 1; b: 1 of 1 predicted, 2 true -> P 1, R 1/2
    assert [row["precision"] for row in report["per_class"]] == [0.5, 1.0]
    assert [row["recall"] for row in report["per_class"]] == [1.0, 0.5]
    assert [row["support"] for row in report["per_class"]] == [1, 2]
    assert report["macro_f1"] == pytest.approx(2 / 3)
    assert report["micro_precision"] == report["micro_recall"] == pytest.approx(2 / 3)  # 2 right, 3 said, 3 true
    assert report["micro_f1"] == pytest.approx(2 / 3) and report["exact_match"] == pytest.approx(1 / 3)


def test_threshold_is_the_lowest_grid_point_with_the_best_micro_f1():
    probabilities = np.array([[0.3], [0.25], [0.1]])
    truth = np.array([[1], [1], [0]])
    tuned = multi_label_report(probabilities, truth, ["x"])
    # cuts up to 0.10 also take the negative (F1 0.8); 0.15..0.25 take exactly the positives (F1 1)
    assert tuned["threshold"] == 0.15 and tuned["threshold_tuned"] and tuned["micro_f1"] == 1.0
    fixed = multi_label_report(probabilities, truth, ["x"], threshold=0.05)
    assert fixed["micro_f1"] == pytest.approx(0.8) and not fixed["threshold_tuned"]
    assert THRESHOLD_GRID[0] == 0.05 and THRESHOLD_GRID[-1] == 0.95 and len(THRESHOLD_GRID) == 19


def test_regression_report_by_hand():
    report = regression_report([1, 2, 3, 4], [1, 4, 9, 16])
    # covariance sum 25, squared deviations 5 and 129: r = 25 / sqrt(645); the ranks agree exactly
    assert report["pearson"] == pytest.approx(25 / math.sqrt(645))
    assert report["spearman"] == pytest.approx(1.0)
    assert report["mse"] == pytest.approx(46.0) and report["mae"] == pytest.approx(5.0)
    constant = regression_report([2, 2, 2], [1, 2, 3])
    assert math.isnan(constant["pearson"]) and math.isnan(constant["spearman"])
    assert constant["mse"] == pytest.approx(2 / 3)
