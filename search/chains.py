"""Three-model cascades: s1 -> s2 -> base, exact over every pair of exit sets.

A sample exits at s1 iff ``conf1 > t1``, else at s2 iff ``conf2 > t2``, else the base answers.
With r1 the share that exits at s1 and r12 the share that exits at s1 or s2, the relative cost is
``c1/cb + (1 - r1) * c2/cb + (1 - r12)``, costs strictly increasing along the chain. Under a
budget the best chain point has the largest saving among the feasible ones (at least the base's
correct count plus ``min_correct_diff``, compared on integer counts as for pairs; ties: more
samples right). ``search.chain_kernels`` walks one chain for every budget in O(N log N).

Which chains: each base's K best two-model savers as s2, and each of those savers' K best savers
as s1 (``candidate_chains``); a base's chain is reported only where it beats its best pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.criteria import DEFAULT_CANDIDATES
from search.engine import SaverOrder, Zoo, min_correct_diff, sort_saver, threshold_for_exits
from search.selection import SAVING_DECIMALS


@dataclass(frozen=True)
class ChainPoint:
    """The best operating point of one chain under one budget."""

    chain: tuple[int, int, int]  # zoo rows: s1, s2, base
    max_drop: float
    thresholds: tuple[float, float]
    exits: tuple[int, int]  # samples answered at s1, at s2
    correct: int
    base_correct: int
    num_samples: int
    cost_ratios: tuple[float, float]  # c1 / cb, c2 / cb

    @property
    def exit_ratios(self) -> tuple[float, float]:
        return self.exits[0] / self.num_samples, self.exits[1] / self.num_samples

    @property
    def accuracy(self) -> float:
        return self.correct / self.num_samples

    @property
    def base_accuracy(self) -> float:
        return self.base_correct / self.num_samples

    @property
    def relative_cost(self) -> float:
        r1, r2 = self.exit_ratios
        return self.cost_ratios[0] + (1 - r1) * self.cost_ratios[1] + (1 - r1 - r2)

    @property
    def saving(self) -> float:
        return 1.0 - self.relative_cost

    def rank_key(self, costs: np.ndarray, names: Sequence[str]) -> tuple:
        """Best first: the largest saving, more samples right, the cheaper s2 then s1, names."""
        s1, s2, _ = self.chain
        return (
            -round(self.saving, SAVING_DECIMALS),
            -self.correct,
            costs[s2],
            costs[s1],
            names[s2],
            names[s1],
        )


@dataclass(frozen=True)
class _Groups:
    """s2's tie groups: each sample's group, and where each group starts in s2's order."""

    of_sample: np.ndarray
    starts: np.ndarray  # (G + 1,): the last entry is N

    @classmethod
    def of(cls, order: SaverOrder) -> _Groups:
        n = len(order.order)
        group_at = np.cumsum(order.boundary[1:n]).astype(np.int64)  # position p >= 1
        position_group = np.concatenate([[0], group_at])
        of_sample = np.empty(n, dtype=np.int64)
        of_sample[order.order] = position_group
        starts = np.concatenate([np.flatnonzero(order.boundary[:n]), [n]]).astype(np.int64)
        return cls(of_sample, starts)


def scan_chain(
    zoo: Zoo,
    chain: tuple[int, int, int],
    max_drops: Sequence[float],
    orders: dict[int, SaverOrder] | None = None,
) -> list[ChainPoint | None]:
    """The best point of ``chain`` (s1, s2, base rows, costs increasing) under each budget;
    None where no point is feasible. ``orders`` caches ``sort_saver`` per row."""
    s1, s2, base = chain
    if not zoo.costs[s1] < zoo.costs[s2] < zoo.costs[base]:
        raise ValueError(f"a chain's costs must increase: {[zoo.names[m] for m in chain]}")
    orders = {} if orders is None else orders
    for row in (s1, s2):
        if row not in orders:
            orders[row] = sort_saver(zoo, row)
    groups = _Groups.of(orders[s2])
    n = zoo.num_samples
    base_correct = int(zoo.correct_counts[base])
    needed = np.array([base_correct + min_correct_diff(d, n) for d in max_drops], dtype=np.int64)
    ratio1, ratio2 = zoo.costs[s1] / zoo.costs[base], zoo.costs[s2] / zoo.costs[base]
    from search.chain_kernels import walk_chain  # numba: compiled on first use

    k1, group_count, k2, correct, _ = walk_chain(
        orders[s1].order,
        orders[s1].boundary,
        groups.of_sample,
        len(groups.starts) - 1,
        zoo.correct[s1],
        zoo.correct[s2],
        zoo.correct[base],
        needed,
        ratio1,
        ratio2,
    )
    points: list[ChainPoint | None] = []
    for j, max_drop in enumerate(max_drops):
        if k1[j] < 0:
            points.append(None)
            continue
        t1 = threshold_for_exits(orders[s1], np.array([k1[j]]))[0]
        t2 = threshold_for_exits(orders[s2], np.array([groups.starts[group_count[j]]]))[0]
        points.append(
            ChainPoint(
                chain,
                max_drop,
                (float(t1), float(t2)),
                (int(k1[j]), int(k2[j])),
                int(correct[j]),
                base_correct,
                n,
                (float(ratio1), float(ratio2)),
            )
        )
    return points


def candidate_chains(
    best_savers: dict[int, list[int]], k: int = DEFAULT_CANDIDATES
) -> dict[int, list[tuple[int, int, int]]]:
    """Each base's chains: its ``k`` best savers as s2, each of their ``k`` best savers as s1.

    ``best_savers`` maps a model to its savers, best first (as a budget ranks them).
    """
    chains: dict[int, list[tuple[int, int, int]]] = {}
    for base, savers in best_savers.items():
        chains[base] = [(s1, s2, base) for s2 in savers[:k] for s1 in best_savers.get(s2, [])[:k]]
    return chains
