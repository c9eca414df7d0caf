"""The columnar pair search: every stored value equal, to the last bit, to the per-record path's
(``tests.search.records_oracle``), whatever the ties, the budgets, the order of the bases, the
order inside a tie or where the bases' rows come from."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from search.engine import Zoo, sort_saver
from search.kernels import descending_order
from search.pairs import (
    COLUMNS,
    BaseSide,
    PairColumns,
    SplitZoo,
    calibration_mask,
    criteria_of,
    pair_columns,
    pair_rows,
)
from search.synthetic import make_zoo
from tests.factories import engine_zoo, small_zoo
from tests.search.records_oracle import reference_rows

BUDGET_SETS = ([0, 50, 100, 200, 500], [200, 0, 17], [0], [1000, 3, 3])


def rounded_zoo(num_models: int, num_samples: int, seed: int, decimals: int) -> Zoo:
    """A synthetic zoo whose confidences are rounded to ``decimals``: many equal confidences."""
    return engine_zoo(
        make_zoo(num_models, num_samples, num_classes=10, seed=seed, decimals=decimals)
    )


def mask_of(num_samples: int) -> np.ndarray:
    return calibration_mask([f"sample{i}" for i in range(num_samples)])


ZOOS = {
    "two decimals": lambda: (engine_zoo(small_zoo(6, 400, seed=3)), mask_of(400)),
    "one decimal (heavy ties)": lambda: (rounded_zoo(5, 300, seed=4, decimals=1), mask_of(300)),
    "four decimals": lambda: (rounded_zoo(7, 2000, seed=5, decimals=4), mask_of(2000)),
    "tiny, calibration all True": lambda: (rounded_zoo(4, 6, seed=6, decimals=2), np.ones(6, bool)),
    "tiny, calibration all False": lambda: (rounded_zoo(4, 5, 7, decimals=1), np.zeros(5, bool)),
    "one sample": lambda: (rounded_zoo(3, 1, seed=8, decimals=2), mask_of(1)),
}


def bits(value):
    """A value as its exact bits (floats) or itself: equal bits, not merely equal numbers."""
    return ("float", struct.pack("<d", value)) if isinstance(value, float) else value


def assert_same_rows(rows: list[dict], expected: list[dict]) -> None:
    assert len(rows) == len(expected)
    for row, reference in zip(rows, expected, strict=True):
        assert list(row) == list(reference)  # same keys, same order
        assert {k: bits(v) for k, v in row.items()} == {k: bits(v) for k, v in reference.items()}


def columns_bits(columns: PairColumns) -> dict[str, bytes]:
    return {name: getattr(columns, name).tobytes() for name in COLUMNS}


def rows_of(zoos: SplitZoo, saver: int, bases: list[int], budgets: list[int]) -> list[dict]:
    columns = pair_columns(zoos.saver_side(saver), zoos.base_side(bases), budgets)
    base_ids = [1000 + b for b in bases]
    return pair_rows(
        columns, base_ids, 1000 + saver, 7, "max_probability", None, criteria_of(budgets)
    )


def shuffled_tie_orders(zoo: Zoo, seed: int) -> np.ndarray:
    """Each model's samples most confident first, ties in a random order."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            np.lexsort((rng.random(zoo.num_samples), -zoo.confidence[m])).astype(np.uint32)
            for m in range(len(zoo.names))
        ]
    )


@pytest.mark.parametrize("budgets", BUDGET_SETS)
@pytest.mark.parametrize("name", ZOOS)
def test_every_stored_value_equals_the_per_record_path(name, budgets):
    zoo, calibration = ZOOS[name]()
    zoos = SplitZoo(zoo, calibration)
    rng = np.random.default_rng(0)
    models = len(zoo.names)
    for saver in range(models):
        bases = [int(b) for b in rng.permutation(models) if b != saver]  # any order, any cost
        expected = reference_rows(zoo, calibration, saver, bases, budgets)
        assert_same_rows(rows_of(zoos, saver, bases, budgets), expected)


def test_a_zoo_grown_by_adding_models_gives_the_rows_of_one_loaded_at_once():
    zoo, calibration = ZOOS["two decimals"]()
    first = Zoo(zoo.names[:2], zoo.costs[:2], zoo.correct[:2], zoo.confidence[:2])
    rest = Zoo(zoo.names[2:], zoo.costs[2:], zoo.correct[2:], zoo.confidence[2:])
    grown = SplitZoo(first, calibration)
    grown.order("calibration", 0)  # cached before the zoo grows
    grown.add(rest)
    for saver in (0, 4):
        bases = [b for b in range(6) if b != saver]
        expected = reference_rows(zoo, calibration, saver, bases, [0, 100])
        assert_same_rows(rows_of(grown, saver, bases, [0, 100]), expected)


