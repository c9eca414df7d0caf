"""A learned deferral rule as it is stored and applied: features of a model's own top-k output,
and a logistic score that its top-1 answer is right.

The rule is plain numbers (JSON, no pickle) applied with numpy alone, by one function
(``score``): the saver search scores the stored samples with it and the cascade runtime scores its
inputs with it, so the two agree to the last bit. It lives beside the stored data it reads
(the top-k classes and probabilities of a prediction chunk) because both the search and the
runtime import it and neither may import the other. Training is elsewhere (``search.learned``).

Features, all from what a chunk stores, and why each:

- ``top1``: the top-1 probability, the paper's signal (a rule can always fall back on it);
- ``top2``: the runner-up; with ``top1`` it gives the margin, which the rule weighs itself;
- ``top1_log_odds``: log(p1 / (1 - p1)), so that a linear rule can separate 0.999 from 0.9999
  where most of a good saver's samples lie;
- ``outside_topk``: the probability mass beyond the stored top-k, how spread the output is;
- ``topk_entropy``: the entropy of the top-k renormalised, the shape of the output among the
  candidates it names;
- ``class_accuracy``: the saver's accuracy on the training samples it gave the same top-1 class,
  shrunk toward its overall accuracy (``SMOOTHING``): a saver that is reliable on some classes
  and not others (label noise or a narrow specialism) is told apart by nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import numpy as np

from cluster.errors import InputError

FEATURES = (
    "top1",
    "top2",
    "top1_log_odds",
    "outside_topk",
    "topk_entropy",
    "class_accuracy",
)
#: The rule's format and meaning (features, smoothing, how a rule is trained on them): stored in
#: every rule and in the learned arrays' basis, so that a change makes stored rules and arrays
#: out of date (trained again) rather than read. 2: leave-one-out class accuracy in training.
RULE_VERSION = 2
#: The folds of the learned confidence's cross-fitting, the default of ``datasets.learned_folds``:
#: a rule trains on 80% of its samples, and a saver's rules are 12 fits (``search.learned``).
FOLDS = 5
#: The most top classes a rule reads: what a cascade's runtime keeps of each output
#: (``workers.evaluate.TOP_K``); records may store more, and a rule trained on more could not run.
MAX_TOPK = 5
#: A class's accuracy counts as if it had this many more samples at the overall accuracy: with
#: ImageNet's 50 a class, 10 keeps a class's own figure dominant and tames classes seen 2-3 times.
SMOOTHING = 10.0
_EPS = 1e-6  # the log-odds of a probability of exactly 0 or 1 stay finite
_LOGIT_LIMIT = 40.0  # exp(40) is finite; a float32 sigmoid saturates long before


def output_features(probs: np.ndarray) -> np.ndarray:
    """float64 (N, 5): the features of ``FEATURES`` but the class's, from top-k probabilities
    (N, k), most probable first.

    A probability that is not finite (the softmax of an infinite logit is NaN) counts as 0: the
    output says nothing, as a no-prediction sample's, so the rule can be trained on it and scores
    it, in the search and at run time alike (``max`` never lets such a sample exit either)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"top-k probabilities must be (N, k >= 1), not {p.shape}")
    p = np.where(np.isfinite(p), p, 0.0)
    top1 = p[:, 0]
    top2 = p[:, 1] if p.shape[1] > 1 else np.zeros_like(top1)
    clipped = np.clip(top1, _EPS, 1 - _EPS)
    log_odds = np.log(clipped) - np.log1p(-clipped)
    mass = p.sum(axis=1)
    q = np.clip(p, 0.0, None) / np.maximum(mass, _EPS)[:, None]
    entropy = -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(axis=1)
    return np.column_stack([top1, top2, log_odds, np.clip(1 - mass, 0.0, 1.0), entropy])


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A logistic rule on standardised ``FEATURES``: P(top-1 right) = sigmoid(z), with
    z = intercept + sum_j coef_j (x_j - mean_j) / scale_j. ``class_correct`` and ``class_total``
    (per predicted class, on the training samples) make the ``class_accuracy`` feature;
    ``topk``: how many of the top classes it was trained on (and reads)."""

    topk: int
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    class_correct: tuple[int, ...]
    class_total: tuple[int, ...]

    def class_accuracy(self, classes: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
        """Each predicted class's smoothed training accuracy (the overall one for a class never
        predicted in training, or beyond the table).

        ``own``: for the training samples themselves, whether each is right; it is taken out of
        its class's counts (leave-one-out), else the feature would hold the sample's own label
        and the rule would learn to trust a class's accuracy that is noise on new samples."""
        correct = np.asarray(self.class_correct, dtype=np.float64)
        total = np.asarray(self.class_total, dtype=np.float64)
        prior = correct.sum() / total.sum() if total.sum() else 0.5
        classes = np.asarray(classes, dtype=np.int64)
        known = (classes >= 0) & (classes < len(total))
        rows = np.where(known, classes, 0)
        right, seen = correct[rows], total[rows]
        if own is not None:
            right, seen = right - np.asarray(own, dtype=np.float64), seen - 1.0
        return np.where(known, (right + SMOOTHING * prior) / (seen + SMOOTHING), prior)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": "logistic",
            "version": RULE_VERSION,
            "features": list(FEATURES),
            "smoothing": SMOOTHING,
            "topk": self.topk,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "class_correct": list(self.class_correct),
            "class_total": list(self.class_total),
        }

    @classmethod
    def from_json(cls, stored: Any) -> Rule:
        """The rule of ``as_json``. A rule is read from the database and from an exported
        cascade's folder (user input): InputError, in one line, for anything else (another kind,
        version, features or smoothing; a field missing, of the wrong type, length or range)."""
        if not isinstance(stored, Mapping):
            raise InputError(f"a deferral rule must be a JSON object, not {_short(stored)}")
        for field, expected in (
            ("kind", "logistic"),
            ("version", RULE_VERSION),
            ("features", list(FEATURES)),
            ("smoothing", SMOOTHING),
        ):
            if stored.get(field) != expected:
                raise InputError(
                    f"a deferral rule of {field} {_short(stored.get(field))} is not one this "
                    f"saverzoo applies ({field} {_short(expected)})"
                )
        width = len(FEATURES)
        topk = _integers(stored, "topk", None)[0]
        scale = _numbers(stored, "scale", width)
        correct = _integers(stored, "class_correct", ...)
        total = _integers(stored, "class_total", len(correct))
        if not 1 <= topk <= MAX_TOPK:
            raise InputError(f"a deferral rule's topk must be 1 to {MAX_TOPK}, not {topk}")
        if not all(v > 0 for v in scale):
            raise InputError("a deferral rule's scale must be positive")
        if not all(0 <= c <= t for c, t in zip(correct, total, strict=True)):
            raise InputError("a deferral rule's class counts must be 0 <= correct <= total")
        return cls(
            topk=topk,
            mean=_numbers(stored, "mean", width),
            scale=scale,
            coef=_numbers(stored, "coef", width),
            intercept=_numbers(stored, "intercept", None)[0],
            class_correct=correct,
            class_total=total,
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _field(stored: Mapping[str, Any], name: str, length: int | EllipsisType | None) -> list:
    """``stored[name]`` as a list: a scalar where ``length`` is None, else a list of ``length``
    items (any length for ``...``)."""
    if name not in stored:
        raise InputError(f"a deferral rule lacks its {name!r}")
    value = stored[name]
    if length is None:
        return [value]
    if not isinstance(value, list) or (length is not ... and len(value) != length):
        wanted = "a list" if length is ... else f"a list of {length} numbers"
        raise InputError(f"a deferral rule's {name!r} must be {wanted}")
    return value


def _numbers(stored: Mapping[str, Any], name: str, length: int | None) -> tuple[float, ...]:
    values = _field(stored, name, length)
    if not all(_finite(v) for v in values):
        raise InputError(f"a deferral rule's {name!r} must hold finite numbers")
    return tuple(float(v) for v in values)


def _finite(value: Any) -> bool:
    # json.loads reads NaN and Infinity, and integers too large for a float.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _integers(
    stored: Mapping[str, Any], name: str, length: int | EllipsisType | None
) -> tuple[int, ...]:
    values = _field(stored, name, length)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise InputError(f"a deferral rule's {name!r} must hold whole numbers >= 0")
    return tuple(values)


def rule_features(rule: Rule, probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """float64 (N, 6): every feature of ``FEATURES`` as ``rule`` sees it."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < rule.topk:
        raise ValueError(
            f"the rule reads the top {rule.topk} probabilities of each output, not {probs.shape}"
        )
    top1_class = np.asarray(classes)[:, 0]
    return np.column_stack(
        [output_features(probs[:, : rule.topk]), rule.class_accuracy(top1_class)]
    )


def score(rule: Rule, probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """float32 (N,): the rule's probability that each top-1 answer is right.

    Feature by feature, not a matrix product: BLAS may sum a row in an order that depends on the
    batch, and the search and the runtime must get the same bits from the same output."""
    features = rule_features(rule, probs, classes)
    z = np.full(len(features), rule.intercept, dtype=np.float64)
    for j in range(features.shape[1]):
        z = z + (features[:, j] - rule.mean[j]) / rule.scale[j] * rule.coef[j]
    z = np.clip(z, -_LOGIT_LIMIT, _LOGIT_LIMIT)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
