"""Read stored search results in the shapes every answer (CLI, HTTP API, report) is built from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

if TYPE_CHECKING:  # the service computes; reading results needs none of it
    from search.service import Progress, SaverSearch

from cluster.errors import InputError
from db.models import (
    BestSaver,
    ChainResult,
    Dataset,
    Model,
    ModelScore,
    ModelThroughput,
    PairResult,
)
from db.queries import (
    Conflict,
    NotFound,
    complete_model_ids,
    dataset_samples,
    get_model,
    lock_dataset_search,
    require_complete,
    top1_predictions,
)
from search.best import HOLDOUT, IN_SAMPLE
from search.costs import COST_COLUMNS, latency_per_image, recost_pair, stored_cost_ratio
from search.criteria import BUDGET, CONFIDENCES, MARGIN, MAX_PROBABILITY, PAPER
from search.engine import Zoo, pair_curve, pareto_front
from search.frontier import SingleModel, SingleModels
from search.intervals import bootstrap_saving, wilson
from search.selection import SAVING_DECIMALS, centipoints, has_saver, rank_key
from search.transfer import score_cascade

# Every best-saver answer ends with the single-model frontier (search.frontier).
FRONTIER_FIELDS = ("frontier_model", "frontier_saving")
BUDGET_FIELDS = (
    "threshold",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    *FRONTIER_FIELDS,
)
PAPER_FIELDS = ("threshold", "exit_ratio", "delta_c", *FRONTIER_FIELDS)
# Held-out answers also say how sure they are (search.intervals).
INTERVAL_FIELDS = ("accuracy_ci", "saving_ci")
# Picked on one dataset, scored on another (search.transfer): the picking dataset's figures as
# in_sample_*, the rest measured on the other.
TRANSFER_FIELDS = (
    "threshold",
    "in_sample_accuracy",
    "in_sample_saving",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    *FRONTIER_FIELDS,
)
HOLDOUT_FIELDS = (
    "threshold",
    "in_sample_accuracy",
    "in_sample_saving",
    "exit_ratio",
    "accuracy",
    "accuracy_ci",
    "base_accuracy",
    "relative_cost",
    "saving",
    "saving_ci",
    *FRONTIER_FIELDS,
)
# What re-costing reads of a stored pair.
RECOST_INPUTS = (*COST_COLUMNS, "exit_ratio", "holdout_exit_ratio")


def fields_for(criterion: str, holdout: bool, transfer: bool = False) -> tuple[str, ...]:
    if transfer:
        return TRANSFER_FIELDS
    if holdout:
        return HOLDOUT_FIELDS
    return PAPER_FIELDS if criterion == PAPER else BUDGET_FIELDS


def pair_view(pair: PairResult, criterion: str, holdout: bool, costs: dict | None = None) -> dict:
    """The reported fields of a pair; ``costs`` replaces its ``COST_COLUMNS`` (see recost_pair)."""

    def value(column: str) -> float:
        return costs[column] if costs and column in costs else getattr(pair, column)

    if holdout:
        return {
            "threshold": pair.holdout_threshold,
            "in_sample_accuracy": pair.holdout_calibration_accuracy,
            "in_sample_saving": value("holdout_calibration_saving"),
            "exit_ratio": pair.holdout_exit_ratio,
            "accuracy": pair.holdout_accuracy,
            "base_accuracy": pair.holdout_base_accuracy,
            "relative_cost": 1.0 - value("holdout_saving"),
            "saving": value("holdout_saving"),
        }  # the intervals and the frontier come from AnswerScores
    if criterion == PAPER:
        return {
            "threshold": pair.threshold,
            "exit_ratio": pair.exit_ratio,
            "delta_c": -value("saving"),
        }
    return {field: value(field) for field in BUDGET_FIELDS if field not in FRONTIER_FIELDS}


def answer_view(
    pair: PairResult,
    criterion: str,
    holdout: bool,
    scores: AnswerScores,
    base: str,
    costs: dict | None = None,
) -> dict:
    """Every reported field of a stored cascade: ``pair_view``, its frontier and, held out, its
    intervals."""
    view = pair_view(pair, criterion, holdout, costs)
    view.update(scores.frontier_of_pair(base, pair, view))
    if holdout:
        view.update(scores.intervals(pair, view))
    return view


def gmacs_of(session: Session, model_ids: list[int]) -> dict[int, float]:
    return dict(session.execute(select(Model.id, Model.gmacs).where(Model.id.in_(model_ids))).all())


class AnswerScores:
    """What a dataset's answers need of each model's correct count, on the samples an answer is
    scored on (the evaluation half for held-out answers): each cascade's frontier, the cheapest
    single model at least as accurate (``search.frontier``), and held-out intervals.

    ``costs`` maps model ids to the answer's cost (GMACs or latency); models without a stored
    score (results computed before scores were kept: ``saverzoo savers refresh`` adds them) or
    without a cost take no part, and a base without one has no frontier.
    """

    def __init__(
        self, session: Session, dataset: Dataset, costs: dict[int, float], holdout: bool
    ) -> None:
        names = dict(session.execute(select(Model.id, Model.name).where(Model.id.in_(costs))).all())
        scores = session.execute(
            select(ModelScore).where(
                ModelScore.dataset_id == dataset.id, ModelScore.model_id.in_(costs)
            )
        ).scalars()
        singles: list[SingleModel] = []
        self.samples: int | None = None  # the samples answers are scored on; None: no score
        for score in scores:
            correct, self.samples = (
                (score.holdout_correct, score.holdout_samples)
                if holdout
                else (score.correct, score.samples)
            )
            singles.append(SingleModel(names[score.model_id], costs[score.model_id], correct))
        self._singles = SingleModels(singles)
        self._correct = {m.name: m.correct for m in singles}
        self._cost = {names[i]: c for i, c in costs.items() if i in names}
        self.holdout = holdout

    def frontier_of_base(self, base: str) -> dict:
        """The frontier of the base alone (a base without a saver)."""
        if base not in self._singles:
            return dict.fromkeys(FRONTIER_FIELDS)
        return self._fields(base, self._cost[base], self._correct[base])

    def frontier_of_pair(self, base: str, pair: PairResult, view: dict) -> dict:
        """The frontier of a stored cascade whose reported fields are ``view`` (``pair_view``,
        whose costs may be re-costed)."""
        if base not in self._singles or self.samples is None:
            return dict.fromkeys(FRONTIER_FIELDS)
        accuracy = pair.holdout_accuracy if self.holdout else pair.accuracy
        relative_cost = view["relative_cost"] if "relative_cost" in view else 1 + view["delta_c"]
        correct = round(accuracy * self.samples)
        return self._fields(base, self._cost[base] * relative_cost, correct)

    def intervals(self, pair: PairResult, view: dict) -> dict:
        """95% intervals of a held-out answer's accuracy (Wilson) and saving (bootstrap)."""
        n = self.samples
        if n is None:
            return dict.fromkeys(INTERVAL_FIELDS)
        cost_ratio = view["exit_ratio"] - view["saving"]  # saving = r - cost_s / cost_b
        return {
            "accuracy_ci": list(wilson(round(pair.holdout_accuracy * n), n)),
            "saving_ci": list(bootstrap_saving(round(pair.holdout_exit_ratio * n), n, cost_ratio)),
        }

    def frontier(self, base: str, cascade_cost: float, correct: int) -> dict:
        """The frontier of any cascade of ``base``: its cost and how many samples it gets right."""
        if base not in self._singles:
            return dict.fromkeys(FRONTIER_FIELDS)
        return self._fields(base, cascade_cost, correct)

    def _fields(self, base: str, cascade_cost: float, correct: int) -> dict:
        frontier = self._singles.frontier(base, cascade_cost, correct)
        return {"frontier_model": frontier.model, "frontier_saving": frontier.saving}


