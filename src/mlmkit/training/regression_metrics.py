"""Regression metrics (STS-B style similarity scores) as an offline ``evaluate.Metric``.

Pearson and Spearman correlations come from :mod:`scipy.stats`; a constant prediction (or
constant truth) has no defined correlation and reports NaN rather than a made-up 0.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np
from scipy import stats


class RegressionReport(evaluate.Metric):
    """Pearson and Spearman correlation, mean squared error and mean absolute error."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Correlation (Pearson, Spearman) and error (MSE, MAE) of real-valued predictions.",
            citation="",
            inputs_description="Args:\n    predictions (`list` of `float`): predicted scores.\n"
                               "    references (`list` of `float`): true scores.\n",
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
            format="numpy",
        )

    def _compute(self, predictions: Any = None, references: Any = None) -> dict[str, float]:
        preds = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.float64)
        varies = len(refs) > 1 and np.ptp(preds) > 0 and np.ptp(refs) > 0
        return {
            "pearson": float(stats.pearsonr(preds, refs).statistic) if varies else float("nan"),
            "spearman": float(stats.spearmanr(preds, refs).statistic) if varies else float("nan"),
            "mse": float(np.mean((preds - refs) ** 2)) if len(refs) else float("nan"),
            "mae": float(np.mean(np.abs(preds - refs))) if len(refs) else float("nan"),
            "num_examples": int(len(refs)),
        }


def regression_report(predictions: Any, references: Any) -> dict[str, float]:
    """Run :class:`RegressionReport` through ``evaluate`` in memory."""
    return RegressionReport(keep_in_memory=True).compute(predictions=list(map(float, predictions)),
                                                         references=list(map(float, references)))
