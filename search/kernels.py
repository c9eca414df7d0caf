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


# Each kernel compiled twice: spreading a few bases over threads costs more than it gains (and a
# busy machine makes a parallel region wait for every thread), so small calls run serially.
PARALLEL_MIN_BASES = 16
_scan_serial = numba.njit(cache=True, nogil=True)(_scan_pairs_impl)
_scan_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_scan_pairs_impl)
_diff_serial = numba.njit(cache=True, nogil=True)(_diff_at_impl)
_diff_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_diff_at_impl)


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


def _count_above(sorted_confidence, threshold):
    """How many of the descending float32 ``sorted_confidence`` exceed float64 ``threshold``."""
    lo = 0
    hi = sorted_confidence.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if np.float64(sorted_confidence[mid]) > threshold:
            lo = mid + 1
        else:
            hi = mid
    return lo


#: Positions between two stored counts of a base's walk: a read of D walks at most this many.
STRIDE = 8
#: Bases walked side by side: the saver's order is read once for all of them.
LANES = 8


def _counts_at(base_correct, order, calibration_sorted, right_at, calibration_at, lane, k):
    """A base's right answers among the first ``k`` of the saver's order, in all and among
    calibration samples: the counts stored at the stride below ``k``, then the few steps left."""
    g = k // STRIDE
    right = right_at[g, lane]
    right_calibration = calibration_at[g, lane]
    for i in range(g * STRIDE, k):
        x = base_correct[order[i]]
        right += x
        right_calibration += x & calibration_sorted[i]
    return right, right_calibration


