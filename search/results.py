"""Answers built from stored search results: every base's best saver (in GMACs, in latency, picked
on one dataset and scored on another), its best cascade of three, and a pair's curve.

Every answer is a list of rows, one per base, made by one row builder (``answer_row``) from the
reported fields (``search.views``) and the scores (``search.scores``). Nothing here writes: a
budget or a confidence signal is added by ``search.service``. Errors about the question name its
parameters (``search.parameters.ParameterError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from cluster.errors import InputError
from db.models import BestSaver, ChainResult, Dataset, Model, ModelThroughput, PairResult
from db.queries import (
    Conflict,
    NotFound,
    complete_model_ids,
    dataset_samples,
    get_model,
    require_complete,
    top1_predictions,
)
from search.best import HOLDOUT, IN_SAMPLE
from search.costs import COST_COLUMNS, latency_per_image, recost_pair, stored_cost_ratio
from search.criteria import BUDGET, LEARNED, MAX_PROBABILITY
from search.engine import Zoo, pair_curve, pareto_front
from search.parameters import check_confidence
from search.scores import AnswerScores, gmacs_of
from search.selection import SAVING_DECIMALS, has_saver, rank_key
from search.transfer import score_cascade
from search.views import CHAIN_FIELDS, TRANSFER_FIELDS, fields_for, point_view

# What re-costing reads of a stored pair.
RECOST_INPUTS = (*COST_COLUMNS, "exit_ratio", "holdout_exit_ratio")


def answer_row(base: str, fields: tuple[str, ...], view: Mapping[str, Any]) -> dict[str, Any]:
    """One base's row of any answer: ``base``, then each of ``fields`` in order, from ``view``
    (None where the view has none: a base that nothing saves keeps only its frontier)."""
    return {"base": base, **{field: view.get(field) for field in fields}}


def best_savers(
    session: Session,
    dataset: Dataset,
    *,
    criterion: str,
    max_drop_centipoints: int,
    holdout: bool = False,
    base: str | None = None,
    confidence: str = MAX_PROBABILITY,
) -> list[dict[str, Any]]:
    """One row per base model of the dataset (cheapest first), with its best saver or null."""
    complete, model_ids = _bases(session, dataset, base)
    bases = session.scalars(
        select(Model).where(Model.id.in_(model_ids)).order_by(Model.gmacs, Model.name)
    ).all()
    best = _stored_best(
        session, dataset, criterion, max_drop_centipoints, holdout, model_ids, confidence
    )
    fields = ("saver", *fields_for(criterion, holdout))
    scores = AnswerScores(session, dataset, gmacs_of(session, complete), holdout)
    rows = []
    for model in bases:
        view = scores.frontier_of_base(model.name)
        if model.id in best:
            name, pair = best[model.id]
            selection_saving = pair.holdout_calibration_saving if holdout else pair.saving
            if has_saver(criterion, selection_saving):
                view = {"saver": name, **scores.answer_view(pair, criterion, model.name)}
        rows.append(answer_row(model.name, fields, view))
    return rows


def _stored_best(
    session: Session,
    dataset: Dataset,
    criterion: str,
    cp: int,
    holdout: bool,
    base_ids: list[int],
    confidence: str = MAX_PROBABILITY,
) -> dict[int, tuple[str, PairResult]]:
    """Each base's stored best pair under the criterion, with its saver's name."""
    saver = aliased(Model)
    rows = session.execute(
        select(BestSaver.base_id, saver.name, PairResult)
        .join(PairResult, PairResult.id == BestSaver.pair_id)
        .join(saver, saver.id == PairResult.saver_id)
        .where(
            BestSaver.dataset_id == dataset.id,
            BestSaver.criterion == criterion,
            BestSaver.max_drop_centipoints == cp,
            BestSaver.selection == (HOLDOUT if holdout else IN_SAMPLE),
            BestSaver.confidence == confidence,
            BestSaver.base_id.in_(base_ids),
        )
    ).all()
    return {base_id: (name, pair) for base_id, name, pair in rows}


def transferred_savers(
    session: Session,
    dataset: Dataset,
    other: Dataset,
    *,
    criterion: str,
    max_drop_centipoints: int,
    base: str | None = None,
    confidence: str = MAX_PROBABILITY,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each base's best saver and threshold as picked on ``dataset``, scored on ``other``.

    Returns one row per base complete on both (cheapest first), with the picking dataset's
    accuracy and saving as ``in_sample_*``, and the bases left out because they, or their saver,
    have no complete predictions on ``other``. InputError when nothing can be scored there.
    """
    _, complete = _bases(session, dataset, base)  # the bases asked about
    elsewhere = set(complete_model_ids(session, other))
    models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(complete)))}
    best = _stored_best(
        session, dataset, criterion, max_drop_centipoints, False, complete, confidence
    )
    names = {m.name: m.id for m in session.scalars(select(Model).where(Model.id.in_(elsewhere)))}
    kept, left_out = [], []
    for model in sorted(models.values(), key=lambda m: (m.gmacs, m.name)):
        saver = best.get(model.id)
        if saver is not None and not has_saver(criterion, saver[1].saving):
            saver = None
        if model.id not in elsewhere or (saver is not None and saver[0] not in names):
            left_out.append(model.name)
        else:
            kept.append((model, saver))
    if base is not None and left_out:
        missing = base if complete[0] not in elsewhere else best[complete[0]][0]
        raise NotFound(f"model {missing!r} has no complete predictions on {other.name!r}")
    if not kept:
        raise InputError(
            f"no model of {dataset.name!r} has complete predictions on {other.name!r}: evaluate "
            f"them there first"
        )
    read = sorted({m.id for m, _ in kept} | {names[s[0]] for _, s in kept if s is not None})
    row_of = {model_id: row for row, model_id in enumerate(read)}
    savers = {names[s[0]] for _, s in kept if s is not None}
    classes, probs = _transferred(session, dataset, other, read, confidence, savers)
    right = classes == dataset_samples(session, other).labels[None, :]
    scores = AnswerScores(session, other, gmacs_of(session, sorted(elsewhere)), False)
    rows = []
    for model, saver in kept:
        b = row_of[model.id]
        if saver is None:
            view = scores.frontier(model.name, model.gmacs, int(right[b].sum()))
        else:
            name, pair = saver
            s = row_of[names[name]]
            ratio = stored_cost_ratio(pair.relative_cost, pair.exit_ratio)
            scored = score_cascade(right[b], right[s], probs[s], pair.threshold, ratio)
            view = {
                "saver": name,
                "threshold": pair.threshold,
                "in_sample_accuracy": pair.accuracy,
                "in_sample_saving": pair.saving,
                "exit_ratio": scored.exit_ratio,
                "accuracy": scored.accuracy,
                "base_accuracy": scored.base_accuracy,
                "relative_cost": scored.relative_cost,
                "saving": scored.saving,
                **scores.frontier(model.name, model.gmacs * scored.relative_cost, scored.correct),
            }
        rows.append(answer_row(model.name, ("saver", *TRANSFER_FIELDS), view))
    return rows, left_out


