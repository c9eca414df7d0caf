"""Best savers kept by comparison end where ranking every stored pair with ``rank_key`` ends.

The pairs are made of few distinct numbers so that ties are everywhere: savings equal after
rounding to 12 decimals but not before (the budget ties, the paper does not), equal accuracies,
equal costs (the name decides). Updates add pairs, recompute pairs (a stored best may get worse)
and remove pairs of a base (the base's groups are read again, some left with no pair).
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from sqlalchemy import delete, select

from db.models import BestSaver, Dataset, Model, PairResult
from db.schema import ensure_schema
from db.session import session_factory
from db.upsert import upsert
from search.best import HOLDOUT, IN_SAMPLE, update_best_savers
from search.criteria import BUDGET, PAPER
from search.selection import rank_key
from search.service import PAIR_KEY

BUDGETS = [0, 50, 100]
CRITERIA = [(BUDGET, cp) for cp in BUDGETS] + [(PAPER, 0)]
TIES = [0.1, 0.2, 0.2 + 1e-14, 0.3, 0.1 + 2e-13, -0.1, 0.0, 0.7, 0.70000000000001]
RANKED = ["saving", "accuracy", "holdout_calibration_saving", "holdout_calibration_accuracy"]
OTHER = [
    "threshold",
    "exit_ratio",
    "base_accuracy",
    "relative_cost",
    "holdout_threshold",
    "holdout_exit_ratio",
    "holdout_accuracy",
    "holdout_base_accuracy",
    "holdout_saving",
]


def pair_rows(rng: random.Random, dataset_id: int, pairs: list[tuple[int, int]]) -> list[dict]:
    rows = []
    for base, saver in pairs:
        for criterion, cp in CRITERIA:
            row = {
                "dataset_id": dataset_id,
                "confidence": "max",
                "base_id": base,
                "saver_id": saver,
                "criterion": criterion,
                "max_drop_centipoints": cp,
            }
            row.update({column: rng.choice(TIES) for column in RANKED})
            row.update({column: rng.random() for column in OTHER})
            rows.append(row)
    return rows


def ranked_from_scratch(session, dataset_id: int) -> dict[tuple, int]:
    """The best saver of every group and selection, by ``rank_key`` over all stored pairs."""
    models = {m.id: m for m in session.scalars(select(Model))}
    groups = defaultdict(list)
    for pair in session.scalars(select(PairResult).where(PairResult.dataset_id == dataset_id)):
        groups[(pair.base_id, pair.criterion, pair.max_drop_centipoints)].append(pair)
    best = {}
    for group, pairs in groups.items():
        for selection, saving, accuracy in (
            (IN_SAMPLE, "saving", "accuracy"),
            (HOLDOUT, "holdout_calibration_saving", "holdout_calibration_accuracy"),
        ):
            winner = min(
                pairs,
                key=lambda p, s=saving, a=accuracy: rank_key(
                    p.criterion,
                    getattr(p, s),
                    getattr(p, a),
                    models[p.saver_id].gmacs,
                    models[p.saver_id].name,
                ),
            )
            best[(*group, selection)] = winner.saver_id
    return best


def stored_best(session, dataset_id: int) -> dict[tuple, int]:
    query = (
        select(BestSaver, PairResult.saver_id)
        .join(PairResult, PairResult.id == BestSaver.pair_id)
        .where(BestSaver.dataset_id == dataset_id)
    )
    return {
        (b.base_id, b.criterion, b.max_drop_centipoints, b.selection): saver_id
        for b, saver_id in session.execute(query)
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_best_savers_kept_by_comparison_equal_a_ranking_of_every_stored_pair(database_url, seed):
    ensure_schema(database_url)
    sessions = session_factory(database_url)
    rng = random.Random(seed)
    with sessions.begin() as session:
        dataset = Dataset(name="ties", num_samples=1, num_classes=1, budgets_centipoints=BUDGETS)
        models = [
            Model(name=f"m{rng.randrange(100):02d}-{i}", source="records", gmacs=rng.choice([1, 2]))
            for i in range(16)
        ]
        session.add_all([dataset, *models])
        session.flush()
        dataset_id, ids = dataset.id, [m.id for m in models]

    def update(rows: list[dict], reread: set[int]) -> None:
        with sessions.begin() as session:
            upsert(session, PairResult, rows, key=PAIR_KEY)
            stored = session.get(Dataset, dataset_id)
            update_best_savers(session, stored, rows, reread, CRITERIA)
            assert stored_best(session, dataset_id) == ranked_from_scratch(session, dataset_id)

    done: list[int] = []
    for new in rng.sample(ids, len(ids)):  # models complete one at a time
        pairs = [(b, new) for b in done] + [(new, s) for s in done]
        done.append(new)
        update(pair_rows(rng, dataset_id, [p for p in pairs if rng.random() < 0.8]), set())
    for _ in range(6):  # recomputed pairs
        pairs = rng.sample([(b, s) for b in ids for s in ids if b != s], 40)
        update(pair_rows(rng, dataset_id, pairs), set())
    for lost in range(4):  # a base loses some of its pairs, or all of them
        base = rng.choice(ids)
        with sessions.begin() as session:
            removed = delete(PairResult).where(PairResult.base_id == base)
            if lost % 2:
                removed = removed.where(PairResult.saver_id.in_(ids[:8]))
            session.execute(removed)
        update([], {base})
