"""Masking-ratio schedules hit their formulas at t = 0, T/2 and T; build errors are user errors."""

import math

import pytest

from mlmkit.config import PretrainConfig, load_config
from mlmkit.errors import UserError
from mlmkit.masking.schedules import SCHEDULES, build_schedule

T = 1000
P = 0.15


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("constant", (P, P, P)),
        # Masking Ratio Decay, linear: 2p -> 0 (Yang, Zhang and Zhao, ACL 2023)
        ("linear", (2 * P, P, 0.0)),
        # Ankner et al., EACL 2024: 0.30 -> 0.15
        ({"name": "linear", "start": 0.30, "end": 0.15}, (0.30, 0.225, 0.15)),
        # MRD cosine: p * (1 + cos(pi t / T)) + 0.02
        ("cosine", (2 * P + 0.02, P + 0.02, 0.02)),
        ({"name": "cosine", "floor": 0.0}, (2 * P, P, 0.0)),
        ({"name": "step", "milestones": [T // 2], "ratios": [0.3, 0.1]}, (0.3, 0.1, 0.1)),
        ({"name": "step", "milestones": [T // 4, T], "ratios": [0.4, 0.2, 0.05]}, (0.4, 0.2, 0.05)),
    ],
    ids=["constant", "linear-mrd", "linear-ankner", "cosine-mrd", "cosine-no-floor", "step-1", "step-2"],
)
def test_schedule_formulas_at_start_middle_end(spec, expected):
    schedule = build_schedule(spec, P, T)
    got = (schedule(0), schedule(T // 2), schedule(T))
    assert got == pytest.approx(expected, abs=1e-12)


def test_cosine_formula_everywhere():
    schedule = build_schedule("cosine", P, T)
    for t in (0, 1, 250, 333, 750, 999, T):
        assert schedule(t) == pytest.approx(P * (1 + math.cos(math.pi * t / T)) + 0.02)


def test_linear_is_linear_and_monotone():
    schedule = build_schedule({"name": "linear", "start": 0.3, "end": 0.15}, P, T)
    values = [schedule(t) for t in range(0, T + 1, 50)]
    assert values == sorted(values, reverse=True)
    assert schedule(T // 4) == pytest.approx(0.3 - 0.15 / 4)


def test_schedules_stay_within_bounds_past_the_end_and_clip_to_unit_interval():
    assert build_schedule("linear", P, T)(5 * T) == pytest.approx(0.0)
    assert build_schedule("cosine", P, T)(3 * T) == pytest.approx(0.02)
    assert build_schedule("linear", 0.7, T)(0) == 1.0  # 2p = 1.4 clipped
    assert build_schedule({"name": "linear", "start": 0.2, "end": -0.5}, P, T)(T) == 0.0


def test_step_schedule_switches_exactly_at_milestones():
    schedule = build_schedule({"name": "step", "milestones": [10, 20], "ratios": [0.3, 0.2, 0.1]}, P, T)
    assert [schedule(t) for t in (0, 9, 10, 19, 20, 500)] == [0.3, 0.3, 0.2, 0.2, 0.1, 0.1]
    assert build_schedule("step", P, T)(T) == P  # no milestones: the strategy's own ratio


def test_default_is_constant_and_state_round_trips():
    assert build_schedule(None, 0.2, T)(T // 2) == 0.2
    saved = build_schedule({"name": "linear", "start": 0.4, "end": 0.1}, P, T).state_dict()
    assert saved["name"] == "linear"
    restored = build_schedule("linear", P, 10)
    restored.load_state_dict(saved)
    assert restored(T // 2) == pytest.approx(0.25)
    assert restored.total_steps == T


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("exponential", "unknown masking schedule 'exponential'"),
        ({"name": "linear", "stop": 0.1}, "masking schedule 'linear'"),
        ({"name": "step", "milestones": [10], "ratios": [0.3]}, "one more ratio than milestones"),
        ({"name": "step", "milestones": [20, 10], "ratios": [0.3, 0.2, 0.1]}, "increasing"),
    ],
)
def test_build_schedule_errors_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        build_schedule(spec, P, T)


def test_unknown_schedule_lists_the_available_ones():
    with pytest.raises(UserError) as info:
        build_schedule({"name": "nope"}, P, T)
    assert all(name in str(info.value) for name in SCHEDULES)


def test_schedule_from_recipe_overrides():
    cfg = load_config(PretrainConfig, None, ["masking.name=span", "masking.schedule.name=linear",
                                             "masking.schedule.start=0.3", "masking.schedule.end=0.15"])
    schedule = build_schedule(cfg.masking["schedule"], cfg.masking.get("ratio", P), 100)
    assert (schedule(0), schedule(50), schedule(100)) == pytest.approx((0.3, 0.225, 0.15))
