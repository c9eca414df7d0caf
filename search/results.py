"""Read stored search results in the shapes the CLI (and later the HTTP API) return."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from cluster.errors import InputError
from db.models import BestSaver, Dataset, Model, PairResult
from db.queries import (
    complete_model_ids,
    dataset_samples,
    get_model,
    lock_dataset_search,
    top1_predictions,
)
from search.best import HOLDOUT, IN_SAMPLE
from search.engine import Zoo, pair_curve, pareto_front
from search.selection import PAPER, centipoints, has_saver
from search.service import Progress, SaverSearch

BUDGET_FIELDS = ("threshold", "exit_ratio", "accuracy", "base_accuracy", "relative_cost", "saving")
PAPER_FIELDS = ("threshold", "exit_ratio", "delta_c")
HOLDOUT_FIELDS = (
    "threshold",
    "in_sample_accuracy",
    "in_sample_saving",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
)


def fields_for(criterion: str, holdout: bool) -> tuple[str, ...]:
    if holdout:
        return HOLDOUT_FIELDS
    return PAPER_FIELDS if criterion == PAPER else BUDGET_FIELDS


def _view(pair: PairResult, criterion: str, holdout: bool) -> dict:
    if holdout:
        return {
            "threshold": pair.holdout_threshold,
            "in_sample_accuracy": pair.holdout_calibration_accuracy,
            "in_sample_saving": pair.holdout_calibration_saving,
            "exit_ratio": pair.holdout_exit_ratio,
            "accuracy": pair.holdout_accuracy,
            "base_accuracy": pair.holdout_base_accuracy,
            "relative_cost": 1.0 - pair.holdout_saving,
            "saving": pair.holdout_saving,
        }
    if criterion == PAPER:
        return {"threshold": pair.threshold, "exit_ratio": pair.exit_ratio, "delta_c": -pair.saving}
    return {field: getattr(pair, field) for field in BUDGET_FIELDS}


def budget_key(dataset: Dataset, criterion: str, max_drop: float) -> tuple[int, bool]:
    """The stored key of a criterion, and whether the dataset already keeps it."""
    if criterion == PAPER:
        return 0, True
    cp = centipoints(max_drop)
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
) -> list[dict]:
    """One object per base model of the dataset (cheapest first), with its best saver or null."""
    model_ids = complete_model_ids(session, dataset)
    if base is not None:
        wanted = get_model(session, base)
        if wanted.id not in model_ids:
            raise InputError(f"model {base!r} has no complete predictions on {dataset.name!r}")
        model_ids = [wanted.id]
    bases = session.scalars(
        select(Model).where(Model.id.in_(model_ids)).order_by(Model.gmacs, Model.name)
    ).all()
    saver = aliased(Model)
    rows = session.execute(
        select(BestSaver.base_id, saver.name, PairResult)
        .join(PairResult, PairResult.id == BestSaver.pair_id)
        .join(saver, saver.id == PairResult.saver_id)
        .where(
            BestSaver.dataset_id == dataset.id,
            BestSaver.criterion == criterion,
            BestSaver.max_drop_centipoints == max_drop_centipoints,
            BestSaver.selection == (HOLDOUT if holdout else IN_SAMPLE),
            BestSaver.base_id.in_(model_ids),
        )
    ).all()
    best = {base_id: (name, pair) for base_id, name, pair in rows}
    fields = fields_for(criterion, holdout)
    result = []
    for model in bases:
        entry = {"base": model.name, "saver": None, **dict.fromkeys(fields)}
        if model.id in best:
            name, pair = best[model.id]
            selection_saving = pair.holdout_calibration_saving if holdout else pair.saving
            if has_saver(criterion, selection_saving):
                entry.update(saver=name, **_view(pair, criterion, holdout))
        result.append(entry)
    return result


def curve(session: Session, dataset: Dataset, base: str, saver: str) -> dict:
    """Every distinct exit set of a pair and its Pareto front (computed from predictions)."""
    base_model, saver_model = get_model(session, base), get_model(session, saver)
    complete = set(complete_model_ids(session, dataset))
    for model in (base_model, saver_model):
        if model.id not in complete:
            raise InputError(
                f"model {model.name!r} has no complete predictions on {dataset.name!r}"
            )
    if not saver_model.gmacs < base_model.gmacs:
        raise InputError(
            f"{saver!r} ({saver_model.gmacs:g} GMACs) is not cheaper than {base!r} "
            f"({base_model.gmacs:g} GMACs), so it cannot save it"
        )
    ids = [base_model.id, saver_model.id]
    classes, probs = top1_predictions(session, dataset, ids)
    labels = dataset_samples(session, dataset).labels
    zoo = Zoo.from_predictions(
        [base, saver], [base_model.gmacs, saver_model.gmacs], classes, probs, labels
    )
    points = pair_curve(zoo, 0, 1)
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
        "base": base,
        "saver": saver,
        "dataset": dataset.name,
        "base_accuracy": points[0].base_accuracy,
        "saver_accuracy": points[-1].accuracy,
        "cost_ratio": points[0].cost_ratio,
        "pareto_front": [as_dict(p) for p in front],
        "num_exit_sets": len(points),
    }
