"""Does the threshold hold on other data? A cascade picked on one dataset, scored on another.

A saver and threshold picked on dataset A (ImageNet-val, say) meet other data in deployment
(ImageNet-V2, -Real, -Sketch). Scored on dataset B, the same rule applies: a sample exits at the
saver iff its confidence is above the threshold; the base answers the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scored:
    exit_ratio: float
    correct: int  # samples the cascade gets right
    base_correct: int
    samples: int
    cost_ratio: float  # cost_s / cost_b

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples

    @property
    def base_accuracy(self) -> float:
        return self.base_correct / self.samples

    @property
    def relative_cost(self) -> float:
        return self.cost_ratio + (1.0 - self.exit_ratio)

    @property
    def saving(self) -> float:
        return 1.0 - self.relative_cost


def score_cascade(
    base_correct: np.ndarray,
    saver_correct: np.ndarray,
    saver_confidence: np.ndarray,
    threshold: float,
    cost_ratio: float,
) -> Scored:
    """The cascade (saver, threshold) on other samples: per-sample correctness of both models
    and the saver's top-1 probability there (compared in float64, as the search compares)."""
    exits = saver_confidence.astype(np.float64) > threshold
    correct = int(np.where(exits, saver_correct, base_correct).sum())
    return Scored(
        exit_ratio=float(exits.mean()),
        correct=correct,
        base_correct=int(base_correct.sum()),
        samples=len(exits),
        cost_ratio=cost_ratio,
    )
