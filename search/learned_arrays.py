"""The learned confidence over the database: each saver's rules trained once, stored
(``LearnedRules``), and applied to give its two search arrays, ``learned`` (in-sample: every
sample out of fold) and ``learned-ho`` (held-out: the calibration half out of fold within the
half, the evaluation half by the calibration half's rule).

A saver's rules are current while its predictions' revision, the dataset's labels, folds and
holdout fraction and the rule's version (``RULE_VERSION``) are those they were trained on;
otherwise they are trained again. Stored rules are applied, never retrained, so a library upgrade
changes no stored answer.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.errors import InputError
from db.deferral_rules import RULE_VERSION, score
from db.models import Dataset, LearnedRules, Model, utc_now
from db.queries import dataset_samples, prediction_revisions, topk_predictions
from db.search_arrays import labels_digest
from db.upsert import upsert
from search.criteria import LEARNED, LEARNED_HOLDOUT
from search.learned import SaverRules, fold_of, library_version, out_of_fold, train_rules
from search.pairs import calibration_mask

RULES_KEY = ["dataset_id", "model_id"]


def learned_basis(dataset: Dataset) -> str:
    """What a learned array is derived from besides the labels and the predictions."""
    return (
        f"learned rule={RULE_VERSION} folds={dataset.learned_folds} "
        f"holdout={dataset.holdout_fraction!r}"
    )


def derive_learned(
    session: Session, dataset: Dataset, model_ids: list[int], signal: str, *, store: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``db.search_arrays.Derive`` of the learned arrays: top-1 classes and scores (B, N) of
    ``signal`` (``learned`` or ``learned-ho``), each model's rules read where current, else
    trained and stored (in the caller's transaction; with ``store`` False, only used)."""
    if signal not in (LEARNED, LEARNED_HOLDOUT):
        raise ValueError(f"not a learned array: {signal!r}")
    revisions = prediction_revisions(session, dataset, model_ids)  # before the chunks are read
    samples = dataset_samples(session, dataset)
    folds = fold_of(samples.keys, dataset.learned_folds)
    calibration = calibration_mask(samples.keys, dataset.holdout_fraction)
    basis = labels_digest(samples.labels, learned_basis(dataset))
    stored = _current_rules(session, dataset, model_ids, revisions, basis)
    n = len(samples.labels)
    classes = np.empty((len(model_ids), n), dtype=np.int64)
    scores = np.empty((len(model_ids), n), dtype=np.float32)
    for row, model_id in enumerate(model_ids):
        top_classes, top_probs = topk_predictions(session, dataset, model_id)
        rules = stored.get(model_id)
        if rules is None:
            correct = top_classes[:, 0] == samples.labels
            rules = train_rules(
                top_probs, top_classes, correct, folds, calibration, dataset.learned_folds
            )
            if store:
                _store(session, dataset, model_id, revisions[model_id], n, basis, rules)
        in_sample, holdout = out_of_fold(rules, top_probs, top_classes, folds, calibration)
        classes[row] = top_classes[:, 0]
        scores[row] = in_sample if signal == LEARNED else holdout
    return classes, scores


def _current_rules(
    session: Session, dataset: Dataset, model_ids: list[int], revisions: dict, basis: str
) -> dict[int, SaverRules]:
    rows = session.execute(
        select(
            LearnedRules.model_id,
            LearnedRules.revision,
            LearnedRules.num_samples,
            LearnedRules.basis,
            LearnedRules.rules,
        ).where(LearnedRules.dataset_id == dataset.id, LearnedRules.model_id.in_(model_ids))
    )
    current = {}
    for model_id, revision, num_samples, stored_basis, rules in rows:
        if (revision, num_samples, stored_basis) != (
            revisions[model_id],
            dataset.num_samples,
            basis,
        ):
            continue
        try:
            saver_rules = SaverRules.from_json(rules)
        except (KeyError, TypeError, ValueError):
            continue  # stored by another version of the rule (or damaged): trained again
        if len(saver_rules.folds) == len(saver_rules.calibration_folds) == dataset.learned_folds:
            current[model_id] = saver_rules
    return current


def _store(
    session: Session,
    dataset: Dataset,
    model_id: int,
    revision: int,
    num_samples: int,
    basis: str,
    rules: SaverRules,
) -> None:
    row = {
        "dataset_id": dataset.id,
        "model_id": model_id,
        "revision": revision,
        "num_samples": num_samples,
        "basis": basis,
        "folds": dataset.learned_folds,
        "holdout_fraction": dataset.holdout_fraction,
        "library": library_version(),
        "rules": rules.as_json(),
        "computed_at": utc_now(),
    }
    upsert(session, LearnedRules, [row], key=RULES_KEY)


def stored_rules(session: Session, dataset: Dataset, savers: list[Model]) -> dict[int, SaverRules]:
    """The savers' current rules on the dataset (as their learned pairs were searched with), by
    model id; InputError where one has none stored or they are out of date."""
    ids = [saver.id for saver in savers]
    revisions = prediction_revisions(session, dataset, ids)
    basis = labels_digest(dataset_samples(session, dataset).labels, learned_basis(dataset))
    rules = _current_rules(session, dataset, ids, revisions, basis)
    for saver in savers:
        if saver.id not in rules:
            raise InputError(
                f"{saver.name!r} has no current learned rules on {dataset.name!r}; compute them "
                f"with `saverzoo savers best --dataset {dataset.name} --confidence learned`"
            )
    return rules


def transferred_scores(
    session: Session, dataset: Dataset, other: Dataset, savers: list[Model]
) -> dict[int, np.ndarray]:
    """float32 (N of ``other``) by saver id: each saver's rule trained on every sample of
    ``dataset`` (what a cascade exported with the in-sample threshold deploys), applied to its
    outputs on ``other``. The dataset's samples are read once for all of them."""
    rules = stored_rules(session, dataset, savers)
    scores = {}
    for saver in savers:
        classes, probs = topk_predictions(session, other, saver.id)
        scores[saver.id] = score(rules[saver.id].everything, probs, classes)
    return scores
