"""Pair results of a zoo: every criterion, in-sample and held-out, as plain records.

Held-out honesty: thresholds picked on the same samples they are scored on are optimistic. Samples
are split once by a hash of their key (``calibration_mask``); each pair's threshold is picked on the
calibration samples and scored on the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from search.engine import (
    PAPER_GRID,
    OperatingPoint,
    SaverOrder,
    Zoo,
    apply_thresholds,
    budget_point,
    paper_point,
    scan_saver,
    sort_saver,
)

BUDGET = "budget"
PAPER = "paper"
CRITERIA = (BUDGET, PAPER)


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


def centipoints(max_drop: float) -> int:
    """An accuracy drop in points as an exact integer key (hundredths of a point)."""
    value = round(max_drop * 100)
    if abs(value - max_drop * 100) > 1e-6:
        raise ValueError(f"max drop {max_drop} has more than two decimals; use e.g. 0.25")
    return int(value)


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
    max_drop: float  # accuracy points; 0 for the paper criterion
    point: OperatingPoint
    held_out: HeldOut


@dataclass
class SplitZoo:
    """A zoo with its calibration and evaluation halves, and cached saver orders for all three."""

    full: Zoo
    calibration: Zoo
    evaluation: Zoo
    _orders: dict[tuple[str, int], SaverOrder] = field(default_factory=dict, repr=False)

    @classmethod
    def split(cls, zoo: Zoo, calibration: np.ndarray) -> SplitZoo:
        if calibration.all() or not calibration.any():
            # Too few samples to split: both halves are the whole set (numbers stay in-sample).
            return cls(zoo, zoo, zoo)
        return cls(zoo, zoo.columns(calibration), zoo.columns(~calibration))

    def order(self, part: str, saver: int) -> SaverOrder:
        key = (part, saver)
        if key not in self._orders:
            self._orders[key] = sort_saver(getattr(self, part), saver)
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
    zoos: SplitZoo, saver: int, bases: Sequence[int], max_drops: Sequence[float]
) -> list[PairRecord]:
    """Records of ``saver`` in front of each of ``bases``: one per budget, plus the paper's."""
    bases = list(bases)
    if not bases:
        return []
    full = scan_saver(zoos.full, saver, bases, max_drops, zoos.order("full", saver))
    calib = scan_saver(zoos.calibration, saver, bases, max_drops, zoos.order("calibration", saver))
    thresholds = np.column_stack(
        [calib.budget_threshold, PAPER_GRID[calib.paper_grid_index][:, None]]
    )
    exits, diff = apply_thresholds(
        zoos.evaluation, saver, bases, thresholds, zoos.order("evaluation", saver)
    )
    names = zoos.full.names
    criteria = [(BUDGET, d, j) for j, d in enumerate(max_drops)] + [(PAPER, 0.0, None)]
    records = []
    for b, base in enumerate(bases):
        for column, (criterion, max_drop, j) in enumerate(criteria):
            if criterion == BUDGET:
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
                    max_drop=max_drop,
                    point=point,
                    held_out=HeldOut(threshold, calibration_point, evaluation_point),
                )
            )
    return records


def model_records(zoos: SplitZoo, model: int, max_drops: Sequence[float]) -> list[PairRecord]:
    """Every pair ``model`` takes part in: as saver of dearer models, as base of cheaper ones."""
    zoo = zoos.full
    records = saver_records(zoos, model, np.flatnonzero(zoo.costs > zoo.costs[model]), max_drops)
    for saver in np.flatnonzero(zoo.costs < zoo.costs[model]):
        records.extend(saver_records(zoos, int(saver), [model], max_drops))
    return records


def zoo_records(zoos: SplitZoo, max_drops: Sequence[float]) -> list[PairRecord]:
    """Every candidate pair of the zoo."""
    zoo = zoos.full
    records = []
    for saver in range(len(zoo.names)):
        records.extend(
            saver_records(zoos, saver, np.flatnonzero(zoo.costs > zoo.costs[saver]), max_drops)
        )
    return records
