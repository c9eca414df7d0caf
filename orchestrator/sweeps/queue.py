"""The driver's queue of units to run: pure, no I/O.

Before the sweep, the units are split into one list per expected worker of equal modelled time,
keeping bundles that are dear to load whole. Each worker runs its own list, longest units first.
An idle worker takes from a list nobody runs, else from the worker predicted to finish last when
that ends the sweep sooner. Predictions are corrected by the pace observed.

Three parts: the layout (``plan``), the steal choice (``choose_steal``) and the queue's state
(``PlannedQueue``: take, put back, release, finished); ``feed`` hands units to workers. Each
rule, and the ``bench.schedule`` figure that keeps it: docs/scheduling.md.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# A bundle whose loads cost more than this share of its work is kept whole, where it fits one
# worker's share (bench.schedule: 0.02 leaves the lists uneven, 0.1 splits bundles of small
# models; 0.806 at 256 GPUs against 0.725 with every bundle splittable).
WHOLE_LOAD_SHARE = 0.05
UNITS_HELD = 2  # a worker holds at most the unit it runs and the next, in the actor's queue
# A worker holds its next unit only while what it holds is shorter than this (modelled seconds):
# after a longer one the driver's round trip costs its GPU under 1%, and a unit not handed out
# can still go to a thief.
HOLD_NEXT_BELOW_S = 1.0


@dataclass
class QueuedUnit:
    row_id: int
    index: int
    models: list[str]
    shard: int
    work: float  # its modelled seconds (plan.unit_seconds): what balances the workers
    attempts: int = 0
    images: int = 0  # samples x models

    @property
    def bundle(self) -> tuple[str, ...]:
        return tuple(sorted(self.models))


@dataclass(eq=False)
class Piece:
    """Units of one bundle that one worker runs in a row; ``load``: the modelled time to load the
    bundle's models."""

    units: deque[QueuedUnit]
    load: float

    @property
    def work(self) -> float:
        return sum(u.work for u in self.units)

    @property
    def unit_work(self) -> float:
        return self.work / len(self.units) if self.units else 0.0


@dataclass(eq=False)
class WorkList:
    """One worker's pieces, in the order it runs them; ``running``: whether a worker runs it (and
    so holds the models of its first piece); ``held``: the units handed to that worker and not
    yet finished, the first begun at ``since``."""

    pieces: deque[Piece] = field(default_factory=deque)
    running: bool = False
    held: deque[QueuedUnit] = field(default_factory=deque)
    since: float = 0.0

    def first(self) -> Piece | None:
        """The piece its worker runs now or next (emptied pieces dropped), or None."""
        while self.pieces and not self.pieces[0].units:
            self.pieces.popleft()
        return self.pieces[0] if self.pieces else None

    def left(self) -> float:
        """Modelled time its pieces take: the units, and the loads but that of a running first."""
        live = [p for p in self.pieces if p.units]
        loads = sum(p.load for p in (live[1:] if self.running else live))
        return sum(p.work for p in live) + loads

    def end(self, now: float, pace: float) -> float:
        """Modelled time until its worker ends: ``left`` and the units held, the first counted
        from when it began (``pace``: seconds of the clock per modelled second)."""
        done = min(self.held[0].work, (now - self.since) / pace) if self.held else 0.0
        return self.left() + sum(u.work for u in self.held) - done


# -- the layout ---------------------------------------------------------------------------------

_Bundle = tuple[float, float, tuple[str, ...], list[QueuedUnit]]  # work, load, key, units


def plan(
    units: list[QueuedUnit], workers: int, bundle_load: Callable[[tuple[str, ...]], float]
) -> list[WorkList]:
    """``workers`` lists of about equal modelled time, loads included, longest units first."""
    by_bundle: dict[tuple[str, ...], list[QueuedUnit]] = {}
    for unit in units:
        by_bundle.setdefault(unit.bundle, []).append(unit)
    bundles = [
        (sum(u.work for u in group), bundle_load(key), key, sorted(group, key=lambda u: u.shard))
        for key, group in by_bundle.items()
    ]
    total = sum(work + load for work, load, _, _ in bundles)
    share = total / workers
    for _ in range(3):  # the share grows by the loads of the bundles the layout splits
        lists, split_loads = _lay_out(bundles, workers, share)
        share = (total + split_loads) / workers
    for work_list in lists:
        work_list.pieces = deque(sorted(work_list.pieces, key=lambda p: -p.unit_work))
    return lists


