"""The reported fields of every kind of answer, and the views of stored results that fill them.

An answer row is a base, its saver (or its chain) and the fields its kind reports, in the order of
the tuples below; ``orchestrator.answer_types`` types each kind, ``orchestrator.answers.FIELDS``
says how each field is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from db.models import PairResult
from search.criteria import PAPER
from search.engine import OperatingPoint

# Every best-saver answer ends with the single-model frontier (search.frontier).
FRONTIER_FIELDS = ("frontier_model", "frontier_saving")
BUDGET_FIELDS = (
    "threshold",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    *FRONTIER_FIELDS,
)
PAPER_FIELDS = ("threshold", "exit_ratio", "delta_c", *FRONTIER_FIELDS)
# Held-out answers also say how sure they are (search.intervals).
INTERVAL_FIELDS = ("accuracy_ci", "saving_ci")
# Picked on one dataset, scored on another (search.transfer): the picking dataset's figures as
# in_sample_*, the rest measured on the other.
TRANSFER_FIELDS = (
    "threshold",
    "in_sample_accuracy",
    "in_sample_saving",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    *FRONTIER_FIELDS,
)
HOLDOUT_FIELDS = (
    "threshold",
    "in_sample_accuracy",
    "in_sample_saving",
    "exit_ratio",
    "accuracy",
    "accuracy_ci",
    "base_accuracy",
    "relative_cost",
    "saving",
    "saving_ci",
    *FRONTIER_FIELDS,
)
# Cascades of up to three models (search.chains): the savers before the base, in order.
CHAIN_FIELDS = (
    "chain",
    "thresholds",
    "exit_ratios",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    *FRONTIER_FIELDS,
)
CURVE_FIELDS = ("threshold", "exit_ratio", "accuracy", "relative_cost", "saving")  # a front point


def fields_for(criterion: str, holdout: bool, transfer: bool = False) -> tuple[str, ...]:
    """The reported fields of a pair answer, in order."""
    if transfer:
        return TRANSFER_FIELDS
    if holdout:
        return HOLDOUT_FIELDS
    return PAPER_FIELDS if criterion == PAPER else BUDGET_FIELDS


def pair_view(
    pair: PairResult, criterion: str, holdout: bool, costs: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The reported fields of a stored pair but its frontier and intervals (``AnswerScores``);
    ``costs`` replaces its ``search.costs.COST_COLUMNS`` (see ``recost_pair``)."""

    def value(column: str) -> float:
        return costs[column] if costs and column in costs else getattr(pair, column)

    if holdout:
        return {
            "threshold": pair.holdout_threshold,
            "in_sample_accuracy": pair.holdout_calibration_accuracy,
            "in_sample_saving": value("holdout_calibration_saving"),
            "exit_ratio": pair.holdout_exit_ratio,
            "accuracy": pair.holdout_accuracy,
            "base_accuracy": pair.holdout_base_accuracy,
            "relative_cost": 1.0 - value("holdout_saving"),
            "saving": value("holdout_saving"),
        }
    if criterion == PAPER:
        return {
            "threshold": pair.threshold,
            "exit_ratio": pair.exit_ratio,
            "delta_c": -value("saving"),
        }
    return {field: value(field) for field in BUDGET_FIELDS if field not in FRONTIER_FIELDS}


def point_view(point: OperatingPoint) -> dict[str, float]:
    """A point of a pair's curve, as its Pareto front reports it."""
    return {field: getattr(point, field) for field in CURVE_FIELDS}
