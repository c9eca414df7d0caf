"""Best savers kept up to date by comparison, not by recomputation.

After an update has stored new pair rows, each affected (base, criterion, budget) group compares
its new candidates with its stored best. Only a group whose stored best was itself recomputed (it
may have got worse) or whose base lost pairs reads all of its stored pairs again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from db.models import BestSaver, Dataset, Model, PairResult, utc_now
from db.upsert import upsert
from search.criteria import MAX_PROBABILITY
from search.selection import rank_key

IN_SAMPLE = "in_sample"
HOLDOUT = "holdout"
SELECTIONS = (IN_SAMPLE, HOLDOUT)
BEST_KEY = ("dataset_id", "base_id", "criterion", "max_drop_centipoints", "selection", "confidence")
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

Group = tuple[int, str, int]  # (base id, criterion, max drop in centipoints)


class Ranking:
    """Sort keys of pair rows under a selection: in-sample numbers, or the calibration half's."""

    def __init__(self, connection: Connection) -> None:
        self.costs, self.names = {}, {}
        for model_id, gmacs, name in connection.execute(select(Model.id, Model.gmacs, Model.name)):
            self.costs[model_id], self.names[model_id] = gmacs, name

    def key(self, row: dict, selection: str) -> tuple:
        held_out = selection == HOLDOUT
        return rank_key(
            row["criterion"],
            row["holdout_calibration_saving" if held_out else "saving"],
            row["holdout_calibration_accuracy" if held_out else "accuracy"],
            self.costs[row["saver_id"]],
            self.names[row["saver_id"]],
        )


def update_best_savers(
    session: Session,
    dataset: Dataset,
    rows: Sequence[dict],
    reread_bases: set[int],
    criterion_keys: Iterable[tuple[str, int]],
    confidence: str = MAX_PROBABILITY,
) -> int:
    """Bring the best savers of every group touched by ``rows`` (pairs of one confidence signal)
    up to date; returns the changes."""
    connection = session.connection()  # Core rows: no ORM bookkeeping for plain reads
    candidates: dict[Group, list[dict]] = defaultdict(list)
    for row in rows:
        candidates[(row["base_id"], row["criterion"], row["max_drop_centipoints"])].append(row)
    for base_id in reread_bases:
        for criterion, cp in criterion_keys:
            candidates.setdefault((base_id, criterion, cp), [])
    scope = _Scope(dataset.id, confidence)
    stored = _stored_best(connection, scope, {group[0] for group in candidates})
    stale = _stale_groups(candidates, stored, reread_bases)
    reread = _pair_rows(connection, scope, stale)
    ranking = Ranking(connection)
    writes, emptied = [], []
    for group, new_rows in candidates.items():
        pool = reread[group] if group in stale else new_rows
        if not pool:
            emptied.append(group)  # no candidate left: the base has no saver
            continue
        for selection in SELECTIONS:
            best = min(pool, key=lambda row, s=selection: ranking.key(row, s))
            current = stored.get((*group, selection))
            if current is None or current["saver_id"] != best["saver_id"]:
                if (
                    group in stale
                    or current is None
                    or (ranking.key(best, selection) < ranking.key(current, selection))
                ):
                    writes.append((group, selection, best["saver_id"]))
    _delete_best(session, scope, emptied)
    _write_best(session, connection, scope, writes)
    return len(writes) + len(emptied)


@dataclass(frozen=True)
class _Scope:
    """The rows one update reads and writes: a dataset's, of one confidence signal."""

    dataset_id: int
    confidence: str

    def pairs(self) -> tuple:
        return (PairResult.dataset_id == self.dataset_id, PairResult.confidence == self.confidence)

    def best(self) -> tuple:
        return (BestSaver.dataset_id == self.dataset_id, BestSaver.confidence == self.confidence)


def _stale_groups(
    candidates: dict[Group, list[dict]], stored: dict[tuple, dict], reread_bases: set[int]
) -> set[Group]:
    """Groups whose stored best may have got worse: compare against all their pairs."""
    stale = set()
    for group, new_rows in candidates.items():
        recomputed = {row["saver_id"] for row in new_rows}
        current = {stored[(*group, s)]["saver_id"] for s in SELECTIONS if (*group, s) in stored}
        if group[0] in reread_bases or current & recomputed:
            stale.add(group)
    return stale


def _chunks(values: list, size: int = 500) -> Iterable[list]:
    """Keep IN lists well under every database's parameter limit."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _stored_best(connection: Connection, scope: _Scope, base_ids: set[int]) -> dict:
    """Current best pair rows, by (base, criterion, max drop, selection)."""
    stored = {}
    for chunk in _chunks(sorted(base_ids)):
        query = (
            select(BestSaver.selection, *RANKED_COLUMNS)
            .join(PairResult, PairResult.id == BestSaver.pair_id)
            .where(*scope.best(), BestSaver.base_id.in_(chunk))
        )
        for row in connection.execute(query).mappings():
            pair = dict(row)
            group = (pair["base_id"], pair["criterion"], pair["max_drop_centipoints"])
            stored[(*group, pair.pop("selection"))] = pair
    return stored


def _pair_rows(connection: Connection, scope: _Scope, groups: set[Group]) -> dict:
    """All stored pair rows of the given groups."""
    found = defaultdict(list)
    for chunk in _chunks(sorted({group[0] for group in groups})):
        query = select(*RANKED_COLUMNS).where(*scope.pairs(), PairResult.base_id.in_(chunk))
        for row in connection.execute(query).mappings():
            group = (row["base_id"], row["criterion"], row["max_drop_centipoints"])
            if group in groups:
                found[group].append(dict(row))
    return found


def _pair_ids(connection: Connection, scope: _Scope, keys: set[tuple]) -> dict[tuple, int]:
    """Ids of stored pairs by (base, criterion, max drop, saver).

    Filters on bases and savers separately (the unique key's index serves both) and keeps the
    exact keys here: the new best savers of an update share few savers, so little is over-read.
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
        ).where(*scope.pairs(), PairResult.base_id.in_(chunk), PairResult.saver_id.in_(savers))
        for *key, pair_id in connection.execute(query):
            if tuple(key) in keys:
                found[tuple(key)] = pair_id
    return found


def _write_best(session: Session, connection: Connection, scope: _Scope, writes) -> None:
    pair_ids = _pair_ids(connection, scope, {(*group, saver) for group, _, saver in writes})
    now = utc_now()
    upsert(
        session,
        BestSaver,
        [
            {
                "dataset_id": scope.dataset_id,
                "base_id": base_id,
                "criterion": criterion,
                "max_drop_centipoints": cp,
                "selection": selection,
                "confidence": scope.confidence,
                "pair_id": pair_ids[(base_id, criterion, cp, saver_id)],
                "updated_at": now,
            }
            for (base_id, criterion, cp), selection, saver_id in writes
        ],
        key=BEST_KEY,
    )


def _delete_best(session: Session, scope: _Scope, groups: list[Group]) -> None:
    for base_id, criterion, cp in groups:
        session.execute(
            delete(BestSaver).where(
                *scope.best(),
                BestSaver.base_id == base_id,
                BestSaver.criterion == criterion,
                BestSaver.max_drop_centipoints == cp,
            )
        )