def chain_savers(
    session: Session,
    dataset: Dataset,
    *,
    max_drop_centipoints: int,
    candidates: int,
    base: str | None = None,
) -> list[dict[str, Any]]:
    """Each base's best cascade of up to three models under a budget, cheapest base first: the
    stored chain s1 -> s2 -> base where it beats the base's best pair, else that pair, else none.

    Conflict when a base has no stored chain for this budget and candidate count (`saverzoo
    savers best --stages 3` computes them).
    """
    complete, base_ids = _bases(session, dataset, base)
    models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(complete)))}
    chains = {
        row.base_id: row
        for row in session.scalars(
            select(ChainResult).where(
                ChainResult.dataset_id == dataset.id,
                ChainResult.max_drop_centipoints == max_drop_centipoints,
                ChainResult.candidates == candidates,
                ChainResult.base_id.in_(base_ids),
            )
        )
    }
    if missing := [models[b].name for b in base_ids if b not in chains]:
        raise Conflict(
            f"{len(missing)} bases of {dataset.name!r} have no three-model results for budget "
            f"{max_drop_centipoints / 100:g} and {candidates} candidates (first: {missing[0]!r}); "
            f"compute them with `saverzoo savers best --dataset {dataset.name} --stages 3 "
            f"--max-drop {max_drop_centipoints / 100:g} --candidates {candidates}`"
        )
    pairs = _stored_best(session, dataset, BUDGET, max_drop_centipoints, False, base_ids)
    scores = AnswerScores(session, dataset, gmacs_of(session, complete), False)
    ordered = sorted((models[b] for b in base_ids), key=lambda m: (m.gmacs, m.name))
    return [
        answer_row(
            m.name, CHAIN_FIELDS, _chain_view(m, chains[m.id], pairs.get(m.id), models, scores)
        )
        for m in ordered
    ]


