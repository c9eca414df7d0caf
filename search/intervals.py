"""95% intervals of held-out estimates: how sure is a cascade's accuracy and saving?

A held-out answer picks the saver and threshold on the calibration half and scores them on the
other half, n samples. Its accuracy is k right of n: the Wilson score interval. Its saving is
``r - cost_s / cost_b`` with r the share of the n samples that exit: with the threshold fixed, a
bootstrap over samples (resampling the n samples with replacement) redraws only r, as a binomial
count of the n samples' exit indicators, so the bootstrap is drawn as exactly that, seeded, and
its 2.5th and 97.5th percentiles are the interval.
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
RESAMPLES = 2000  # bootstrap resamples of the saving's interval
SEED = 0  # the bootstrap's seed: the same answer gives the same interval


def wilson(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``correct / n``."""
    if n <= 0:
        raise ValueError(f"an interval needs samples, not {n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_saving(
    exits: int, n: int, cost_ratio: float, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """The percentile bootstrap interval of the saving ``exits / n - cost_ratio``."""
    if n <= 0:
        raise ValueError(f"an interval needs samples, not {n}")
    draws = np.random.default_rng(seed).binomial(n, exits / n, resamples) / n
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low) - cost_ratio, float(high) - cost_ratio
