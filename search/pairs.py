"""Pair results of a zoo: every criterion, in-sample and held-out, as plain records.

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
    PAPER_GRID_FLOAT32,
    OperatingPoint,
    SaverOrder,
    Zoo,
    apply_thresholds,
    budget_point,
    paper_point,
    scan_saver,
    sort_saver,
)


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


@dataclass(frozen=True)
class HeldOut:
    """Threshold picked on the calibration samples, scored on the evaluation samples."""

    threshold: float
    calibration: OperatingPoint
    evaluation: OperatingPoint


@dataclass(frozen=True)
class PairRecord:
    base: str
    saver: str
    criterion: str
    max_drop_centipoints: int  # hundredths of an accuracy point; 0 for the paper criterion
    point: OperatingPoint
    held_out: HeldOut


class _Rows:
    """Per-model rows of per-sample arrays with spare capacity.

    Adding a model writes only its own row (the buffers double when full), so a long-lived zoo
    grows without copying the whole zoo each time. Views of the first ``size`` rows stay valid.
    """

    def __init__(self, correct: np.ndarray, confidence: np.ndarray) -> None:
        self.size = 0
        self._correct = np.empty((0, correct.shape[1]), dtype=np.uint8)
        self._confidence = np.empty((0, correct.shape[1]), dtype=np.float32)
        self._counts = np.empty(0, dtype=np.int64)
        self.append(correct, confidence)

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


def _grown(array: np.ndarray, capacity: int, used: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


class SplitZoo:
    """A zoo with its calibration and evaluation halves, and cached saver orders for all three.

    Models can be added (``add``); rows keep their index, so cached saver orders stay valid.
    """

    def __init__(self, zoo: Zoo, calibration: np.ndarray) -> None:
        # Too few samples to split: both halves are the whole set (numbers stay in-sample).
        self._columns = (
            {"calibration": calibration, "evaluation": ~calibration}
            if calibration.any() and not calibration.all()
            else {}
        )
        self._names = zoo.names
        self._costs = zoo.costs
        self._rows = {"full": _Rows(zoo.correct, zoo.confidence)}
        for part, columns in self._columns.items():
            self._rows[part] = _Rows(zoo.correct[:, columns], zoo.confidence[:, columns])
        self._views: dict[str, Zoo] = {}
        self._orders: dict[tuple[str, int], SaverOrder] = {}

    def add(self, zoo: Zoo) -> None:
        """Append the models of ``zoo`` (same samples) after the existing ones."""
        self._names = self._names + zoo.names
        self._costs = np.concatenate([self._costs, zoo.costs])
        self._rows["full"].append(zoo.correct, zoo.confidence)
        for part, columns in self._columns.items():
            self._rows[part].append(zoo.correct[:, columns], zoo.confidence[:, columns])
        self._views.clear()

    def part(self, name: str) -> Zoo:
        if name not in self._views:
            rows = self._rows.get(name, self._rows["full"])
            self._views[name] = rows.zoo(self._names, self._costs)
        return self._views[name]

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
            self._orders[key] = sort_saver(self.part(part), saver)
        return self._orders[key]


def _evaluation_point(
    zoo: Zoo, saver: int, base: int, threshold: float, exits: int, diff: int
) -> OperatingPoint:
    base_correct = int(zoo.correct_counts[base])
    return OperatingPoint(
        threshold=threshold,
        exits=int(exits),
        correct=base_correct + int(diff),
        base_correct=base_correct,
        num_samples=zoo.num_samples,
        cost_ratio=float(zoo.costs[saver] / zoo.costs[base]),
    )


def saver_records(
    zoos: SplitZoo, saver: int, bases: Sequence[int] | np.ndarray, budgets: Sequence[int]
) -> list[PairRecord]:
    """Records of ``saver`` in front of each of ``bases``: one per budget, plus the paper's."""
    bases = list(bases)
    if not bases:
        return []
    max_drops = [cp / 100 for cp in budgets]
    full = scan_saver(zoos.full, saver, bases, max_drops, zoos.order("full", saver))
    calib = scan_saver(zoos.calibration, saver, bases, max_drops, zoos.order("calibration", saver))
    thresholds = np.column_stack(
        [calib.budget_threshold, PAPER_GRID_FLOAT32[calib.paper_grid_index][:, None]]
    )
    exits, diff = apply_thresholds(
        zoos.evaluation, saver, bases, thresholds, zoos.order("evaluation", saver)
    )
    names = zoos.full.names
    criteria = [(BUDGET, cp, j) for j, cp in enumerate(budgets)] + [(PAPER, 0, None)]
    records = []
    for b, base in enumerate(bases):
        for column, (criterion, cp, j) in enumerate(criteria):
            if j is not None:  # BUDGET
                point = budget_point(zoos.full, full, b, j)
                calibration_point = budget_point(zoos.calibration, calib, b, j)
            else:
                point = paper_point(zoos.full, full, b)
                calibration_point = paper_point(zoos.calibration, calib, b)
            threshold = float(thresholds[b, column])
            evaluation_point = _evaluation_point(
                zoos.evaluation, saver, base, threshold, exits[b, column], diff[b, column]
            )
            records.append(
                PairRecord(
                    base=names[base],
                    saver=names[saver],
                    criterion=criterion,
                    max_drop_centipoints=cp,
                    point=point,
                    held_out=HeldOut(threshold, calibration_point, evaluation_point),
                )
            )
    return records
