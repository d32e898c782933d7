"""The collator, the ratio schedules and random-token masking, pinned down on hand-sized inputs: padding values, the
seed arithmetic, the Hugging Face call counter, exact picks, schedule state and error wording."""

from __future__ import annotations

import pytest
import torch

from mlmkit.errors import UserError
from mlmkit.masking.base import IGNORE_INDEX
from mlmkit.masking.collator import (
    FEATURE_PAD,
    MaskingCollator,
    predicts_nothing,
    step_generator,
    step_seed,
)
from mlmkit.masking.random_token import RandomMasking, pick_exact
from mlmkit.masking.schedules import (
    ConstantSchedule,
    CosineSchedule,
    LinearSchedule,
    StepSchedule,
    build_schedule,
)

ROWS = ["the cat likes the morning train", "a dog", "our team waits for the new station again"]


def _ids(tokenizer, rows=ROWS):
    return tokenizer(list(rows))["input_ids"]


# ---------------------------------------------------------------------------------------------- seeds
def test_step_seed_formula():
    assert step_seed(0, 0) == 0
    assert step_seed(2, 3, 4, 5) == 2 * 1_000_003 + 3 * 10_007 + 4 * 101 + 5
    assert step_seed(2**62, 2**62) == (2**62 * 1_000_003 + 2**62 * 10_007) % (2**63 - 1)
    assert step_seed(1, 2) == step_seed(1, 2, 0, 0)
    assert torch.equal(torch.rand(4, generator=step_generator(1, 2)),
                       torch.rand(4, generator=torch.Generator().manual_seed(step_seed(1, 2, 0, 0))))
    draws = {tuple(torch.rand(4, generator=step_generator(*args)).tolist())
             for args in [(1, 2), (1, 2, 0, 0), (1, 3), (1, 2, 1), (1, 2, 0, 1), (2, 2)]}
    assert len(draws) == 5  # only the two spellings of (1, 2, 0, 0) agree
    assert torch.equal(torch.rand(4, generator=step_generator(7, 8, 9, 1)),
                       torch.rand(4, generator=torch.Generator().manual_seed(step_seed(7, 8, 9, 1))))


def test_predicts_nothing():
    assert predicts_nothing({"labels": torch.full((2, 3), IGNORE_INDEX)})
    assert not predicts_nothing({"labels": torch.tensor([[IGNORE_INDEX, 5, IGNORE_INDEX]])})


