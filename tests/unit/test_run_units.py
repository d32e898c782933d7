"""``run_unit_ids`` against a plain-Python reference on random id rows."""

import torch

from mlmkit.masking.base import run_unit_ids


def reference(row: list[int]) -> list[int]:
    out, first = [], -1
    for i, value in enumerate(row):
        if value < 0:
            first = -1
        elif i == 0 or row[i - 1] != value:
            first = i
        out.append(first if value >= 0 else -1)
    return out


def test_first_position_of_each_run_on_random_rows():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        ids = torch.randint(-1, 4, (3, 17), generator=generator)
        expected = [reference(row) for row in ids.tolist()]
        assert run_unit_ids(ids).tolist() == expected


def test_equal_ids_apart_are_two_runs():
    assert run_unit_ids(torch.tensor([[5, 5, -1, 5, 2, 2, 5]])).tolist() == [[0, 0, -1, 3, 4, 4, 6]]
