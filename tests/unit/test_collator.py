import torch
from transformers import DataCollatorForLanguageModeling

from mlmkit.masking.base import IGNORE_INDEX, run_unit_ids
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.random_token import RandomMasking
from mlmkit.masking.schedules import LinearSchedule


def _examples(tokenizer, corpus, n=16):
    return [{"input_ids": tokenizer(t)["input_ids"]} for t in corpus[:n]]


def test_collator_is_a_hf_collator_and_pads_to_multiple_of_8(wordpiece_tokenizer, corpus):
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(), seed=1)
    assert isinstance(collator, DataCollatorForLanguageModeling)
    batch = collator(_examples(wordpiece_tokenizer, corpus))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[1] % 8 == 0


def test_random_masking_invariants(any_tokenizer, corpus):
    collator = MaskingCollator(any_tokenizer, RandomMasking(ratio=0.3), seed=3)
    padded = collator.pad(_examples(any_tokenizer, corpus, 64))
    out = collator.mask(padded, step=0)
    predicted = out["labels"] != IGNORE_INDEX
    special = padded["special_tokens_mask"]
    assert not (predicted & special).any()  # specials and padding never predicted
    assert torch.equal(out["labels"][predicted], padded["input_ids"][predicted])
    changed = out["input_ids"] != padded["input_ids"]
    assert not (changed & ~predicted).any()  # inputs change only where predicted
    ratio = predicted.sum().item() / (~special).sum().item()
    assert abs(ratio - 0.3) < 0.05
    masked = out["input_ids"] == any_tokenizer.mask_token_id
    share_masked = (masked & predicted).sum().item() / predicted.sum().item()
    assert 0.7 < share_masked < 0.9
    # random replacements never use special tokens
    replaced = changed & ~masked
    specials = torch.tensor(any_tokenizer.all_special_ids)
    assert not torch.isin(out["input_ids"][replaced], specials).any()


def test_masks_are_a_function_of_seed_and_step(wordpiece_tokenizer, corpus):
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(), seed=5)
    padded = collator.pad(_examples(wordpiece_tokenizer, corpus))
    a, b, c = collator.mask(padded, 3), collator.mask(padded, 3), collator.mask(padded, 4)
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.equal(a["labels"], c["labels"])


def test_configurable_corruption_split(wordpiece_tokenizer, corpus):
    strategy = RandomMasking(ratio=0.5, mask_replace_prob=0.0, random_replace_prob=0.0)
    collator = MaskingCollator(wordpiece_tokenizer, strategy, seed=0)
    padded = collator.pad(_examples(wordpiece_tokenizer, corpus, 32))
    out = collator.mask(padded, 0)
    assert (out["labels"] != IGNORE_INDEX).any()
    assert torch.equal(out["input_ids"], padded["input_ids"])  # all kept


def test_exact_and_minimum_predictions(wordpiece_tokenizer, corpus):
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(ratio=0.25, exact=True), seed=0)
    padded = collator.pad(_examples(wordpiece_tokenizer, corpus, 32))
    predicted = collator.mask(padded, 0)["labels"] != IGNORE_INDEX
    n = (~padded["special_tokens_mask"]).sum(dim=1)
    assert torch.equal(predicted.sum(dim=1), torch.round(n.double() * 0.25).long())
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(ratio=0.0, min_predictions=2), seed=0)
    predicted = collator.mask(padded, 0)["labels"] != IGNORE_INDEX
    assert torch.equal(predicted.sum(dim=1), torch.full_like(n, 2))


def test_schedule_sets_the_ratio_per_step(wordpiece_tokenizer, corpus):
    schedule = LinearSchedule(0.15, total_steps=100)  # 0.30 -> 0.0
    collator = MaskingCollator(wordpiece_tokenizer, RandomMasking(), schedule, seed=0)
    padded = collator.pad(_examples(wordpiece_tokenizer, corpus * 4, 200))
    maskable = (~padded["special_tokens_mask"]).sum().item()
    first = (collator.mask(padded, 0)["labels"] != IGNORE_INDEX).sum().item() / maskable
    last = (collator.mask(padded, 100)["labels"] != IGNORE_INDEX).sum().item() / maskable
    assert abs(first - 0.30) < 0.04 and last == 0.0


def test_run_unit_ids():
    words = torch.tensor([[-1, 0, 0, 1, 2, 2, 2, -1, -1]])
    assert run_unit_ids(words).tolist() == [[-1, 1, 1, 3, 4, 4, 4, -1, -1]]


def test_mask_random_keep_split_is_80_10_10_within_binomial_bounds(wordpiece_tokenizer, corpus):
    import math

    strategy = RandomMasking(ratio=0.5)
    collator = MaskingCollator(wordpiece_tokenizer, strategy, seed=11)
    padded = collator.pad(_examples(wordpiece_tokenizer, corpus, 200))
    predicted_total, masked, replaced, kept = 0, 0, 0, 0
    for step in range(4):
        out = collator.mask(padded, step)
        predicted = out["labels"] != IGNORE_INDEX
        is_mask = out["input_ids"] == wordpiece_tokenizer.mask_token_id
        same = out["input_ids"] == padded["input_ids"]
        predicted_total += int(predicted.sum())
        masked += int((predicted & is_mask).sum())
        kept += int((predicted & same).sum())
        replaced += int((predicted & ~is_mask & ~same).sum())
    # each predicted token: [MASK] w.p. 0.8, a uniform ordinary token w.p. 0.1 (its own id again w.p. 1/V), else kept
    pool = len(strategy.replacement_ids)
    expected = {"masked": 0.8, "replaced": 0.1 * (1 - 1 / pool), "kept": 0.1 + 0.1 / pool}
    for name, count in (("masked", masked), ("replaced", replaced), ("kept", kept)):
        p = expected[name]
        band = 5 * math.sqrt(predicted_total * p * (1 - p))  # five standard deviations of Binomial(n, p)
        assert abs(count - predicted_total * p) <= band, (name, count, predicted_total)
    assert predicted_total > 2000  # enough draws for the bands (about +-1.3% of n for the 10% shares)