# ---------------------------------------------------------------------------------------------- padding
def test_pad_values_by_hand(wordpiece_tokenizer):
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(), pad_to_multiple_of=None)
    ids = _ids(wordpiece_tokenizer)
    lengths = [len(i) for i in ids]
    batch = collator.pad([{"input_ids": i, "pos": list(range(len(i)))} for i in ids])
    width = max(lengths)
    assert set(batch) == {"input_ids", "attention_mask", "special_tokens_mask", "pos", "word_ids"}
    pad = wordpiece_tokenizer.pad_token_id
    specials = set(wordpiece_tokenizer.all_special_ids)
    for row, (row_ids, n) in enumerate(zip(ids, lengths, strict=True)):
        assert batch["input_ids"][row].tolist() == row_ids + [pad] * (width - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["pos"][row].tolist() == list(range(n)) + [FEATURE_PAD] * (width - n)
        special = [t in specials for t in row_ids] + [True] * (width - n)
        assert batch["special_tokens_mask"][row].tolist() == special
        # without word ids every ordinary token is its own word, -1 on special tokens and padding
        assert batch["word_ids"][row].tolist() == [-1 if s else i for i, s in enumerate(special)]
    for name in batch:
        assert batch[name].dtype == (torch.bool if name == "special_tokens_mask" else torch.long)
    assert FEATURE_PAD == -1


def test_pad_rounds_up_and_keeps_given_word_ids(wordpiece_tokenizer):
    ids = _ids(wordpiece_tokenizer)
    width = max(len(i) for i in ids)
    assert MaskingCollator(wordpiece_tokenizer, RandomMasking()).pad(
        [{"input_ids": i} for i in ids])["input_ids"].shape == (3, -(-width // 8) * 8)
    words = [[-1] + [0] * (len(i) - 2) + [-1] for i in ids]
    batch = MaskingCollator(wordpiece_tokenizer, RandomMasking(), pad_to_multiple_of=5).pad(
        [{"input_ids": i, "word_ids": w} for i, w in zip(ids, words, strict=True)])
    assert batch["input_ids"].shape[1] == -(-width // 5) * 5 and batch["input_ids"].shape[1] % 5 == 0
    assert batch["word_ids"][1].tolist() == words[1] + [-1] * (batch["input_ids"].shape[1] - len(words[1]))
    with pytest.raises(ValueError, match="^cannot collate an empty list of examples$"):
        MaskingCollator(wordpiece_tokenizer, RandomMasking()).pad([])


def test_pad_examples_straight_from_the_tokenizer(wordpiece_tokenizer):
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(), pad_to_multiple_of=None)
    encoded = wordpiece_tokenizer(ROWS, return_special_tokens_mask=True)
    rich = [{k: encoded[k][i] for k in encoded} for i in range(len(ROWS))]
    assert {"attention_mask", "special_tokens_mask"} <= set(rich[0])
    plain = collator.pad([{"input_ids": e["input_ids"]} for e in rich])
    got = collator.pad(rich)
    assert set(got) == set(plain)
    for name in plain:
        assert torch.equal(got[name], plain[name]), name
    one = collator.pad(rich[:1])
    assert one["input_ids"].tolist() == [rich[0]["input_ids"]] and one["attention_mask"].all()


class WithPadId:
    """A tokenizer whose pad token id is ``pad_token_id`` (1 as RoBERTa's ``<pad>``; None: no pad token)."""

    def __init__(self, tokenizer, pad_token_id) -> None:
        self._tokenizer = tokenizer
        self.pad_token_id = pad_token_id

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)
    pad_token = None


def test_pad_uses_the_pad_token(wordpiece_tokenizer):
    collator = MaskingCollator(WithPadId(wordpiece_tokenizer, 1), RandomMasking(), pad_to_multiple_of=None)
    batch = collator.pad([{"input_ids": i} for i in _ids(wordpiece_tokenizer)[:2]])
    assert batch["input_ids"][1, -1].item() == 1 and batch["special_tokens_mask"][1, -1].item()


def test_pad_without_a_pad_token_uses_id_zero(wordpiece_tokenizer):
    collator = MaskingCollator(WithPadId(wordpiece_tokenizer, None), RandomMasking(), pad_to_multiple_of=None)
    batch = collator.pad([{"input_ids": i} for i in _ids(wordpiece_tokenizer)[:2]])
    assert batch["input_ids"][1, -1].item() == 0 and batch["attention_mask"][1, -1].item() == 0


# ---------------------------------------------------------------------------------------------- masking
def test_collator_settings_and_mask(wordpiece_tokenizer):
    strategy = RandomMasking(ratio=0.4, mask_replace_prob=0.5, random_replace_prob=0.25)
    collator = MaskingCollator(wordpiece_tokenizer, strategy, seed=3, rank=2)
    assert strategy.mask_token_id == wordpiece_tokenizer.mask_token_id  # bound here
    assert (collator.mlm_probability, collator.mask_replace_prob, collator.random_replace_prob) == (0.4, 0.5, 0.25)
    assert collator.schedule(0) == collator.schedule(10**6) == 0.4
    assert (collator.base_seed, collator.rank, collator.calls) == (3, 2, 0)
    assert collator.mlm is True and collator.seed == 3  # what Hugging Face's collator reads
    padded = collator.pad([{"input_ids": i} for i in _ids(wordpiece_tokenizer)])
    out = collator.mask(padded, step=5, micro_step=1)
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert out["attention_mask"] is padded["attention_mask"]
    expected = strategy(padded, 0.4, step_generator(3, 5, 1, 2))
    assert torch.equal(out["input_ids"], expected[0]) and torch.equal(out["labels"], expected[1])


def test_collator_defaults_are_seed_zero_rank_zero_micro_step_zero(wordpiece_tokenizer):
    strategy = RandomMasking(ratio=0.5)
    collator = MaskingCollator(wordpiece_tokenizer, strategy)
    assert (collator.base_seed, collator.rank) == (0, 0)
    padded = collator.pad([{"input_ids": i} for i in _ids(wordpiece_tokenizer)])
    got = collator.mask(padded, step=2)
    generator = torch.Generator().manual_seed(step_seed(0, 2, 0, 0))
    expected = strategy(padded, 0.5, generator)
    assert torch.equal(got["input_ids"], expected[0]) and torch.equal(got["labels"], expected[1])


def test_schedule_ratio_reaches_the_strategy(wordpiece_tokenizer):
    strategy = RandomMasking(exact=True)
    collator = MaskingCollator(wordpiece_tokenizer, strategy, schedule=StepSchedule(0.15, 10, [2], [0.0, 1.0]))
    padded = collator.pad([{"input_ids": i} for i in _ids(wordpiece_tokenizer)])
    assert predicts_nothing(collator.mask(padded, step=1))
    labels = collator.mask(padded, step=2)["labels"]
    assert torch.equal(labels != IGNORE_INDEX, ~padded["special_tokens_mask"])


def test_hugging_face_calls_count_steps(wordpiece_tokenizer):
    ids = _ids(wordpiece_tokenizer)
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(ratio=0.5), seed=9)
    reference = MaskingCollator(wordpiece_tokenizer, RandomMasking(ratio=0.5), seed=9)
    padded = reference.pad([{"input_ids": i} for i in ids])
    for step in range(3):
        got = collator(ids if step % 2 else [{"input_ids": i} for i in ids])  # plain id lists or mappings
        expected = reference.mask(padded, step)
        assert torch.equal(got["input_ids"], expected["input_ids"]) and torch.equal(got["labels"], expected["labels"])
        assert collator.calls == step + 1


# ---------------------------------------------------------------------------------------------- random tokens
def test_pick_exact_counts_and_generator():
    candidates = torch.tensor([[True, True, False, True, True, True], [False, True, True, False, False, True]])
    counts = torch.tensor([3, 2])
    torch.manual_seed(1)
    first = pick_exact(candidates, counts, torch.Generator().manual_seed(4))
    torch.manual_seed(2)  # the global generator plays no part
    assert torch.equal(first, pick_exact(candidates, counts, torch.Generator().manual_seed(4)))
    assert first.sum(dim=1).tolist() == [3, 2] and not (first & ~candidates).any()
    every = pick_exact(candidates, torch.tensor([6, 6]), torch.Generator().manual_seed(0))
    assert torch.equal(every, candidates)
    picks = {tuple(pick_exact(candidates, counts, torch.Generator().manual_seed(s)).flatten().tolist())
             for s in range(20)}
    assert len(picks) > 1


def test_random_masking_options(wordpiece_tokenizer):
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(), pad_to_multiple_of=None)
    padded = collator.pad([{"input_ids": i} for i in _ids(wordpiece_tokenizer)])
    n = (~padded["special_tokens_mask"]).sum(dim=1)
    assert n.tolist() == [6, 2, 8]
    exact = RandomMasking(exact=True, min_predictions=3)
    chosen = exact.select(padded, 0.25, torch.Generator().manual_seed(0)).predicted
    assert chosen.sum(dim=1).tolist() == [3, 2, 3]  # max(round(0.25 n), 3), at most n
    assert not (chosen & padded["special_tokens_mask"]).any()
    minimum = RandomMasking(min_predictions=4)
    for seed in range(5):
        got = minimum.select(padded, 0.0, torch.Generator().manual_seed(seed)).predicted
        assert got.sum(dim=1).tolist() == [4, 2, 4] and not (got & padded["special_tokens_mask"]).any()
    # rows already above the minimum keep their independent draws
    plain = RandomMasking().select(padded, 0.5, torch.Generator().manual_seed(1)).predicted
    topped = RandomMasking(min_predictions=1).select(padded, 0.5, torch.Generator().manual_seed(1)).predicted
    assert plain.sum(dim=1).tolist() == [4, 0, 5]
    assert torch.equal(plain[[0, 2]], topped[[0, 2]]) and topped[1].sum() == 1 and not (topped[1] & plain[1]).any()
    # rows below the minimum are topped up to exactly the minimum
    for seed in range(8):
        draws = RandomMasking().select(padded, 0.3, torch.Generator().manual_seed(seed)).predicted.sum(dim=1)
        topped = minimum.select(padded, 0.3, torch.Generator().manual_seed(seed)).predicted.sum(dim=1)
        assert topped.tolist() == [max(d, min(4, m)) for d, m in zip(draws.tolist(), n.tolist(), strict=True)]
    # the explicit generator drives every draw, the top-up and exact picks included
    for strategy in (exact, minimum):
        torch.manual_seed(1)
        first = strategy.select(padded, 0.1, torch.Generator().manual_seed(5)).predicted
        torch.manual_seed(2)
        assert torch.equal(first, strategy.select(padded, 0.1, torch.Generator().manual_seed(5)).predicted)
    with pytest.raises(ValueError, match="^masking.min_predictions must be >= 0$"):
        RandomMasking(min_predictions=-1)
    assert (exact.exact, exact.min_predictions, RandomMasking().exact) == (True, 3, False)


