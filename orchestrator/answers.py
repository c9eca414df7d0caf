"""What saverzoo answers, as typed objects (``orchestrator.answer_types``): datasets, models,
savers, curves.

The CLI's ``--json`` output, the HTTP API and the report are these same objects (``json_ready``), so
they always agree. Every answer reads stored results (pairs, best savers, costs); only a model's
accuracy and a pair's curve are computed from its stored predictions. Functions take the caller's
session and raise ``InputError`` (``NotFound`` for an unknown name) for what the caller must fix;
a ``ParameterError`` names the parameters at fault, which the CLI words as flags and the API as
query parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Dataset, DatasetShard, Model, ModelScore, ModelThroughput, PairResult
from db.queries import (
    complete_model_ids,
    dataset_samples,
    get_dataset,
    get_model,
    require_complete,
    top1_predictions,
)
from orchestrator.answer_types import (
    BudgetSaver,
    DatasetSummary,
    HoldoutSaver,
    ModelDetail,
    ModelsPage,
    ModelSummary,
    PairCurve,
    PaperSaver,
    RankedSaver,
    SaverRow,
    SaversOfBase,
)
from orchestrator.limits import DEFAULT_ALTERNATIVES, MAX_OFFSET, MAX_PAGE
from orchestrator.saver_query import SaverQuery, check_kept_budget
from search.costs import GMACS, LATENCY
from search.criteria import (
    MAX_PROBABILITY,
    PAPER,
)
from search.parameters import (
    ParameterError,
    check_device_type,
    check_kept_signal,
)
from search.results import (
    best_savers,
    chain_savers,
    curve,
    latency_best_savers,
    transferred_savers,
)
from search.scores import AnswerScores, gmacs_of
from search.selection import has_saver, rank_key
from search.views import fields_for


# ----- the reported fields -----------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """How one reported field is shown: its label, whether it is a fraction shown in percent, and
    its column in the report's timm-style ``savers.csv`` (None: not a column there)."""

    label: str
    percent: bool
    csv: str | None = None


# Field name (the JSON key; ``search.views.fields_for`` says which a criterion reports) -> how
# the CLI tables, the report's page and its ``savers.csv`` show it.
FIELDS: dict[str, Field] = {
    "threshold": Field("threshold", False, "threshold"),
    "exit_ratio": Field("exits %", True, "exit_pct"),
    "accuracy": Field("top-1 %", True, "top1"),
    "base_accuracy": Field("base top-1 %", True, "base_top1"),
    "accuracy_drop": Field("top-1 drop %", True, "top1_drop"),  # base minus cascade; CSV only
    "relative_cost": Field("relative cost", False, "relative_cost"),
    "saving": Field("saving %", True, "saving_pct"),
    "delta_c": Field("ΔC", False),
    "in_sample_accuracy": Field("calib. top-1 %", True),
    "in_sample_saving": Field("calib. saving %", True),
    # The cheapest single model at least as accurate as the cascade, and the cascade's saving
    # against it: negative where that model beats the cascade (search.frontier).
    "accuracy_ci": Field("top-1 95% CI", True),  # [low, high], held out
    "saving_ci": Field("saving 95% CI", True),
    "frontier_model": Field("frontier", False, "frontier_model"),
    "frontier_saving": Field("vs frontier %", True, "frontier_saving_pct"),
}


def beaten_by_frontier(row: dict[str, Any]) -> bool:
    """A cascade (or a base without one) that a cheaper single model matches in accuracy."""
    saving = row.get("frontier_saving")
    return saving is not None and saving < 0