@pytest.mark.parametrize("name", ["one decimal (heavy ties)", "two decimals"])
def test_the_order_inside_a_tie_changes_nothing(name):
    zoo, calibration = ZOOS[name]()
    sorted_here = SplitZoo(zoo, calibration)
    models = len(zoo.names)
    for seed in range(3):
        orders = shuffled_tie_orders(zoo, seed)
        given = SplitZoo(zoo, calibration, orders=orders)
        assert np.array_equal(given.order("full", 1).order, orders[1])  # used, not re-sorted
        for saver in range(models):
            bases = [b for b in range(models) if b != saver]
            budgets = [0, 50, 200]
            assert columns_bits(
                pair_columns(given.saver_side(saver), given.base_side(bases), budgets)
            ) == columns_bits(
                pair_columns(sorted_here.saver_side(saver), sorted_here.base_side(bases), budgets)
            )


def test_given_orders_must_match_the_zoo():
    zoo, calibration = ZOOS["two decimals"]()
    with pytest.raises(ValueError, match="orders"):
        SplitZoo(zoo, calibration, orders=shuffled_tie_orders(zoo, 0)[:, :-1])


def test_orders_given_when_models_are_added_are_used():
    zoo, calibration = ZOOS["one decimal (heavy ties)"]()
    orders = shuffled_tie_orders(zoo, 1)
    first = Zoo(zoo.names[:2], zoo.costs[:2], zoo.correct[:2], zoo.confidence[:2])
    rest = Zoo(zoo.names[2:], zoo.costs[2:], zoo.correct[2:], zoo.confidence[2:])
    zoos = SplitZoo(first, calibration, orders=orders[:2])
    zoos.add(rest, orders=orders[2:])
    assert np.array_equal(zoos.order("full", 3).order, orders[3])


@pytest.mark.parametrize("name", ZOOS)
def test_a_half_order_derived_from_the_full_order_is_a_sort_of_the_half(name):
    zoo, calibration = ZOOS[name]()
    zoos = SplitZoo(zoo, calibration)
    for part in ("calibration", "evaluation"):
        half = zoos.part(part)
        for saver in range(len(zoo.names)):
            derived, fresh = zoos.order(part, saver), sort_saver(half, saver)
            assert sorted(derived.order.tolist()) == list(range(half.num_samples))
            assert derived.order.dtype == np.uint32
            assert np.array_equal(half.confidence[saver, derived.order], fresh.sorted_confidence)
            assert np.array_equal(derived.sorted_confidence, fresh.sorted_confidence)
            assert np.array_equal(derived.boundary, fresh.boundary)
            assert np.array_equal(derived.paper_grid_exits, fresh.paper_grid_exits)
            # The saver's correct answers agree at every real exit set (inside a tie they may
            # come in another order).
            at_boundaries = derived.boundary[1:]
            assert np.array_equal(
                np.cumsum(derived.saver_correct_sorted)[at_boundaries],
                np.cumsum(fresh.saver_correct_sorted)[at_boundaries],
            )


def test_bases_stacked_from_a_few_rows_give_the_columns_of_the_whole_zoo():
    """What a remote task does: the bases' rows alone (rows = arange), stacked from one-row
    sides, give the same columns as the whole zoo's matrices."""
    zoo, calibration = ZOOS["four decimals"]()
    zoos = SplitZoo(zoo, calibration)
    bases = [6, 2, 4]
    stacked = BaseSide.stacked([zoos.base_side([b], compact=True) for b in bases])
    assert np.array_equal(stacked.rows, np.arange(3))
    assert stacked.correct.shape == (3, zoo.num_samples)
    shared = zoos.base_side(bases)
    assert shared.correct is zoos.full.correct  # no copy in process
    saver = zoos.saver_side(1)
    assert columns_bits(pair_columns(saver, stacked, [0, 100])) == columns_bits(
        pair_columns(saver, shared, [0, 100])
    )
    mixed = BaseSide.stacked([zoos.base_side([6, 2]), zoos.base_side([4], compact=True)])
    assert columns_bits(pair_columns(saver, mixed, [0, 100])) == columns_bits(
        pair_columns(saver, shared, [0, 100])
    )


def test_no_base_gives_empty_columns_and_no_rows():
    zoo, calibration = ZOOS["two decimals"]()
    zoos = SplitZoo(zoo, calibration)
    columns = pair_columns(zoos.saver_side(0), zoos.base_side([]), [0, 100])
    assert all(getattr(columns, name).shape == (0, 3) for name in COLUMNS)
    assert pair_rows(columns, [], 1, 7, "max_probability", None, criteria_of([0, 100])) == []


@pytest.mark.parametrize(
    "confidence",
    [
        np.random.default_rng(1).random(5000),
        np.round(np.random.default_rng(2).random(5000), 2),  # heavy ties
        np.array([0.0, -0.0, 1.0, 0.5, -1.0, 1e-40, -3e-41, 0.5, np.inf, -np.inf]),
        np.array([0.25]),
        np.array([]),
    ],
)
def test_the_radix_order_sorts_as_argsort_does_up_to_ties(confidence):
    confidence = confidence.astype(np.float32)
    order = descending_order(confidence)
    assert order.dtype == np.uint32
    assert sorted(order.tolist()) == list(range(len(confidence)))
    assert np.array_equal(confidence[order], confidence[np.argsort(-confidence)])
