"""Which best savers a query asks for (``SaverQuery``): the criterion and its budget, the
selection, the cost, the confidence signal; checked once, the same for the CLI, the API and the
report, and the type and fields of the rows it answers with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cluster.errors import InputError
from db.models import Dataset
from orchestrator.answer_types import (
    BudgetRow,
    ChainRow,
    HoldoutRow,
    PaperRow,
    SaverRow,
    TransferRow,
)
from orchestrator.limits import MAX_CANDIDATES
from search.costs import COSTS, GMACS, LATENCY
from search.criteria import BUDGET, CRITERIA, DEFAULT_CANDIDATES, MAX_PROBABILITY, PAPER
from search.parameters import (
    ParameterError,
    budget_key,
    check_confidence,
    check_max_drop,
)
from search.views import CHAIN_FIELDS, fields_for


@dataclass(frozen=True, kw_only=True)
class SaverQuery:
    """Which best savers: a criterion (with its accuracy budget), a selection and a cost."""

    criterion: str = BUDGET
    max_drop: float | None = None  # points; None: 0 under a budget (the paper takes none)
    holdout: bool = False
    cost: str = GMACS
    device_type: str | None = None
    score_on: str | None = None  # another dataset: picked on this one, scored on that one
    stages: int = 2  # 3: cascades of up to three models (search.chains)
    candidates: int = DEFAULT_CANDIDATES  # with stages 3: the savers of each stage considered
    confidence: str = MAX_PROBABILITY  # what a sample exits on: top-1 probability, or margin

    def checked(self) -> SaverQuery:
        """This query with its default budget filled in; ParameterError for a contradiction."""
        if self.criterion not in CRITERIA:
            raise ParameterError(
                "{criterion} must be {budget!r} or {paper!r}, not {value!r}",
                ("criterion",),
                {"budget": BUDGET, "paper": PAPER, "value": self.criterion},
            )
        if self.criterion == PAPER and self.max_drop is not None:
            raise ParameterError(
                "{max_drop} sets a budget; it cannot be combined with {criterion} paper",
                ("max_drop", "criterion"),
            )
        max_drop = 0.0 if self.max_drop is None else self.max_drop
        check_max_drop(max_drop)  # 0..100 points, two decimals at most
        if self.cost not in COSTS:
            raise ParameterError(
                "{cost} must be {gmacs!r} or {latency!r}, not {value!r}",
                ("cost",),
                {"gmacs": GMACS, "latency": LATENCY, "value": self.cost},
            )
        if self.cost == GMACS and self.device_type is not None:
            raise ParameterError(
                "{device_type} picks latency measurements; it needs {cost} latency",
                ("device_type", "cost"),
            )
        if self.score_on is not None and (self.holdout or self.cost != GMACS):
            raise ParameterError(
                "{score_on} already scores on other data, in GMACs: drop {holdout} and {cost} "
                "latency",
                ("score_on", "holdout", "cost"),
            )
        if self.stages not in (2, 3):
            raise ParameterError(
                "{stages} {value}: use 2 (pairs) or 3 (chains of three)",
                ("stages",),
                {"value": self.stages},
            )
        if self.stages == 3 and (
            self.criterion != BUDGET or self.holdout or self.cost != GMACS or self.score_on
        ):
            raise ParameterError(
                "{stages} 3 answers under a budget, in-sample, in GMACs: drop {criterion} paper, "
                "{holdout}, {cost} latency and {score_on}",
                ("stages", "criterion", "holdout", "cost", "score_on"),
            )
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ParameterError(
                "{candidates} {value}: use 1 to {most:,}",
                ("candidates",),
                {"value": self.candidates, "most": MAX_CANDIDATES},
            )
        check_confidence(self.confidence)
        if self.stages == 3 and self.confidence != MAX_PROBABILITY:
            raise ParameterError(
                "{stages} 3 exits on the top-1 probability: drop {confidence} {value}",
                ("stages", "confidence"),
                {"value": self.confidence},
            )
        return dataclasses.replace(self, max_drop=max_drop)

    @property
    def row_type(self) -> type[SaverRow]:
        """The type of this query's rows (``savers``)."""
        if self.stages == 3:
            return ChainRow
        if self.score_on is not None:
            return TransferRow
        if self.holdout:
            return HoldoutRow
        return PaperRow if self.criterion == PAPER else BudgetRow

    @property
    def fields(self) -> tuple[str, ...]:
        """The reported fields of this query's answers, in order."""
        if self.stages == 3:
            return CHAIN_FIELDS
        return fields_for(self.criterion, self.holdout, self.score_on is not None)

    def describe(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "max_drop": None if self.criterion == PAPER else self.max_drop,
            "holdout": self.holdout,
            "cost": self.cost,
            "device_type": self.device_type,
            "score_on": self.score_on,
            "stages": self.stages,
            "confidence": self.confidence,
            "candidates": self.candidates if self.stages == 3 else None,
        }


def check_kept_budget(dataset: Dataset, query: SaverQuery) -> int:
    """The stored key of the query's budget; InputError when the dataset does not keep it."""
    cp, kept = budget_key(dataset, query.criterion, query.max_drop)
    if not kept:
        budgets = ", ".join(f"{b / 100:g}" for b in dataset.budgets_centipoints)
        raise InputError(
            f"{dataset.name!r} keeps the budgets {budgets} (points); add {query.max_drop:g} with "
            f"`saverzoo savers best --dataset {dataset.name} --max-drop {query.max_drop:g}`"
        )
    return cp
