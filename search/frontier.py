"""The single-model frontier: is a cascade better than deploying a cheaper model alone?

The cascade literature measures a cascade against the Pareto front of single models, not against
its base alone: a cascade that a cheaper single model matches in accuracy is not worth deploying.
For a cascade of cost C that gets K samples right, its frontier model is the cheapest model of
the dataset that gets at least K right (accuracy compared on integer counts, as the search
compares it; equal costs by name), or the base itself when no model cheaper than the base does.
``frontier_saving = 1 - C / cost(frontier model)``: the cascade's saving against that model, and
negative exactly when a cheaper single model is at least as accurate as the cascade.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

SAME_COST = 1e-12  # relative: costs this close are equal


@dataclass(frozen=True)
class SingleModel:
    name: str
    cost: float
    correct: int  # samples right, on the same samples as the cascade's count


@dataclass(frozen=True)
class Frontier:
    model: str
    saving: float


class SingleModels:
    """A dataset's models, cheapest first, for many frontier questions on the same samples."""

    def __init__(self, models: Sequence[SingleModel]) -> None:
        self._ordered = sorted(models, key=lambda m: (m.cost, m.name))
        self._by_name = {m.name: m for m in models}
        # The most any model up to each position gets right: non-decreasing, so the first model
        # right on at least K samples is one binary search away.
        self._best_so_far = list(accumulate((m.correct for m in self._ordered), max))

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def frontier(self, base: str, cascade_cost: float, cascade_correct: int) -> Frontier:
        """The frontier model of a cascade of ``base`` costing ``cascade_cost`` that gets
        ``cascade_correct`` samples right (``base`` must be one of the models)."""
        chosen = self._by_name[base]
        first = bisect_left(self._best_so_far, cascade_correct)
        if first < len(self._ordered):
            cheapest = self._ordered[first]
            if (cheapest.cost, cheapest.name) < (chosen.cost, chosen.name):
                chosen = cheapest
        saving = 1.0 - cascade_cost / chosen.cost
        # A cascade that sends every sample to its saver costs the saver's cost, computed back
        # from a stored relative cost: equal within rounding, and not beaten.
        return Frontier(chosen.name, 0.0 if abs(saving) < SAME_COST else saving)