def _chain_view(
    model: Model,
    row: ChainResult,
    pair: tuple[str, PairResult] | None,
    models: dict[int, Model],
    scores: AnswerScores,
) -> dict[str, Any]:
    """The chain where it beats the base's best pair, else that pair, else no saver (an empty
    chain)."""
    pair_saving = pair[1].saving if pair and has_saver(BUDGET, pair[1].saving) else None
    if (
        row.saving is not None
        and has_saver(BUDGET, row.saving)
        and (
            pair_saving is None
            or round(row.saving, SAVING_DECIMALS) > round(pair_saving, SAVING_DECIMALS)
        )
    ):
        assert row.s1_id is not None and row.s2_id is not None and row.correct is not None
        relative_cost = 1.0 - row.saving
        return {
            "chain": [models[row.s1_id].name, models[row.s2_id].name],
            "thresholds": [row.threshold1, row.threshold2],
            "exit_ratios": [row.exit1, row.exit2],
            "accuracy": row.correct / row.samples,
            "base_accuracy": pair[1].base_accuracy if pair else None,
            "relative_cost": relative_cost,
            "saving": row.saving,
            **scores.frontier(model.name, model.gmacs * relative_cost, row.correct),
        }
    if pair is not None and pair_saving is not None:
        name, stored = pair
        correct = round(stored.accuracy * row.samples)
        return {
            "chain": [name],
            "thresholds": [stored.threshold],
            "exit_ratios": [stored.exit_ratio],
            "accuracy": stored.accuracy,
            "base_accuracy": stored.base_accuracy,
            "relative_cost": stored.relative_cost,
            "saving": stored.saving,
            **scores.frontier(model.name, model.gmacs * stored.relative_cost, correct),
        }
    return {"chain": [], **scores.frontier_of_base(model.name)}


def _bases(session: Session, dataset: Dataset, base: str | None) -> tuple[list[int], list[int]]:
    """The dataset's complete models, and the bases asked about: BASE (NotFound unless it is
    complete there) or all of them."""
    complete = complete_model_ids(session, dataset)
    if base is None:
        return complete, complete
    wanted = get_model(session, base)
    require_complete(session, dataset, wanted)
    return complete, [wanted.id]


def latency_best_savers(
    session: Session,
    dataset: Dataset,
    *,
    device_type: str,
    criterion: str,
    max_drop_centipoints: int,
    holdout: bool = False,
    base: str | None = None,
    confidence: str = MAX_PROBABILITY,
) -> tuple[list[dict[str, Any]], list[str]]:
    """``best_savers`` with each model's cost its latency per image on ``device_type``.

    Candidates are the stored pairs (savers cheaper than their base in GMACs: the pairs the search
    keeps) whose saver is also faster than the base on the device, both measured there; each is
    re-costed (``search.costs``) and ranked as ``search.best`` ranks GMACs results. Returns one
    row per base, fastest first (bases without a measurement last, with no saver), and the names
    of those unmeasured bases.
    """
    complete, base_ids = _bases(session, dataset, base)
    models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(complete)))}
    latency = {
        model_id: latency_per_image(images_per_s)
        for model_id, images_per_s in session.execute(
            select(ModelThroughput.model_id, ModelThroughput.images_per_s).where(
                ModelThroughput.device_type == device_type,
                ModelThroughput.model_id.in_(complete),
                ModelThroughput.images_per_s > 0,
            )
        )
    }
    best = _fastest_best(
        session,
        dataset,
        criterion,
        max_drop_centipoints,
        holdout,
        confidence,
        base_ids,
        base,
        latency,
        models,
    )
    fields = ("saver", *fields_for(criterion, holdout))
    ordered = sorted(
        (models[i] for i in base_ids),
        key=lambda m: (m.id not in latency, latency.get(m.id, 0.0), m.gmacs, m.name),
    )
    scores = AnswerScores(session, dataset, latency, holdout)  # models measured there
    rows = []
    for model in ordered:
        view = scores.frontier_of_base(model.name)
        if model.id in best:
            pair, costs = best[model.id]
            selection_saving = costs["holdout_calibration_saving" if holdout else "saving"]
            if has_saver(criterion, selection_saving):
                view = {
                    "saver": models[pair.saver_id].name,
                    **scores.answer_view(pair, criterion, model.name, costs),
                }
        rows.append(answer_row(model.name, fields, view))
    return rows, [m.name for m in ordered if m.id not in latency]


