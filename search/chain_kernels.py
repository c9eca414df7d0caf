"""The compiled walk of a three-model cascade (numba): s1 -> s2 -> base.

For a fixed first-stage exit set (the k1 most confident samples of s1), the second stage is the
two-model walk over the samples that remain: its exit sets are prefixes of s2's confidence
order, in whole tie groups, restricted to those samples. A segment tree over s2's tie groups holds,
for the remaining samples only, ``w = s2 right - base right`` and a count; it answers "the longest
prefix whose sum reaches x" in O(log G), and each sample that moves to the first stage is one
O(log G) update. One chain and every budget: O(N log N).
"""

from __future__ import annotations

import numba
import numpy as np

NO_PREFIX = -(2**62)  # the max-prefix of an empty (padding) leaf: never reaches any target


@numba.njit(cache=True, nogil=True)
def _update(tree_sum, tree_max, tree_count, size, leaf, weight, count):
    node = size + leaf
    tree_sum[node] += weight
    tree_count[node] += count
    tree_max[node] = tree_sum[node]
    node //= 2
    while node >= 1:
        left, right = 2 * node, 2 * node + 1
        tree_sum[node] = tree_sum[left] + tree_sum[right]
        tree_count[node] = tree_count[left] + tree_count[right]
        tree_max[node] = max(tree_max[left], tree_sum[left] + tree_max[right])
        node //= 2


@numba.njit(cache=True, nogil=True)
def _rightmost(tree_sum, tree_max, tree_count, size, target):
    """(groups, count, sum) of the longest non-empty group prefix with sum >= target, or
    (-1, 0, 0)."""
    if tree_max[1] < target:
        return -1, 0, 0
    node, offset, counted = 1, 0, 0
    while node < size:
        left, right = 2 * node, 2 * node + 1
        if offset + tree_sum[left] + tree_max[right] >= target:
            offset += tree_sum[left]
            counted += tree_count[left]
            node = right
        else:
            node = left
    return node - size + 1, counted + tree_count[node], offset + tree_sum[node]


@numba.njit(cache=True, nogil=True)
def walk_chain(
    order1,  # s1's samples, most confident first
    boundary1,  # (N+1,) bool: k1 exits is a reachable exit set of s1
    group_of,  # (N,) the tie group of each sample in s2's order
    num_groups,
    c1,  # (N,) int8/uint8: s1 right
    c2,
    cb,
    needed,  # (J,) int64: least samples right per budget
    ratio1,  # cost_s1 / cost_base
    ratio2,  # cost_s2 / cost_base
):
    """Per budget: the best (k1, groups of s2, k2, correct, saving); k1 = -1 where infeasible."""
    n = order1.shape[0]
    num_budgets = needed.shape[0]
    size = 1
    while size < max(num_groups, 1):
        size *= 2
    tree_sum = np.zeros(2 * size, dtype=np.int64)
    tree_count = np.zeros(2 * size, dtype=np.int64)
    tree_max = np.full(2 * size, NO_PREFIX, dtype=np.int64)
    for i in range(n):
        g = group_of[i]
        tree_sum[size + g] += np.int64(c2[i]) - np.int64(cb[i])
        tree_count[size + g] += 1
    for g in range(num_groups):
        tree_max[size + g] = tree_sum[size + g]
    for node in range(size - 1, 0, -1):
        left, right = 2 * node, 2 * node + 1
        tree_sum[node] = tree_sum[left] + tree_sum[right]
        tree_count[node] = tree_count[left] + tree_count[right]
        tree_max[node] = max(tree_max[left], tree_sum[left] + tree_max[right])
    best_k1 = np.full(num_budgets, -1, dtype=np.int64)
    best_groups = np.zeros(num_budgets, dtype=np.int64)
    best_k2 = np.zeros(num_budgets, dtype=np.int64)
    best_correct = np.zeros(num_budgets, dtype=np.int64)
    best_saving = np.full(num_budgets, -np.inf)
    first_right = 0  # samples s1 gets right among its exits
    base_rest = 0  # samples the base gets right among the rest
    for i in range(n):
        base_rest += cb[i]
    for k1 in range(n + 1):
        if boundary1[k1]:
            for j in range(num_budgets):
                target = needed[j] - first_right - base_rest
                groups, k2, gained = _rightmost(tree_sum, tree_max, tree_count, size, target)
                if groups < 0:
                    if target > 0:
                        continue
                    groups, k2, gained = 0, 0, 0
                saving = (k1 + k2) / n - ratio1 - (1.0 - k1 / n) * ratio2
                correct = first_right + base_rest + gained
                if saving > best_saving[j] + 1e-12 or (
                    saving >= best_saving[j] - 1e-12 and correct > best_correct[j]
                ):
                    best_saving[j] = saving
                    best_k1[j], best_groups[j], best_k2[j] = k1, groups, k2
                    best_correct[j] = correct
        if k1 < n:
            i = order1[k1]
            first_right += c1[i]
            base_rest -= cb[i]
            weight = np.int64(c2[i]) - np.int64(cb[i])
            _update(tree_sum, tree_max, tree_count, size, group_of[i], -weight, -1)
    return best_k1, best_groups, best_k2, best_correct, best_saving
