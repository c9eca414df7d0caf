"""The driver's queue of pending units, handed out with model affinity (pure, no I/O).

Units of one bundle (the same models, one unit per shard) go to the worker that holds the
bundle, so each model is loaded by as few workers as balance allows: a worker without a bundle
takes the largest bundle nobody holds; once every bundle is held, an idle worker joins the
bundle with the most work left per holder, if it has more units waiting than holders (the tail
is spread, so fast and slow workers finish together, without loading a model for one unit).
A unit given back (its worker lost, or a failure to retry) returns to its bundle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar


@dataclass
class QueuedUnit:
    row_id: int
    index: int
    models: list[str]
    shard: int
    work: float  # its cost, modelled seconds (plan.modelled_seconds): it ranks bundles
    attempts: int = 0
    images: int = 0  # samples x models

    @property
    def bundle(self) -> tuple[str, ...]:
        return tuple(sorted(self.models))


W = TypeVar("W", bound=Hashable)


@dataclass
class _Bundle:
    units: deque[QueuedUnit] = field(default_factory=deque)
    work: float = 0.0  # pending work
    holders: int = 0


class AffinityQueue(Generic[W]):
    def __init__(self, units: Iterable[QueuedUnit] = ()) -> None:
        self._bundles: dict[tuple[str, ...], _Bundle] = {}
        self._held: dict[W, tuple[str, ...]] = {}
        self._count = 0
        for unit in units:
            self.put(unit)

    def __len__(self) -> int:
        return self._count

    def put(self, unit: QueuedUnit) -> None:
        bundle = self._bundles.setdefault(unit.bundle, _Bundle())
        bundle.units.append(unit)
        bundle.work += unit.work
        self._count += 1

    def take(self, worker: W) -> QueuedUnit | None:
        """The next unit for ``worker``, or None when nothing is pending."""
        key = self._held.get(worker)
        if key is None or key not in self._bundles:  # an emptied bundle is deleted
            key = self._choose(worker)
            if key is None:
                return None
        bundle = self._bundles[key]
        unit = bundle.units.popleft()
        bundle.work -= unit.work
        self._count -= 1
        if not bundle.units:
            del self._bundles[key]
        return unit

    def peek(self, worker: W) -> QueuedUnit | None:
        """The unit ``worker`` will most likely take next (the next of its bundle), or None."""
        key = self._held.get(worker)
        bundle = self._bundles.get(key) if key is not None else None
        return bundle.units[0] if bundle is not None and bundle.units else None

    def release(self, worker: W) -> None:
        """``worker`` is gone: its bundle is free for another."""
        key = self._held.pop(worker, None)
        if key is not None and key in self._bundles:
            self._bundles[key].holders = max(0, self._bundles[key].holders - 1)

    def _choose(self, worker: W) -> tuple[str, ...] | None:
        self.release(worker)
        if not self._bundles:
            return None
        free = [k for k, b in self._bundles.items() if b.holders == 0]
        # Joining a held bundle loads its models once more: only where units wait that its
        # holders cannot start yet (each holds its next unit already).
        crowded = [k for k, b in self._bundles.items() if len(b.units) > b.holders]
        candidates = free or crowded
        if not candidates:
            return None
        # Free bundles: the largest first. Held ones: the most work left per holder.
        key = max(candidates, key=lambda k: (_share(self._bundles[k]), k))
        self._bundles[key].holders += 1
        self._held[worker] = key
        return key


def _share(bundle: _Bundle) -> float:
    return bundle.work / (bundle.holders + 1)