def _fastest_best(
    session: Session,
    dataset: Dataset,
    criterion: str,
    cp: int,
    holdout: bool,
    confidence: str,
    base_ids: list[int],
    base: str | None,
    latency: dict[int, float],
    models: dict[int, Model],
) -> dict[int, tuple[PairResult, dict[str, float]]]:
    """Each base's best stored pair re-costed in latency, with its re-costed columns."""
    query = select(PairResult).where(
        PairResult.dataset_id == dataset.id,
        PairResult.criterion == criterion,
        PairResult.max_drop_centipoints == cp,
        PairResult.confidence == confidence,
    )
    if base is not None:
        query = query.where(PairResult.base_id == base_ids[0])
    best: dict[int, tuple[tuple[Any, ...], PairResult, dict[str, float]]] = {}
    for pair in session.scalars(query):
        b, s = pair.base_id, pair.saver_id
        if b not in latency or s not in latency or not latency[s] < latency[b]:
            continue
        costs = recost_pair({c: getattr(pair, c) for c in RECOST_INPUTS}, latency[s] / latency[b])
        selection_saving = costs["holdout_calibration_saving" if holdout else "saving"]
        accuracy = pair.holdout_calibration_accuracy if holdout else pair.accuracy
        key = rank_key(criterion, selection_saving, accuracy, latency[s], models[s].name)
        if b not in best or key < best[b][0]:
            best[b] = (key, pair, costs)
    return {b: (pair, costs) for b, (_, pair, costs) in best.items()}


def _transferred(
    session: Session,
    dataset: Dataset,
    other: Dataset,
    model_ids: list[int],
    confidence: str,
    savers: set[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 classes and confidences of ``model_ids`` on ``other``; a learned confidence is
    each saver's rule trained on ``dataset``, applied there (a base's confidence is never read,
    so its rule is not either)."""
    if confidence != LEARNED:
        return top1_predictions(session, other, model_ids, confidence)
    from search.learned_arrays import transferred_scores

    classes, probs = top1_predictions(session, other, model_ids, MAX_PROBABILITY)
    chosen = select(Model).where(Model.id.in_(savers)).order_by(Model.id)
    saver_models = list(session.scalars(chosen))
    scored = transferred_scores(session, dataset, other, saver_models)
    for row, model_id in enumerate(model_ids):
        if model_id in scored:
            probs[row] = scored[model_id]
    return classes, probs


def curve(
    session: Session,
    dataset: Dataset,
    base: str,
    saver: str,
    confidence: str = MAX_PROBABILITY,
) -> dict[str, Any]:
    """Every distinct exit set of a pair and its Pareto front (computed from predictions), the
    saver's exits decided on ``confidence``."""
    check_confidence(confidence)
    base_model, saver_model = get_model(session, base), get_model(session, saver)
    require_complete(session, dataset, base_model, saver_model)
    if not saver_model.gmacs < base_model.gmacs:
        raise InputError(
            f"{saver!r} ({saver_model.gmacs:g} GMACs) is not cheaper than {base!r} "
            f"({base_model.gmacs:g} GMACs), so it cannot save it"
        )
    ids = [base_model.id, saver_model.id]
    if confidence == LEARNED:  # the saver's out-of-fold scores, as its pairs are searched on
        from search.learned_arrays import derive_learned

        # A base's confidence is never read: its rules are neither read nor trained.
        classes, probs = top1_predictions(session, dataset, ids, MAX_PROBABILITY)
        _, saver_scores = derive_learned(session, dataset, [saver_model.id], LEARNED, store=False)
        probs[1] = saver_scores[0]
    else:
        classes, probs = top1_predictions(session, dataset, ids, confidence)
    labels = dataset_samples(session, dataset).labels
    zoo = Zoo.from_predictions(
        [base, saver], [base_model.gmacs, saver_model.gmacs], classes, probs, labels
    )
    return {**curve_of(zoo, 0, 1, dataset.name), "confidence": confidence}


def curve_of(zoo: Zoo, base: int, saver: int, dataset_name: str) -> dict[str, Any]:
    """A pair's every exit set and Pareto front, as ``curve`` returns them (pure)."""
    points = pair_curve(zoo, base, saver)
    return {
        "base": zoo.names[base],
        "saver": zoo.names[saver],
        "dataset": dataset_name,
        "base_accuracy": points[0].base_accuracy,
        "saver_accuracy": points[-1].accuracy,
        "cost_ratio": points[0].cost_ratio,
        "pareto_front": [point_view(p) for p in pareto_front(points)],
        "num_exit_sets": len(points),
    }
