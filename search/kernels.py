"""Compiled hot loops of the saver search (numba).

One pass per (base, saver) pair over the saver's samples sorted by confidence. ``D[k]`` is the
number of samples the saver gets right minus those the base gets right among the k most confident;
D moves by at most one per sample, which the budget walk exploits.
"""

from __future__ import annotations

import numba
import numpy as np


def _scan_pairs_impl(
    order,
    boundary,
    saver_correct_sorted,
    saver_total,
    correct,
    base_rows,
    base_totals,
    min_diffs,
    grid_exits,
):
    """For every base: the largest feasible exit set per budget, and the paper match.

    Budgets: walking back from "all exit" (D known from the totals), the first boundary with
    ``D >= min_diffs[j]`` is budget j's answer; ``min_diffs`` ascending (loosest first), so one walk
    finds them all and stops at the strictest. Paper: walking forward over the distinct grid exit
    counts ``grid_exits`` (ascending), stop at the first with exits > 0 and D < 0.
    Both walks usually stop early, and their inner loops have no data-dependent branches.
    """
    n = order.shape[0]
    num_bases = base_rows.shape[0]
    num_budgets = min_diffs.shape[0]
    num_grid = grid_exits.shape[0]
    best_exits = np.zeros((num_bases, num_budgets), dtype=np.int64)
    best_diff = np.zeros((num_bases, num_budgets), dtype=np.int64)
    paper_match = np.full(num_bases, -1, dtype=np.int64)  # -1: no grid point crosses
    paper_diff = np.zeros(num_bases, dtype=np.int64)
    for b in numba.prange(num_bases):
        base_correct = correct[base_rows[b]]
        diff = saver_total - base_totals[b]
        k = n
        j = 0
        while j < num_budgets:
            target = min_diffs[j]
            if diff < target:
                # D moves by at most 1 per sample: the next `target - diff` steps cannot reach
                # the target, so take them in a tight loop without tests.
                for _ in range(target - diff):
                    k -= 1
                    diff -= saver_correct_sorted[k] - base_correct[order[k]]
            elif boundary[k]:
                best_exits[b, j] = k
                best_diff[b, j] = diff
                j += 1
            else:
                k -= 1
                diff -= saver_correct_sorted[k] - base_correct[order[k]]
        diff = 0
        done = 0
        for g in range(num_grid):
            k = grid_exits[g]
            for i in range(done, k):
                diff += saver_correct_sorted[i] - base_correct[order[i]]
            done = k
            paper_diff[b] = diff
            if k > 0 and diff < 0:
                paper_match[b] = g
                break
    return best_exits, best_diff, paper_match, paper_diff


def _diff_at_impl(order, saver_correct_sorted, correct, base_rows, exits):
    """D[k] for the given exit counts ``exits[b, j]`` of every base (prefix sums, then look-ups)."""
    n = order.shape[0]
    result = np.zeros(exits.shape, dtype=np.int64)
    for b in numba.prange(base_rows.shape[0]):
        base_correct = correct[base_rows[b]]
        prefix = np.empty(n + 1, dtype=np.int64)
        prefix[0] = 0
        for i in range(n):
            prefix[i + 1] = prefix[i] + saver_correct_sorted[i] - base_correct[order[i]]
        for j in range(exits.shape[1]):
            result[b, j] = prefix[exits[b, j]]
    return result


def _diff_at_counts_impl(order, saver_correct_sorted, correct, base_rows, exits):
    """D[k] for the given exit counts ``exits[b, j]`` of every base: one walk per base up to its
    largest count, reading D as it passes each count (no prefix sum over every sample)."""
    result = np.zeros(exits.shape, dtype=np.int64)
    for b in numba.prange(base_rows.shape[0]):
        base_correct = correct[base_rows[b]]
        diff = 0
        done = 0
        for j in np.argsort(exits[b]):
            k = exits[b, j]
            for i in range(done, k):
                diff += saver_correct_sorted[i] - base_correct[order[i]]
            done = k
            result[b, j] = diff
    return result


# Each kernel compiled twice: spreading a few bases over threads costs more than it gains (and a
# busy machine makes a parallel region wait for every thread), so small calls run serially.
PARALLEL_MIN_BASES = 16
_scan_serial = numba.njit(cache=True, nogil=True)(_scan_pairs_impl)
_scan_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_scan_pairs_impl)
_diff_serial = numba.njit(cache=True, nogil=True)(_diff_at_impl)
_diff_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_diff_at_impl)
_counts_serial = numba.njit(cache=True, nogil=True)(_diff_at_counts_impl)
_counts_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_diff_at_counts_impl)


def scan_pairs(
    order: np.ndarray,
    boundary: np.ndarray,
    saver_correct_sorted: np.ndarray,
    saver_correct_count: int,
    correct: np.ndarray,
    base_rows: np.ndarray,
    base_correct_counts: np.ndarray,
    min_diffs: np.ndarray,
    distinct_exits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    kernel = _scan_parallel if len(base_rows) >= PARALLEL_MIN_BASES else _scan_serial
    return kernel(
        order,
        boundary,
        saver_correct_sorted,
        saver_correct_count,
        correct,
        base_rows,
        base_correct_counts,
        min_diffs,
        distinct_exits,
    )


def diff_at(
    order: np.ndarray,
    saver_correct_sorted: np.ndarray,
    correct: np.ndarray,
    base_rows: np.ndarray,
    exits: np.ndarray,
) -> np.ndarray:
    kernel = _diff_parallel if len(base_rows) >= PARALLEL_MIN_BASES else _diff_serial
    return kernel(order, saver_correct_sorted, correct, base_rows, exits)


def diff_at_counts(
    order: np.ndarray,
    saver_correct_sorted: np.ndarray,
    correct: np.ndarray,
    base_rows: np.ndarray,
    exits: np.ndarray,
) -> np.ndarray:
    kernel = _counts_parallel if len(base_rows) >= PARALLEL_MIN_BASES else _counts_serial
    return kernel(order, saver_correct_sorted, correct, base_rows, exits)
