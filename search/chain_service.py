"""Three-model cascades over the database, kept up to date incrementally.

A base's stored chain (``ChainResult``, per budget and candidate count K) was computed from its
candidate chains (its K best savers as s2, each of their K best savers as s1) and from the
predictions of those models. It is searched again only when its candidates changed (a new model
ranks among them, a pair was recomputed) or when one of its models was evaluated again since
(its ``ModelScore`` is newer than the chain): ``refresh_chains`` walks just those.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ChainResult, Dataset, ModelScore, PairResult, utc_now
from db.upsert import upsert
from search.chains import ChainPoint, candidate_chains, scan_chain
from search.criteria import BUDGET, DEFAULT_CANDIDATES, MAX_PROBABILITY
from search.selection import has_saver, rank_key
from search.service import SaverSearch

CHAIN_KEY = ("dataset_id", "base_id", "max_drop_centipoints", "candidates")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ChainSummary:
    bases: int
    searched: int  # (base, budget) chains searched again
    chains_walked: int


def ranked_savers(
    session: Session, dataset: Dataset, cp: int, k: int, names: dict[int, str], costs: dict
) -> dict[int, list[int]]:
    """Each base's ``k`` best savers (model ids) under the budget, as a pair answer ranks them."""
    rows = session.execute(
        select(
            PairResult.base_id, PairResult.saver_id, PairResult.saving, PairResult.accuracy
        ).where(
            PairResult.dataset_id == dataset.id,
            PairResult.criterion == BUDGET,
            PairResult.max_drop_centipoints == cp,
            PairResult.confidence == MAX_PROBABILITY,  # chains exit on the top-1 probability
        )
    )
    by_base: dict[int, list[tuple]] = {}
    for base, saver, saving, accuracy in rows:
        if saver in names and base in names and has_saver(BUDGET, saving):
            key = rank_key(BUDGET, saving, accuracy, costs[saver], names[saver])
            by_base.setdefault(base, []).append((key, saver))
    return {base: [s for _, s in heapq.nsmallest(k, keyed)] for base, keyed in by_base.items()}


def refresh_chains(
    session: Session,
    dataset: Dataset,
    search: SaverSearch,
    candidates: int = DEFAULT_CANDIDATES,
    progress: Progress | None = None,
) -> ChainSummary:
    """Search again every (base, budget) chain whose inputs changed; store the best of each."""
    with search.zoo_locked(session, dataset) as cached:
        zoo, ids = cached.zoos.full, cached.model_ids
        row_of = {model_id: row for row, model_id in enumerate(ids)}
        names = {model_id: zoo.names[row] for model_id, row in row_of.items()}
        costs = {model_id: float(zoo.costs[row]) for model_id, row in row_of.items()}
        budgets = sorted(dataset.budgets_centipoints)
        scored_at = dict(
            session.execute(
                select(ModelScore.model_id, ModelScore.computed_at).where(
                    ModelScore.dataset_id == dataset.id
                )
            ).all()
        )
        stored = {
            (row.base_id, row.max_drop_centipoints): row
            for row in session.scalars(
                select(ChainResult).where(
                    ChainResult.dataset_id == dataset.id, ChainResult.candidates == candidates
                )
            )
        }
        wanted: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for cp in budgets:
            chains = candidate_chains(
                ranked_savers(session, dataset, cp, candidates, names, costs), candidates
            )
            for base in ids:
                mine = chains.get(base, [])
                if _stale(stored.get((base, cp)), mine, scored_at):
                    wanted[(base, cp)] = mine
        walks = sorted({chain for chains in wanted.values() for chain in chains})
        drops = [cp / 100 for cp in budgets]
        orders = {}
        points: dict[tuple[int, int, int], list[ChainPoint | None]] = {}
        for done, chain in enumerate(walks, start=1):
            rows = tuple(row_of[m] for m in chain)
            for row in rows[:2]:
                if row not in orders:
                    orders[row] = cached.zoos.order("full", row)
            points[chain] = scan_chain(zoo, rows, drops, orders)  # type: ignore[arg-type]
            if progress:
                progress(done, len(walks))
        now = utc_now()
        upsert(
            session,
            ChainResult,
            [
                _row(dataset, base, cp, candidates, chains, points, budgets.index(cp), zoo, now)
                for (base, cp), chains in wanted.items()
            ],
            key=CHAIN_KEY,
        )
    return ChainSummary(len(ids), len(wanted), len(walks))


def _stale(row: ChainResult | None, chains: list[tuple[int, int, int]], scored_at: dict) -> bool:
    if row is None or row.chains != [[s1, s2] for s1, s2, _ in chains]:
        return True
    models = {m for chain in chains for m in chain}
    return any(
        scored_at.get(m) is not None and _later(scored_at[m], row.computed_at) for m in models
    )


def _later(a, b) -> bool:
    """``a`` after ``b``; SQLite gives naive UTC datetimes back, PostgreSQL aware ones."""
    return a.replace(tzinfo=None) > b.replace(tzinfo=None)


def _row(dataset, base, cp, candidates, chains, points, budget, zoo, now) -> dict:
    found = [(points[c][budget], c) for c in chains if points[c][budget] is not None]
    row = {
        "dataset_id": dataset.id,
        "base_id": base,
        "max_drop_centipoints": cp,
        "candidates": candidates,
        "chains": [[s1, s2] for s1, s2, _ in chains],
        "samples": zoo.num_samples,
        "computed_at": now,
    }
    empty = dict.fromkeys(
        ("s1_id", "s2_id", "threshold1", "threshold2", "exit1", "exit2", "correct", "saving")
    )
    if not found:
        return {**row, **empty}
    point, (s1, s2, _) = min(found, key=lambda f: f[0].rank_key(zoo.costs, zoo.names))
    return {
        **row,
        "s1_id": s1,
        "s2_id": s2,
        "threshold1": point.thresholds[0],
        "threshold2": point.thresholds[1],
        "exit1": point.exit_ratios[0],
        "exit2": point.exit_ratios[1],
        "correct": point.correct,
        "saving": point.saving,
    }


def kept_candidates(session: Session, dataset: Dataset) -> list[int]:
    """The candidate counts K whose chains the dataset has stored (``savers refresh`` keeps
    them up to date)."""
    return sorted(
        session.scalars(
            select(ChainResult.candidates).where(ChainResult.dataset_id == dataset.id).distinct()
        )
    )
