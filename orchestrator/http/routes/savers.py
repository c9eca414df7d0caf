"""``/v1/savers``, ``/v1/savers/{base}`` and ``/v1/pairs/{base}/{saver}/curve``: the stored search
results (the API never computes a budget or a confidence signal a dataset does not keep: the CLI
does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from orchestrator import answers
from orchestrator.answer_types import PairCurve, SaverRow, SaversOfBase
from orchestrator.http.access import DB
from orchestrator.limits import DEFAULT_ALTERNATIVES, MAX_CANDIDATES
from orchestrator.saver_query import SaverQuery
from search.costs import GMACS
from search.criteria import BUDGET, DEFAULT_CANDIDATES, MAX_PROBABILITY

router = APIRouter(tags=["savers"])

# Names are checked by cluster.validate where they are looked up (db.queries): an invalid one
# names no dataset, so it is a 404 like any unknown name.
DatasetName = Annotated[str, Query(description="A dataset's name.")]
MaxDrop = Annotated[
    float | None,
    Query(
        ge=0,
        le=100,
        description="Allowed accuracy drop in points (a budget the dataset keeps); default 0.",
    ),
]
Criterion = Annotated[
    str,
    Query(pattern="^(budget|paper)$", description="budget, or paper (equal performance)."),
]
Holdout = Annotated[
    bool, Query(description="Thresholds picked on the calibration half, scored on the other.")
]
ConfidenceSignal = Annotated[
    str,
    Query(
        pattern="^(max|margin|learned)$",
        description="What a sample exits on: max (top-1 probability), margin (top-1 minus "
        "top-2) or learned (a rule per saver trained on its top-k output, scored out of fold); "
        "the dataset must keep its pairs.",
    ),
]


@router.get("/savers", response_model=list[SaverRow])
def savers(
    db: DB,
    dataset: DatasetName,
    max_drop: MaxDrop = None,
    criterion: Criterion = BUDGET,
    holdout: Holdout = False,
    cost: Annotated[
        str,
        Query(pattern="^(gmacs|latency)$", description="gmacs, or latency on device_type."),
    ] = GMACS,
    device_type: Annotated[
        str | None,
        Query(max_length=100, description="With cost latency: whose measured throughput."),
    ] = None,
    score_on: Annotated[
        str | None,
        Query(max_length=200, description="Another dataset: picked here, scored there."),
    ] = None,
    stages: Annotated[
        int, Query(ge=2, le=3, description="2: pairs; 3: cascades of up to three models.")
    ] = 2,
    candidates: Annotated[
        int,
        Query(ge=1, le=MAX_CANDIDATES, description="With stages 3: each stage's savers tried."),
    ] = DEFAULT_CANDIDATES,
    confidence: ConfidenceSignal = MAX_PROBABILITY,
) -> list[SaverRow]:
    """The best saver of every base model of the dataset (null where none saves); with
    ``score_on``, picked on the dataset and scored on that one (bases not evaluated there
    left out). The rows' fields depend on the query: one of the five row kinds."""
    query = SaverQuery(
        criterion=criterion,
        max_drop=max_drop,
        holdout=holdout,
        cost=cost,
        device_type=device_type,
        score_on=score_on,
        stages=stages,
        candidates=candidates,
        confidence=confidence,
    ).checked()
    rows, _left_out = answers.savers(db, dataset, query)
    return rows


@router.get("/savers/{base}", response_model=SaversOfBase)
def saver(
    db: DB,
    base: str,
    dataset: DatasetName,
    max_drop: MaxDrop = None,
    criterion: Criterion = BUDGET,
    holdout: Holdout = False,
    alternatives: Annotated[
        int, Query(ge=0, le=100, description="How many next-best savers to list.")
    ] = DEFAULT_ALTERNATIVES,
    confidence: ConfidenceSignal = MAX_PROBABILITY,
) -> SaversOfBase:
    """One base's best saver and the next-best savers, ranked the same way."""
    query = SaverQuery(
        criterion=criterion, max_drop=max_drop, holdout=holdout, confidence=confidence
    ).checked()
    return answers.saver_of(db, dataset, base, query, alternatives)


@router.get("/pairs/{base}/{saver}/curve", response_model=PairCurve)
def pair_curve(
    db: DB,
    base: str,
    saver: str,
    dataset: DatasetName,
    confidence: ConfidenceSignal = MAX_PROBABILITY,
) -> PairCurve:
    """The Pareto front of (relative cost, accuracy) of a saver before a base."""
    return answers.pair_curve(db, dataset, base, saver, confidence)