def check_confidence(confidence: str) -> str:
    """``confidence`` if it is a confidence signal, else InputError."""
    if confidence not in CONFIDENCES:
        raise InputError(
            f"confidence must be {MAX_PROBABILITY!r} or {MARGIN!r}, not {confidence!r}"
        )
    return confidence


def check_kept_signal(dataset: Dataset, confidence: str) -> None:
    """InputError unless the dataset keeps pairs on ``confidence``."""
    check_confidence(confidence)
    if confidence not in (dataset.confidence_signals or [MAX_PROBABILITY]):
        raise InputError(
            f"{dataset.name!r} keeps no pairs on {confidence} confidence yet; compute them with "
            f"`saverzoo savers best --dataset {dataset.name} --confidence {confidence}`"
        )


def add_signal(
    session: Session,
    dataset: Dataset,
    confidence: str,
    search: SaverSearch,
    progress: Progress | None = None,
) -> None:
    """Keep pairs on one more confidence signal from now on, and compute them for every pair."""
    lock_dataset_search(session, dataset)
    session.refresh(dataset)
    dataset.confidence_signals = sorted({*(dataset.confidence_signals or []), confidence})
    session.flush()
    search.refresh(session, dataset, progress=progress)


def budget_key(dataset: Dataset, criterion: str, max_drop: float | None) -> tuple[int, bool]:
    """The stored key of a criterion, and whether the dataset already keeps it.

    ``max_drop`` None is no drop (0 points), as ``SaverQuery.checked`` fills it in.
    """
    if criterion == PAPER:
        return 0, True
    cp = centipoints(0.0 if max_drop is None else max_drop)
    return cp, cp in dataset.budgets_centipoints


