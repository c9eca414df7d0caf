"""Incremental saver search over the database.

When models complete on a dataset, only the pairs they take part in are computed (as base against
every cheaper model, as saver against every dearer one), upserted, and the affected bases' best
savers updated by comparison with the stored best. ``refresh`` computes whatever pairs are missing
or were computed with costs that have changed since.

Every update first locks the dataset row (``lock_dataset_search``) and only then reads the zoo,
the budgets and the held-out fraction: concurrent updates of a dataset run one after the other and
each sees what the previous one committed. The zoo stays cached in the ``SaverSearch`` object, so a
long-lived process adds a model to a large zoo without re-reading or re-sorting the others; the
dataset's update counter tells it when another process has changed the dataset meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cluster.errors import InputError
from db.models import Dataset, Model, ModelScore, PairResult, PredictionChunk, utc_now
from db.queries import complete_model_ids, dataset_samples, lock_dataset_search
from db.search_arrays import SearchArrays, load_search_arrays
from db.upsert import upsert
from search.best import update_best_savers
from search.criteria import BUDGET, LEARNED, LEARNED_HOLDOUT, MAX_PROBABILITY, PAPER
from search.engine import Zoo, dearer_than
from search.pairs import (
    COLUMNS,
    PairColumns,
    SplitZoo,
    calibration_mask,
    criteria_of,
    pair_columns,
    pair_rows,
)

PAIR_KEY = ("dataset_id", "base_id", "saver_id", "criterion", "max_drop_centipoints", "confidence")
SCORE_KEY = ("dataset_id", "model_id")
COST_TOLERANCE = 1e-9

Progress = Callable[[int, int], None]  # (savers done, savers in all)


def signals_of(dataset: Dataset) -> list[str]:
    """The confidence signals whose pairs the dataset keeps, the top-1 probability first."""
    kept = dataset.confidence_signals or [MAX_PROBABILITY]
    return [MAX_PROBABILITY, *sorted(set(kept) - {MAX_PROBABILITY})]


def arrays_of(dataset: Dataset) -> list[str]:
    """The zoos a dataset's signals are searched on: one a signal, and the learned signal's
    held-out scores beside its in-sample ones (``search.learned_arrays``)."""
    signals = signals_of(dataset)
    return signals + ([LEARNED_HOLDOUT] if LEARNED in signals else [])


def with_holdout_of(columns: PairColumns, holdout: PairColumns) -> PairColumns:
    """``columns`` with the held-out values of ``holdout``: a learned saver's in-sample values
    come from its in-sample scores, its held-out values from its held-out scores."""
    return replace(
        columns,
        **{name: getattr(holdout, name) for name in COLUMNS if name.startswith("holdout_")},
    )


def _combined(summaries: list[UpdateSummary]) -> UpdateSummary:
    return UpdateSummary(
        summaries[0].models,
        sum(s.pairs_computed for s in summaries),
        sum(s.rows_written for s in summaries),
        sum(s.best_changed for s in summaries),
    )


def criterion_keys(dataset: Dataset) -> list[tuple[str, int]]:
    return [(BUDGET, cp) for cp in sorted(dataset.budgets_centipoints)] + [(PAPER, 0)]


Computed = list[tuple[int, list[int], PairColumns]]  # (saver, bases, their columns)


class PairComputer(Protocol):
    """Computes the columns of every ``{saver: bases}`` pair of an update, in that order."""

    def columns(
        self,
        zoos: SplitZoo,
        wanted: dict[int, list[int]],
        budgets: Sequence[int],
        progress: Progress | None = None,
    ) -> Computed: ...


class LocalPairs:
    """The pairs computed in this process, saver after saver (numba's threads share a saver's
    bases)."""

    def columns(
        self,
        zoos: SplitZoo,
        wanted: dict[int, list[int]],
        budgets: Sequence[int],
        progress: Progress | None = None,
    ) -> Computed:
        computed = []
        for done, (saver, bases) in enumerate(wanted.items(), start=1):
            if len(bases):
                side = zoos.base_side(bases)
                computed.append((saver, bases, pair_columns(zoos.saver_side(saver), side, budgets)))
            if progress:
                progress(done, len(wanted))
        return computed


LOCAL_PAIRS = LocalPairs()


@dataclass
class CachedZoo:
    model_ids: list[int]
    zoos: SplitZoo
    revision: int  # the dataset's search_revision this zoo is current with


@dataclass(frozen=True)
class UpdateSummary:
    models: int
    pairs_computed: int
    rows_written: int
    best_changed: int


@dataclass
class SaverSearch:
    """Keeps pair results and best savers up to date; holds each dataset's zoo between updates.

    An update that raises forgets the dataset's zoo, so a rolled-back transaction never leaves the
    cache ahead of the database.
    """

    #: Where the pairs are computed: None in this process, or Ray tasks (``search.ray_pairs``).
    pairs: PairComputer | None = None
    _cache: dict[tuple[int, str], CachedZoo] = field(default_factory=dict)  # (dataset, signal)

    def _entries(self, dataset: Dataset) -> list[tuple[int, str]]:
        return [key for key in self._cache if key[0] == dataset.id]

    @contextmanager
    def _locked(self, session: Session, dataset: Dataset) -> Iterator[None]:
        lock_dataset_search(session, dataset)
        session.refresh(dataset)  # budgets, signals, fraction and revision as of the lock
        for key in self._entries(dataset):
            if self._cache[key].revision != dataset.search_revision - 1:
                del self._cache[key]  # another process updated the dataset meanwhile
        try:
            yield
        except BaseException:
            for key in self._entries(dataset):
                del self._cache[key]
            raise
        for key in self._entries(dataset):
            self._cache[key].revision = dataset.search_revision

    # ----- the zoo -----------------------------------------------------------------------------
    def _zoo(
        self,
        session: Session,
        dataset: Dataset,
        reload: Iterable[int] = (),
        confidence: str = MAX_PROBABILITY,
    ) -> CachedZoo:
        """The dataset's complete models as a split zoo on one confidence signal; ``reload`` ids
        are read again."""
        complete = complete_model_ids(session, dataset)
        cached = self._cache.get((dataset.id, confidence))
        known = set(cached.model_ids) if cached else set()
        if cached is None or set(reload) & known or known - set(complete):
            samples = dataset_samples(session, dataset)
            calibration = calibration_mask(samples.keys, dataset.holdout_fraction)
            zoo, orders, buffers = _zoo_of(session, dataset, complete, samples.labels, confidence)
            cached = CachedZoo(list(complete), SplitZoo(zoo, calibration, orders, buffers), 0)
        elif new := [m for m in complete if m not in known]:
            labels = dataset_samples(session, dataset).labels
            zoo, orders, _ = _zoo_of(session, dataset, new, labels, confidence)
            cached.zoos.add(zoo, orders)
            cached.model_ids = cached.model_ids + new
        self._cache[(dataset.id, confidence)] = cached
        return cached

    def _zoos(
        self, session: Session, dataset: Dataset, reload: Iterable[int] = ()
    ) -> dict[str, CachedZoo]:
        """The zoo of every confidence signal the dataset keeps, the top-1 probability's first
        (``arrays_of``: the learned signal's held-out scores too)."""
        return {c: self._zoo(session, dataset, reload, c) for c in arrays_of(dataset)}

    @contextmanager
    def zoo_locked(self, session: Session, dataset: Dataset) -> Iterator[CachedZoo]:
        """The dataset's zoo, current, with the dataset's search lock held (as an update)."""
        with self._locked(session, dataset):
            yield self._zoo(session, dataset)

    def warm(self, session: Session, dataset: Dataset) -> int:
        """Load the dataset's zoo and order every saver, as a long-lived service does once at start.

        Returns the number of models held.
        """
        for cached in self._zoos(session, dataset).values():
            cached.revision = dataset.search_revision
            for saver in range(len(cached.model_ids)):
                cached.zoos.saver_side(saver)  # its orders, kept
        return len(cached.model_ids)

    # ----- updates -----------------------------------------------------------------------------
    def models_completed(
        self,
        session: Session,
        dataset: Dataset,
        model_ids: Sequence[int],
        progress: Progress | None = None,
    ) -> UpdateSummary:
        """Compute every pair that involves one of ``model_ids``; update affected best savers."""
        with self._locked(session, dataset):
            zoos = self._zoos(session, dataset, reload=model_ids)
            first = zoos[MAX_PROBABILITY]
            row_of = {m: r for r, m in enumerate(first.model_ids)}
            missing = [m for m in model_ids if m not in row_of]
            if missing:
                raise InputError(
                    f"models {missing} have no complete predictions on {dataset.name!r}"
                )
            is_new = np.zeros(len(first.model_ids), dtype=bool)
            is_new[[row_of[m] for m in model_ids]] = True
            wanted = {}
            for saver in range(len(first.model_ids)):
                # A new saver meets every dearer model; an old one only the new dearer ones.
                dearer = dearer_than(first.zoos.full, saver)
                bases = dearer if is_new[saver] else dearer[is_new[dearer]]
                if len(bases):
                    wanted[saver] = bases.tolist()
            obsolete = self._obsolete_pairs(session, dataset, first, set(model_ids))
            self._store_scores(session, dataset, first, model_ids)
            return _combined(
                [
                    self._compute_and_store(
                        session, dataset, zoos, wanted, progress, obsolete, signal
                    )
                    for signal in signals_of(dataset)
                ]
            )

    def refresh(
        self, session: Session, dataset: Dataset, progress: Progress | None = None
    ) -> UpdateSummary:
        """Compute every pair that is missing, or whose stored cost ratio is out of date, for
        every confidence signal the dataset keeps."""
        with self._locked(session, dataset):
            zoos = self._zoos(session, dataset)
            first = zoos[MAX_PROBABILITY]
            obsolete = self._obsolete_pairs(session, dataset, first, None)
            keys = len(criterion_keys(dataset))
            summaries = []
            for signal in signals_of(dataset):
                cached = zoos[signal]
                current = self._current_pairs(session, dataset, cached, signal)
                wanted = {}
                for saver, saver_id in enumerate(cached.model_ids):
                    bases = [
                        int(b)
                        for b in dearer_than(cached.zoos.full, saver)
                        if current.get((cached.model_ids[b], saver_id), 0) < keys
                    ]
                    if bases:
                        wanted[saver] = bases
                summaries.append(
                    self._compute_and_store(
                        session, dataset, zoos, wanted, progress, obsolete, signal
                    )
                )
            scored = set(
                session.scalars(
                    select(ModelScore.model_id).where(ModelScore.dataset_id == dataset.id)
                )
            )
            unscored = [m for m in first.model_ids if m not in scored]
            self._store_scores(session, dataset, first, unscored)
            return _combined(summaries)

    def costs_changed(self, session: Session, model_ids: Sequence[int], skip: set[int]) -> None:
        """Update every dataset (but ``skip``) on which a model whose cost changed is complete."""
        if not model_ids:
            return
        dataset_ids = session.scalars(
            select(PredictionChunk.dataset_id)
            .where(PredictionChunk.model_id.in_(model_ids))
            .distinct()
        ).all()
        for dataset in session.scalars(select(Dataset).where(Dataset.id.in_(dataset_ids))):
            if dataset.id in skip:
                continue
            complete = set(complete_model_ids(session, dataset))
            affected = [m for m in model_ids if m in complete]
            if affected:
                self.models_completed(session, dataset, affected)

    @staticmethod
    def _store_scores(
        session: Session, dataset: Dataset, cached: CachedZoo, model_ids: Sequence[int]
    ) -> None:
        """Each model's correct counts, in all and on the evaluation half, as the pairs see them."""
        if not model_ids:
            return
        row_of = {m: r for r, m in enumerate(cached.model_ids)}
        zoos = cached.zoos
        correct, held_out = zoos.correct_counts("full"), zoos.correct_counts("evaluation")
        now = utc_now()
        rows = [
            {
                "dataset_id": dataset.id,
                "model_id": model_id,
                "correct": int(correct[row_of[model_id]]),
                "samples": zoos.num_samples("full"),
                "holdout_correct": int(held_out[row_of[model_id]]),
                "holdout_samples": zoos.num_samples("evaluation"),
                "computed_at": now,
            }
            for model_id in model_ids
        ]
        upsert(session, ModelScore, rows, key=SCORE_KEY)

    @staticmethod
    def _current_pairs(
        session, dataset: Dataset, cached: CachedZoo, confidence: str
    ) -> dict[tuple, int]:
        """How many criteria each (base, saver) has stored with today's costs, on one signal."""
        cost_of = dict(zip(cached.model_ids, cached.zoos.full.costs.tolist(), strict=True))
        keys = set(criterion_keys(dataset))
        counts: dict[tuple, int] = {}
        query = select(
            PairResult.base_id,
            PairResult.saver_id,
            PairResult.criterion,
            PairResult.max_drop_centipoints,
            PairResult.relative_cost,
            PairResult.exit_ratio,
        ).where(PairResult.dataset_id == dataset.id, PairResult.confidence == confidence)
        for base, saver, criterion, cp, relative_cost, exit_ratio in session.execute(query):
            if (criterion, cp) not in keys or base not in cost_of or saver not in cost_of:
                continue
            stored_ratio = relative_cost - (1.0 - exit_ratio)
            if abs(stored_ratio - cost_of[saver] / cost_of[base]) <= COST_TOLERANCE:
                counts[(base, saver)] = counts.get((base, saver), 0) + 1
        return counts

    @staticmethod
    def _obsolete_pairs(
        session, dataset: Dataset, cached: CachedZoo, involving: set[int] | None
    ) -> set[int]:
        """Delete stored pairs that are no longer candidates; returns their bases.

        A model re-evaluated at another cost can swap roles with a model it used to save (or be
        saved by), and a model whose predictions were removed takes part in no pair.
        """
        cost_of = dict(zip(cached.model_ids, cached.zoos.full.costs.tolist(), strict=True))
        query = select(PairResult.id, PairResult.base_id, PairResult.saver_id).where(
            PairResult.dataset_id == dataset.id
        )
        if involving is not None:
            query = query.where(
                PairResult.base_id.in_(involving) | PairResult.saver_id.in_(involving)
            )
        obsolete = [
            (pair_id, base_id)
            for pair_id, base_id, saver_id in session.execute(query)
            if not cost_of.get(saver_id, np.inf) < cost_of.get(base_id, -np.inf)
        ]
        ids = [pair_id for pair_id, _ in obsolete]
        for start in range(0, len(ids), 500):
            session.execute(delete(PairResult).where(PairResult.id.in_(ids[start : start + 500])))
        return {base_id for _, base_id in obsolete}

    @staticmethod
    def _learned_holdout(
        pairs: PairComputer,
        zoos: dict[str, CachedZoo],
        computed: Computed,
        wanted: dict[int, list[int]],
        budgets: Sequence[int],
    ) -> Computed:
        """The learned pairs with their held-out values searched on the held-out scores: the
        same engine, a second zoo."""
        holdout = zoos[LEARNED_HOLDOUT]
        if holdout.model_ids != zoos[LEARNED].model_ids:
            raise RuntimeError("the learned signal's two zoos hold different models")
        again = pairs.columns(holdout.zoos, wanted, budgets)
        merged = []
        for (saver, bases, columns), (saver_, bases_, held_out) in zip(
            computed, again, strict=True
        ):
            if (saver, list(bases)) != (saver_, list(bases_)):
                raise RuntimeError("the learned signal's two searches computed other pairs")
            merged.append((saver, bases, with_holdout_of(columns, held_out)))
        return merged

    def _compute_and_store(
        self,
        session: Session,
        dataset: Dataset,
        zoos: dict[str, CachedZoo],
        wanted: dict[int, list[int]],
        progress: Progress | None,
        reread_bases: set[int],
        confidence: str,
    ) -> UpdateSummary:
        budgets = sorted(dataset.budgets_centipoints)
        criteria = criteria_of(budgets)
        now = utc_now()
        rows: list[dict] = []
        cached = zoos[confidence]
        computer = self.pairs or LOCAL_PAIRS
        computed = computer.columns(cached.zoos, wanted, budgets, progress)
        if confidence == LEARNED:
            computed = self._learned_holdout(computer, zoos, computed, wanted, budgets)
        for saver, bases, columns in computed:
            base_ids = [cached.model_ids[b] for b in bases]
            saver_id = cached.model_ids[saver]
            rows.extend(
                pair_rows(columns, base_ids, saver_id, dataset.id, confidence, now, criteria)
            )
        upsert(session, PairResult, rows, key=PAIR_KEY)
        changed = update_best_savers(
            session, dataset, rows, reread_bases, criterion_keys(dataset), confidence
        )
        pairs = sum(len(b) for b in wanted.values())
        return UpdateSummary(len(cached.model_ids), pairs, len(rows), changed)


def _zoo_of(
    session: Session, dataset: Dataset, model_ids: list[int], labels: np.ndarray, confidence: str
) -> tuple[Zoo, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The models' zoo on one signal, each one's confidence order, as stored for the search
    (``db.search_arrays``: a read, not a decode and a sort, once a model's arrays are stored),
    and the buffers its arrays lead: a quarter more rows, so that the first models added later
    fill spare rows instead of copying the whole zoo (rows never touched cost no memory)."""
    models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(model_ids)))}
    m, n = len(model_ids), len(labels)
    spare = m + m // 4 + 8
    correct, values = np.empty((spare, n), np.uint8), np.empty((spare, n), np.float32)
    into = SearchArrays(correct[:m], values[:m], np.empty((m, n), np.uint32), derived=())
    derive, basis = None, ""
    if confidence in (LEARNED, LEARNED_HOLDOUT):
        from search.learned_arrays import derive_learned, learned_basis

        derive, basis = derive_learned, learned_basis(dataset)
    arrays = load_search_arrays(
        session, dataset, model_ids, confidence, labels, out=into, derive=derive, basis=basis
    )
    zoo = Zoo(
        names=tuple(models[i].name for i in model_ids),
        costs=np.array([models[i].gmacs for i in model_ids], dtype=np.float64),
        correct=arrays.correct,
        confidence=arrays.confidence,
    )
    return zoo, arrays.order, (correct, values)


# ----- what a dataset keeps ----------------------------------------------------------------------
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


def add_budget(
    session: Session,
    dataset: Dataset,
    cp: int,
    search: SaverSearch,
    progress: Progress | None = None,
) -> None:
    """Keep one more budget (``cp``: hundredths of a point) for the dataset from now on, and
    compute it for every pair."""
    lock_dataset_search(session, dataset)  # a concurrent addition commits first: none is lost
    session.refresh(dataset)
    dataset.budgets_centipoints = sorted({*dataset.budgets_centipoints, cp})
    session.flush()
    search.refresh(session, dataset, progress=progress)