def field_text(
    field: str,
    value: float | str | list[float] | None,
    *,
    percent_format: str = ".2f",
    number_format: str = ".4f",
    missing: str = "",
) -> str:
    """A field's value as text, in percent where ``FIELDS`` says so; ``missing`` for None."""
    if value is None:
        return missing
    if isinstance(value, str):  # a model's name
        return value
    if isinstance(value, list):  # an interval
        low, high = (field_text(field, v, percent_format=percent_format) for v in value)
        return f"{low}–{high}"
    if FIELDS[field].percent:
        return format(100 * value, percent_format)
    if field == "threshold" and value < 0:  # below every confidence: every sample exits
        return "<0"
    return format(value, number_format)


# ----- datasets and models -----------------------------------------------------------------------
def datasets(session: Session) -> list[DatasetSummary]:
    """Registered datasets by name, with their budgets and how many models are complete."""
    shard_counts = dict(
        session.execute(
            select(DatasetShard.dataset_id, func.count()).group_by(DatasetShard.dataset_id)
        ).all()
    )
    return [
        DatasetSummary(
            name=d.name,
            num_samples=d.num_samples,
            num_classes=d.num_classes,
            num_shards=shard_counts.get(d.id, 0),
            num_models=len(complete_model_ids(session, d)),
            budgets=[b / 100 for b in d.budgets_centipoints],
            imagenet_val=d.imagenet_val,
            shards=d.shard_urls,
        )
        for d in session.scalars(select(Dataset).order_by(Dataset.name))
    ]


def models_page(
    session: Session,
    *,
    dataset: str | None = None,
    source: str | None = None,
    name: str | None = None,
    superseded: bool = False,
    offset: int = 0,
    limit: int = 100,
) -> ModelsPage:
    """Models cheapest first, filtered (``name`` is a shell pattern such as ``vit_*``) and paged;
    models whose weights were replaced only with ``superseded``."""
    if not 0 <= offset <= MAX_OFFSET:
        raise ParameterError(
            "{offset} {value}: use 0 to {most:,}",
            ("offset",),
            {"value": offset, "most": MAX_OFFSET},
        )
    if not 1 <= limit <= MAX_PAGE:
        raise ParameterError(
            "{limit} {value}: use 1 to {most}", ("limit",), {"value": limit, "most": MAX_PAGE}
        )
    query = select(Model).order_by(Model.gmacs, Model.name)
    if dataset is not None:
        query = query.where(
            Model.id.in_(complete_model_ids(session, get_dataset(session, dataset)))
        )
    if source is not None:
        query = query.where(Model.source == source)
    if not superseded:
        query = query.where(Model.superseded_at.is_(None))
    models = session.scalars(query).all()
    if name is not None:
        models = [m for m in models if fnmatchcase(m.name, name)]
    page = models[offset : offset + limit]
    throughput = _throughputs(session, [m.id for m in page])
    return ModelsPage(
        items=[
            ModelSummary.model_validate(_model_summary(m, throughput.get(m.id, {}))) for m in page
        ],
        total=len(models),
        offset=offset,
        limit=limit,
    )


def _throughputs(session: Session, model_ids: list[int]) -> dict[int, dict[str, float]]:
    result: dict[int, dict[str, float]] = {}
    rows = session.execute(
        select(
            ModelThroughput.model_id, ModelThroughput.device_type, ModelThroughput.images_per_s
        ).where(ModelThroughput.model_id.in_(model_ids))
    )
    for model_id, device, images_per_s in rows:
        result.setdefault(model_id, {})[device] = images_per_s
    return result


def _model_summary(model: Model, images_per_s: dict[str, float]) -> dict[str, Any]:
    """The fields of ``ModelSummary``."""
    return {
        "name": model.name,
        "source": model.source,
        "gmacs": model.gmacs,
        "params_m": model.params_m,
        "random_weights": model.random_weights,
        "images_per_s": images_per_s,
    }