def add_budget(
    session: Session,
    dataset: Dataset,
    cp: int,
    search: SaverSearch,
    progress: Progress | None = None,
) -> None:
    """Keep one more budget for the dataset from now on, and compute it for every pair."""
    lock_dataset_search(session, dataset)  # a concurrent addition commits first: none is lost
    session.refresh(dataset)
    dataset.budgets_centipoints = sorted({*dataset.budgets_centipoints, cp})
    session.flush()
    search.refresh(session, dataset, progress=progress)


def best_savers(
    session: Session,
    dataset: Dataset,
    *,
    criterion: str,
    max_drop_centipoints: int,
    holdout: bool = False,
    base: str | None = None,
    confidence: str = MAX_PROBABILITY,
) -> list[dict]:
    """One object per base model of the dataset (cheapest first), with its best saver or null."""
    complete, model_ids = _bases(session, dataset, base)
    bases = session.scalars(
        select(Model).where(Model.id.in_(model_ids)).order_by(Model.gmacs, Model.name)
    ).all()
    best = _stored_best(
        session, dataset, criterion, max_drop_centipoints, holdout, model_ids, confidence
    )
    fields = fields_for(criterion, holdout)
    scores = AnswerScores(session, dataset, gmacs_of(session, complete), holdout)
    result = []
    for model in bases:
        entry = {"base": model.name, "saver": None, **dict.fromkeys(fields)}
        entry.update(scores.frontier_of_base(model.name))
        if model.id in best:
            name, pair = best[model.id]
            selection_saving = pair.holdout_calibration_saving if holdout else pair.saving
            if has_saver(criterion, selection_saving):
                entry.update(
                    saver=name, **answer_view(pair, criterion, holdout, scores, model.name)
                )
        result.append(entry)
    return result


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
) -> tuple[list[dict], list[str]]:
    """Each base's best saver and threshold as picked on ``dataset``, scored on ``other``.

    Returns one object per base complete on both (cheapest first), with the picking dataset's
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
    classes, probs = top1_predictions(session, other, read, confidence)
    right = classes == dataset_samples(session, other).labels[None, :]
    scores = AnswerScores(session, other, gmacs_of(session, sorted(elsewhere)), False)
    result = []
    for model, saver in kept:
        entry = {"base": model.name, "saver": None, **dict.fromkeys(TRANSFER_FIELDS)}
        b = row_of[model.id]
        if saver is None:
            entry.update(scores.frontier(model.name, model.gmacs, int(right[b].sum())))
        else:
            name, pair = saver
            s = row_of[names[name]]
            ratio = stored_cost_ratio(pair.relative_cost, pair.exit_ratio)
            scored = score_cascade(right[b], right[s], probs[s], pair.threshold, ratio)
            entry.update(
                saver=name,
                threshold=pair.threshold,
                in_sample_accuracy=pair.accuracy,
                in_sample_saving=pair.saving,
                exit_ratio=scored.exit_ratio,
                accuracy=scored.accuracy,
                base_accuracy=scored.base_accuracy,
                relative_cost=scored.relative_cost,
                saving=scored.saving,
                **scores.frontier(model.name, model.gmacs * scored.relative_cost, scored.correct),
            )
        result.append(entry)
    return result, left_out


CHAIN_FIELDS = (
    "chain",
    "thresholds",
    "exit_ratios",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    *FRONTIER_FIELDS,
)


def chain_savers(
    session: Session,
    dataset: Dataset,
    *,
    max_drop_centipoints: int,
    candidates: int,
    base: str | None = None,
) -> list[dict]:
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
    return [_chain_entry(m, chains[m.id], pairs.get(m.id), models, scores) for m in ordered]


def _chain_entry(
    model: Model,
    row: ChainResult,
    pair: tuple[str, PairResult] | None,
    models: dict[int, Model],
    scores: AnswerScores,
) -> dict[str, Any]:
    """The chain where it beats the base's best pair, else that pair, else no saver."""
    entry: dict[str, Any] = {"base": model.name, "chain": [], **dict.fromkeys(CHAIN_FIELDS[1:])}
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
            **entry,
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
            **entry,
            "chain": [name],
            "thresholds": [stored.threshold],
            "exit_ratios": [stored.exit_ratio],
            "accuracy": stored.accuracy,
            "base_accuracy": stored.base_accuracy,
            "relative_cost": stored.relative_cost,
            "saving": stored.saving,
            **scores.frontier(model.name, model.gmacs * stored.relative_cost, correct),
        }
    return {**entry, **scores.frontier_of_base(model.name)}


