"""Pair results of a zoo: every criterion, in-sample and held-out, as columns of numbers.

``pair_columns`` takes what one saver brings (``SaverSide``) and what its bases bring
(``BaseSide``): plain arrays, so the same function serves the in-process search over a whole
zoo and a remote task holding a few models' rows. Each pair is one walk of the saver's order
(``search.kernels.saver_pairs``); its numbers are those the per-record ``OperatingPoint`` gives,
to the last bit.

Held-out honesty: thresholds picked on the same samples they are scored on are optimistic. Samples
are split once by a hash of their key (``calibration_mask``); each pair's threshold is picked on the
calibration samples and scored on the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from search.criteria import BUDGET, PAPER
from search.engine import (
    PAPER_GRID,
    PAPER_GRID_FLOAT32,
    SaverOrder,
    Zoo,
    min_correct_diff,
    saver_order_from,
    threshold_for_exits,
)

#: The three sample sets of a split zoo: every sample, the calibration half, the evaluation half.
PARTS = ("full", "calibration", "evaluation")


def calibration_mask(keys: Iterable[str], fraction: float = 0.5) -> np.ndarray:
    """True for samples whose key hashes below ``fraction``: the same split on every machine."""
    scale = float(2**64)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / scale
            < fraction
            for key in keys
        ],
        dtype=bool,
    )


class _Rows:
    """Per-model rows of per-sample arrays with spare capacity.

    Adding a model writes only its own row (the buffers double when full), so a long-lived zoo
    grows without copying the whole zoo each time. Views of the first ``size`` rows stay valid.
    """

    def __init__(
        self,
        correct: np.ndarray,
        confidence: np.ndarray,
        buffers: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        # The first rows are taken as they are, not copied: a zoo loaded whole (hundreds of MB)
        # is used where it was read. ``buffers``: the larger arrays whose first rows they are, so
        # that the first models added later fill spare rows instead of copying the zoo.
        self.size = len(correct)
        self._correct, self._confidence = buffers or (correct, confidence)
        if (
            buffers
            and len(correct)
            and not (
                np.may_share_memory(buffers[0], correct)
                and np.may_share_memory(buffers[1], confidence)
            )
        ):
            raise ValueError("the zoo's arrays are not the first rows of its buffers")
        counts = np.ascontiguousarray(correct).sum(axis=1, dtype=np.int64)
        self._counts = _grown(counts, len(self._correct), self.size)

    def append(self, correct: np.ndarray, confidence: np.ndarray) -> None:
        needed = self.size + len(correct)
        if needed > len(self._correct):
            # 25% headroom from the start: the first models added after a load copy nothing.
            capacity = max(8, needed + needed // 4, 2 * len(self._correct))
            self._correct = _grown(self._correct, capacity, self.size)
            self._confidence = _grown(self._confidence, capacity, self.size)
            self._counts = _grown(self._counts, capacity, self.size)
        self._correct[self.size : needed] = correct
        self._confidence[self.size : needed] = confidence
        self._counts[self.size : needed] = correct.sum(axis=1, dtype=np.int64)
        self.size = needed

    def zoo(self, names: tuple[str, ...], costs: np.ndarray) -> Zoo:
        n = self.size
        return Zoo(names, costs, self._correct[:n], self._confidence[:n], self._counts[:n])


def _half_counts(correct: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Each row's correct samples among ``columns`` (bool, one per sample)."""
    from search.kernels import masked_counts  # numba: compiled on first use

    return masked_counts(np.ascontiguousarray(correct, dtype=np.uint8), columns.view(np.uint8))