def model_detail(session: Session, name: str) -> ModelDetail:
    """A model's profile, data config, measured throughput and top-1 accuracy per dataset."""
    from orchestrator.published import published_for

    model = get_model(session, name)
    accuracy, warnings = {}, []
    for dataset in session.scalars(select(Dataset).order_by(Dataset.name)):
        if complete_model_ids(session, dataset, [model.id]):
            accuracy[dataset.name] = model_accuracies(session, dataset, [model.id])[model.id]
            warnings += [
                {"dataset": dataset.name, **check}
                for check in accuracy_checks(session, dataset, [model.id])
            ]
    published = published_for(model.name, model.input_size[-1] if model.input_size else None)
    return ModelDetail.model_validate(
        {
            **_model_summary(model, _throughputs(session, [model.id]).get(model.id, {})),
            "arch": model.arch,
            "input_size": model.input_size,
            "crop_pct": model.crop_pct,
            "interpolation": model.interpolation,
            "num_classes": model.num_classes,
            "timm_version": model.timm_version,
            "weights_id": model.weights_id,
            "superseded_at": model.superseded_at.isoformat() if model.superseded_at else None,
            "data_config": model.data_config,
            "accuracy": accuracy,
            "published_top1": None if published is None else published.top1,  # percent, timm's
            "accuracy_warnings": warnings,
        }
    )


def model_accuracies(session: Session, dataset: Dataset, model_ids: list[int]) -> dict[int, float]:
    """Top-1 accuracy of complete models on the dataset, from their stored predictions."""
    classes, _ = top1_predictions(session, dataset, model_ids)
    labels = dataset_samples(session, dataset).labels
    return {i: float((row == labels).mean()) for i, row in zip(model_ids, classes, strict=True)}