def _bases(session: Session, dataset: Dataset, base: str | None) -> tuple[list[int], list[int]]:
    """The dataset's complete models, and the bases asked about: BASE (NotFound unless it is
    complete there) or all of them."""
    complete = complete_model_ids(session, dataset)
    if base is None:
        return complete, complete
    wanted = get_model(session, base)
    require_complete(session, dataset, wanted)
    return complete, [wanted.id]


def measured_device_types(session: Session, model_ids: list[int]) -> list[str]:
    """Device types with a throughput measured for at least one of ``model_ids``."""
    if not model_ids:
        return []
    return list(
        session.scalars(
            select(ModelThroughput.device_type)
            .where(ModelThroughput.model_id.in_(model_ids))
            .distinct()
            .order_by(ModelThroughput.device_type)
        )
    )


def check_device_type(session: Session, dataset: Dataset, device_type: str | None) -> str:
    """``device_type`` if the dataset's models have throughput measured on it; else InputError."""
    measured = measured_device_types(session, complete_model_ids(session, dataset))
    known = (
        f"measured for {dataset.name!r}: {', '.join(repr(d) for d in measured)}"
        if measured
        else f"no model of {dataset.name!r} has a measured throughput yet"
    )
    if device_type is None:
        raise InputError(f"--cost latency needs --device-type ({known})")
    if device_type not in measured:
        raise InputError(f"no throughput measured on device type {device_type!r} ({known})")
    return device_type


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
) -> tuple[list[dict], list[str]]:
    """``best_savers`` with each model's cost its latency per image on ``device_type``.

    Candidates are the stored pairs (savers cheaper than their base in GMACs: the pairs the search
    keeps) whose saver is also faster than the base on the device, both measured there; each is
    re-costed (``search.costs``) and ranked as ``search.best`` ranks GMACs results. Returns one
    object per base, fastest first (bases without a measurement last, with no saver), and the names
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
    query = select(PairResult).where(
        PairResult.dataset_id == dataset.id,
        PairResult.criterion == criterion,
        PairResult.max_drop_centipoints == max_drop_centipoints,
        PairResult.confidence == confidence,
    )
    if base is not None:
        query = query.where(PairResult.base_id == base_ids[0])
    best: dict[int, tuple[tuple, PairResult, dict]] = {}
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
    fields = fields_for(criterion, holdout)
    ordered = sorted(
        (models[i] for i in base_ids),
        key=lambda m: (m.id not in latency, latency.get(m.id, 0.0), m.gmacs, m.name),
    )
    scores = AnswerScores(session, dataset, latency, holdout)  # models measured there
    result = []
    for model in ordered:
        entry = {"base": model.name, "saver": None, **dict.fromkeys(fields)}
        entry.update(scores.frontier_of_base(model.name))
        if model.id in best:
            _, pair, costs = best[model.id]
            selection_saving = costs["holdout_calibration_saving" if holdout else "saving"]
            if has_saver(criterion, selection_saving):
                entry.update(
                    saver=models[pair.saver_id].name,
                    **answer_view(pair, criterion, holdout, scores, model.name, costs),
                )
        result.append(entry)
    return result, [m.name for m in ordered if m.id not in latency]


def curve(
    session: Session,
    dataset: Dataset,
    base: str,
    saver: str,
    confidence: str = MAX_PROBABILITY,
) -> dict:
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
    classes, probs = top1_predictions(session, dataset, ids, confidence)
    labels = dataset_samples(session, dataset).labels
    zoo = Zoo.from_predictions(
        [base, saver], [base_model.gmacs, saver_model.gmacs], classes, probs, labels
    )
    return {**curve_of(zoo, 0, 1, dataset.name), "confidence": confidence}


def curve_of(zoo: Zoo, base: int, saver: int, dataset_name: str) -> dict:
    """A pair's every exit set and Pareto front, as ``curve`` returns them (pure)."""
    points = pair_curve(zoo, base, saver)
    front = pareto_front(points)

    def as_dict(p):
        return {
            "threshold": p.threshold,
            "exit_ratio": p.exit_ratio,
            "accuracy": p.accuracy,
            "relative_cost": p.relative_cost,
            "saving": p.saving,
        }

    return {
        "base": zoo.names[base],
        "saver": zoo.names[saver],
        "dataset": dataset_name,
        "base_accuracy": points[0].base_accuracy,
        "saver_accuracy": points[-1].accuracy,
        "cost_ratio": points[0].cost_ratio,
        "pareto_front": [as_dict(p) for p in front],
        "num_exit_sets": len(points),
    }
