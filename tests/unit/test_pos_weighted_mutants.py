"""POS-weighted masking: the loss fallback, logged values, the JSON state and the sum over processes."""

import json
import pickle

import pytest
import torch

from mlmkit.data.pos_tagging import default_spacy_model
from mlmkit.masking.pos_weighted import (
    POS_INDEX,
    UPOS_TAGS,
    PosWeightedMasking,
    acceptance_order,
    align_pos_to_tokens,
    all_processes_sum,
)
from mlmkit.masking.units import select_units, word_unit_ids

NOUN, DET, VERB = (POS_INDEX[t] for t in ("NOUN", "DET", "VERB"))
SEEN = {"statistics": "seen"}  # the first observation initialises a class's average: means are read back as is


def test_without_labels_or_own_selection_the_nonzero_losses_are_the_predictions():
    s = PosWeightedMasking(**SEEN)
    batch = {"input_ids": torch.tensor([[2, 5, 6, 7, 8, 3]]),
             "pos_ids": torch.tensor([[-1, NOUN, DET, VERB, NOUN, -1]])}
    # NOUN has losses 1 and 3, DET loss 1, VERB was not predicted (exactly 0)
    s.observe(batch, torch.tensor([[0.0, 1.0, 1.0, 0.0, 3.0, 0.0]]))
    assert s.updates.tolist() == [1 if i in (NOUN, DET) else 0 for i in range(len(UPOS_TAGS))]
    assert s.loss_ema[NOUN].item() == pytest.approx(2.0) and s.loss_ema[DET].item() == pytest.approx(1.0)


def test_logged_values_carry_five_decimals():
    s = PosWeightedMasking(**SEEN)
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    batch = {"input_ids": ids, "pos_ids": torch.tensor([[-1, NOUN, DET, NOUN, -1]]),
             "special_tokens_mask": torch.tensor([[True, False, False, False, True]]),
             "word_ids": torch.tensor([[-1, 0, 1, 2, -1]])}
    selection = s.select(batch, 0.34, torch.Generator().manual_seed(0))  # a budget of round(3 x 0.34) = 1 word
    assert int(selection.predicted.sum()) == 1
    labelled = {**batch, "input_ids": ids.clone(), "labels": torch.tensor([[-100, 5, 6, 7, -100]])}
    s.observe(labelled, torch.tensor([[0.0, 2.0, 1 / 3, 3.0, 0.0]], dtype=torch.float64))
    assert s.state_dict()["classes"]["DET"]["loss"] == 1 / 3  # kept in double precision
    values = s.log_values()
    assert values == {"realized_ratio": 0.33333, "pos_loss/NOUN": 2.5, "pos_loss/DET": 0.33333}
    assert s.log_values() == {"realized_ratio": 0.33333, "pos_loss/NOUN": 2.5, "pos_loss/DET": 0.33333}


def test_state_dict_names_its_momentum_and_ignores_unknown_classes_on_load():
    s = PosWeightedMasking(momentum=0.99)
    state = s.state_dict()
    assert state["momentum"] == 0.99 and set(state) == {"momentum", "classes"}
    assert list(state["classes"]) == list(UPOS_TAGS)
    # a class this version does not know (written by another version) comes first: the rest still loads
    newer = {"momentum": 0.99, "classes": {"FUTURE": {"loss": 9.0, "updates": 9},
                                           "NOUN": {"loss": 4.5, "updates": 3}, "DET": {"loss": 0.5, "updates": 2}}}
    restored = PosWeightedMasking(momentum=0.99)
    restored.load_state_dict(json.loads(json.dumps(newer)))
    assert restored.loss_ema[NOUN].item() == 4.5 and restored.updates[NOUN].item() == 3
    assert restored.loss_ema[DET].item() == 0.5 and restored.updates[DET].item() == 2
    assert int(restored.updates.sum()) == 5
    with pytest.raises(ValueError) as info:
        restored.load_state_dict({"momentum": 0.99})
    assert str(info.value) == "pos_weighted state must hold a 'classes' mapping"


