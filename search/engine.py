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

The hot loop (``_scan_pairs``) fuses the gather, the running sum and the threshold tests in one pass
per pair, compiled with numba and spread over the bases in parallel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numba
import numpy as np

#: The paper's threshold grid, scanned from high to low (``numpy.arange(1, 0, -0.001)``).
PAPER_GRID = np.arange(1, 0, -0.001)


@dataclass(frozen=True)
class Zoo:
    """M models evaluated on the same N samples of one dataset."""

    names: tuple[str, ...]
    costs: np.ndarray  # float64 (M,)
    correct: np.ndarray  # uint8 (M, N): 1 where the model's top-1 class equals the label
    confidence: np.ndarray  # float32 (M, N): the model's top-1 softmax probability
    correct_counts: np.ndarray | None = field(default=None, repr=False)  # int64 (M,)

    def __post_init__(self) -> None:
        m = len(self.names)
        if self.correct.shape != self.confidence.shape or self.correct.shape[0] != m:
            raise ValueError(
                f"zoo arrays disagree: {m} names, correct {self.correct.shape}, "
                f"confidence {self.confidence.shape}"
            )
        if len(self.costs) != m:
            raise ValueError(f"zoo has {m} names but {len(self.costs)} costs")
        if self.correct_counts is None:  # needed by every pair: count once (frozen, so setattr)
            object.__setattr__(self, "correct_counts", self.correct.sum(axis=1, dtype=np.int64))

    @classmethod
    def from_predictions(
        cls,
        names: Sequence[str],
        costs: Sequence[float],
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
        return self.correct.shape[1]

    def row(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"model {name!r} is not in this zoo") from None

    def columns(self, samples: np.ndarray) -> Zoo:
        """The same models on a subset of the samples (e.g. a calibration half)."""
        return Zoo(
            self.names,
            self.costs,
            np.ascontiguousarray(self.correct[:, samples]),
            np.ascontiguousarray(self.confidence[:, samples]),
        )


@dataclass(frozen=True)
class SaverOrder:
    """One saver's samples sorted by confidence, shared by all of its bases."""

    order: np.ndarray  # uint32 (N,): sample indices, most confident first
    sorted_confidence: np.ndarray  # float32 (N,)
    boundary: np.ndarray  # bool (N+1,): boundary[k] iff exactly k exits is a reachable exit set
    saver_correct_sorted: np.ndarray  # int8 (N,)
    paper_grid_exits: np.ndarray  # int64 (len(PAPER_GRID),): exits at each paper grid threshold


def sort_saver(zoo: Zoo, saver: int) -> SaverOrder:
    confidence = zoo.confidence[saver]
    # Order inside a tie never matters (ties exit together), so the fast unstable sort will do.
    # uint32 indices: numba then needs no negative-index wraparound test in the hot loops.
    order = np.argsort(-confidence).astype(np.uint32)
    sorted_confidence = confidence[order]
    boundary = np.ones(len(order) + 1, dtype=np.bool_)
    boundary[1:-1] = sorted_confidence[:-1] != sorted_confidence[1:]
    return SaverOrder(
        order=order,
        sorted_confidence=sorted_confidence,
        boundary=boundary,
        saver_correct_sorted=zoo.correct[saver, order].astype(np.int8),
        paper_grid_exits=_count_above(sorted_confidence, PAPER_GRID),
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

    Between two distinct confidences the midpoint is used (it transfers best to new samples); with
    no exit, the largest confidence; with every sample exiting, the float32 just below the smallest.
    """
    conf = saver_order.sorted_confidence
    n = len(conf)
    k = np.asarray(exits)
    above = conf[np.clip(k - 1, 0, n - 1)].astype(np.float64)
    below = conf[np.clip(k, 0, n - 1)].astype(np.float64)
    lowest = float(np.nextafter(conf[-1], np.float32(-np.inf)))
    return np.where(k <= 0, float(conf[0]), np.where(k >= n, lowest, (above + below) / 2.0))


def _scan_pairs_impl(
    order,
    boundary,
    saver_correct_sorted,
    saver_total,
    correct,
    base_rows,
    base_totals,
    min_diffs,
    grid_exits,
):
    """For every base: the largest feasible exit set per budget, and the paper match.

    Budgets: walking back from "all exit" (D known from the totals), the first boundary with
    ``D >= min_diffs[j]`` is budget j's answer; ``min_diffs`` ascending (loosest first), so one walk
    finds them all and stops at the strictest. Paper: walking forward over the distinct grid exit
    counts ``grid_exits`` (ascending), stop at the first with exits > 0 and D < 0.
    Both walks usually stop early, and their inner loops have no data-dependent branches.
    """
    n = order.shape[0]
    num_bases = base_rows.shape[0]
    num_budgets = min_diffs.shape[0]
    num_grid = grid_exits.shape[0]
    best_exits = np.zeros((num_bases, num_budgets), dtype=np.int64)
    best_diff = np.zeros((num_bases, num_budgets), dtype=np.int64)
    paper_match = np.full(num_bases, -1, dtype=np.int64)  # -1: no grid point crosses
    paper_diff = np.zeros(num_bases, dtype=np.int64)
    for b in numba.prange(num_bases):
        base_correct = correct[base_rows[b]]
        diff = saver_total - base_totals[b]
        k = n
        j = 0
        while j < num_budgets:
            target = min_diffs[j]
            if diff < target:
                # D moves by at most 1 per sample: the next `target - diff` steps cannot reach
                # the target, so take them in a tight loop without tests.
                for _ in range(target - diff):
                    k -= 1
                    diff -= saver_correct_sorted[k] - base_correct[order[k]]
            elif boundary[k]:
                best_exits[b, j] = k
                best_diff[b, j] = diff
                j += 1
            else:
                k -= 1
                diff -= saver_correct_sorted[k] - base_correct[order[k]]
        diff = 0
        done = 0
        for g in range(num_grid):
            k = grid_exits[g]
            for i in range(done, k):
                diff += saver_correct_sorted[i] - base_correct[order[i]]
            done = k
            paper_diff[b] = diff
            if k > 0 and diff < 0:
                paper_match[b] = g
                break
    return best_exits, best_diff, paper_match, paper_diff


def _diff_at_impl(order, saver_correct_sorted, correct, base_rows, exits):
    """D[k] for the given exit counts ``exits[b, j]`` of every base (prefix sums, then look-ups)."""
    n = order.shape[0]
    result = np.zeros(exits.shape, dtype=np.int64)
    for b in numba.prange(base_rows.shape[0]):
        base_correct = correct[base_rows[b]]
        prefix = np.empty(n + 1, dtype=np.int64)
        prefix[0] = 0
        for i in range(n):
            prefix[i + 1] = prefix[i] + saver_correct_sorted[i] - base_correct[order[i]]
        for j in range(exits.shape[1]):
            result[b, j] = prefix[exits[b, j]]
    return result


# Each kernel compiled twice: spreading a few bases over threads costs more than it gains (and a
# busy machine makes a parallel region wait for every thread), so small calls run serially.
PARALLEL_MIN_BASES = 16
_scan_serial = numba.njit(cache=True, nogil=True)(_scan_pairs_impl)
_scan_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_scan_pairs_impl)
_diff_serial = numba.njit(cache=True, nogil=True)(_diff_at_impl)
_diff_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_diff_at_impl)


def _scan_pairs(*args):
    kernel = _scan_parallel if len(args[5]) >= PARALLEL_MIN_BASES else _scan_serial
    return kernel(*args)


def _diff_at(order, saver_correct_sorted, correct, base_rows, exits):
    kernel = _diff_parallel if len(base_rows) >= PARALLEL_MIN_BASES else _diff_serial
    return kernel(order, saver_correct_sorted, correct, base_rows, exits)


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
    bases: Sequence[int],
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
    exits, diff, match, paper_diff = _scan_pairs(
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
    bases: Sequence[int],
    thresholds: np.ndarray,
    saver_order: SaverOrder | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exit counts and D of ``saver`` before each base at given thresholds ``(B, J)``.

    This is how a threshold chosen on one half of the samples is scored on the other half.
    """
    saver_order = saver_order or sort_saver(zoo, saver)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    exits = exits_above(saver_order, thresholds.ravel()).reshape(thresholds.shape)
    diff = _diff_at(
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


def paper_point(zoo: Zoo, scan: PairScan, base_index: int) -> OperatingPoint:
    """The paper criterion's match for the ``base_index``-th base of ``scan``."""
    base = int(scan.bases[base_index])
    base_correct = int(zoo.correct_counts[base])
    return OperatingPoint(
        threshold=float(PAPER_GRID[scan.paper_grid_index[base_index]]),
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


@dataclass(frozen=True)
class Candidate:
    """A saver of some base with the operating point a criterion chose for it."""

    saver: str
    saver_cost: float
    point: OperatingPoint


def budget_rank(candidate: Candidate) -> tuple:
    """Sort key, best first: larger saving, then higher accuracy, cheaper saver, name."""
    p = candidate.point
    return (-p.saving, -p.correct, candidate.saver_cost, candidate.saver)


def paper_rank(candidate: Candidate) -> tuple:
    """Sort key, best first: smaller ΔC, then cheaper saver, name."""
    return (candidate.point.delta_c, candidate.saver_cost, candidate.saver)


def best_candidate(candidates: Sequence[Candidate], criterion: str) -> Candidate | None:
    """The best saver among ``candidates``; under a budget, None when no saving is positive."""
    if criterion not in ("budget", "paper"):
        raise ValueError(f"criterion must be 'budget' or 'paper', not {criterion!r}")
    if not candidates:
        return None
    if criterion == "paper":
        return min(candidates, key=paper_rank)
    best = min(candidates, key=budget_rank)
    return best if best.point.saving > 0 else None
