"""Incremental saver search over the database.

When models complete on a dataset, only the pairs they take part in are computed (as base against
every cheaper model, as saver against every dearer one), upserted, and the affected bases' best
savers updated by comparison with the stored best. ``refresh`` computes whatever pairs are missing.
Zoos stay cached in the ``SaverSearch`` object, so a long-lived process adds a model to a large zoo
without re-reading or re-sorting the others.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import BestSaver, Dataset, Model, PairResult, utc_now
from db.queries import complete_model_ids, dataset_samples, lock_dataset_search, top1_predictions
from db.upsert import upsert
from search.engine import Zoo
from search.pairs import BUDGET, PAPER, PairRecord, SplitZoo, calibration_mask, saver_records

IN_SAMPLE = "in_sample"
HOLDOUT = "holdout"
SELECTIONS = (IN_SAMPLE, HOLDOUT)
PAIR_KEY = ("dataset_id", "base_id", "saver_id", "criterion", "max_drop_centipoints")
BEST_KEY = ("dataset_id", "base_id", "criterion", "max_drop_centipoints", "selection")

Progress = Callable[[int, int], None]  # (savers done, savers in all)
# What best-saver selection reads of a stored pair.
RANKED_COLUMNS = (
    PairResult.id,
    PairResult.base_id,
    PairResult.saver_id,
    PairResult.criterion,
    PairResult.max_drop_centipoints,
    PairResult.saving,
    PairResult.accuracy,
    PairResult.holdout_calibration_saving,
    PairResult.holdout_calibration_accuracy,
)


def criterion_keys(dataset: Dataset) -> list[tuple[str, int]]:
    return [(BUDGET, cp) for cp in sorted(dataset.budgets_centipoints)] + [(PAPER, 0)]


def pair_row(record: PairRecord, dataset_id: int, ids: dict[str, int], now: datetime) -> dict:
    p, h = record.point, record.held_out
    return {
        "dataset_id": dataset_id,
        "base_id": ids[record.base],
        "saver_id": ids[record.saver],
        "criterion": record.criterion,
        "max_drop_centipoints": round(record.max_drop * 100),
        "threshold": p.threshold,
        "exit_ratio": p.exit_ratio,
        "accuracy": p.accuracy,
        "base_accuracy": p.base_accuracy,
        "relative_cost": p.relative_cost,
        "saving": p.saving,
        "holdout_threshold": h.threshold,
        "holdout_calibration_accuracy": h.calibration.accuracy,
        "holdout_calibration_saving": h.calibration.saving,
        "holdout_exit_ratio": h.evaluation.exit_ratio,
        "holdout_accuracy": h.evaluation.accuracy,
        "holdout_base_accuracy": h.evaluation.base_accuracy,
        "holdout_saving": h.evaluation.saving,
        "computed_at": now,
    }


def rank(row: dict, saver_cost: float, saver_name: str, selection: str) -> tuple:
    """Sort key of a pair row for best-saver selection, best first.

    Budget: larger saving, higher accuracy, cheaper saver, name. Paper: smaller ΔC (= -saving),
    cheaper saver, name. Held-out selection ranks by the calibration samples' numbers.
    """
    saving = row["saving" if selection == IN_SAMPLE else "holdout_calibration_saving"]
    accuracy = row["accuracy" if selection == IN_SAMPLE else "holdout_calibration_accuracy"]
    if row["criterion"] == PAPER:
        return (-saving, saver_cost, saver_name)
    return (-saving, -accuracy, saver_cost, saver_name)


@dataclass
class CachedZoo:
    model_ids: list[int]
    zoos: SplitZoo
    calibration: np.ndarray


@dataclass(frozen=True)
class UpdateSummary:
    models: int
    pairs_computed: int
    rows_written: int
    best_changed: int


@dataclass
class SaverSearch:
    """Keeps pair results and best savers up to date; holds each dataset's zoo between updates.

    The cache trusts that predictions change only through this object; an update that raises
    forgets the dataset's zoo, so a rolled-back transaction never leaves it ahead of the database.
    """

    holdout_fraction: float = 0.5
    _cache: dict[int, CachedZoo] = field(default_factory=dict)

    @contextmanager
    def _forget_on_error(self, dataset: Dataset) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._cache.pop(dataset.id, None)
            raise

    # ----- zoo loading -------------------------------------------------------------------------
    def zoo(self, session: Session, dataset: Dataset, reload: Iterable[int] = ()) -> CachedZoo:
        """The dataset's complete models as a split zoo; ``reload`` ids are re-read if cached."""
        complete = complete_model_ids(session, dataset)
        cached = self._cache.get(dataset.id)
        stale = set(reload)
        if cached is None or stale & set(cached.model_ids) or set(cached.model_ids) - set(complete):
            cached = self._load(session, dataset, complete)
        else:
            new = [m for m in complete if m not in set(cached.model_ids)]
            if new:
                cached = self._append(session, dataset, cached, new)
        self._cache[dataset.id] = cached
        return cached

    def _load(self, session: Session, dataset: Dataset, model_ids: list[int]) -> CachedZoo:
        samples = dataset_samples(session, dataset)
        calibration = calibration_mask(samples.keys, self.holdout_fraction)
        zoo = self._zoo_of(session, dataset, model_ids, samples.labels)
        return CachedZoo(list(model_ids), SplitZoo(zoo, calibration), calibration)

    def _append(self, session, dataset, cached: CachedZoo, new: list[int]) -> CachedZoo:
        labels = dataset_samples(session, dataset).labels
        cached.zoos.add(self._zoo_of(session, dataset, new, labels))
        return CachedZoo(cached.model_ids + new, cached.zoos, cached.calibration)

    @staticmethod
    def _zoo_of(session, dataset, model_ids, labels) -> Zoo:
        models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(model_ids)))}
        classes, probs = top1_predictions(session, dataset, model_ids)
        return Zoo.from_predictions(
            [models[i].name for i in model_ids],
            [models[i].gmacs for i in model_ids],
            classes,
            probs,
            labels,
        )

    # ----- updates -----------------------------------------------------------------------------
    def models_completed(
        self,
        session: Session,
        dataset: Dataset,
        model_ids: Sequence[int],
        progress: Progress | None = None,
    ) -> UpdateSummary:
        """Compute every pair that involves one of ``model_ids``; update affected best savers."""
        with self._forget_on_error(dataset):
            return self._models_completed(session, dataset, model_ids, progress)

    def _models_completed(self, session, dataset, model_ids, progress) -> UpdateSummary:
        # Lock first: a concurrent update of the same dataset commits before we read the zoo, so
        # pairs between its models and ours are never missed.
        lock_dataset_search(session, dataset)
        cached = self.zoo(session, dataset, reload=model_ids)
        row_of = {m: r for r, m in enumerate(cached.model_ids)}
        missing = [m for m in model_ids if m not in row_of]
        if missing:
            raise ValueError(f"models {missing} have no complete predictions on {dataset.name!r}")
        is_new = np.zeros(len(cached.model_ids), dtype=bool)
        is_new[[row_of[m] for m in model_ids]] = True
        costs = cached.zoos.full.costs
        wanted = {}
        for saver in range(len(costs)):
            # A new saver meets every dearer model; an old one only the new dearer models.
            bases = np.flatnonzero((costs > costs[saver]) & (is_new | is_new[saver]))
            if len(bases):
                wanted[saver] = bases.tolist()
        dropped = self._drop_obsolete_pairs(session, dataset, cached, set(model_ids))
        return self._compute_and_store(session, dataset, cached, wanted, progress, dropped)

    def refresh(
        self, session: Session, dataset: Dataset, progress: Progress | None = None
    ) -> UpdateSummary:
        """Compute every pair (any criterion of the dataset) that is missing from the database."""
        with self._forget_on_error(dataset):
            return self._refresh(session, dataset, progress)

    def _refresh(self, session, dataset, progress) -> UpdateSummary:
        lock_dataset_search(session, dataset)
        cached = self.zoo(session, dataset)
        dropped = self._drop_obsolete_pairs(session, dataset, cached, None)
        present = defaultdict(int)
        keys = set(criterion_keys(dataset))
        for base_id, saver_id, criterion, cp in session.execute(
            select(
                PairResult.base_id,
                PairResult.saver_id,
                PairResult.criterion,
                PairResult.max_drop_centipoints,
            ).where(PairResult.dataset_id == dataset.id)
        ):
            if (criterion, cp) in keys:
                present[(base_id, saver_id)] += 1
        costs = cached.zoos.full.costs
        wanted = {}
        for saver, saver_id in enumerate(cached.model_ids):
            bases = [
                int(b)
                for b in np.flatnonzero(costs > costs[saver])
                if present[(cached.model_ids[b], saver_id)] < len(keys)
            ]
            if bases:
                wanted[saver] = bases
        return self._compute_and_store(session, dataset, cached, wanted, progress, dropped)

    @staticmethod
    def _drop_obsolete_pairs(
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
        for chunk in _chunks([pair_id for pair_id, _ in obsolete]):
            session.execute(delete(PairResult).where(PairResult.id.in_(chunk)))
        return {base_id for _, base_id in obsolete}

    def _compute_and_store(
        self,
        session,
        dataset: Dataset,
        cached: CachedZoo,
        wanted: dict[int, list[int]],
        progress: Progress | None,
        reread_bases: set[int],
    ) -> UpdateSummary:
        max_drops = [cp / 100 for cp in sorted(dataset.budgets_centipoints)]
        ids = dict(zip(cached.zoos.full.names, cached.model_ids, strict=True))
        now = utc_now()
        rows = []
        for done, (saver, bases) in enumerate(wanted.items(), start=1):
            records = saver_records(cached.zoos, saver, bases, max_drops)
            rows.extend(pair_row(r, dataset.id, ids, now) for r in records)
            if progress:
                progress(done, len(wanted))
        upsert(session, PairResult, rows, key=PAIR_KEY)
        changed = self._update_best(session, dataset, rows, reread_bases)
        pairs = sum(len(b) for b in wanted.values())
        return UpdateSummary(len(cached.model_ids), pairs, len(rows), changed)

    def _update_best(self, session, dataset: Dataset, rows, reread_bases) -> int:
        """Compare each affected base's new pairs with its stored best; write what changed.

        A stored best that was itself recomputed may have got worse, and ``reread_bases`` lost
        pairs; only then are all of that base's stored pairs read again.
        """
        connection = session.connection()  # Core rows: no ORM bookkeeping for plain reads
        costs, names = {}, {}
        for model_id, gmacs, name in connection.execute(select(Model.id, Model.gmacs, Model.name)):
            costs[model_id], names[model_id] = gmacs, name
        new_by_group = defaultdict(list)  # (base, criterion, max drop) -> new pair rows
        for row in rows:
            new_by_group[(row["base_id"], row["criterion"], row["max_drop_centipoints"])].append(
                row
            )
        for base_id in reread_bases:
            for criterion, cp in criterion_keys(dataset):
                new_by_group.setdefault((base_id, criterion, cp), [])
        stored = self._stored_best(connection, dataset, {group[0] for group in new_by_group})
        stale = set()
        for group, candidates in new_by_group.items():
            recomputed = {c["saver_id"] for c in candidates}
            current_savers = {
                stored[(*group, selection)]["saver_id"]
                for selection in SELECTIONS
                if (*group, selection) in stored
            }
            if group[0] in reread_bases or current_savers & recomputed:
                stale.add(group)
        reread = self._pair_rows(connection, dataset, stale)
        writes, emptied = [], []
        for group, candidates in new_by_group.items():
            if not (reread[group] if group in stale else candidates):
                emptied.append(group)  # no candidate left: the base has no saver
                continue
            for selection in SELECTIONS:

                def key(row, s=selection):  # noqa: ANN001, ANN202
                    return rank(row, costs[row["saver_id"]], names[row["saver_id"]], s)

                current = stored.get((*group, selection))
                best = min(reread[group] if group in stale else candidates, key=key)
                if group not in stale and current is not None and key(current) <= key(best):
                    continue
                if current is not None and current["saver_id"] == best["saver_id"]:
                    continue  # the same pair (the key is unique), perhaps with new numbers
                writes.append((group, selection, best["saver_id"]))
        for base_id, criterion, cp in emptied:
            session.execute(
                delete(BestSaver).where(
                    BestSaver.dataset_id == dataset.id,
                    BestSaver.base_id == base_id,
                    BestSaver.criterion == criterion,
                    BestSaver.max_drop_centipoints == cp,
                )
            )
        pair_ids = self._pair_ids(connection, dataset, {(*g, saver) for g, _, saver in writes})
        now = utc_now()
        upsert(
            session,
            BestSaver,
            [
                {
                    "dataset_id": dataset.id,
                    "base_id": base_id,
                    "criterion": criterion,
                    "max_drop_centipoints": cp,
                    "selection": selection,
                    "pair_id": pair_ids[(base_id, criterion, cp, saver_id)],
                    "updated_at": now,
                }
                for (base_id, criterion, cp), selection, saver_id in writes
            ],
            key=BEST_KEY,
        )
        return len(writes) + len(emptied)

    @staticmethod
    def _pair_ids(connection, dataset: Dataset, keys: set[tuple]) -> dict[tuple, int]:
        """Ids of stored pairs by (base, criterion, max drop, saver).

        Filters on bases and savers separately (the unique index serves both) and keeps the exact
        keys here: the new best savers of an update share few savers, so little is over-read.
        """
        savers = sorted({key[3] for key in keys})
        found = {}
        for chunk in _chunks(sorted({key[0] for key in keys})):
            query = select(
                PairResult.base_id,
                PairResult.criterion,
                PairResult.max_drop_centipoints,
                PairResult.saver_id,
                PairResult.id,
            ).where(
                PairResult.dataset_id == dataset.id,
                PairResult.base_id.in_(chunk),
                PairResult.saver_id.in_(savers),
            )
            for *key, pair_id in connection.execute(query):
                if tuple(key) in keys:
                    found[tuple(key)] = pair_id
        return found

    @staticmethod
    def _stored_best(connection, dataset: Dataset, base_ids: set[int]) -> dict[tuple, dict]:
        """Current best pair rows (the columns ``rank`` needs), by group and selection."""
        stored = {}
        for chunk in _chunks(sorted(base_ids)):
            query = (
                select(BestSaver.selection, *RANKED_COLUMNS)
                .join(PairResult, PairResult.id == BestSaver.pair_id)
                .where(BestSaver.dataset_id == dataset.id, BestSaver.base_id.in_(chunk))
            )
            for row in connection.execute(query).mappings():
                pair = dict(row)
                group = (pair["base_id"], pair["criterion"], pair["max_drop_centipoints"])
                stored[(*group, pair.pop("selection"))] = pair
        return stored

    @staticmethod
    def _pair_rows(connection, dataset: Dataset, groups: set[tuple]) -> dict[tuple, list[dict]]:
        """All stored pair rows of the given (base, criterion, max drop) groups."""
        found = defaultdict(list)
        for chunk in _chunks(sorted({group[0] for group in groups})):
            query = select(*RANKED_COLUMNS).where(
                PairResult.dataset_id == dataset.id, PairResult.base_id.in_(chunk)
            )
            for row in connection.execute(query).mappings():
                group = (row["base_id"], row["criterion"], row["max_drop_centipoints"])
                if group in groups:
                    found[group].append(dict(row))
        return found


def _chunks(values: list, size: int = 500):  # noqa: ANN202 - a generator of lists
    """Keep IN lists well under every database's parameter limit."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