def _sum_in_process(rank, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        sums = torch.tensor([1.0, 2.0, 0.0]) * (rank + 1)
        counts = torch.tensor([1.0, 0.0, 3.0]) + rank
        total_sums, total_counts = all_processes_sum(sums.double(), counts.double())
        s = PosWeightedMasking(**SEEN)
        batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "pos_ids": torch.tensor([[-1, NOUN, DET, -1]]),
                 "labels": torch.tensor([[-100, 5, 6 if rank == 0 else -100, -100]])}
        s.observe(batch, torch.tensor([[0.0, 2.0 + 4.0 * rank, 1.0, 0.0]]))
        result = {"sums": total_sums.tolist(), "counts": total_counts.tolist(), "device": str(total_sums.device),
                  "dtype": str(total_sums.dtype), "state": s.state_dict()["classes"]}
        (out_dir / f"{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_all_processes_sum_adds_sums_and_counts_over_two_processes(tmp_path):
    import torch.multiprocessing as mp

    sums, counts = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    alone = all_processes_sum(sums, counts)  # a single process: the tensors themselves
    assert alone[0] is sums and alone[1] is counts
    mp.start_processes(_sum_in_process, args=(str(tmp_path / "init"), tmp_path), nprocs=2, join=True,
                       start_method="fork")
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert results[0] == results[1]
    assert results[0]["sums"] == [3.0, 6.0, 0.0] and results[0]["counts"] == [3.0, 1.0, 7.0]
    assert results[0]["device"] == "cpu" and results[0]["dtype"] == "torch.float64"
    # NOUN: losses 2 (rank 0) and 6 (rank 1), mean 4; DET only on rank 0
    assert results[0]["state"]["NOUN"] == {"loss": 4.0, "updates": 1}
    assert results[0]["state"]["DET"] == {"loss": 1.0, "updates": 1}


def test_certain_words_are_accepted_on_the_first_pass():
    weights = torch.tensor([[1.0, 1.0, 0.5, 0.0, 1.0]] * 200, dtype=torch.float64)
    keys = acceptance_order(weights, torch.Generator().manual_seed(0))
    assert (keys[:, [0, 1, 4]] < 1.0).all() and (keys[:, [0, 1, 4]] >= 0.0).all()
    assert torch.isinf(keys[:, 3]).all() and (keys[:, 2] >= 1.0).any()


def feedback_selection_batch():
    ids = torch.tensor([[2, 5, 6, 7, 8, 9, 10, 3]] * 4)
    return {"input_ids": ids, "pos_ids": torch.tensor([[-1, NOUN, DET, VERB, NOUN, DET, VERB, -1]] * 4),
            "special_tokens_mask": ids < 4, "word_ids": torch.tensor([[-1, 0, 1, 2, 3, 4, 5, -1]] * 4)}


def test_proportional_sampling_draws_words_by_weight_without_replacement():
    s = PosWeightedMasking(sampling="proportional", **SEEN)
    batch = feedback_selection_batch()
    s.loss_ema[[NOUN, DET, VERB]] = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
    s.updates[[NOUN, DET, VERB]] = 1
    for seed in range(3):
        got = s.select(batch, 0.5, torch.Generator().manual_seed(seed))
        weights = s.class_weights().float()[batch["pos_ids"].clamp(min=0)]
        units = word_unit_ids(batch)
        expected = select_units(units, ~batch["special_tokens_mask"], 0.5, torch.Generator().manual_seed(seed),
                                weights=weights)
        assert torch.equal(got.predicted, expected.predicted) and torch.equal(got.units, expected.units)


def test_a_pickled_strategy_leaves_its_pipeline_and_last_batch_behind():
    s = PosWeightedMasking(**SEEN)
    batch = feedback_selection_batch()
    s.select(batch, 0.5, torch.Generator().manual_seed(0))
    s._nlp = lambda text: text  # stands in for a loaded spaCy pipeline (which is not picklable either)
    clone = pickle.loads(pickle.dumps(s))
    assert clone._nlp is None
    # the clone has no selection of its own: its feedback comes from the labels
    labels = torch.where(batch["special_tokens_mask"], -100, batch["input_ids"])
    clone.observe({**batch, "labels": labels}, torch.full(labels.shape, 2.0))
    assert clone.updates[NOUN].item() == 1 and clone.loss_ema[VERB].item() == 2.0


def test_parameters_are_checked_with_messages_naming_them():
    for kwargs, message in [
        ({"momentum": 1.0}, "masking.momentum must be in [0, 1), got 1.0"),
        ({"momentum": -0.1}, "masking.momentum must be in [0, 1), got -0.1"),
        ({"spacy_batch_size": 0}, "masking.spacy_batch_size must be >= 1"),
        ({"temperature": 0.0}, "masking.temperature must be positive, got 0.0"),
        ({"sampling": "greedy"}, "masking.sampling must be one of bernoulli, proportional, got 'greedy'"),
        ({"statistics": "all"}, "masking.statistics must be one of released, seen, got 'all'"),
    ]:
        with pytest.raises(ValueError) as info:
            PosWeightedMasking(**kwargs)
        assert str(info.value) == message
    s = PosWeightedMasking(momentum=0.0, spacy_batch_size="1", temperature="0.5", language="auto")
    assert (s.momentum, s.spacy_batch_size, s.temperature, s.spacy_model) == (0.0, 1, 0.5, None)
    assert (s.sampling, s.statistics) == ("bernoulli", "released")
    defaults = PosWeightedMasking()
    assert (defaults.momentum, defaults.spacy_batch_size, defaults.temperature) == (0.999, 256, 2.0)
    assert defaults.spacy_model == default_spacy_model("en")
    assert PosWeightedMasking(spacy_model=defaults.spacy_model).spacy_model == defaults.spacy_model


def test_a_marker_token_takes_the_tag_of_its_words_tagged_token_even_the_first_tag():
    # " big": the first sub-token covers only the space, the second the word, tagged ADJ (id 0)
    chars = [-1, POS_INDEX["ADJ"], POS_INDEX["ADJ"], POS_INDEX["ADJ"]]
    tags = align_pos_to_tokens(" big", chars, [None, 0, 0, None], [(0, 0), (0, 1), (1, 4), (0, 0)])
    assert tags == [-1, POS_INDEX["ADJ"], POS_INDEX["ADJ"], -1]
