"""Exact saver search: pure functions on numpy arrays.

A *zoo* is the evaluation of M models on the same N labelled samples: per model and sample whether
its top-1 class is right (``correct``) and its top-1 softmax probability (``confidence``), plus one
cost per model. For a pair (base b, saver s) and threshold t, sample i exits at the saver iff
``confidence[s, i] > t``; the base answers the rest.

Sorting a saver's confidences once (descending) turns every threshold into a prefix of that
order: k exits. Walking the order, ``D[k] = #{saver right} - #{base right}`` over the first k
samples is all a pair needs: the pair gets ``base_correct + D[k]`` samples right. Only
"boundaries" are real exit sets (k = 0, k = N, or the k-th and (k+1)-th confidences differ):
ties exit together or not at all.

The hot loops (``search.kernels``) walk each pair once, compiled with numba.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from fractions import Fraction

import numpy as np

#: The paper's threshold grid, scanned from high to low (``numpy.arange(1, 0, -0.001)``).
PAPER_GRID = np.arange(1, 0, -0.001)
#: The grid as the seed code compared it with float32 confidences: NumPy 1's value-based casting
#: turned ``float32_array > numpy.float64(t)`` into a float32 comparison. Reported paper thresholds
#: are these values, so they reproduce their exit sets in either precision.
PAPER_GRID_FLOAT32 = PAPER_GRID.astype(np.float32).astype(np.float64)


@dataclass(frozen=True)
class Zoo:
    """M models evaluated on the same N samples of one dataset."""

    names: tuple[str, ...]
    costs: np.ndarray  # float64 (M,)
    correct: np.ndarray  # uint8 (M, N): 1 where the model's top-1 class equals the label
    confidence: np.ndarray  # float32 (M, N): the model's top-1 softmax probability
    correct_counts: np.ndarray = field(init=False, repr=False)  # int64 (M,)
    #: Precomputed ``correct_counts``; None counts them from ``correct``.
    counts: InitVar[np.ndarray | None] = None

    def __post_init__(self, counts: np.ndarray | None) -> None:
        m = len(self.names)
        if self.correct.shape != self.confidence.shape or self.correct.shape[0] != m:
            raise ValueError(
                f"zoo arrays disagree: {m} names, correct {self.correct.shape}, "
                f"confidence {self.confidence.shape}"
            )
        if len(self.costs) != m:
            raise ValueError(f"zoo has {m} names but {len(self.costs)} costs")
        if counts is None:  # needed by every pair: count once
            counts = self.correct.sum(axis=1, dtype=np.int64)
        object.__setattr__(self, "correct_counts", counts)  # frozen, so setattr

    @classmethod
    def from_predictions(
        cls,
        names: Sequence[str],
        costs: Sequence[float] | np.ndarray,
        predictions: np.ndarray,
        confidence: np.ndarray,
        labels: np.ndarray,
    ) -> Zoo:
        """Build a zoo from top-1 classes (M, N), their probabilities (M, N) and labels (N,)."""
        return cls(
            names=tuple(names),
            costs=np.asarray(costs, dtype=np.float64),
            correct=np.ascontiguousarray(predictions == labels[None, :], dtype=np.uint8),
            confidence=np.ascontiguousarray(confidence, dtype=np.float32),
        )

    @property
    def num_samples(self) -> int:
        return int(self.correct.shape[1])


@dataclass(frozen=True)
class SaverOrder:
    """One saver's samples sorted by confidence, shared by all of its bases."""

    order: np.ndarray  # uint32 (N,): sample indices, most confident first
    sorted_confidence: np.ndarray  # float32 (N,)
    boundary: np.ndarray  # bool (N+1,): boundary[k] iff exactly k exits is a reachable exit set
    saver_correct_sorted: np.ndarray  # int8 (N,)
    paper_grid_exits: np.ndarray  # int64 (len(PAPER_GRID),): exits at each paper grid threshold


def sort_saver(zoo: Zoo, saver: int) -> SaverOrder:
    return saver_order_from(zoo.confidence[saver], zoo.correct[saver], confidence_order(zoo, saver))


def confidence_order(zoo: Zoo, saver: int) -> np.ndarray:
    """The saver's samples, most confident first (uint32; ties in any order)."""
    # Order inside a tie never matters (ties exit together), so the fast unstable sort will do.
    # uint32 indices: numba then needs no negative-index wraparound test in the hot loops.
    return np.argsort(-zoo.confidence[saver]).astype(np.uint32)


def saver_order_from(confidence: np.ndarray, correct: np.ndarray, order: np.ndarray) -> SaverOrder:
    """A saver's ``SaverOrder`` from its confidences, correctness and a most-confident-first
    ``order`` of them (``argsort(-confidence)`` with ties in any order)."""
    sorted_confidence = confidence[order]
    boundary = np.ones(len(order) + 1, dtype=np.bool_)
    boundary[1:-1] = sorted_confidence[:-1] != sorted_confidence[1:]
    return SaverOrder(
        order=order,
        sorted_confidence=sorted_confidence,
        boundary=boundary,
        saver_correct_sorted=correct[order].astype(np.int8),
        paper_grid_exits=_count_above(sorted_confidence, PAPER_GRID_FLOAT32),
    )


