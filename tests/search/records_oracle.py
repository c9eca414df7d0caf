"""The stored pair rows as the per-record path computed them: a frozen reference for the columnar
search.

Each half is sorted afresh with ``argsort`` (no order derived from another), every record is an
``OperatingPoint`` (``PaperPoint`` for the paper criterion) and every row is read off the records'
properties, exactly as the service once stored them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.criteria import BUDGET, PAPER
from search.engine import (
    PAPER_GRID_FLOAT32,
    OperatingPoint,
    Zoo,
    apply_thresholds,
    budget_point,
    paper_point,
    scan_saver,
)


def _halves(zoo: Zoo, calibration: np.ndarray) -> tuple[Zoo, Zoo]:
    if not calibration.any() or calibration.all():  # too few samples: both halves are the set
        return zoo, zoo

    def part(columns: np.ndarray) -> Zoo:
        return Zoo(
            zoo.names,
            zoo.costs,
            np.ascontiguousarray(zoo.correct[:, columns]),
            np.ascontiguousarray(zoo.confidence[:, columns]),
        )

    return part(calibration), part(~calibration)


def reference_rows(
    zoo: Zoo,
    calibration: np.ndarray,
    saver: int,
    bases: Sequence[int],
    budgets_cp: Sequence[int],
    dataset_id: int = 7,
    confidence: str = "max_probability",
    now: object = None,
    halves: tuple[Zoo, Zoo] | None = None,
) -> list[dict]:
    """One stored row per base and criterion (budgets as given, then the paper's), base-major.

    ``halves``: the calibration and evaluation zoos, when already cut out of ``zoo``."""
    bases = list(bases)
    if not bases:
        return []
    calib_zoo, eval_zoo = halves or _halves(zoo, calibration)
    max_drops = [cp / 100 for cp in budgets_cp]
    full = scan_saver(zoo, saver, bases, max_drops)
    calib = scan_saver(calib_zoo, saver, bases, max_drops)
    thresholds = np.column_stack(
        [calib.budget_threshold, PAPER_GRID_FLOAT32[calib.paper_grid_index][:, None]]
    )
    exits, diff = apply_thresholds(eval_zoo, saver, bases, thresholds)
    criteria = [(BUDGET, cp, j) for j, cp in enumerate(budgets_cp)] + [(PAPER, 0, None)]
    rows = []
    for b, base in enumerate(bases):
        for column, (criterion, cp, j) in enumerate(criteria):
            if j is not None:
                point = budget_point(zoo, full, b, j)
                calibration_point = budget_point(calib_zoo, calib, b, j)
            else:
                point = paper_point(zoo, full, b)
                calibration_point = paper_point(calib_zoo, calib, b)
            base_correct = int(eval_zoo.correct_counts[base])
            evaluation = OperatingPoint(
                threshold=float(thresholds[b, column]),
                exits=int(exits[b, column]),
                correct=base_correct + int(diff[b, column]),
                base_correct=base_correct,
                num_samples=eval_zoo.num_samples,
                cost_ratio=float(eval_zoo.costs[saver] / eval_zoo.costs[base]),
            )
            rows.append(
                {
                    "dataset_id": dataset_id,
                    "confidence": confidence,
                    "base_id": 1000 + base,
                    "saver_id": 1000 + saver,
                    "criterion": criterion,
                    "max_drop_centipoints": cp,
                    "threshold": point.threshold,
                    "exit_ratio": point.exit_ratio,
                    "accuracy": point.accuracy,
                    "base_accuracy": point.base_accuracy,
                    "relative_cost": point.relative_cost,
                    "saving": point.saving,
                    "holdout_threshold": float(thresholds[b, column]),
                    "holdout_calibration_accuracy": calibration_point.accuracy,
                    "holdout_calibration_saving": calibration_point.saving,
                    "holdout_exit_ratio": evaluation.exit_ratio,
                    "holdout_accuracy": evaluation.accuracy,
                    "holdout_base_accuracy": evaluation.base_accuracy,
                    "holdout_saving": evaluation.saving,
                    "computed_at": now,
                }
            )
    return rows
