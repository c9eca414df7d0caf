"""Best-saver ranking: savings equal on paper are ties, whatever their last float bits say."""

from __future__ import annotations

import pytest

from cluster.errors import InputError
from search.engine import OperatingPoint
from search.selection import Candidate, best_candidate, centipoints, rank_key


def point(exits: int, cost_ratio: float, correct: int = 900) -> OperatingPoint:
    return OperatingPoint(0.5, exits, correct, 900, 1000, cost_ratio)


def test_savings_equal_on_paper_fall_to_the_cheaper_saver():
    # 101/1000 - 1/10 and 201/1000 - 2/10 are both 0.001, but not as floats.
    cheap = Candidate("cheap", 1.0, point(101, 1.0 / 10.0))
    dear = Candidate("dear", 2.0, point(201, 2.0 / 10.0))
    assert cheap.point.saving != dear.point.saving  # the float noise the ranking must ignore
    assert best_candidate([dear, cheap], "budget") is cheap
    assert best_candidate([dear, cheap], "paper") is cheap


def test_unknown_criterion_is_refused():
    with pytest.raises(ValueError, match="criterion must be"):
        rank_key("fastest", 0.1, 0.9, 1.0, "m")


@pytest.mark.parametrize("max_drop", [-1, 100.01, float("inf"), float("nan"), 0.125, 1e30])
def test_budgets_outside_0_to_100_points_or_with_three_decimals_are_refused(max_drop):
    with pytest.raises(InputError):
        centipoints(max_drop)


def test_budget_keys_are_hundredths_of_a_point():
    assert [centipoints(d) for d in (0, 0.1, 0.5, 2, 100)] == [0, 10, 50, 200, 10000]
