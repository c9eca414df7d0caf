"""What answers need of each model's score on a dataset: each cascade's frontier, the cheapest
single model at least as accurate (``search.frontier``), and held-out intervals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Dataset, Model, ModelScore, PairResult
from search.frontier import SingleModel, SingleModels
from search.intervals import bootstrap_saving, wilson
from search.views import FRONTIER_FIELDS, INTERVAL_FIELDS, pair_view


def gmacs_of(session: Session, model_ids: list[int]) -> dict[int, float]:
    return dict(session.execute(select(Model.id, Model.gmacs).where(Model.id.in_(model_ids))).all())


class AnswerScores:
    """What a dataset's answers need of each model's correct count, on the samples an answer is
    scored on (the evaluation half for held-out answers): each cascade's frontier and held-out
    intervals.

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

    def frontier_of_base(self, base: str) -> dict[str, Any]:
        """The frontier of the base alone (a base without a saver)."""
        if base not in self._singles:
            return dict.fromkeys(FRONTIER_FIELDS)
        return self._fields(base, self._cost[base], self._correct[base])

    def frontier_of_pair(self, base: str, pair: PairResult, view: dict[str, Any]) -> dict[str, Any]:
        """The frontier of a stored cascade whose reported fields are ``view`` (``pair_view``,
        whose costs may be re-costed)."""
        if base not in self._singles or self.samples is None:
            return dict.fromkeys(FRONTIER_FIELDS)
        accuracy = pair.holdout_accuracy if self.holdout else pair.accuracy
        relative_cost = view["relative_cost"] if "relative_cost" in view else 1 + view["delta_c"]
        correct = round(accuracy * self.samples)
        return self._fields(base, self._cost[base] * relative_cost, correct)

    def intervals(self, pair: PairResult, view: dict[str, Any]) -> dict[str, Any]:
        """95% intervals of a held-out answer's accuracy (Wilson) and saving (bootstrap)."""
        n = self.samples
        if n is None:
            return dict.fromkeys(INTERVAL_FIELDS)
        cost_ratio = view["exit_ratio"] - view["saving"]  # saving = r - cost_s / cost_b
        return {
            "accuracy_ci": list(wilson(round(pair.holdout_accuracy * n), n)),
            "saving_ci": list(bootstrap_saving(round(pair.holdout_exit_ratio * n), n, cost_ratio)),
        }

    def frontier(self, base: str, cascade_cost: float, correct: int) -> dict[str, Any]:
        """The frontier of any cascade of ``base``: its cost and how many samples it gets right."""
        if base not in self._singles:
            return dict.fromkeys(FRONTIER_FIELDS)
        return self._fields(base, cascade_cost, correct)

    def answer_view(
        self,
        pair: PairResult,
        criterion: str,
        base: str,
        costs: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Every reported field of a stored cascade of ``base``: ``pair_view``, its frontier and,
        held out, its intervals."""
        view = pair_view(pair, criterion, self.holdout, costs)
        view.update(self.frontier_of_pair(base, pair, view))
        if self.holdout:
            view.update(self.intervals(pair, view))
        return view

    def _fields(self, base: str, cascade_cost: float, correct: int) -> dict[str, Any]:
        frontier = self._singles.frontier(base, cascade_cost, correct)
        return {"frontier_model": frontier.model, "frontier_saving": frontier.saving}
