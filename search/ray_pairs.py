"""The saver search's pairs computed as Ray tasks on a cluster's CPUs.

The in-process search computes each saver's pairs against its bases (``search.pairs``) one saver
after the other. Here the same pure function runs in Ray tasks, in blocks of pairs: each model's
share of a pair enters Ray's object store once, when the model first takes part (as a saver, its
samples in confidence order, made by a Ray task; as a base, its correctness, put in chunks of
models), and every block that needs it reads it from there. Blocks return plain column arrays;
the caller builds and writes the rows, exactly as the in-process search does, so the stored rows
are the same.

A task whose worker dies is retried by Ray (``TASK_RETRIES``); one that fails for good raises,
the update's transaction rolls back and nothing of it is stored.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from cluster.ray_cluster import ray_api
from search.pairs import BaseSide, PairColumns, SplitZoo, pair_columns, prepare_savers

logger = logging.getLogger(__name__)

TASK_RETRIES = 3
#: A block holds at least this many pairs: a Ray task costs a few milliseconds to schedule and
#: fetch, about what a hundred pairs cost to compute, so blocks below this are mostly overhead.
MIN_BLOCK_PAIRS = 500
#: Models per object of base correctness (64 models x 50,000 samples: 3.2 MB).
BASE_CHUNK = 64
#: Blocks per CPU of the cluster: enough that a slow block does not leave the others idle.
BLOCKS_PER_CPU = 4

Block = list[tuple[int, list[int]]]  # (saver row, its base rows)


def plan_blocks(wanted: dict[int, list[int]], cpus: int) -> list[Block]:
    """Split ``{saver: bases}`` into blocks of about equal pairs, a few per CPU, none smaller
    than ``MIN_BLOCK_PAIRS`` (but the last); a saver with many bases may span blocks."""
    total = sum(len(bases) for bases in wanted.values())
    size = max(MIN_BLOCK_PAIRS, -(-total // max(1, cpus * BLOCKS_PER_CPU)))
    blocks: list[Block] = []
    block: Block = []
    filled = 0
    for saver, bases in wanted.items():
        start = 0
        while start < len(bases):
            taken = bases[start : start + size - filled]
            block.append((saver, taken))
            filled += len(taken)
            start += len(taken)
            if filled >= size:
                blocks.append(block)
                block, filled = [], 0
    if block:
        blocks.append(block)
    return blocks


def _block_columns(
    budgets: Sequence[int],
    savers: list[int],
    chunks: list[int],
    block: Block,
    *shares: Any,
) -> list[PairColumns]:
    """A Ray task: the columns of every (saver, bases) of ``block``. ``shares`` are the sides of
    the ``savers``, then the base chunks ``chunks`` (``BASE_CHUNK`` models each) that hold the
    block's bases: object refs given as arguments, so Ray starts the task once they exist and
    hands their values over, fetched once each; the chunks are stacked once for the block."""
    one_thread()
    saver_side = dict(zip(savers, shares[: len(savers)], strict=True))
    fetched = shares[len(savers) :]
    stacked = BaseSide.stacked(fetched)
    first, offset = {}, 0  # each chunk's first row in the stack
    for chunk, side in zip(chunks, fetched, strict=True):
        first[chunk] = offset
        offset += len(side.rows)
    return [
        pair_columns(
            saver_side[saver],
            stacked.select([first[b // BASE_CHUNK] + b % BASE_CHUNK for b in block_bases]),
            budgets,
        )
        for saver, block_bases in block
    ]


def one_thread() -> None:
    """A task holds one CPU: its compiled loops run on one thread, not on every core of the
    node (numba sizes its pool by the node's cores, whatever Ray reserved)."""
    from search.kernels import use_threads

    use_threads(1)


def _saver_sides(halves: tuple[Any, Any], inputs: Any) -> Any:
    """A Ray task: the sides of a chunk of savers, one object each (``num_returns``)."""
    one_thread()
    sides = prepare_savers(inputs, *halves)
    return sides[0] if len(sides) == 1 else tuple(sides)


class RayPairs:
    """Computes a search update's pairs as Ray tasks of the Ray this process is connected to."""

    def __init__(self) -> None:
        self.ray = ray_api()
        self._task = self.ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_block_columns)
        self._prepare = self.ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_saver_sides)
        # Each zoo's shares in the object store, dropped with the zoo: every saver's orders
        # (about 15 bytes a sample), and the models' correctness as bases (1 byte a sample) in
        # chunks of BASE_CHUNK models, so that a block fetches a few objects, not one a base.
        self._savers: weakref.WeakKeyDictionary[SplitZoo, dict[int, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._chunks: weakref.WeakKeyDictionary[SplitZoo, dict[int, tuple[int, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._halves: weakref.WeakKeyDictionary[SplitZoo, Any] = weakref.WeakKeyDictionary()

    def _saver_shares(self, zoos: SplitZoo, savers: Sequence[int]) -> dict[int, Any]:
        """Every saver's share: made once, by Ray tasks (ordering a saver is a pass or two over
        its samples: spread over the cluster, not done here), a chunk of savers a task."""
        shares = self._savers.setdefault(zoos, {})
        missing = [saver for saver in savers if saver not in shares]
        if missing and zoos not in self._halves:
            self._halves[zoos] = self.ray.put(zoos.halves())
        for start in range(0, len(missing), BASE_CHUNK):
            chunk = missing[start : start + BASE_CHUNK]
            made = self._prepare.options(num_returns=len(chunk)).remote(
                self._halves[zoos], zoos.saver_inputs(chunk)
            )
            shares.update(zip(chunk, made if len(chunk) > 1 else [made], strict=True))
        return shares

    def _chunk_share(self, zoos: SplitZoo, chunk: int) -> Any:
        """The chunk's share; put again only while the chunk is not yet full and has grown."""
        shares = self._chunks.setdefault(zoos, {})
        first = chunk * BASE_CHUNK
        rows = min(BASE_CHUNK, len(zoos.full.names) - first)
        if chunk not in shares or shares[chunk][0] != rows:
            side = zoos.base_side(range(first, first + rows), compact=True)
            shares[chunk] = (rows, self.ray.put(side))
        return shares[chunk][1]

    def columns(
        self,
        zoos: SplitZoo,
        wanted: dict[int, list[int]],
        budgets: Sequence[int],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[tuple[int, list[int], PairColumns]]:
        """The columns of every ``{saver: bases}`` pair of ``wanted``, in ``wanted``'s order."""
        cpus = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        futures, blocks = [], plan_blocks(wanted, cpus)
        saver_shares = self._saver_shares(zoos, list(wanted))
        for block in blocks:
            savers = sorted({saver for saver, _ in block})
            chunks = sorted({base // BASE_CHUNK for _, bases in block for base in bases})
            futures.append(
                self._task.remote(
                    list(budgets),
                    savers,
                    chunks,
                    block,
                    *[saver_shares[saver] for saver in savers],
                    *[self._chunk_share(zoos, chunk) for chunk in chunks],
                )
            )
        logger.debug("%d pairs in %d Ray tasks", sum(map(len, wanted.values())), len(futures))
        results: dict[Any, list[PairColumns]] = {}
        waiting = list(futures)
        try:
            while waiting:  # as blocks finish, for the progress bar; kept in ``wanted``'s order
                ready, waiting = self.ray.wait(waiting, num_returns=1)
                results[ready[0]] = self.ray.get(ready[0])
                if progress:
                    progress(len(results), len(futures))
        except BaseException:
            for future in waiting:  # the update is lost: its other blocks stop computing it
                self.ray.cancel(future)
            raise
        return [
            (saver, bases, columns)
            for block, future in zip(blocks, futures, strict=True)
            for (saver, bases), columns in zip(block, results[future], strict=True)
        ]