def accuracy_checks(
    session: Session, dataset: Dataset, model_ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """On a dataset marked as ImageNet-1k validation, the pretrained models (of ``model_ids``, or
    all complete ones) whose measured top-1 is far from timm's published figure
    (``orchestrator.published``); nothing on other datasets."""
    from orchestrator.published import accuracy_check

    if not dataset.imagenet_val:
        return []
    complete = complete_model_ids(session, dataset, model_ids)
    rows = session.execute(
        select(Model, ModelScore.correct, ModelScore.samples)
        .join(ModelScore, ModelScore.model_id == Model.id)
        .where(ModelScore.dataset_id == dataset.id, Model.id.in_(complete))
        .order_by(Model.name)
    ).all()
    checks = [
        accuracy_check(model.name, model.input_size[-1] if model.input_size else None, c / n)
        for model, c, n in rows
        if not model.random_weights
    ]
    return [check for check in checks if check is not None]


# ----- savers ------------------------------------------------------------------------------------
def savers(
    session: Session, dataset_name: str, query: SaverQuery, base: str | None = None
) -> tuple[list[SaverRow], list[str]]:
    """Every base's best saver (or BASE's), of the query's ``row_type``, and the bases left out:
    without a latency measurement (listed last, without a saver) or, with ``score_on``, without
    complete predictions there (not listed)."""
    rows, left_out = _saver_rows(session, dataset_name, query, base)
    return [query.row_type.model_validate(row) for row in rows], left_out


def _saver_rows(
    session: Session, dataset_name: str, query: SaverQuery, base: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    dataset = get_dataset(session, dataset_name)
    cp = check_kept_budget(dataset, query)
    check_kept_signal(dataset, query.confidence)
    selection: dict[str, Any] = {
        "criterion": query.criterion,
        "max_drop_centipoints": cp,
        "holdout": query.holdout,
        "base": base,
        "confidence": query.confidence,
    }
    if query.cost == LATENCY:
        device_type = check_device_type(session, dataset, query.device_type)
        return latency_best_savers(session, dataset, device_type=device_type, **selection)
    if query.stages == 3:
        return chain_savers(
            session, dataset, max_drop_centipoints=cp, candidates=query.candidates, base=base
        ), []
    if query.score_on is not None:
        other = get_dataset(session, query.score_on)
        if other.id == dataset.id:
            raise ParameterError(
                "{score_on} {value!r} is the dataset itself; drop it",
                ("score_on",),
                {"value": other.name},
            )
        del selection["holdout"]
        return transferred_savers(session, dataset, other, **selection)
    return best_savers(session, dataset, **selection), []


def saver_of(
    session: Session,
    dataset_name: str,
    base: str,
    query: SaverQuery,
    alternatives: int = DEFAULT_ALTERNATIVES,
) -> SaversOfBase:
    """The best saver of one base (GMACs cost) and the next-best savers, ranked the same way."""
    if query.cost != GMACS:
        raise ParameterError(
            "alternatives are ranked by GMACs; use the savers list for {cost} latency", ("cost",)
        )
    if not 0 <= alternatives <= 100:
        raise ParameterError(
            "{alternatives} {value}: use 0 to 100", ("alternatives",), {"value": alternatives}
        )
    dataset = get_dataset(session, dataset_name)
    cp = check_kept_budget(dataset, query)
    check_kept_signal(dataset, query.confidence)
    model = get_model(session, base)
    require_complete(session, dataset, model)
    holdout = query.holdout
    # Rank from the ranking index alone, then load the few pairs shown: a dear base has ~1,000
    # candidate savers.
    saving = PairResult.holdout_calibration_saving if holdout else PairResult.saving
    accuracy = PairResult.holdout_calibration_accuracy if holdout else PairResult.accuracy
    same_criterion = (
        PairResult.dataset_id == dataset.id,
        PairResult.base_id == model.id,
        PairResult.criterion == query.criterion,
        PairResult.max_drop_centipoints == cp,
        PairResult.confidence == query.confidence,
    )
    candidates = session.execute(
        select(PairResult.saver_id, saving, accuracy, Model.gmacs, Model.name)
        .join(Model, Model.id == PairResult.saver_id)
        .where(*same_criterion)
    ).all()
    ranked = sorted(
        (rank_key(query.criterion, s, a, gmacs, name), saver_id, name, gmacs)
        for saver_id, s, a, gmacs, name in candidates
        if has_saver(query.criterion, s)
    )[: 1 + alternatives]
    pairs = {
        pair.saver_id: pair
        for pair in session.scalars(
            select(PairResult).where(
                *same_criterion, PairResult.saver_id.in_([saver for _, saver, _, _ in ranked])
            )
        )
    }
    scores = AnswerScores(
        session, dataset, gmacs_of(session, complete_model_ids(session, dataset)), holdout
    )
    shown_type = _ranked_type(query)
    shown = [
        shown_type.model_validate(
            {
                "saver": name,
                "saver_gmacs": gmacs,
                **scores.answer_view(pairs[saver], query.criterion, model.name),
            }
        )
        for _, saver, name, gmacs in ranked
    ]
    return SaversOfBase.model_validate(
        {
            "dataset": dataset.name,
            "base": model.name,
            "base_gmacs": model.gmacs,
            **query.describe(),
            "fields": list(fields_for(query.criterion, holdout)),
            "best": shown[0] if shown else None,
            "alternatives": shown[1:],
            "candidates": len(candidates),
        }
    )


def _ranked_type(query: SaverQuery) -> type[RankedSaver]:
    if query.holdout:
        return HoldoutSaver
    return PaperSaver if query.criterion == PAPER else BudgetSaver


# ----- curves ------------------------------------------------------------------------------------
def pair_curve(
    session: Session, dataset_name: str, base: str, saver: str, confidence: str = MAX_PROBABILITY
) -> PairCurve:
    """Every distinct exit set of a saver before a base, and its Pareto front."""
    dataset = get_dataset(session, dataset_name)
    return PairCurve.model_validate(curve(session, dataset, base, saver, confidence))


def json_ready(answer: BaseModel | Sequence[BaseModel]) -> Any:
    """An answer as JSON-ready values: what the CLI's ``--json`` prints and the API sends."""
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json", by_alias=True)
    return [item.model_dump(mode="json", by_alias=True) for item in answer]