def _count_above(sorted_confidence: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ascending = sorted_confidence[::-1].astype(np.float64)  # compared in float64, as numpy does
    above = len(ascending) - np.searchsorted(ascending, np.asarray(thresholds), side="right")
    return above.astype(np.int64)


def exits_above(saver_order: SaverOrder, thresholds: np.ndarray) -> np.ndarray:
    """How many samples have confidence strictly above each threshold (compared in float64)."""
    return _count_above(saver_order.sorted_confidence, thresholds)


def threshold_for_exits(saver_order: SaverOrder, exits: np.ndarray) -> np.ndarray:
    """A threshold t per exit count k such that ``{confidence > t}`` has exactly k members.

    t is the confidence of the most confident sample that stays (with no exit, the largest
    confidence; with every sample exiting, the float32 just below the smallest). Being a float32
    value itself, t reproduces its exit set whether compared in float32 or float64.
    """
    conf = saver_order.sorted_confidence
    n = len(conf)
    k = np.asarray(exits)
    staying = conf[np.clip(k, 0, n - 1)].astype(np.float64)
    lowest = float(np.nextafter(conf[-1], np.float32(-np.inf)))
    return np.where(k >= n, lowest, staying)


@functools.lru_cache(maxsize=1024)
def min_correct_diff(max_drop: float, num_samples: int) -> int:
    """Smallest D a pair may have under an accuracy drop of ``max_drop`` points.

    Feasible iff ``correct >= base_correct - max_drop * N / 100``; D is an integer, so the bound is
    the ceiling of ``-max_drop * N / 100`` (computed in exact rational arithmetic on the decimal).
    """
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0 accuracy points, got {max_drop}")
    allowed = Fraction(str(max_drop)) * num_samples / 100
    return -int(allowed)  # -floor(allowed) == ceil(-allowed)


@dataclass(frozen=True)
class PairScan:
    """Operating points of one saver before many bases (arrays indexed [base] or [base, budget])."""

    saver: int
    bases: np.ndarray  # (B,) zoo rows
    max_drops: tuple[float, ...]
    num_samples: int
    budget_exits: np.ndarray  # (B, J)
    budget_diff: np.ndarray  # (B, J)
    budget_threshold: np.ndarray  # (B, J)
    paper_grid_index: np.ndarray  # (B,)
    paper_exits: np.ndarray  # (B,)
    paper_diff: np.ndarray  # (B,)


def scan_saver(
    zoo: Zoo,
    saver: int,
    bases: Sequence[int] | np.ndarray,
    max_drops: Sequence[float],
    saver_order: SaverOrder | None = None,
) -> PairScan:
    """Budget and paper operating points of ``saver`` in front of each base.

    ``saver_order`` is ``sort_saver(zoo, saver)``; pass it when it is cached.
    """
    saver_order = saver_order or sort_saver(zoo, saver)
    base_rows = np.asarray(bases, dtype=np.int64)
    n = zoo.num_samples
    min_diffs = np.array([min_correct_diff(d, n) for d in max_drops], dtype=np.int64)
    loosest_first = np.argsort(min_diffs, kind="stable")
    grid_exits = saver_order.paper_grid_exits
    distinct_exits, first_grid_index = np.unique(grid_exits, return_index=True)
    from search.kernels import scan_pairs  # numba: imported (and compiled) on first use

    exits, diff, match, paper_diff = scan_pairs(
        saver_order.order,
        saver_order.boundary,
        saver_order.saver_correct_sorted,
        int(zoo.correct_counts[saver]),
        zoo.correct,
        base_rows,
        zoo.correct_counts[base_rows],
        min_diffs[loosest_first],
        distinct_exits,
    )
    given_order = np.argsort(loosest_first)
    exits, diff = exits[:, given_order], diff[:, given_order]
    # No crossing: the last grid point (its exits are the largest distinct count's).
    grid_index = np.where(match >= 0, first_grid_index[match], len(PAPER_GRID) - 1)
    return PairScan(
        saver=saver,
        bases=base_rows,
        max_drops=tuple(max_drops),
        num_samples=n,
        budget_exits=exits,
        budget_diff=diff,
        budget_threshold=threshold_for_exits(saver_order, exits),
        paper_grid_index=grid_index,
        paper_exits=grid_exits[grid_index],
        paper_diff=paper_diff,
    )


def apply_thresholds(
    zoo: Zoo,
    saver: int,
    bases: Sequence[int] | np.ndarray,
    thresholds: np.ndarray,
    saver_order: SaverOrder | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exit counts and D of ``saver`` before each base at given thresholds ``(B, J)``.

    This is how a threshold chosen on one half of the samples is scored on the other half.
    """
    saver_order = saver_order or sort_saver(zoo, saver)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    exits = exits_above(saver_order, thresholds.ravel()).reshape(thresholds.shape)
    from search.kernels import diff_at

    diff = diff_at(
        saver_order.order,
        saver_order.saver_correct_sorted,
        zoo.correct,
        np.asarray(bases, dtype=np.int64),
        exits.astype(np.int64),
    )
    return exits, diff


@dataclass(frozen=True)
class OperatingPoint:
    """A pair at one threshold, with everything the contract asks to report."""

    threshold: float
    exits: int
    correct: int
    base_correct: int
    num_samples: int
    cost_ratio: float  # cost_saver / cost_base

    @property
    def exit_ratio(self) -> float:
        return self.exits / self.num_samples

    @property
    def accuracy(self) -> float:
        return self.correct / self.num_samples

    @property
    def base_accuracy(self) -> float:
        return self.base_correct / self.num_samples

    @property
    def relative_cost(self) -> float:
        return self.cost_ratio + (1.0 - self.exit_ratio)

    @property
    def saving(self) -> float:
        return 1.0 - self.relative_cost

    @property
    def delta_c(self) -> float:
        """The paper's ΔC: cost ratio minus exit ratio."""
        return self.cost_ratio - self.exit_ratio


def pair_curve(zoo: Zoo, base: int, saver: int) -> list[OperatingPoint]:
    """Every distinct exit set of a pair, from no exit to all exits."""
    saver_order = sort_saver(zoo, saver)
    gained = saver_order.saver_correct_sorted.astype(np.int64)
    lost = zoo.correct[base, saver_order.order].astype(np.int64)
    diff = np.concatenate(([0], np.cumsum(gained - lost)))
    exits = np.flatnonzero(saver_order.boundary)
    thresholds = threshold_for_exits(saver_order, exits)
    base_correct = int(zoo.correct_counts[base])
    ratio = float(zoo.costs[saver] / zoo.costs[base])
    n = zoo.num_samples
    return [
        OperatingPoint(float(t), int(k), base_correct + int(diff[k]), base_correct, n, ratio)
        for k, t in zip(exits, thresholds, strict=True)
    ]


def pareto_front(points: Sequence[OperatingPoint]) -> list[OperatingPoint]:
    """Points no other point beats on both relative cost (lower) and accuracy (higher).

    Returned from cheapest to dearest; among equal costs only the most accurate survives.
    """
    front: list[OperatingPoint] = []
    for point in sorted(points, key=lambda p: (p.relative_cost, -p.correct)):
        if not front or point.correct > front[-1].correct:
            front.append(point)
    return front


def budget_point(zoo: Zoo, scan: PairScan, base_index: int, budget_index: int) -> OperatingPoint:
    """The operating point ``scan`` found for its ``base_index``-th base and budget."""
    base = int(scan.bases[base_index])
    base_correct = int(zoo.correct_counts[base])
    return OperatingPoint(
        threshold=float(scan.budget_threshold[base_index, budget_index]),
        exits=int(scan.budget_exits[base_index, budget_index]),
        correct=base_correct + int(scan.budget_diff[base_index, budget_index]),
        base_correct=base_correct,
        num_samples=scan.num_samples,
        cost_ratio=float(zoo.costs[scan.saver] / zoo.costs[base]),
    )


class PaperPoint(OperatingPoint):
    """The paper criterion's match. Its ΔC is computed as the seed code computes it,
    ``ee_ratio * (c - 1) + pass_ratio * c``, not as ``c - exit_ratio``: the two differ in the
    last bits, and the seed picks the smallest float, so only its own arithmetic picks the
    seed's saver where two are equal on paper. Its saving is minus that ΔC."""

    @property
    def delta_c(self) -> float:
        exit_ratio = self.exits / self.num_samples
        pass_ratio = (self.num_samples - self.exits) / self.num_samples
        return exit_ratio * (self.cost_ratio - 1) + pass_ratio * self.cost_ratio

    @property
    def saving(self) -> float:
        return -self.delta_c


def paper_point(zoo: Zoo, scan: PairScan, base_index: int) -> OperatingPoint:
    """The paper criterion's match for the ``base_index``-th base of ``scan``."""
    base = int(scan.bases[base_index])
    base_correct = int(zoo.correct_counts[base])
    return PaperPoint(
        threshold=float(PAPER_GRID_FLOAT32[scan.paper_grid_index[base_index]]),
        exits=int(scan.paper_exits[base_index]),
        correct=base_correct + int(scan.paper_diff[base_index]),
        base_correct=base_correct,
        num_samples=scan.num_samples,
        cost_ratio=float(zoo.costs[scan.saver] / zoo.costs[base]),
    )


def cheaper_than(zoo: Zoo, base: int) -> np.ndarray:
    """Zoo rows that may save ``base``: strictly cheaper models."""
    return np.flatnonzero(zoo.costs < zoo.costs[base])


def dearer_than(zoo: Zoo, saver: int) -> np.ndarray:
    """Zoo rows that ``saver`` may save: strictly dearer models."""
    return np.flatnonzero(zoo.costs > zoo.costs[saver])
