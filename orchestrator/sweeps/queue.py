"""The driver's queue of pending units: a schedule planned from modelled times, corrected at run
time by stealing (pure, no I/O).

Planned (``PlannedQueue(units, workers, loads)``): each expected worker gets a slot, a list of
pieces (a bundle's units on a run of shards), each slot worth about the same modelled time, the
loads of its models included:

- a bundle whose loads are dear (many small models: building a model costs more than a few of
  its forward passes) goes whole to one slot, best fit, largest first, so its models load once;
- the other bundles are laid end to end over the room the slots have left (McNaughton's
  wrap-around rule): at most one bundle is split at each slot's end, and a split bundle is one
  whose models load cheaply.

Within a slot the pieces with the longest units run first, so each worker ends on short units.
At run time a worker takes the next unit of its slot. A worker without a slot (one more than
planned, or a replacement) adopts an orphaned slot. A worker whose slot is empty steals: from an
orphaned slot first (its last piece, or half of its only one, so that a planned worker that
never starts leaves its list to several), else from the worker that will end last, where that
ends it sooner: the last unstarted piece of its slot, or the back of the piece it runs, as many
units as end the two soonest once the thief has loaded the piece's models. When a worker ends
counts the units it holds (``finished`` says when each ends), the one it runs from when it
began, the clock read at the pace of the units finished so far: a worker that started late, or
whose models run slower than modelled, is seen to end late while its units can still move.
A unit given back (its worker lost, or a failure to retry) is an orphaned slot of its own; a
lost worker's slot is orphaned.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# The plan keeps a bundle whole (when it fits one worker) if loading its models costs more than
# this share of its work; a bundle of cheaper loads may be split at a slot's end. (Not
# plan.DEAR_LOAD_SHARE, which sizes the bundles; this lays them out.) bench.schedule at 16, 64
# and 256 GPUs chose it: at 0.02 so many bundles are kept whole that best fit leaves the slots
# uneven (0.69 at 256 GPUs); at 0.1 bundles of small models are split (0.79).
WHOLE_LOAD_SHARE = 0.05
UNITS_IN_FLIGHT = 2  # a worker holds at most the unit it runs and the next, in its own queue
# A worker holds its next unit only while what it holds is shorter than this (modelled seconds):
# after a longer one, the driver's round trip (milliseconds) costs its GPU under 1%, and a unit
# not yet handed out can still go to a thief (bench.schedule: 0.873 -> 0.895 at 64 GPUs with
# models 20% off their modelled times, 0.839 -> 0.848 with workers ready over 25 s).
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
class _Piece:
    """Units of one bundle that one worker runs; ``load``: the modelled time to load its models."""

    units: deque[QueuedUnit]
    load: float
    work: float = 0.0

    def __post_init__(self) -> None:
        self.work = sum(u.work for u in self.units)

    @property
    def unit_work(self) -> float:
        return self.work / len(self.units) if self.units else 0.0


@dataclass(eq=False)
class _Slot:
    pieces: deque[_Piece] = field(default_factory=deque)
    owned: bool = False
    flight: deque[QueuedUnit] = field(default_factory=deque)  # handed out, not yet finished
    since: float = 0.0  # when the first of ``flight`` began

    def live(self) -> list[_Piece]:
        return [p for p in self.pieces if p.units]

    def left(self) -> float:
        """Modelled time its worker still needs: the units, and loads but of the piece it runs."""
        live = self.live()
        loads = sum(p.load for p in (live[1:] if self.owned else live))
        return sum(p.work for p in live) + loads

    def ahead(self, now: float, pace: float) -> float:
        """Modelled time to its end: ``left`` and the units its worker holds, the one it runs
        counted from when it began (``pace``: seconds of the clock per modelled second)."""
        if not self.flight:
            return self.left()
        head = self.flight[0].work
        done = min(head, (now - self.since) / pace)
        return self.left() + sum(u.work for u in self.flight) - done


W = TypeVar("W", bound=Hashable)


class PlannedQueue(Generic[W]):
    def __init__(
        self,
        units: Iterable[QueuedUnit] = (),
        workers: int = 1,
        loads: Mapping[str, float] | None = None,
    ) -> None:
        self._loads = dict(loads or {})
        units = list(units)
        self._count = len(units)
        self._slots = schedule(units, max(1, workers), self._bundle_load)
        self._orphans: list[_Slot] = list(self._slots)  # no worker has taken them yet
        self._of: dict[W, _Slot] = {}
        # The least time a thief had left of its own when a steal found nothing: one with as
        # much or more finds nothing either, until a put, a release or a unit's end.
        self._barren = math.inf
        self._pace = (0.0, 0.0)  # seconds of the clock, modelled seconds: of the units finished

    def __len__(self) -> int:
        return self._count

    def _bundle_load(self, bundle: tuple[str, ...]) -> float:
        return sum(self._loads.get(m, 0.0) for m in bundle)

    def put(self, unit: QueuedUnit) -> None:
        """A unit to run again: an orphaned slot of its own."""
        piece = _Piece(deque([unit]), self._bundle_load(unit.bundle))
        self._orphans.append(_Slot(deque([piece])))
        self._count += 1
        self._barren = math.inf

    def release(self, worker: W) -> None:
        """``worker`` is gone: its slot waits for another."""
        slot = self._of.pop(worker, None)
        if slot is not None:
            slot.owned = False
            slot.flight.clear()
            if slot.live():
                self._orphans.append(slot)
                self._barren = math.inf

    def take(self, worker: W, now: float = 0.0) -> QueuedUnit | None:
        """The next unit for ``worker`` at ``now`` (any clock that ``finished`` also reads), or
        None when nothing is worth its taking now."""
        slot = self._of.get(worker)
        if slot is None:
            slot = self._adopt(worker, _Slot())
        if not _next_piece(slot) and not (self._steal(slot, now) and _next_piece(slot)):
            return None
        piece = slot.pieces[0]
        unit = piece.units.popleft()
        piece.work -= unit.work
        self._count -= 1
        if not slot.flight:
            slot.since = now
        slot.flight.append(unit)
        return unit

    def finished(self, worker: W, unit: QueuedUnit, now: float = 0.0) -> None:
        """``worker`` is done with ``unit`` (a result or a failure) at ``now``: the next unit it
        holds begins, and the pace of the clock against modelled time is learnt."""
        slot = self._of.get(worker)
        if slot is None or unit not in slot.flight:
            return
        if slot.flight[0] is unit and unit.work > 0 and now > slot.since:
            clock, modelled = self._pace
            self._pace = (clock + now - slot.since, modelled + unit.work)
        slot.flight.remove(unit)
        slot.since = now
        self._barren = math.inf

    def wants(self, worker: W) -> bool:
        """Whether ``worker`` is to be handed a unit now: it holds none, or fewer than
        ``UNITS_IN_FLIGHT`` of under ``HOLD_NEXT_BELOW_S`` in all."""
        slot = self._of.get(worker)
        if slot is None or not slot.flight:
            return True
        held = sum(u.work for u in slot.flight)
        return len(slot.flight) < UNITS_IN_FLIGHT and held < HOLD_NEXT_BELOW_S

    def _ahead(self, slot: _Slot, now: float) -> float:
        clock, modelled = self._pace
        return slot.ahead(now, clock / modelled if clock > 0 and modelled > 0 else 1.0)

    def peek(self, worker: W) -> QueuedUnit | None:
        """The unit ``worker`` will most likely take next, or None."""
        slot = self._of.get(worker)
        if slot is not None:
            for piece in slot.pieces:
                if piece.units:
                    return piece.units[0]
        return None

    def _adopt(self, worker: W, empty: _Slot) -> _Slot:
        """The orphaned slot with the most work left for ``worker``, else ``empty``."""
        self._orphans = [s for s in self._orphans if s.live() and not s.owned]
        slot = empty
        if self._orphans:
            slot = max(self._orphans, key=_Slot.left)
            self._orphans.remove(slot)
        slot.owned = True
        self._of[worker] = slot
        return slot

    def _steal(self, mine: _Slot, now: float) -> bool:
        """Work for the empty slot ``mine``: from an orphaned slot, split among those who come
        (a planned worker that never starts leaves its list to many), else the best gain
        elsewhere."""
        self._orphans = [s for s in self._orphans if s.live() and not s.owned]
        if self._orphans:  # nobody runs it: its last piece, or half of its one piece
            victim = max(self._orphans, key=_Slot.left)
            live = victim.live()
            piece = live[-1]
            count = len(piece.units) if len(live) > 1 else -(-len(piece.units) // 2)
        elif (own := self._ahead(mine, now)) >= self._barren:
            return False
        else:
            # From the worker that ends last, where a steal shortens it: the sweep ends with it.
            best: tuple[float, float, _Slot, _Piece, int] | None = None
            for slot in {id(s): s for s in self._of.values()}.values():
                if slot is mine:
                    continue
                end = self._ahead(slot, now)
                choice = _best_steal(slot, end, own)
                if choice is not None and (best is None or (end, choice[0]) > best[:2]):
                    best = (end, choice[0], slot, choice[1], choice[2])
            if best is None:
                self._barren = own
                return False
            *_, victim, piece, count = best
        if count == len(piece.units):
            victim.pieces.remove(piece)
            mine.pieces.append(piece)
        else:
            moved = deque(piece.units.pop() for _ in range(count))
            moved.reverse()
            stolen = _Piece(moved, piece.load)
            piece.work -= stolen.work
            mine.pieces.append(stolen)
        return True


def _next_piece(slot: _Slot) -> bool:
    """Drops the emptied pieces at the head of ``slot``: whether a unit is left in it."""
    while slot.pieces and not slot.pieces[0].units:
        slot.pieces.popleft()
    return bool(slot.pieces)


def _best_steal(slot: _Slot, end: float, own: float) -> tuple[float, _Piece, int] | None:
    """(time saved, piece, units to move) of the best steal from ``slot``, whose worker ends in
    ``end`` modelled seconds, by a thief that ends its own units in ``own``; or None.

    Its last unstarted piece moves whole where that helps (its models would be loaded once
    anyway); else the back of the piece it runs, as many units as end the two workers soonest
    once the thief has loaded the piece's models."""
    live = slot.live()
    if not live:
        return None
    if len(live) >= 2:
        last = live[-1]
        moved = last.load + last.work
        saved = end - max(end - moved, own + moved)
        if saved > 0:
            return saved, last, len(last.units)
    piece = live[0]
    unit = piece.unit_work
    # A worker that runs nothing keeps a unit of its last piece (it holds the models).
    most = len(piece.units) - (len(live) == 1 and not slot.flight)
    even = (end - own - piece.load) / (2 * unit) if unit > 0 else 0.0
    best: tuple[float, _Piece, int] | None = None
    for count in {min(most, max(1, math.floor(even))), min(most, max(1, math.ceil(even)))}:
        saved = end - max(end - count * unit, own + piece.load + count * unit)
        if count >= 1 and saved > 0 and (best is None or saved > best[0]):
            best = (saved, piece, count)
    return best