def _saver_pairs_impl(
    order,
    calibration_sorted,
    saver_prefix,
    saver_calibration_prefix,
    calibration_prefix,
    boundary_below,
    calibration_boundary_below,
    calibration_position,
    sorted_confidence,
    calibration_confidence,
    lowest_calibration_threshold,
    correct,
    base_rows,
    min_diffs,
    calibration_min_diffs,
    grid_exits,
    calibration_grid_exits,
    calibration_grid_thresholds,
    split,
):
    """Every base's operating points on every sample, on the calibration half, and on the
    evaluation half at the calibration half's thresholds, from one walk per base.

    Positions are prefixes of the saver's full order. The walk counts the base's right answers,
    in all and among calibration samples, storing both every ``STRIDE`` positions; with the
    saver's own counts (``saver_prefix``, ``saver_calibration_prefix``) that gives D on every
    sample and on the calibration half at any position, and on the evaluation half as their
    difference (the full order restricted to a half is that half's order). The half's exit
    count at a position is ``calibration_prefix``. A threshold's exit set on any part is the
    prefix of the full order above it. D moves by at most one per position, so the budget walks
    jump straight over positions that cannot reach their target, and over the inside of ties
    (``boundary_below``: the largest real exit set at or below each position).
    """
    n = order.shape[0]
    num_bases = base_rows.shape[0]
    num_budgets = min_diffs.shape[0]
    exits = np.zeros((num_bases, num_budgets + 1), dtype=np.int64)
    diff = np.zeros((num_bases, num_budgets + 1), dtype=np.int64)
    calibration_exits = np.zeros((num_bases, num_budgets + 1), dtype=np.int64)
    calibration_diff = np.zeros((num_bases, num_budgets + 1), dtype=np.int64)
    paper_match = np.full((num_bases, 2), -1, dtype=np.int64)  # on every sample, on calibration
    evaluation_exits = np.zeros((num_bases, num_budgets + 1), dtype=np.int64)
    evaluation_diff = np.zeros((num_bases, num_budgets + 1), dtype=np.int64)
    num_stored = n // STRIDE + 1
    nothing = np.zeros(n, dtype=np.uint8)  # the rows of a last group's missing lanes
    # Bit ``lane`` of a byte spread to byte ``lane`` of a uint64: all lanes counted by one add.
    spread = np.zeros(256, dtype=np.uint64)
    for value in range(256):
        for lane in range(LANES):
            if (value >> lane) & 1:
                spread[value] |= np.uint64(1) << np.uint64(8 * lane)
    for group in numba.prange((num_bases + LANES - 1) // LANES):
        first = group * LANES
        lanes = min(LANES, num_bases - first)
        # The group's correctness side by side: bit ``lane`` of ``packed[i]`` is the lane's
        # base's on sample i (a small array, read at random). ``spread`` turns it into one byte
        # per lane, so one add per position counts all lanes at once; a lane counts at most
        # STRIDE between two stores, so no byte overflows.
        r0 = correct[base_rows[first]]
        r1 = correct[base_rows[first + 1]] if lanes > 1 else nothing
        r2 = correct[base_rows[first + 2]] if lanes > 2 else nothing
        r3 = correct[base_rows[first + 3]] if lanes > 3 else nothing
        r4 = correct[base_rows[first + 4]] if lanes > 4 else nothing
        r5 = correct[base_rows[first + 5]] if lanes > 5 else nothing
        r6 = correct[base_rows[first + 6]] if lanes > 6 else nothing
        r7 = correct[base_rows[first + 7]] if lanes > 7 else nothing
        packed = np.empty(n, dtype=np.uint8)
        for i in range(n):
            packed[i] = (
                r0[i]
                | (r1[i] << 1)
                | (r2[i] << 2)
                | (r3[i] << 3)
                | (r4[i] << 4)
                | (r5[i] << 5)
                | (r6[i] << 6)
                | (r7[i] << 7)
            )
        right_at = np.empty((num_stored, LANES), dtype=np.int32)
        calibration_at = np.empty((num_stored, LANES), dtype=np.int32)
        wide = np.zeros(LANES, dtype=np.int32)
        wide_calibration = np.zeros(LANES, dtype=np.int32)
        for g in range(num_stored):
            start = g * STRIDE
            right = np.uint64(0)
            right_calibration = np.uint64(0)
            for step in range(min(STRIDE, n - start)):
                i = start + step
                x = spread[packed[order[i]]]
                right += x
                right_calibration += x & (np.uint64(0) - np.uint64(calibration_sorted[i]))
            for lane in range(LANES):
                right_at[g, lane] = wide[lane]
                calibration_at[g, lane] = wide_calibration[lane]
                shift = np.uint64(8 * lane)
                wide[lane] += np.int32((right >> shift) & np.uint64(255))
                wide_calibration[lane] += np.int32((right_calibration >> shift) & np.uint64(255))
        for lane in range(min(LANES, num_bases - first)):
            b = first + lane
            row = correct[base_rows[b]]
            # Budgets on every sample: the largest real exit set with D >= target, loosest
            # target first (a stricter one's answer is never above).
            k = n
            j = 0
            while j < num_budgets:
                right, _ = _counts_at_compiled(
                    row, order, calibration_sorted, right_at, calibration_at, lane, k
                )
                d = saver_prefix[k] - right
                if d < min_diffs[j]:
                    k = boundary_below[k - (min_diffs[j] - d)]
                elif boundary_below[k] == k:
                    exits[b, j] = k
                    diff[b, j] = d
                    j += 1
                else:
                    k = boundary_below[k]
            # Budgets on the calibration half, over the same positions.
            k = n
            j = 0
            while j < num_budgets:
                _, right = _counts_at_compiled(
                    row, order, calibration_sorted, right_at, calibration_at, lane, k
                )
                d = saver_calibration_prefix[k] - right
                kc = calibration_prefix[k]
                if d < calibration_min_diffs[j]:
                    k -= calibration_min_diffs[j] - d
                elif calibration_boundary_below[kc] == kc:
                    calibration_exits[b, j] = kc
                    calibration_diff[b, j] = d
                    j += 1
                else:
                    k = calibration_position[calibration_boundary_below[kc]]
            # Paper: the first distinct grid exit count with someone exiting and D < 0. From a
            # count with D = d >= 0, D cannot turn negative within the next d samples: grid
            # counts before then are passed without reading D.
            last = grid_exits.shape[0] - 1
            reachable = 0
            for g in range(last + 1):
                k = grid_exits[g]
                if k < reachable and g < last:
                    continue
                right, _ = _counts_at_compiled(
                    row, order, calibration_sorted, right_at, calibration_at, lane, k
                )
                d = saver_prefix[k] - right
                exits[b, num_budgets] = k
                diff[b, num_budgets] = d
                if k > 0 and d < 0:
                    paper_match[b, 0] = g
                    break
                reachable = k + d + 1
            last = calibration_grid_exits.shape[0] - 1
            reachable = 0
            for g in range(last + 1):
                kc = calibration_grid_exits[g]
                if kc < reachable and g < last:
                    continue
                k = calibration_position[kc]
                _, right = _counts_at_compiled(
                    row, order, calibration_sorted, right_at, calibration_at, lane, k
                )
                d = saver_calibration_prefix[k] - right
                calibration_exits[b, num_budgets] = kc
                calibration_diff[b, num_budgets] = d
                if kc > 0 and d < 0:
                    paper_match[b, 1] = g
                    break
                reachable = kc + d + 1
            # Held out: each calibration threshold's exit set on the evaluation half.
            for j in range(num_budgets + 1):
                if j == num_budgets:
                    g = paper_match[b, 1]
                    threshold = calibration_grid_thresholds[g if g >= 0 else -1]
                elif calibration_exits[b, j] < calibration_confidence.shape[0]:
                    threshold = np.float64(calibration_confidence[calibration_exits[b, j]])
                else:
                    threshold = lowest_calibration_threshold
                k = _count_above_compiled(sorted_confidence, threshold)
                right, right_calibration = _counts_at_compiled(
                    row, order, calibration_sorted, right_at, calibration_at, lane, k
                )
                if split:
                    evaluation_exits[b, j] = k - calibration_prefix[k]
                    evaluation_diff[b, j] = (saver_prefix[k] - saver_calibration_prefix[k]) - (
                        right - right_calibration
                    )
                else:
                    evaluation_exits[b, j] = k
                    evaluation_diff[b, j] = saver_prefix[k] - right
    return (
        exits,
        diff,
        calibration_exits,
        calibration_diff,
        paper_match,
        evaluation_exits,
        evaluation_diff,
    )


_counts_at_compiled = numba.njit(cache=True, nogil=True, inline="always")(_counts_at)
_count_above_compiled = numba.njit(cache=True, nogil=True, inline="always")(_count_above)
_pairs_serial = numba.njit(cache=True, nogil=True)(_saver_pairs_impl)
_pairs_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_saver_pairs_impl)