def _lay_out(bundles: list[_Bundle], workers: int, share: float) -> tuple[list[WorkList], float]:
    """Dear bundles whole, largest first, each to the fullest list it fits (best fit: the lists
    left empty take a large bundle split over a few of them, where spreading the dear bundles
    evenly leaves no list the room for a load and half a unit, and the whole bundle falls on
    one list for thieves to split among many); the rest end to end over the room left
    (McNaughton's wrap-around rule), a unit going where half of it fits. Returns the lists and
    the loads that splitting bundles added."""
    lists = [WorkList() for _ in range(workers)]
    used = [0.0] * workers
    rest = [b for b in bundles if b[1] <= WHOLE_LOAD_SHARE * b[0]]
    dear = [b for b in bundles if b[1] > WHOLE_LOAD_SHARE * b[0]]
    for work, load, key, group in sorted(dear, key=lambda b: (-(b[0] + b[1]), b[2])):
        fits = [i for i in range(workers) if used[i] + work + load <= share]
        if not fits:
            rest.append((work, load, key, group))
            continue
        i = max(fits, key=used.__getitem__)
        lists[i].pieces.append(Piece(deque(group), load))
        used[i] += work + load
    rest.sort(key=lambda b: (-b[0] / len(b[3]), b[2]))  # longest units first
    order = sorted(range(workers), key=used.__getitem__)
    split_loads, j = 0.0, 0
    for _work, load, _key, group in rest:
        waiting = deque(group)
        while waiting:
            while j < workers and used[order[j]] + load + waiting[0].work / 2 > share:
                j += 1
            i = order[j] if j < workers else min(range(workers), key=used.__getitem__)
            split_loads += load if len(waiting) < len(group) else 0.0
            taken: deque[QueuedUnit] = deque()
            used[i] += load
            while waiting and (not taken or j >= workers or used[i] + waiting[0].work / 2 <= share):
                taken.append(waiting.popleft())
                used[i] += taken[-1].work
            lists[i].pieces.append(Piece(taken, load))
    return lists, split_loads


# -- the steal choice ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Steal:
    """Move the last ``count`` units of ``piece`` from ``victim`` to the thief."""

    victim: WorkList
    piece: Piece
    count: int


def choose_steal(ends: Iterable[tuple[float, WorkList]], own: float) -> Steal | None:
    """What a thief that ends in ``own`` takes, from the list that ends last (``ends``: each
    list's predicted end) among those a steal ends sooner: its last piece whole if it has two
    or more (the models load once anyway), else the back of the piece it runs, as many units as
    end both workers together once the thief has loaded the piece's models; None where no steal
    ends anyone sooner."""
    best: tuple[float, Steal] | None = None
    for end, victim in ends:
        live = [p for p in victim.pieces if p.units]
        if not live or (best is not None and end <= best[0]):
            continue
        last, first = live[-1], live[0]
        if len(live) >= 2 and own + last.load + last.work < end:
            best = (end, Steal(victim, last, len(last.units)))
        elif (unit := first.unit_work) > 0:
            count = min(len(first.units), max(1, round((end - own - first.load) / (2 * unit))))
            if own + first.load + count * unit < end:
                best = (end, Steal(victim, first, count))
    return best[1] if best is not None else None


# -- the queue's state --------------------------------------------------------------------------

W = TypeVar("W", bound=Hashable)


