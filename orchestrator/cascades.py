"""The database side of a cascade: which saver, base and threshold the stored search chose, and
the runtime cascade built from that choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from cluster.errors import InputError
from cluster.settings import get_settings
from db.models import Dataset, Model
from db.queries import get_dataset, get_model
from db.session import session_factory
from orchestrator.answers import json_ready, saver_of
from orchestrator.saver_query import SaverQuery
from search.criteria import LEARNED
from workers.identity import spec_of
from workers.spec import ModelSpec


@dataclass(frozen=True)
class ChosenPair:
    saver: ModelSpec
    base: ModelSpec
    threshold: float
    about: dict[str, Any]  # the dataset, the criterion and the operating point the search predicted
    #: The learned confidence's deferral rule the threshold was picked for (plain JSON), else None.
    rule: dict[str, Any] | None = None


def chosen_pair(
    base: str,
    dataset: str,
    max_drop: float | None,
    criterion: str,
    holdout: bool,
    confidence: str = "max",
) -> ChosenPair:
    """BASE's best saver on DATASET under the criterion, and its threshold."""
    query = SaverQuery(
        criterion=criterion, max_drop=max_drop, holdout=holdout, confidence=confidence
    ).checked()
    with session_factory(get_settings().database_url).begin() as session:
        best = saver_of(session, dataset, base, query, alternatives=0).best
        if best is None:
            raise InputError(
                f"{base!r} has no saver on {dataset!r} under this criterion; "
                f"`saverzoo savers show {base} --dataset {dataset}` lists the candidates"
            )
        predicted = json_ready(best)  # as `savers show --json` gives it
        about = {"dataset": dataset, **query.describe(), "predicted": predicted}
        saver_model = get_model(session, best.saver)
        rule = None
        if query.confidence == LEARNED:
            rule = deployed_rule(session, get_dataset(session, dataset), saver_model, holdout)
        saver = spec_of(saver_model)
        base_spec = spec_of(get_model(session, base))
        return ChosenPair(saver, base_spec, predicted["threshold"], about, rule)


def deployed_rule(
    session: Session, dataset: Dataset, saver: Model, holdout: bool
) -> dict[str, Any]:
    """The rule a learned cascade runs: with the held-out threshold, the rule trained on the
    calibration half (whose scores of the evaluation half the threshold was scored on); with the
    in-sample one, the rule trained on every sample (the threshold was picked on out-of-fold
    scores of rules trained on four fifths of them)."""
    from search.learned_arrays import stored_rules

    rules = stored_rules(session, dataset, [saver])[saver.id]
    return (rules.calibration if holdout else rules.everything).as_json()


def cascade_from_store(
    base: str,
    dataset: str,
    *,
    max_drop: float | None = None,
    criterion: str = "budget",
    holdout: bool = False,
    confidence: str = "max",
    **options,
):
    """BASE with its best saver on DATASET and the threshold the search chose, ready to run."""
    from workers.cascade import Cascade  # torch and timm: only when a cascade is built

    chosen = chosen_pair(base, dataset, max_drop, criterion, holdout, confidence)
    return Cascade.build(
        chosen.saver,
        chosen.base,
        chosen.threshold,
        confidence=confidence,
        rule=chosen.rule,
        **options,
    )