def saver_pairs(
    order: np.ndarray,
    calibration_sorted: np.ndarray,
    saver_prefix: np.ndarray,
    saver_calibration_prefix: np.ndarray,
    calibration_prefix: np.ndarray,
    boundary_below: np.ndarray,
    calibration_boundary_below: np.ndarray,
    calibration_position: np.ndarray,
    sorted_confidence: np.ndarray,
    calibration_confidence: np.ndarray,
    lowest_calibration_threshold: float,
    correct: np.ndarray,
    base_rows: np.ndarray,
    min_diffs: np.ndarray,
    calibration_min_diffs: np.ndarray,
    grid_exits: np.ndarray,
    calibration_grid_exits: np.ndarray,
    calibration_grid_thresholds: np.ndarray,
    split: bool,
) -> tuple[np.ndarray, ...]:
    kernel = _pairs_parallel if len(base_rows) >= PARALLEL_MIN_BASES else _pairs_serial
    return kernel(
        order,
        calibration_sorted,
        saver_prefix,
        saver_calibration_prefix,
        calibration_prefix,
        boundary_below,
        calibration_boundary_below,
        calibration_position,
        sorted_confidence,
        calibration_confidence,
        lowest_calibration_threshold,
        correct,
        base_rows,
        min_diffs,
        calibration_min_diffs,
        grid_exits,
        calibration_grid_exits,
        calibration_grid_thresholds,
        split,
    )


def _descending_order_impl(confidence):
    """Indices of ``confidence`` (float32), largest first; ties in no particular order.

    A least-significant-digit radix sort on the floats' bits (three passes of 11 bits), several
    times faster than ``argsort`` for tens of thousands of samples. The bits are mapped so that
    their unsigned order is the floats' order (sign flipped for positives, every bit for
    negatives: -0.0 and 0.0 end up adjacent), then complemented for largest first.
    """
    n = confidence.shape[0]
    bits = confidence.view(np.uint32)
    keys = np.empty(n, dtype=np.uint32)
    for i in range(n):
        x = bits[i]
        keys[i] = ~(x ^ np.uint32(0x80000000)) if x < np.uint32(0x80000000) else x
    order = np.arange(n).astype(np.uint32)
    spare = np.empty(n, dtype=np.uint32)
    spare_keys = np.empty(n, dtype=np.uint32)
    counts = np.empty(2049, dtype=np.int64)
    for shift in (0, 11, 22):
        counts[:] = 0
        for i in range(n):
            counts[((keys[i] >> np.uint32(shift)) & np.uint32(2047)) + 1] += 1
        for d in range(1, 2049):
            counts[d] += counts[d - 1]
        for i in range(n):  # keys move with their indices: every pass reads in order
            key = keys[i]
            d = (key >> np.uint32(shift)) & np.uint32(2047)
            spare[counts[d]] = order[i]
            spare_keys[counts[d]] = key
            counts[d] += 1
        order, spare = spare, order
        keys, spare_keys = spare_keys, keys
    return order