class PlannedQueue(Generic[W]):
    """The units not yet handed out, in one list per worker (``plan``), and what each worker
    holds; ``len``: how many units wait. ``now``: any clock, the same for every call;
    ``on_steal(thief, victim, units)`` is told of each steal."""

    def __init__(
        self,
        units: Iterable[QueuedUnit] = (),
        workers: int = 1,
        loads: Mapping[str, float] | None = None,
        on_steal: Callable[[W, W, int], None] | None = None,
    ) -> None:
        self._loads, self._on_steal = dict(loads or {}), on_steal
        units = list(units)
        self._waiting = len(units)
        self._unrun = plan(units, max(1, workers), self._bundle_load)  # lists nobody runs
        self._lists: dict[W, WorkList] = {}
        self._pace = (0.0, 0.0)  # seconds of the clock, modelled seconds: of the units finished
        # The least a thief had left of its own when a steal found nothing: one with as much or
        # more finds nothing either, until a unit ends, is put back or a list is released.
        self._barren = math.inf

    def __len__(self) -> int:
        return self._waiting

    def _bundle_load(self, bundle: tuple[str, ...]) -> float:
        return sum(self._loads.get(m, 0.0) for m in bundle)

    def take(self, worker: W, now: float = 0.0) -> QueuedUnit | None:
        """The next unit for ``worker``, or None when none is worth its taking now."""
        mine = self._lists.get(worker) or WorkList(running=True)
        if mine.first() is None:
            mine = self._adopt(worker, mine)
            self._steal(worker, mine, now)
        piece = mine.first()
        if piece is None:
            return None
        unit = piece.units.popleft()
        self._waiting -= 1
        if not mine.held:
            mine.since = now
        mine.held.append(unit)
        return unit

    def put(self, unit: QueuedUnit) -> None:
        """A unit to run again: a list of its own that nobody runs."""
        piece = Piece(deque([unit]), self._bundle_load(unit.bundle))
        self._unrun.append(WorkList(deque([piece])))
        self._waiting += 1
        self._barren = math.inf

    def release(self, worker: W) -> None:
        """``worker`` is gone (its units held are ``put`` back): its list waits for another."""
        mine = self._lists.pop(worker, None)
        if mine is not None and mine.first() is not None:
            mine.running = False
            mine.held.clear()
            self._unrun.append(mine)
            self._barren = math.inf

    def finished(self, worker: W, unit: QueuedUnit, now: float = 0.0) -> None:
        """``worker`` is done with ``unit`` (a result or a failure) at ``now``: the next unit it
        holds begins, and the pace of the clock against modelled time is learnt."""
        mine = self._lists.get(worker)
        if mine is None or unit not in mine.held:
            return
        if mine.held[0] is unit and unit.work > 0 and now > mine.since:
            clock, modelled = self._pace
            self._pace = (clock + now - mine.since, modelled + unit.work)
        mine.held.remove(unit)
        mine.since = now
        self._barren = math.inf

    def wants(self, worker: W) -> bool:
        """Whether ``worker`` is to be handed a unit now: it holds none, or fewer than
        ``UNITS_HELD`` of under ``HOLD_NEXT_BELOW_S`` in all."""
        held = self._lists[worker].held if worker in self._lists else deque()
        return not held or (
            len(held) < UNITS_HELD and sum(u.work for u in held) < HOLD_NEXT_BELOW_S
        )

    def peek(self, worker: W) -> QueuedUnit | None:
        """The unit ``worker`` will most likely take next, or None."""
        piece = self._lists[worker].first() if worker in self._lists else None
        return piece.units[0] if piece is not None else None

    def _adopt(self, worker: W, mine: WorkList) -> WorkList:
        """The list nobody runs with the most work left, now ``worker``'s (with what it holds);
        else ``mine``."""
        self._unrun = [u for u in self._unrun if u.first() is not None]
        if self._unrun:
            adopted = max(self._unrun, key=WorkList.left)
            self._unrun.remove(adopted)
            adopted.running, adopted.held, adopted.since = True, mine.held, mine.since
            mine = adopted
        self._lists[worker] = mine
        return mine

    def _steal(self, worker: W, mine: WorkList, now: float) -> None:
        """Into the empty list ``mine``, what ``choose_steal`` takes from another worker's."""
        clock, modelled = self._pace
        pace = clock / modelled if clock > 0 and modelled > 0 else 1.0
        own = mine.end(now, pace)
        if mine.first() is not None or own >= self._barren:
            return
        ends = ((w.end(now, pace), w) for w in self._lists.values() if w is not mine)
        steal = choose_steal(ends, own)
        if steal is None:
            self._barren = own
            return
        if self._on_steal is not None:
            victim = next(w for w, held in self._lists.items() if held is steal.victim)
            self._on_steal(worker, victim, steal.count)
        if steal.count == len(steal.piece.units):
            steal.victim.pieces.remove(steal.piece)
            mine.pieces.append(steal.piece)
        else:
            moved = [steal.piece.units.pop() for _ in range(steal.count)]
            mine.pieces.append(Piece(deque(reversed(moved)), steal.piece.load))


def feed(
    queue: PlannedQueue[W],
    workers: Iterable[W],
    now: float,
    hand: Callable[[W, QueuedUnit, QueuedUnit | None], None],
) -> None:
    """Hands each of ``workers`` units at ``now`` while the queue says it wants one: ``hand(worker,
    unit, following)``, ``following`` the unit it will most likely take next (its shard to
    prefetch)."""
    for worker in workers:
        while queue.wants(worker) and (unit := queue.take(worker, now)) is not None:
            hand(worker, unit, queue.peek(worker))
