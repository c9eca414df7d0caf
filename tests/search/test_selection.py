"""Best-saver ranking: under a budget, savings equal on paper are ties whatever their last float
bits say; under the paper criterion, the seed code's own float decides."""

from __future__ import annotations

import pytest

from cluster.errors import InputError
from search.engine import OperatingPoint, PaperPoint
from search.selection import Candidate, best_candidate, centipoints, rank_key


def point(exits: int, cost_ratio: float, correct: int = 900) -> OperatingPoint:
    return OperatingPoint(0.5, exits, correct, 900, 1000, cost_ratio)


def test_savings_equal_on_paper_fall_to_the_cheaper_saver():
    # 101/1000 - 1/10 and 201/1000 - 2/10 are both 0.001, but not as floats.
    cheap = Candidate("cheap", 1.0, point(101, 1.0 / 10.0))
    dear = Candidate("dear", 2.0, point(201, 2.0 / 10.0))
    assert cheap.point.saving != dear.point.saving  # the float noise the ranking must ignore
    assert best_candidate([dear, cheap], "budget") is cheap


def seed_best_saver(candidates: list[tuple[str, int, float]], num_samples: int = 1000) -> str:
    """The seed code's choice, written as it is there: DeltaC per saver in its list order,
    ``saver_info.sort(key=lambda x: x[1])`` (stable), the first one."""
    info = []
    for name, exits, cost_ratio in candidates:
        ee_ratio, pass_ratio = exits / num_samples, (num_samples - exits) / num_samples
        info.append((name, ee_ratio * (cost_ratio - 1) + pass_ratio * cost_ratio))
    info.sort(key=lambda x: x[1])
    return info[0][0]


@pytest.mark.parametrize(
    "candidates",
    [
        # Equal on paper (ΔC 0.198); the seed's floats put the dearer saver first.
        [("cheap", 2, 0.2), ("dear", 102, 0.3)],
        # Equal on paper and as the seed's floats: a tie, which goes to the cheaper saver.
        [("cheap", 101, 0.1), ("dear", 201, 0.2)],
        # Not a tie at all.
        [("cheap", 50, 0.1), ("dear", 400, 0.3)],
    ],
)
def test_the_paper_criterion_picks_the_saver_the_seed_code_picks(candidates):
    ranked = [
        Candidate(name, ratio, paper_point_of(exits, ratio)) for name, exits, ratio in candidates
    ]

    assert best_candidate(ranked, "paper").saver == seed_best_saver(candidates)


def paper_point_of(exits: int, cost_ratio: float) -> PaperPoint:
    return PaperPoint(0.5, exits, 900, 900, 1000, cost_ratio)


def test_unknown_criterion_is_refused():
    with pytest.raises(ValueError, match="criterion must be"):
        rank_key("fastest", 0.1, 0.9, 1.0, "m")


@pytest.mark.parametrize("max_drop", [-1, 100.01, float("inf"), float("nan"), 0.125, 1e30])
def test_budgets_outside_0_to_100_points_or_with_three_decimals_are_refused(max_drop):
    with pytest.raises(InputError):
        centipoints(max_drop)


def test_budget_keys_are_hundredths_of_a_point():
    assert [centipoints(d) for d in (0, 0.1, 0.5, 2, 100)] == [0, 10, 50, 200, 10000]
