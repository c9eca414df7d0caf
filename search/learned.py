"""The ``learned`` confidence: a post-hoc deferral rule per saver, trained on its own stored top-k
output to predict whether its top-1 answer is right (Jitkrittum et al., "When Does
Confidence-Based Cascade Deferral Suffice?", NeurIPS 2023), scored out of fold.

Honest by construction: a rule scores no sample it was trained on. The dataset's samples are
split into ``folds`` by a hash of their key (``fold_of``, independent of the calibration hash);

- ``in_sample``: each fold scored by the rule trained on the other folds;
- ``holdout``: the calibration half scored the same way within the half (folds restricted to
  it), and the evaluation half by the rule trained on the whole calibration half, so that a
  held-out threshold picked on the calibration half never saw an evaluation sample;
- ``everything`` (trained on every sample) and ``calibration`` (on the calibration half) are
  the rules a cascade deploys with the in-sample and the held-out threshold.

Pure functions on arrays; scikit-learn's logistic regression (``saverzoo[search]``) fits each
rule; ``db.deferral_rules`` holds the features and applies a rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cluster.errors import InputError
from db.deferral_rules import FEATURES, MAX_TOPK, Rule, output_features, score

REGULARISATION_C = 1.0  # scikit-learn's default L2 strength, on standardised features
INSTALL_HINT = "pip install 'saverzoo[search]'"


def fold_of(keys: Iterable[str], folds: int) -> np.ndarray:
    """int64 (N,): each sample's fold, from a hash of its key (the same on every machine).
    InputError for fewer than 2 folds: a fold's rule is trained on the others."""
    if not isinstance(folds, int) or folds < 2:
        raise InputError(f"the learned confidence needs 2 folds or more, not {folds!r}")
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(key.encode(), digest_size=8, person=b"saverzoo-folds").digest(),
                "big",
            )
            % folds
            for key in keys
        ],
        dtype=np.int64,
    )


def library_version() -> str:
    """The training library and its version, as stored with every rule."""
    return f"scikit-learn {_sklearn().__version__}"


def _sklearn():
    try:
        import sklearn
        from sklearn import linear_model  # noqa: F401  the estimator below
    except ImportError:
        raise InputError(
            f"learned confidence trains a rule per saver with scikit-learn, which is not "
            f"installed: {INSTALL_HINT}"
        ) from None
    return sklearn


def fit_rule(
    features: np.ndarray, top1: np.ndarray, correct: np.ndarray, train: np.ndarray, topk: int
) -> Rule:
    """The rule trained on the ``train`` samples: ``features`` (N, 5) from ``output_features`` of
    the top ``topk`` probabilities, ``top1`` (N,) the predicted classes, ``correct`` (N,) whether
    each is right.

    A training set whose answers are all right (or all wrong, or empty) has nothing to learn: its
    rule is a constant at that rate, and every sample ties."""
    y = np.asarray(correct, dtype=bool)[train]
    classes = np.asarray(top1, dtype=np.int64)
    width = max(int(classes.max()) + 1, 1) if len(classes) else 1
    # A class of -1 is "no prediction" (an image that did not decode): it has no row in the
    # table, and its class_accuracy is the overall one, as for a class never seen in training.
    predicted = classes[train] >= 0
    class_total = np.bincount(classes[train][predicted], minlength=width)
    class_correct = np.bincount(
        classes[train][predicted], weights=y[predicted], minlength=width
    ).astype(np.int64)
    table = {
        "class_correct": tuple(class_correct.tolist()),
        "class_total": tuple(class_total.tolist()),
    }
    unit = (1.0,) * len(FEATURES)
    constant = not len(y) or y.all() or not y.any()
    if constant:
        rate = (y.sum() + 0.5) / (len(y) + 1.0)  # never exactly 0 or 1
        zeros = (0.0,) * len(FEATURES)
        logit = float(np.log(rate / (1 - rate)))
        return Rule(topk=topk, mean=zeros, scale=unit, coef=zeros, intercept=logit, **table)
    partial = Rule(topk=topk, mean=(), scale=unit, coef=(), intercept=0.0, **table)
    x = np.column_stack([features[train], partial.class_accuracy(classes[train], own=y)])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    _sklearn()
    from sklearn.linear_model import LogisticRegression

    # Newton's method on a handful of features: the exact optimum in a few steps (twice as fast
    # as lbfgs here), deterministic, and so the same rule from any run on the same samples.
    model = LogisticRegression(C=REGULARISATION_C, solver="newton-cholesky", max_iter=100)
    model.fit((x - mean) / scale, y)
    return Rule(
        topk=topk,
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        coef=tuple(model.coef_[0].tolist()),
        intercept=float(model.intercept_[0]),
        **table,
    )


