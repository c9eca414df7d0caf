"""Does the threshold hold on other data? A cascade picked on one dataset, scored on another.

A saver and threshold picked on dataset A (ImageNet-val, say) meet other data in deployment
(ImageNet-V2, -Real, -Sketch). Scored on dataset B, the same rule applies: a sample exits at the
saver iff its confidence is above the threshold; the base answers the rest.
"""

from __future__ import annotations

import numpy as np

from search.engine import OperatingPoint


def score_cascade(
    base_correct: np.ndarray,
    saver_correct: np.ndarray,
    saver_confidence: np.ndarray,
    threshold: float,
    cost_ratio: float,
) -> OperatingPoint:
    """The cascade (saver, threshold) on other samples: per-sample correctness of both models
    and the saver's top-1 probability there (compared in float64, as the search compares)."""
    exits = saver_confidence.astype(np.float64) > threshold
    return OperatingPoint(
        threshold=threshold,
        exits=int(exits.sum()),
        correct=int(np.where(exits, saver_correct, base_correct).sum()),
        base_correct=int(base_correct.sum()),
        num_samples=len(exits),
        cost_ratio=cost_ratio,
    )