_descending_order = numba.njit(cache=True, nogil=True)(_descending_order_impl)


def descending_order(confidence: np.ndarray) -> np.ndarray:
    """uint32 indices of the float32 ``confidence``, largest first (``argsort(-confidence)``
    up to the order inside ties)."""
    return _descending_order(np.ascontiguousarray(confidence, dtype=np.float32))


def _saver_walk_arrays_impl(saver_correct_sorted, calibration_sorted, boundary, calib_boundary):
    """What every walk of one saver reads, by position of its full order (see ``saver_pairs``)."""
    n = saver_correct_sorted.shape[0]
    n_calibration = calib_boundary.shape[0] - 1
    saver_prefix = np.zeros(n + 1, dtype=np.int64)
    saver_calibration_prefix = np.zeros(n + 1, dtype=np.int64)
    calibration_prefix = np.zeros(n + 1, dtype=np.int64)
    calibration_position = np.zeros(n_calibration + 1, dtype=np.int64)
    boundary_below = np.zeros(n + 1, dtype=np.int64)
    calibration_boundary_below = np.zeros(n_calibration + 1, dtype=np.int64)
    right = right_calibration = seen = 0
    for i in range(n):
        m = calibration_sorted[i]
        right += saver_correct_sorted[i]
        right_calibration += saver_correct_sorted[i] * m
        seen += m
        saver_prefix[i + 1] = right
        saver_calibration_prefix[i + 1] = right_calibration
        calibration_prefix[i + 1] = seen
        if m:
            calibration_position[seen] = i + 1
    below = 0
    for k in range(n + 1):
        if boundary[k]:
            below = k
        boundary_below[k] = below
    below = 0
    for k in range(n_calibration + 1):
        if calib_boundary[k]:
            below = k
        calibration_boundary_below[k] = below
    return (
        saver_prefix,
        saver_calibration_prefix,
        calibration_prefix,
        calibration_position,
        boundary_below,
        calibration_boundary_below,
    )


saver_walk_arrays = numba.njit(cache=True, nogil=True)(_saver_walk_arrays_impl)


def _half_order_impl(order, sorted_confidence, saver_correct_sorted, in_half, half_index):
    """A half's order read off the saver's full order (the full order restricted to the half):
    its sample indices inside the half, confidences, saver correctness and real exit sets, and
    for each full position how many of the first samples are the half's (N + 1)."""
    n = order.shape[0]
    size = 0
    for i in range(n):
        size += in_half[order[i]]
    half_order = np.empty(size, dtype=np.uint32)
    half_confidence = np.empty(size, dtype=np.float32)
    half_correct = np.empty(size, dtype=np.int8)
    boundary = np.ones(size + 1, dtype=np.bool_)
    seen = np.zeros(n + 1, dtype=np.int64)
    k = 0
    for i in range(n):
        o = order[i]
        if in_half[o]:
            half_order[k] = half_index[o]
            half_confidence[k] = sorted_confidence[i]
            half_correct[k] = saver_correct_sorted[i]
            if k > 0:
                boundary[k] = half_confidence[k - 1] != half_confidence[k]
            k += 1
        seen[i + 1] = k
    return half_order, half_confidence, half_correct, boundary, seen


half_order = numba.njit(cache=True, nogil=True)(_half_order_impl)


def _masked_counts_impl(correct, mask):
    """Each row's sum over the columns where ``mask`` is 1 (uint8 0/1 both): no temporary."""
    counts = np.zeros(correct.shape[0], dtype=np.int64)
    for row in range(correct.shape[0]):
        total = 0
        for i in range(correct.shape[1]):
            total += correct[row, i] & mask[i]
        counts[row] = total
    return counts


masked_counts = numba.njit(cache=True, nogil=True)(_masked_counts_impl)


def use_threads(count: int) -> None:
    """At most ``count`` threads for the parallel loops of this process."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