def schedule(
    units: list[QueuedUnit],
    workers: int,
    bundle_load: Callable[[tuple[str, ...]], float],
) -> list[_Slot]:
    """``workers`` slots of about equal modelled time (the module's docstring says how)."""
    by_bundle: dict[tuple[str, ...], list[QueuedUnit]] = {}
    for unit in units:
        by_bundle.setdefault(unit.bundle, []).append(unit)
    bundles = [
        (sum(u.work for u in group), bundle_load(key), key, sorted(group, key=lambda u: u.shard))
        for key, group in by_bundle.items()
    ]
    total = sum(work + load for work, load, _, _ in bundles)
    share = total / workers
    for _ in range(3):  # the share grows by the loads of the bundles the plan splits
        slots, split_loads = _pack(bundles, workers, share)
        share = (total + split_loads) / workers
    for slot in slots:
        slot.pieces = deque(sorted(slot.pieces, key=lambda p: -p.unit_work))
    return slots


_Bundle = tuple[float, float, tuple[str, ...], list[QueuedUnit]]  # work, load, key, units


def _pack(bundles: list[_Bundle], workers: int, share: float) -> tuple[list[_Slot], float]:
    slots = [_Slot() for _ in range(workers)]
    used = [0.0] * workers

    def dear(bundle: _Bundle) -> bool:
        work, load = bundle[0], bundle[1]
        return load > WHOLE_LOAD_SHARE * work and work + load <= share

    whole = sorted((b for b in bundles if dear(b)), key=lambda b: (-(b[0] + b[1]), b[2]))
    rest = [b for b in bundles if not dear(b)]
    for work, load, key, group in whole:  # best fit decreasing
        fits = [i for i in range(workers) if used[i] + work + load <= share]
        if not fits:
            rest.append((work, load, key, group))
            continue
        i = max(fits, key=lambda i: used[i])
        slots[i].pieces.append(_Piece(deque(group), load))
        used[i] += work + load
    # The rest end to end over the room left, longest units first; a bundle split at a slot's
    # end loads its models once more in the next slot.
    rest.sort(key=lambda b: (-b[0] / len(b[3]), b[2]))
    order = sorted(range(workers), key=lambda i: used[i])
    split_loads, j = 0.0, 0
    for _work, load, _key, group in rest:
        waiting = deque(group)
        first = True
        while waiting:
            while j < workers and used[order[j]] + load + waiting[0].work / 2 > share:
                j += 1
            full = j >= workers  # every slot full (the share was short): the least used one
            i = order[j] if not full else min(range(workers), key=lambda k: used[k])
            taken: deque[QueuedUnit] = deque()
            used[i] += load
            split_loads += 0.0 if first else load
            first = False
            while waiting and (full or not taken or used[i] + waiting[0].work / 2 <= share):
                unit = waiting.popleft()
                taken.append(unit)
                used[i] += unit.work
            slots[i].pieces.append(_Piece(taken, load))
    return slots, split_loads
