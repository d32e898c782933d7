"""The study statistics against hand-computed values and SciPy's own functions."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from mlmkit.study.stats import compare_arms, holm, paired_difference, summarize, verdict


def test_summary_by_hand():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == 2.5
    assert s["sd"] == pytest.approx(math.sqrt(5 / 3))
    # t(0.975, df=3) = 3.182446; half width = 3.182446 * sqrt(5/3) / 2
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert s["ci95"] == pytest.approx([2.5 - half, 2.5 + half], abs=1e-9)


def test_summary_edge_cases():
    one = summarize([0.3])
    assert one["mean"] == 0.3 and one["sd"] is None and one["ci95"] is None
    flat = summarize([0.5, 0.5, 0.5])
    assert flat["sd"] == 0.0 and flat["ci95"] == [0.5, 0.5]


def test_paired_difference_by_hand():
    c = paired_difference([2.0, 3.0, 5.0], [1.0, 1.0, 2.0])
    assert c["differences"] == [1.0, 2.0, 3.0] and c["mean"] == 2.0
    # t = 2 / (1 / sqrt 3) = 2 sqrt 3, df = 2: the t(2) CDF is 1/2 + t / (2 sqrt(2 + t^2))
    t = 2 * math.sqrt(3)
    p = 2 * (1 - (0.5 + t / (2 * math.sqrt(2 + t * t))))
    assert c["p_value"] == pytest.approx(p, rel=1e-9)
    half = 4.302652729911275 / math.sqrt(3)
    assert c["ci95"] == pytest.approx([2 - half, 2 + half], abs=1e-9)
    assert c["p_value"] == pytest.approx(stats.ttest_rel([2, 3, 5], [1, 1, 2]).pvalue)


def test_paired_difference_needs_two_seeds_and_equal_lengths():
    assert paired_difference([1.0], [0.5])["p_value"] is None
    same = paired_difference([1.0, 2.0], [1.0, 2.0])
    assert same["p_value"] == 1.0 and same["ci95"] == [0.0, 0.0]
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


def test_holm_by_hand():
    # sorted: 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> made monotone: 0.03, 0.06, 0.06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert holm({"a": 0.2, "b": None}) == {"a": 0.2, "b": None}
    assert holm({"a": 0.5, "b": 0.9}) == pytest.approx({"a": 1.0, "b": 1.0})


def test_compare_arms_words_and_direction():
    values = {"base": {0: 0.10, 1: 0.20, 2: 0.30, 3: 0.40},
              "up": {0: 0.21, 1: 0.30, 2: 0.42, 3: 0.50},      # +0.11, +0.10, +0.12, +0.10
              "same": {0: 0.12, 1: 0.17, 2: 0.33, 3: 0.38}}    # +0.02, -0.03, +0.03, -0.02
    summaries, comparisons = compare_arms(values, "base")
    assert summaries["up"]["values"] == [0.21, 0.30, 0.42, 0.50] and summaries["up"]["seeds"] == [0, 1, 2, 3]
    assert comparisons["up"]["verdict"] == "better" and comparisons["up"]["significant"]
    assert comparisons["same"]["verdict"] == "no significant difference"
    raw = {k: comparisons[k]["p_value"] for k in ("up", "same")}
    assert {k: comparisons[k]["p_holm"] for k in raw} == pytest.approx(holm(raw))
    # the same numbers as a loss: higher is worse
    _, as_loss = compare_arms(values, "base", lower_is_better=True)
    assert as_loss["up"]["verdict"] == "worse"


def test_compare_arms_pairs_only_common_seeds():
    _, comparisons = compare_arms({"base": {0: 1.0, 1: 2.0, 2: 3.0}, "arm": {1: 2.5, 2: 3.0}}, "base")
    assert comparisons["arm"]["seeds"] == [1, 2] and comparisons["arm"]["differences"] == [0.5, 0.0]


def test_verdict_without_test():
    assert verdict({"p_holm": None}, False) == "not testable"
