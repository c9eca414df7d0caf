"""Best savers kept up to date by comparison, not by recomputation.

After an update has stored new pair rows, each affected (base, criterion, budget) group compares
its new candidates with its stored best. Only a group whose stored best was itself recomputed (it
may have got worse) or whose base lost pairs reads all of its stored pairs again.

Candidates are plain tuples, and a saver's cost and name (the last two ranking rules) become one
integer, its place among the savers involved: the keys order the candidates exactly as
``search.selection.rank_key`` orders them, for a fraction of its cost, which an update pays for
every new row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from db.models import BestSaver, Dataset, Model, PairResult, utc_now
from db.upsert import upsert
from search.criteria import BUDGET, MAX_PROBABILITY, PAPER
from search.selection import SAVING_DECIMALS

IN_SAMPLE = "in_sample"
HOLDOUT = "holdout"
SELECTIONS = (IN_SAMPLE, HOLDOUT)
BEST_KEY = ("dataset_id", "base_id", "criterion", "max_drop_centipoints", "selection", "confidence")
# What best-saver selection reads of a stored pair, in the order of a candidate's tuple.
RANKED_COLUMNS = (
    PairResult.saver_id,
    PairResult.saving,
    PairResult.accuracy,
    PairResult.holdout_calibration_saving,
    PairResult.holdout_calibration_accuracy,
)
_GROUP_OF = itemgetter("base_id", "criterion", "max_drop_centipoints")
_CANDIDATE_OF = itemgetter(*(column.key for column in RANKED_COLUMNS))
# Where a selection's saving and accuracy sit in a candidate's tuple.
_SAVING_AND_ACCURACY = {IN_SAMPLE: (1, 2), HOLDOUT: (3, 4)}

STORED_BEST_BASES_A_QUERY = 100

Group = tuple[int, str, int]  # (base id, criterion, max drop in centipoints)
Candidate = tuple  # (saver id, saving, accuracy, calibration saving, calibration accuracy)


class Ranking:
    """Sort keys of candidates under a selection (in-sample numbers, or the calibration half's),
    ordered as ``search.selection.rank_key`` orders them.

    A saver's cost and name enter ``rank_key`` only as its last two rules; their order among the
    savers involved (names are unique) is one integer that sorts the same way."""

    def __init__(self, connection: Connection, saver_ids: Iterable[int]) -> None:
        savers: list[tuple] = []
        for chunk in _chunks(sorted(set(saver_ids))):
            query = select(Model.gmacs, Model.name, Model.id).where(Model.id.in_(chunk))
            savers.extend(tuple(row) for row in connection.execute(query).all())
        self.place = {saver_id: place for place, (*_, saver_id) in enumerate(sorted(savers))}
        self._keys = {
            (criterion, selection): self._key_function(criterion, selection)
            for criterion in (BUDGET, PAPER)
            for selection in SELECTIONS
        }

    def key_function(self, criterion: str, selection: str):
        """The sort key of a candidate of ``criterion`` under ``selection``, best first."""
        try:
            return self._keys[(criterion, selection)]
        except KeyError:
            raise ValueError(
                f"criterion must be {BUDGET!r} or {PAPER!r}, not {criterion!r}"
            ) from None

    def _key_function(self, criterion: str, selection: str):
        saving_at, accuracy_at = _SAVING_AND_ACCURACY[selection]
        place = self.place
        if criterion == PAPER:
            return lambda c: (-c[saving_at], place[c[0]])
        return lambda c: (
            -round(c[saving_at], SAVING_DECIMALS),
            -c[accuracy_at],
            place[c[0]],
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
    candidates: dict[Group, list[Candidate]] = defaultdict(list)
    for group, candidate in zip(map(_GROUP_OF, rows), map(_CANDIDATE_OF, rows), strict=True):
        candidates[group].append(candidate)
    for base_id in reread_bases:
        for criterion, cp in criterion_keys:
            candidates.setdefault((base_id, criterion, cp), [])
    scope = _Scope(dataset.id, confidence)
    stored = _stored_best(connection, scope, {group[0] for group in candidates})
    stale = _stale_groups(candidates, stored, reread_bases)
    reread = _pair_rows(connection, scope, stale)
    savers = set(map(itemgetter("saver_id"), rows))
    savers.update(candidate[0] for pool in reread.values() for candidate in pool)
    savers.update(best[0] for current in stored.values() for best in current.values())
    ranking = Ranking(connection, savers)
    writes, emptied = [], []
    for group, new_candidates in candidates.items():
        pool = reread[group] if group in stale else new_candidates
        if not pool:
            emptied.append(group)  # no candidate left: the base has no saver
            continue
        for selection in SELECTIONS:
            key = ranking.key_function(group[1], selection)
            best = pool[0] if len(pool) == 1 else min(pool, key=key)
            current = stored[group].get(selection) if group in stored else None
            if current is None or current[0] != best[0]:
                if group in stale or current is None or key(best) < key(current):
                    writes.append((group, selection, best[0]))
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
    candidates: dict[Group, list[Candidate]], stored: dict[Group, dict], reread_bases: set[int]
) -> set[Group]:
    """Groups whose stored best may have got worse: compare against all their pairs."""
    stale = set()
    for group, new_candidates in candidates.items():
        current = stored.get(group)
        if group[0] in reread_bases:
            stale.add(group)
        elif current is not None:
            savers = {best[0] for best in current.values()}
            if not savers.isdisjoint(map(itemgetter(0), new_candidates)):
                stale.add(group)
    return stale


def _chunks(values: list, size: int = 500) -> Iterable[list]:
    """Keep IN lists well under every database's parameter limit."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _stored_best(connection: Connection, scope: _Scope, base_ids: set[int]) -> dict:
    """Current best candidates, by (base, criterion, max drop), then selection."""
    stored: dict[Group, dict[str, Candidate]] = defaultdict(dict)
    # A hundred bases a query: about 1,200 best savers, few enough that PostgreSQL looks each one's
    # pair up by id. Asked for thousands at once it scans the whole pair table instead, five times
    # slower with 400 models (``bench.search_writes``) and worse as the table grows.
    for chunk in _chunks(sorted(base_ids), size=STORED_BEST_BASES_A_QUERY):
        query = (
            select(
                PairResult.base_id,
                PairResult.criterion,
                PairResult.max_drop_centipoints,
                BestSaver.selection,
                *RANKED_COLUMNS,
            )
            .join(PairResult, PairResult.id == BestSaver.pair_id)
            .where(*scope.best(), BestSaver.base_id.in_(chunk))
        )
        for row in connection.execute(query).all():
            stored[(row[0], row[1], row[2])][row[3]] = tuple(row[4:])
    return stored


def _pair_rows(connection: Connection, scope: _Scope, groups: set[Group]) -> dict:
    """All stored candidates of the given groups."""
    found = defaultdict(list)
    for chunk in _chunks(sorted({group[0] for group in groups})):
        query = select(
            PairResult.base_id,
            PairResult.criterion,
            PairResult.max_drop_centipoints,
            *RANKED_COLUMNS,
        ).where(*scope.pairs(), PairResult.base_id.in_(chunk))
        for row in connection.execute(query).all():
            group = tuple(row[:3])
            if group in groups:
                found[group].append(tuple(row[3:]))
    return found


def _pair_ids(connection: Connection, scope: _Scope, keys: set[tuple]) -> dict[tuple, int]:
    """Ids of stored pairs by (base, criterion, max drop, saver).

    One query per saver (with its bases) or per base (with its savers), whichever is fewer: the
    unique key's index finds exactly those pairs, under every criterion. Bases and savers filtered
    apart would read their whole cross product: a new model's savers in front of every base it
    is the new best saver of, tens of thousands of rows an update.
    """
    bases_of, savers_of = defaultdict(list), defaultdict(list)
    for base_id, _, _, saver_id in keys:
        bases_of[saver_id].append(base_id)
        savers_of[base_id].append(saver_id)
    if len(bases_of) <= len(savers_of):
        lookups = [
            (PairResult.saver_id == saver_id, PairResult.base_id, bases)
            for saver_id, bases in bases_of.items()
        ]
    else:
        lookups = [
            (PairResult.base_id == base_id, PairResult.saver_id, savers)
            for base_id, savers in savers_of.items()
        ]
    found = {}
    for fixed, column, values in lookups:
        for chunk in _chunks(sorted(set(values))):
            query = select(
                PairResult.base_id,
                PairResult.criterion,
                PairResult.max_drop_centipoints,
                PairResult.saver_id,
                PairResult.id,
            ).where(*scope.pairs(), fixed, column.in_(chunk))
            for *key, pair_id in connection.execute(query).all():
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
