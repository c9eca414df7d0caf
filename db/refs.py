"""Plain references to stored things, small enough to cross to a Ray worker: a dataset's shard.

One type for one concept: the planner, the sweep driver, the worker and in-process evaluation all
name a shard with ``ShardRef``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardRef:
    index: int  # the shard's position in its dataset
    url: str
    samples: int