# ---------------------------------------------------------------------------------------------- schedules
def test_schedule_state_round_trip_keeps_the_kind():
    linear = LinearSchedule(0.1, 100, start=0.5)
    assert linear.state_dict() == {"base_ratio": 0.1, "total_steps": 100, "start": 0.5, "end": 0.0, "name": "linear"}
    constant = ConstantSchedule(0.2, 0)
    assert constant.state_dict() == {"base_ratio": 0.2, "total_steps": 1, "name": "constant"}
    constant.load_state_dict(linear.state_dict())
    assert constant.name == "constant" and constant.state_dict()["name"] == "constant"
    assert constant(50) == 0.1
    assert CosineSchedule(0.1, 10).state_dict()["floor"] == 0.02
    assert StepSchedule(0.1, 10, [3], [0.2, 0.3]).state_dict()["milestones"] == [3]


def test_schedule_progress_and_clipping():
    linear = LinearSchedule(0.2, 10)
    assert [linear.progress(s) for s in (-5, 0, 5, 10, 20)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert linear(2.7) == linear(2)  # steps are whole numbers
    assert ConstantSchedule(1.5, 1)(0) == 1.0 and ConstantSchedule(-0.5, 1)(0) == 0.0
    assert LinearSchedule(0.2, 0).total_steps == 1
    assert LinearSchedule(0.2, 10, start=0.1, end=0.3)(5) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "step", "milestones": [10], "ratios": [0.3]},
         "masking schedule 'step': a step schedule needs exactly one more ratio than milestones"),
        ({"name": "step", "milestones": [20, 10], "ratios": [0.3, 0.2, 0.1]},
         "masking schedule 'step': step schedule milestones must be increasing"),
        ({"name": "wobble"}, "unknown masking schedule 'wobble'; available: constant, cosine, linear, step"),
    ],
)
def test_schedule_errors_word_for_word(spec, message):
    with pytest.raises(UserError) as error:
        build_schedule(spec, 0.15, 10)
    assert str(error.value) == message


def test_build_schedule_forms():
    assert isinstance(build_schedule(None, 0.3, 10), ConstantSchedule)
    assert isinstance(build_schedule({}, 0.3, 10), ConstantSchedule)
    cosine = build_schedule("cosine", 0.3, 10)
    assert isinstance(cosine, CosineSchedule) and (cosine.base_ratio, cosine.total_steps) == (0.3, 10)
    step = build_schedule({"name": "step", "milestones": [1], "ratios": [0.5, 0.25]}, 0.3, 10)
    assert [step(0), step(1)] == [0.5, 0.25]
    spec = {"name": "linear", "start": 0.4}
    build_schedule(spec, 0.1, 10)
    assert spec == {"name": "linear", "start": 0.4}  # the caller's mapping is left alone
