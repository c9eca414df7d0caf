"""Choosing the best saver of a base: the one ranking every part of saverzoo uses.

Budget criterion: the largest saving, then the higher accuracy, then the cheaper saver, then the
name; no saver when the best saving is not positive. Savings are floats computed from a cost
ratio, so two savings that are equal on paper can differ in their last bits; under a budget they
are compared rounded to ``SAVING_DECIMALS`` so that the tie rules decide.

Paper criterion: the smallest ΔC (minus the saving), as the seed code takes it: unrounded, its
own arithmetic (``engine.PaperPoint``), so where two savers are equal on paper the float decides
as it decides there; an exact tie goes to the cheaper saver, then the name (the seed keeps the
order of its model list, which saverzoo does not have).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cluster.errors import InputError
from search.criteria import BUDGET, CRITERIA, PAPER
from search.engine import OperatingPoint

SAVING_DECIMALS = 12


def centipoints(max_drop: float) -> int:
    """An accuracy drop in points as its exact storage key, hundredths of a point."""
    if not 0 <= max_drop <= 100:  # also refuses NaN
        raise InputError(f"--max-drop is an accuracy drop in points from 0 to 100, not {max_drop}")
    value = round(max_drop * 100)
    if abs(value - max_drop * 100) > 1e-6:
        raise InputError(f"--max-drop {max_drop} has more than two decimals; use e.g. 0.25")
    return int(value)


def rank_key(
    criterion: str, saving: float, accuracy: float, saver_cost: float, saver_name: str
) -> tuple:
    """Sort key, best first."""
    if criterion == PAPER:
        return (-saving, saver_cost, saver_name)
    if criterion == BUDGET:
        return (-round(saving, SAVING_DECIMALS), -accuracy, saver_cost, saver_name)
    raise ValueError(f"criterion must be {BUDGET!r} or {PAPER!r}, not {criterion!r}")


def has_saver(criterion: str, saving: float) -> bool:
    """Under a budget a base without a positive saving has no saver; the paper always names one."""
    return criterion == PAPER or round(saving, SAVING_DECIMALS) > 0


@dataclass(frozen=True)
class Candidate:
    """A saver of some base with the operating point a criterion chose for it."""

    saver: str
    saver_cost: float
    point: OperatingPoint


def best_candidate(candidates: Sequence[Candidate], criterion: str) -> Candidate | None:
    """The best saver among ``candidates``, or None (see ``has_saver``)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be {BUDGET!r} or {PAPER!r}, not {criterion!r}")
    if not candidates:
        return None
    best = min(
        candidates,
        key=lambda c: rank_key(criterion, c.point.saving, c.point.accuracy, c.saver_cost, c.saver),
    )
    return best if has_saver(criterion, best.point.saving) else None