@dataclass(frozen=True)
class SaverRules:
    """Every rule of one saver on one dataset (see the module's docstring)."""

    folds: tuple[Rule, ...]  # rule j: trained on every fold but j
    calibration_folds: tuple[Rule, ...]  # rule j: on the calibration half's folds but j
    calibration: Rule  # on the whole calibration half
    everything: Rule  # on every sample

    def as_json(self) -> dict:
        return {
            "folds": [r.as_json() for r in self.folds],
            "calibration_folds": [r.as_json() for r in self.calibration_folds],
            "calibration": self.calibration.as_json(),
            "everything": self.everything.as_json(),
        }

    @classmethod
    def from_json(cls, stored: dict) -> SaverRules:
        return cls(
            tuple(Rule.from_json(r) for r in stored["folds"]),
            tuple(Rule.from_json(r) for r in stored["calibration_folds"]),
            Rule.from_json(stored["calibration"]),
            Rule.from_json(stored["everything"]),
        )


def train_rules(
    probs: np.ndarray,
    classes: np.ndarray,
    correct: np.ndarray,
    folds: np.ndarray,
    calibration: np.ndarray,
    num_folds: int,
) -> SaverRules:
    """One saver's rules from its top-k probabilities and classes (N, k), whether each top-1 is
    right (N,), each sample's fold (N,) and the calibration half (bool (N,)). The rules read the
    top ``min(k, MAX_TOPK)``: a cascade's runtime keeps no more of an output."""
    topk = min(probs.shape[1], MAX_TOPK)
    features, top1 = output_features(probs[:, :topk]), np.asarray(classes)[:, 0]
    everywhere = np.ones(len(top1), dtype=bool)

    def fit(train: np.ndarray) -> Rule:
        return fit_rule(features, top1, correct, train, topk)

    return SaverRules(
        folds=tuple(fit(folds != j) for j in range(num_folds)),
        calibration_folds=tuple(fit(calibration & (folds != j)) for j in range(num_folds)),
        calibration=fit(calibration),
        everything=fit(everywhere),
    )


def out_of_fold(
    rules: SaverRules,
    probs: np.ndarray,
    classes: np.ndarray,
    folds: np.ndarray,
    calibration: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """float32 (N,) twice: the in-sample scores (every fold by the rule that did not see it) and
    the held-out scores (calibration folds within the half, the evaluation half by the
    calibration rule). Where one half is empty the same holds: a rule trained on no sample is a
    constant, so an empty calibration half scores every sample alike."""
    in_sample = np.empty(len(folds), dtype=np.float32)
    for j, rule in enumerate(rules.folds):
        rows = folds == j
        in_sample[rows] = score(rule, probs[rows], classes[rows])
    holdout = np.empty(len(folds), dtype=np.float32)
    for j, rule in enumerate(rules.calibration_folds):
        rows = calibration & (folds == j)
        holdout[rows] = score(rule, probs[rows], classes[rows])
    evaluation = ~calibration
    holdout[evaluation] = score(rules.calibration, probs[evaluation], classes[evaluation])
    return in_sample, holdout