def _grown(array: np.ndarray, capacity: int, used: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


class SplitZoo:
    """A zoo with its calibration and evaluation halves, and cached saver orders for all three.

    Models can be added (``add``); rows keep their index, so cached saver orders stay valid. Each
    saver is sorted once, on every sample; a half's order is that order restricted to the half's
    samples (no second sort). ``orders``, when given, are those full orders already computed
    (uint32 (M, N), each row ``argsort(-confidence)`` with ties in any order): nothing is sorted.
    """

    def __init__(
        self,
        zoo: Zoo,
        calibration: np.ndarray,
        orders: np.ndarray | None = None,
        buffers: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        # Too few samples to split: both halves are the whole set (numbers stay in-sample).
        self._columns = (
            {"calibration": calibration, "evaluation": ~calibration}
            if calibration.any() and not calibration.all()
            else {}
        )
        # A sample's index inside its half: where a half's order finds it.
        self._half_index = {
            part: np.cumsum(columns, dtype=np.int64) - 1 for part, columns in self._columns.items()
        }
        self._names = zoo.names
        self._costs = zoo.costs
        self._rows = {"full": _Rows(zoo.correct, zoo.confidence, buffers)}
        # The search needs of a half only each model's correct count; a half's own matrices are
        # made when asked for (``part``), not with every load.
        self._half_counts = {
            part: _half_counts(zoo.correct, columns) for part, columns in self._columns.items()
        }
        self._views: dict[str, Zoo] = {}
        self._orders: dict[tuple[str, int], SaverOrder] = {}
        self._given_orders: dict[int, np.ndarray] = {}
        self._keep_orders(0, zoo, orders)

    def add(self, zoo: Zoo, orders: np.ndarray | None = None) -> None:
        """Append the models of ``zoo`` (same samples) after the existing ones."""
        self._keep_orders(len(self._names), zoo, orders)
        self._names = self._names + zoo.names
        self._costs = np.concatenate([self._costs, zoo.costs])
        self._rows["full"].append(zoo.correct, zoo.confidence)
        for part, columns in self._columns.items():
            counts = _half_counts(zoo.correct, columns)
            self._half_counts[part] = np.concatenate([self._half_counts[part], counts])
            if part in self._rows:
                self._rows[part].append(zoo.correct[:, columns], zoo.confidence[:, columns])
        self._views.clear()

    def _keep_orders(self, first_row: int, zoo: Zoo, orders: np.ndarray | None) -> None:
        if orders is None:
            return
        if orders.shape != zoo.confidence.shape:
            raise ValueError(
                f"orders {orders.shape} do not match the zoo's confidences {zoo.confidence.shape}"
            )
        for row, order in enumerate(orders, start=first_row):
            self._given_orders[row] = order

    def part(self, name: str) -> Zoo:
        """The zoo on one part's samples (the whole zoo where it is not split)."""
        if name not in self._views:
            if name in self._columns and name not in self._rows:
                full, columns = self.full, self._columns[name]
                self._rows[name] = _Rows(full.correct[:, columns], full.confidence[:, columns])
            rows = self._rows.get(name, self._rows["full"])
            self._views[name] = rows.zoo(self._names, self._costs)
        return self._views[name]

    def correct_counts(self, part: str) -> np.ndarray:
        """Each model's correct samples among the part's."""
        if part in self._half_counts:
            return self._half_counts[part]
        return self.full.correct_counts

    def num_samples(self, part: str) -> int:
        columns = self._columns.get(part)
        return self.full.num_samples if columns is None else int(columns.sum())

    @property
    def full(self) -> Zoo:
        return self.part("full")

    @property
    def calibration(self) -> Zoo:
        return self.part("calibration")

    @property
    def evaluation(self) -> Zoo:
        return self.part("evaluation")

    def order(self, part: str, saver: int) -> SaverOrder:
        key = (part if part in self._columns else "full", saver)
        if key not in self._orders:
            self._orders[key] = self._sorted(key[0], saver)
        return self._orders[key]

    def _sorted(self, part: str, saver: int) -> SaverOrder:
        if part == "full":
            zoo = self.full
            order = self._given_orders.pop(saver, None)
            return full_order(zoo.confidence[saver], zoo.correct[saver], order)
        return half_order_of(self.order("full", saver), self._columns[part], self._half_index[part])

    def saver_side(self, saver: int) -> SaverSide:
        """What ``saver`` brings to each of its pairs (its orders kept for the next update)."""
        return saver_side_of(
            self.order("full", saver),
            self.order("calibration", saver),
            {part: int(self.correct_counts(part)[saver]) for part in PARTS},
            float(self._costs[saver]),
            self._columns.get("calibration"),
        )

    def saver_inputs(self, savers: Sequence[int]) -> SaverInputs:
        """What ``prepare_savers`` makes the savers' sides of elsewhere (a Ray task), without
        ordering them here: their rows, and their stored orders where the zoo was given them."""
        zoo = self.full
        rows = np.asarray(savers, dtype=np.int64)
        return SaverInputs(
            confidence=zoo.confidence[rows],
            correct=zoo.correct[rows],
            orders=[self._given_orders.get(int(row)) for row in rows],
            correct_counts={part: self.correct_counts(part)[rows] for part in PARTS},
            costs=self._costs[rows],
        )

    def halves(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The calibration mask and each sample's index in the calibration half (None, None
        when unsplit): what ``prepare_savers`` needs of the zoo's split."""
        if not self._columns:
            return None, None
        return self._columns["calibration"], self._half_index["calibration"]

    def base_side(self, rows: Sequence[int] | np.ndarray, compact: bool = False) -> BaseSide:
        """The zoo's models at ``rows`` as bases: sharing the zoo's matrices (no copy), or with
        ``compact`` holding a copy of just their rows (what is sent to another process)."""
        rows = np.asarray(rows, dtype=np.int64)
        correct = self.full.correct
        return BaseSide(
            rows=np.arange(len(rows), dtype=np.int64) if compact else rows,
            correct=correct[rows] if compact else correct,
            correct_counts={part: self.correct_counts(part)[rows] for part in PARTS},
            costs=self._costs[rows],
        )


def full_order(
    confidence: np.ndarray, correct: np.ndarray, order: np.ndarray | None = None
) -> SaverOrder:
    """A saver's samples by descending confidence; ``order`` when it is known already."""
    if order is None:
        from search.kernels import descending_order  # numba: compiled on first use

        order = descending_order(confidence)
    return saver_order_from(confidence, correct, np.ascontiguousarray(order, dtype=np.uint32))


def half_order_of(full: SaverOrder, columns: np.ndarray, half_index: np.ndarray) -> SaverOrder:
    """The order on one half's samples (``columns``; ``half_index``: each sample's index in the
    half). The full order restricted to the half's samples is the half's order: everything the
    half needs is read off the full order, without sorting or searching again."""
    from search.kernels import half_order

    order, sorted_confidence, saver_correct, boundary, seen = half_order(
        full.order,
        full.sorted_confidence,
        full.saver_correct_sorted,
        columns.view(np.uint8),
        half_index,
    )
    return SaverOrder(
        order=order,
        sorted_confidence=sorted_confidence,
        boundary=boundary,
        saver_correct_sorted=saver_correct,
        # A grid threshold's exits in the half: the half's samples among its full exits.
        paper_grid_exits=seen[full.paper_grid_exits],
    )


def saver_side_of(
    full: SaverOrder,
    calibration: SaverOrder,
    correct_counts: dict[str, int],
    cost: float,
    calibration_mask: np.ndarray | None,
) -> SaverSide:
    """A saver's side from its orders (``calibration_mask`` None: the zoo is not split)."""
    return SaverSide(
        orders={"full": full, "calibration": calibration},
        correct_counts=correct_counts,
        cost=cost,
        calibration_sorted=(
            calibration_mask[full.order].view(np.uint8)
            if calibration_mask is not None
            else np.ones(len(full.order), dtype=np.uint8)
        ),
        split=calibration_mask is not None,
    )


@dataclass(frozen=True)
class SaverInputs:
    """Some savers' rows, from which ``prepare_savers`` makes their sides (in another process)."""

    confidence: np.ndarray  # float32 (k, N)
    correct: np.ndarray  # uint8 (k, N)
    orders: list[np.ndarray | None]  # each saver's stored full order, where known
    correct_counts: dict[str, np.ndarray]  # int64 (k,) per part
    costs: np.ndarray  # float64 (k,)


def prepare_savers(
    inputs: SaverInputs, calibration_mask: np.ndarray | None, half_index: np.ndarray | None
) -> list[SaverSide]:
    """The sides of the savers of ``inputs``, as ``SplitZoo.saver_side`` makes them."""
    sides = []
    for i, given in enumerate(inputs.orders):
        full = full_order(inputs.confidence[i], inputs.correct[i], given)
        half = full
        if calibration_mask is not None and half_index is not None:
            half = half_order_of(full, calibration_mask, half_index)
        counts = {part: int(c[i]) for part, c in inputs.correct_counts.items()}
        sides.append(saver_side_of(full, half, counts, float(inputs.costs[i]), calibration_mask))
    return sides


@dataclass(frozen=True)
class SaverSide:
    """One saver, as every pair it is in needs it: its order on every sample and on the
    calibration half, which of its ordered samples are calibration samples (the evaluation half
    is the rest: its order is the full order without them), its correct count on each part
    (``PARTS``) and its cost. Plain arrays: a remote task can receive it as it is."""

    orders: dict[str, SaverOrder]  # "full" and "calibration"
    correct_counts: dict[str, int]
    cost: float
    #: uint8 (N,): 1 where the full order's sample is a calibration sample (all 1 when unsplit).
    calibration_sorted: np.ndarray
    split: bool  # False: too few samples, both halves are every sample


@dataclass(frozen=True)
class BaseSide:
    """B bases: a correctness matrix (uint8, rows = models, columns = every sample) and the
    bases' rows in it, their correct counts per part (``PARTS``) and their costs. A search over a
    whole zoo passes the zoo's matrix; a task holding a few models' rows passes just those, with
    ``rows = arange(B)``. The halves need no matrix of their own: a saver's order says which of
    its samples are calibration samples."""

    rows: np.ndarray  # int64 (B,)
    correct: np.ndarray  # uint8 (M, N)
    correct_counts: dict[str, np.ndarray]  # int64 (B,) per part
    costs: np.ndarray  # float64 (B,)

    @classmethod
    def stacked(cls, sides: Sequence[BaseSide]) -> BaseSide:
        """The bases of ``sides``, in order, as one side holding just their rows."""
        return cls(
            rows=np.arange(sum(len(side.rows) for side in sides), dtype=np.int64),
            correct=np.concatenate([side.correct[side.rows] for side in sides]),
            correct_counts={
                part: np.concatenate([side.correct_counts[part] for side in sides])
                for part in PARTS
            },
            costs=np.concatenate([side.costs for side in sides]),
        )

    def select(self, positions: Sequence[int] | np.ndarray) -> BaseSide:
        """The bases at ``positions`` of this side, sharing its matrix (no copy of a row)."""
        positions = np.asarray(positions, dtype=np.int64)
        return BaseSide(
            rows=self.rows[positions],
            correct=self.correct,
            correct_counts={
                part: counts[positions] for part, counts in self.correct_counts.items()
            },
            costs=self.costs[positions],
        )


#: The stored values of a pair row, in the order of the ``pair_results`` columns.
COLUMNS = (
    "threshold",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    "holdout_threshold",
    "holdout_calibration_accuracy",
    "holdout_calibration_saving",
    "holdout_exit_ratio",
    "holdout_accuracy",
    "holdout_base_accuracy",
    "holdout_saving",
)


@dataclass(frozen=True)
class PairColumns:
    """Every stored value of one saver's pairs: float64 arrays (B bases, C criteria), criteria
    being the budgets as given, then the paper's."""

    threshold: np.ndarray
    exit_ratio: np.ndarray
    accuracy: np.ndarray
    base_accuracy: np.ndarray
    relative_cost: np.ndarray
    saving: np.ndarray
    holdout_threshold: np.ndarray
    holdout_calibration_accuracy: np.ndarray
    holdout_calibration_saving: np.ndarray
    holdout_exit_ratio: np.ndarray
    holdout_accuracy: np.ndarray
    holdout_base_accuracy: np.ndarray
    holdout_saving: np.ndarray


@dataclass(frozen=True)
class _Scan:
    """A part's operating points per base and criterion (the paper's last): (B, C) arrays."""

    exits: np.ndarray
    diff: np.ndarray
    threshold: np.ndarray


def _ratios(
    exits: np.ndarray, diff: np.ndarray, base_correct: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exit ratio, accuracy and base accuracy, as ``OperatingPoint`` divides them."""
    base_correct = np.broadcast_to(base_correct[:, None], exits.shape)
    return exits / n, (base_correct + diff) / n, base_correct / n


def _saving(exit_ratio: np.ndarray, cost_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative cost and saving as ``OperatingPoint`` computes them."""
    relative_cost = cost_ratio[:, None] + (1.0 - exit_ratio)
    return relative_cost, 1.0 - relative_cost


def _paper_saving(exits: np.ndarray, n: int, cost_ratio: np.ndarray) -> np.ndarray:
    """The paper column's saving as ``PaperPoint`` computes it (its ΔC, negated)."""
    exit_ratio = exits / n
    pass_ratio = (n - exits) / n
    return -(exit_ratio * (cost_ratio - 1) + pass_ratio * cost_ratio)


@dataclass(frozen=True)
class _Counts:
    """Exit counts and D of every base and criterion: in-sample (``full``), on the calibration
    half (``calibration``, which picks ``calibration.threshold``) and on the evaluation half at
    those thresholds."""

    full: _Scan
    calibration: _Scan
    evaluation_exits: np.ndarray
    evaluation_diff: np.ndarray


def _counts(saver: SaverSide, bases: BaseSide, budgets_cp: Sequence[int]) -> _Counts:
    """The exit counts and D behind every value of ``pair_columns``."""
    full, calibration = saver.orders["full"], saver.orders["calibration"]
    n, n_calibration = len(full.order), len(calibration.order)
    # Loosest budget first: a stricter budget's answer is never above a looser one's.
    loosest_first = np.argsort(-np.asarray(budgets_cp, dtype=np.int64), kind="stable")
    drops = [budgets_cp[j] / 100 for j in loosest_first]
    min_diffs = np.array([min_correct_diff(d, n) for d in drops], dtype=np.int64)
    calibration_min_diffs = np.array(
        [min_correct_diff(d, n_calibration) for d in drops], dtype=np.int64
    )
    grid_exits, grid_first = np.unique(full.paper_grid_exits, return_index=True)
    calib_grid_exits, calib_grid_first = np.unique(calibration.paper_grid_exits, return_index=True)
    in_calibration = saver.calibration_sorted
    from search.kernels import saver_pairs, saver_walk_arrays  # numba: compiled on first use

    (
        saver_prefix,
        saver_calibration_prefix,
        calibration_prefix,
        calibration_position,
        boundary_below,
        calibration_boundary_below,
    ) = saver_walk_arrays(
        full.saver_correct_sorted, in_calibration, full.boundary, calibration.boundary
    )
    calibration_confidence = calibration.sorted_confidence
    lowest = float(np.nextafter(calibration_confidence[-1], np.float32(-np.inf)))
    (
        exits,
        diff,
        calib_exits,
        calib_diff,
        match,
        eval_exits,
        eval_diff,
    ) = saver_pairs(
        full.order,
        in_calibration,
        saver_prefix,
        saver_calibration_prefix,
        calibration_prefix,
        boundary_below,
        calibration_boundary_below,
        calibration_position,
        full.sorted_confidence,
        calibration_confidence,
        lowest,
        bases.correct,
        bases.rows,
        min_diffs,
        calibration_min_diffs,
        grid_exits,
        calib_grid_exits,
        np.append(PAPER_GRID_FLOAT32[calib_grid_first], PAPER_GRID_FLOAT32[-1]),
        saver.split,
    )
    # Back to the budgets' given order, the paper's column last.
    columns = np.append(np.argsort(loosest_first), len(budgets_cp))
    exits, diff = exits[:, columns], diff[:, columns]
    calib_exits, calib_diff = calib_exits[:, columns], calib_diff[:, columns]
    eval_exits, eval_diff = eval_exits[:, columns], eval_diff[:, columns]
    # No crossing: the last grid point (its exits are the largest distinct count's).
    last = len(PAPER_GRID) - 1
    grid_index = np.where(match[:, 0] >= 0, grid_first[match[:, 0]], last)
    calib_grid_index = np.where(match[:, 1] >= 0, calib_grid_first[match[:, 1]], last)
    budget = slice(0, len(budgets_cp))
    threshold = np.column_stack(
        [threshold_for_exits(full, exits[:, budget]), PAPER_GRID_FLOAT32[grid_index]]
    )
    calib_threshold = np.column_stack(
        [
            threshold_for_exits(calibration, calib_exits[:, budget]),
            PAPER_GRID_FLOAT32[calib_grid_index],
        ]
    )
    return _Counts(
        _Scan(exits, diff, threshold),
        _Scan(calib_exits, calib_diff, calib_threshold),
        eval_exits,
        eval_diff,
    )


def pair_columns(saver: SaverSide, bases: BaseSide, budgets_cp: Sequence[int]) -> PairColumns:
    """Every stored value of ``saver`` in front of each base, per budget (hundredths of a point,
    in the given order) and then the paper criterion; in-sample on every sample, held out as the
    threshold picked on the calibration half and scored on the evaluation half."""
    counts = _counts(saver, bases, budgets_cp)
    full, calib = counts.full, counts.calibration
    thresholds = calib.threshold
    eval_exits, eval_diff = counts.evaluation_exits, counts.evaluation_diff
    cost_ratio = saver.cost / bases.costs
    n, n_calib = len(saver.orders["full"].order), len(saver.orders["calibration"].order)
    n_eval = n - n_calib if saver.split else n
    exit_ratio, accuracy, base_accuracy = _ratios(
        full.exits, full.diff, bases.correct_counts["full"], n
    )
    relative_cost, saving = _saving(exit_ratio, cost_ratio)
    saving[:, -1] = _paper_saving(full.exits[:, -1], n, cost_ratio)
    calib_exit_ratio, calib_accuracy, _ = _ratios(
        calib.exits, calib.diff, bases.correct_counts["calibration"], n_calib
    )
    _, calib_saving = _saving(calib_exit_ratio, cost_ratio)
    calib_saving[:, -1] = _paper_saving(calib.exits[:, -1], n_calib, cost_ratio)
    eval_exit_ratio, eval_accuracy, eval_base_accuracy = _ratios(
        eval_exits, eval_diff, bases.correct_counts["evaluation"], n_eval
    )
    _, eval_saving = _saving(eval_exit_ratio, cost_ratio)  # a plain point, paper's included
    return PairColumns(
        threshold=full.threshold,
        exit_ratio=exit_ratio,
        accuracy=accuracy,
        base_accuracy=base_accuracy,
        relative_cost=relative_cost,
        saving=saving,
        holdout_threshold=thresholds,
        holdout_calibration_accuracy=calib_accuracy,
        holdout_calibration_saving=calib_saving,
        holdout_exit_ratio=eval_exit_ratio,
        holdout_accuracy=eval_accuracy,
        holdout_base_accuracy=eval_base_accuracy,
        holdout_saving=eval_saving,
    )


def criteria_of(budgets_cp: Sequence[int]) -> list[tuple[str, int]]:
    """The (criterion, max drop in centipoints) of each column of ``pair_columns``."""
    return [(BUDGET, cp) for cp in budgets_cp] + [(PAPER, 0)]


def row_values(columns: PairColumns) -> list[tuple[float, ...]]:
    """The ``COLUMNS`` values of each row of ``columns``: base by base, criterion by criterion."""
    return list(zip(*(getattr(columns, name).ravel().tolist() for name in COLUMNS), strict=True))


def pair_rows(
    columns: PairColumns,
    base_ids: Sequence[int],
    saver_id: int,
    dataset_id: int,
    confidence: str,
    now: object,
    criteria: Sequence[tuple[str, int]],
) -> list[dict]:
    """The ``pair_results`` rows of ``columns`` (``criteria`` as ``criteria_of`` gives them)."""
    keys = (
        "dataset_id",
        "confidence",
        "base_id",
        "saver_id",
        "criterion",
        "max_drop_centipoints",
        *COLUMNS,
        "computed_at",
    )
    values = row_values(columns)
    rows = []
    at = 0
    for base_id in base_ids:
        for criterion, cp in criteria:
            head = (dataset_id, confidence, base_id, saver_id, criterion, cp)
            rows.append(dict(zip(keys, (*head, *values[at], now), strict=True)))
            at += 1
    return rows
