"""Held-out answers say how sure they are: 95% intervals that cover the truth 95% of the time."""

from __future__ import annotations

import numpy as np
import pytest

from search.intervals import RESAMPLES, bootstrap_saving, wilson
from tests.factories import records_dir, saverzoo, saverzoo_json, small_zoo

TRIALS = 2000


def test_the_wilson_interval_of_textbook_cases():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_the_accuracy_interval_covers_the_true_accuracy_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(TRIALS):
        truth, n = rng.uniform(0.2, 0.95), int(rng.integers(200, 2000))
        low, high = wilson(int(rng.binomial(n, truth)), n)
        covered += low <= truth <= high
    assert 0.93 <= covered / TRIALS <= 0.97


def test_the_saving_interval_covers_the_true_saving_95_percent_of_the_time():
    rng = np.random.default_rng(12)
    covered = 0
    for trial in range(TRIALS):
        exit_share, cost_ratio = rng.uniform(0.2, 0.9), rng.uniform(0.01, 0.3)
        n = int(rng.integers(200, 2000))
        exits = int((rng.random(n) < exit_share).sum())  # each held-out sample exits or not
        low, high = bootstrap_saving(exits, n, cost_ratio, seed=trial)
        covered += low <= exit_share - cost_ratio <= high
    assert 0.93 <= covered / TRIALS <= 0.97


def test_the_saving_bootstrap_is_the_bootstrap_over_samples():
    """Resampling the samples themselves (with replacement) redraws only the exit share: the same
    percentiles as the binomial draws the interval is computed from."""
    rng = np.random.default_rng(3)
    exits = rng.random(800) < 0.6
    resampled = [exits[rng.integers(0, 800, 800)].mean() for _ in range(RESAMPLES)]
    literal = np.percentile(resampled, [2.5, 97.5]) - 0.1
    assert bootstrap_saving(int(exits.sum()), 800, 0.1) == pytest.approx(literal, abs=0.006)


def test_the_same_answer_gives_the_same_interval():
    assert bootstrap_saving(300, 500, 0.05) == bootstrap_saving(300, 500, 0.05)


def test_held_out_answers_carry_intervals_around_their_estimates(use_database, tmp_path):
    zoo = small_zoo(num_samples=1000)
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")

    rows = saverzoo_json("savers", "best", "--dataset", "val", "--holdout")

    with_saver = [r for r in rows if r["saver"]]
    assert with_saver
    for row in with_saver:
        low, high = row["accuracy_ci"]
        assert low < row["accuracy"] < high
        low, high = row["saving_ci"]
        assert low <= row["saving"] <= high and high - low < 0.2
    assert all(r["accuracy_ci"] is None for r in rows if r["saver"] is None)
    in_sample = saverzoo_json("savers", "best", "--dataset", "val")
    assert all("accuracy_ci" not in r for r in in_sample)
    shown = saverzoo("savers", "best", "--dataset", "val", "--holdout")
    assert "–" in shown.stdout  # the intervals, shown as low–high
