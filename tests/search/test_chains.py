"""Three-model cascades s1 -> s2 -> base: the compiled walk equals a brute force over every pair
of exit sets, on small random zoos with heavy confidence ties."""

from __future__ import annotations

import numpy as np
import pytest

from search.chains import candidate_chains, scan_chain
from search.engine import Zoo, min_correct_diff

DROPS = (0.0, 0.5, 2.0, 10.0)


def tied_zoo(seed: int, n: int) -> Zoo:
    rng = np.random.default_rng(seed)
    costs = np.array([1.0, 2.5, 7.0])
    skill = np.sort(rng.uniform(0.3, 0.9, 3))
    correct = (rng.random((3, n)) < skill[:, None]).astype(np.uint8)
    grid = int(rng.choice([3, 6, 11]))  # few distinct confidences: heavy ties
    confidence = np.round(np.clip(0.4 * correct + 0.6 * rng.random((3, n)), 0, 1) * (grid - 1))
    confidence = (confidence / (grid - 1)).astype(np.float32)
    return Zoo(("s1", "s2", "base"), costs, correct, confidence)


def exit_sets(confidence: np.ndarray) -> list[float]:
    """A threshold for every distinct exit set: each distinct value, and below them all."""
    values = np.unique(confidence.astype(np.float64))
    return [*values.tolist(), float(np.nextafter(np.float32(values[0]), np.float32(-1)))]


def brute_force(zoo: Zoo, drop: float):
    """(saving, correct, exits1, exits2) of the best point over every (t1, t2)."""
    n, (c1, c2, cb) = zoo.num_samples, zoo.costs
    needed = int(zoo.correct_counts[2]) + min_correct_diff(drop, n)
    best = None
    for t1 in exit_sets(zoo.confidence[0]):
        first = zoo.confidence[0].astype(np.float64) > t1
        for t2 in exit_sets(zoo.confidence[1]):
            second = ~first & (zoo.confidence[1].astype(np.float64) > t2)
            right = np.where(
                first, zoo.correct[0], np.where(second, zoo.correct[1], zoo.correct[2])
            )
            correct = int(right.sum())
            if correct < needed:
                continue
            r1, r2 = first.mean(), second.mean()
            saving = 1 - (c1 / cb + (1 - r1) * c2 / cb + (1 - r1 - r2))
            key = (round(saving, 12), correct)
            if best is None or key > best[0]:
                best = (key, saving, correct, int(first.sum()), int(second.sum()))
    return None if best is None else best[1:]


@pytest.mark.parametrize("seed", range(12))
def test_the_walk_finds_the_best_pair_of_exit_sets(seed):
    zoo = tied_zoo(seed, n=int(np.random.default_rng(seed).integers(20, 300)))
    points = scan_chain(zoo, (0, 1, 2), DROPS)
    for drop, point in zip(DROPS, points, strict=True):
        expected = brute_force(zoo, drop)
        if expected is None:
            assert point is None
            continue
        saving, correct, _exits1, _exits2 = expected
        assert point.saving == pytest.approx(saving, abs=1e-12), drop
        assert point.correct == correct, drop
        # The reported thresholds reproduce the point's exit sets and accuracy.
        first = zoo.confidence[0].astype(np.float64) > point.thresholds[0]
        second = ~first & (zoo.confidence[1].astype(np.float64) > point.thresholds[1])
        assert (int(first.sum()), int(second.sum())) == point.exits
        rest = np.where(second, zoo.correct[1], zoo.correct[2])
        assert int(np.where(first, zoo.correct[0], rest).sum()) == point.correct


def test_a_chain_whose_costs_do_not_increase_is_refused():
    with pytest.raises(ValueError, match="costs must increase"):
        scan_chain(tied_zoo(0, 50), (1, 0, 2), DROPS)


def test_candidates_are_the_k_best_savers_and_their_k_best_savers():
    best = {9: [5, 4, 3], 5: [2, 1, 0], 4: [1], 3: []}
    assert candidate_chains(best, k=2)[9] == [(2, 5, 9), (1, 5, 9), (1, 4, 9)]
    assert candidate_chains(best, k=1)[9] == [(2, 5, 9)]
    assert candidate_chains(best, k=5)[3] == []
