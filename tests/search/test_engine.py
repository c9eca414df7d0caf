"""The exact saver search checked against a brute-force reading of its contract.

Every reference below is written straight from the contract with plain loops over samples and exit
sets (the paper grid as one brute-force table of every grid point times every sample): no sorting,
no prefix sums, nothing shared with ``search.engine``.

Contract, for a pair (base b, saver s) on N samples: sample i exits at the saver iff
``conf_s[i] > t`` (strict); the base answers the rest. Exit sets are
the distinct ``{conf_s > t}`` (every distinct confidence, plus "all exit"); ties exit together.
Budget δ (accuracy points): feasible iff ``correct >= base_correct - δ·N/100``, exactly; the budget
point is the feasible exit set with the most exits. Paper: the first t of
``numpy.arange(1, 0, -0.001)`` where someone exits and the saver is strictly less accurate than
the base on the exiting samples, else the last grid point; grid points are compared with the
float32 confidences in float32, as the seed code's NumPy 1 did (``float32_array > float64(t)``).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search import kernels
from search.engine import (
    PAPER_GRID,
    OperatingPoint,
    Zoo,
    apply_thresholds,
    budget_point,
    cheaper_than,
    dearer_than,
    min_correct_diff,
    pair_curve,
    paper_point,
    pareto_front,
    scan_saver,
)
from search.selection import Candidate, best_candidate

SPEC = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The paper grid, as the contract spells it (deliberately not the engine's constant).
GRID = np.arange(1, 0, -0.001)
GRID32 = GRID.astype(np.float32).astype(np.float64)  # the grid as float32 comparisons see it

#: A handful of values with heavy ties (0.5 twice, so it is drawn twice as often).
TIED_CONFIDENCES = (0.1, 0.5, 0.5, 0.999)
#: Values on or next to the paper grid: exactly representable grid points, above 0.999, below 0.001.
GRID_EDGE_CONFIDENCES = (0.0, 0.0004, 0.0005, 0.001, 0.25, 0.5, 0.75, 0.999, 0.9995, 0.99999, 1.0)
#: Budgets as decimal strings: the reference reads them exactly, the engine gets the float.
BUDGETS = ("0", "0.1", "0.5", "1", "1.7", "2", "2.5", "5", "10", "33.3", "100", "1000")
NAMES = ("ada", "bo", "cy", "di", "ed")
COSTS = (0.5, 1.0, 2.0, 3.0, 4.0, 8.0)


# --------------------------------------------------------------------------------------------
# Brute-force reference
# --------------------------------------------------------------------------------------------


class Reference:
    """The zoo as plain Python lists, and the contract evaluated by exhaustive loops."""

    def __init__(self, names, costs, ok, conf):
        self.names = list(names)
        self.costs = [float(c) for c in costs]
        self.ok = [[bool(x) for x in row] for row in ok]
        # float32 -> Python float is exact: this is the float64 comparison the contract asks for.
        self.conf = [[float(np.float32(x)) for x in row] for row in conf]
        self.n = len(self.ok[0])
        self._exit_sets = {}
        self._curves = {}

    def base_correct(self, b):
        return sum(1 for i in range(self.n) if self.ok[b][i])

    def exit_sets(self, s):
        """Every distinct exit set of saver s, from no exit to all exits."""
        if s not in self._exit_sets:
            candidates = [frozenset(range(self.n))]  # "all exit"
            for t in set(self.conf[s]):  # every distinct confidence as a threshold
                candidates.append(frozenset(i for i in range(self.n) if self.conf[s][i] > t))
            self._exit_sets[s] = sorted(set(candidates), key=len)
        return self._exit_sets[s]

    def pair_correct(self, b, s, exit_set):
        return sum(
            1
            for i in range(self.n)
            if (i in exit_set and self.ok[s][i]) or (i not in exit_set and self.ok[b][i])
        )

    def curve(self, b, s):
        """(exit set, pair correct count) for every distinct exit set."""
        if (b, s) not in self._curves:
            self._curves[b, s] = [(e, self.pair_correct(b, s, e)) for e in self.exit_sets(s)]
        return self._curves[b, s]

    def is_feasible(self, b, correct, budget):
        """correct >= base_correct - budget * N / 100, in exact rationals on the decimal."""
        return correct >= self.base_correct(b) - Fraction(budget) * self.n / 100

    def budget(self, b, s, budget):
        """(exits, correct) of the feasible exit set with the most exits."""
        best = None
        for exit_set, correct in self.curve(b, s):
            if self.is_feasible(b, correct, budget):
                if best is None or len(exit_set) > best[0]:
                    best = (len(exit_set), correct)
        return best

    def paper(self, b, s):
        """(grid index, exits, correct, crossed) of the paper criterion.

        Every grid point is evaluated on every sample (a (1000, N) table of "exits at t"), then
        the first crossing is looked up; with no crossing, the last grid point.
        """
        conf = np.array(self.conf[s], dtype=np.float64)
        saver_ok = np.array(self.ok[s], dtype=np.int64)
        base_ok = np.array(self.ok[b], dtype=np.int64)
        exiting = conf[None, :] > GRID32[:, None]  # [grid point, sample]
        exits = exiting.sum(axis=1)
        saver_right = exiting @ saver_ok
        base_right = exiting @ base_ok
        crossing = (exits > 0) & (saver_right < base_right)
        crossed = bool(crossing.any())
        g = int(np.flatnonzero(crossing)[0]) if crossed else len(GRID) - 1
        stays = ~exiting[g]
        correct = int(saver_right[g]) + int(base_ok[stays].sum())
        return g, int(exits[g]), correct, crossed

    def exits_at(self, s, t):
        return sum(1 for i in range(self.n) if self.conf[s][i] > float(t))

    def diff_at(self, b, s, t):
        return sum(
            int(self.ok[s][i]) - int(self.ok[b][i])
            for i in range(self.n)
            if self.conf[s][i] > float(t)
        )

    def saving(self, b, s, exits):
        return 1.0 - (self.costs[s] / self.costs[b] + (1.0 - exits / self.n))

    def delta_c(self, b, s, exits):
        """ΔC in the seed code's own arithmetic (``ee * (c - 1) + pass * c``), its float
        being what its ranking compares."""
        c = self.costs[s] / self.costs[b]
        return exits / self.n * (c - 1) + (self.n - exits) / self.n * c

    def exact_delta_c(self, b, s, exits):
        """ΔC as an exact rational: equal on paper means equal, so the tie rules decide."""
        return Fraction(self.costs[s]) / Fraction(self.costs[b]) - Fraction(exits, self.n)


def reference_of(case) -> Reference:
    names, costs, predictions, confidence, labels = case
    ok = predictions == labels[None, :]
    return Reference(names, costs, ok, confidence)


def zoo_of(case) -> Zoo:
    names, costs, predictions, confidence, labels = case
    return Zoo.from_predictions(names, costs, predictions, confidence, labels)


def undominated(points):
    """Distinct (relative cost, accuracy) values that no point beats on both, cheapest first."""
    values = {(p.relative_cost, p.accuracy) for p in points}
    front = []
    for cost, acc in values:
        dominated = False
        for other in points:
            no_worse = other.relative_cost <= cost and other.accuracy >= acc
            better = other.relative_cost < cost or other.accuracy > acc
            if no_worse and better:
                dominated = True
        if not dominated:
            front.append((cost, acc))
    return sorted(front)


def reference_best(candidates, criterion):
    """best_candidate by explicit filtering: keep the winners of each rule in turn."""
    if not candidates:
        return None
    pool = list(candidates)
    if criterion == "paper":
        pool = [c for c in pool if c.point.delta_c == min(x.point.delta_c for x in pool)]
    else:
        pool = [c for c in pool if c.point.saving == max(x.point.saving for x in pool)]
        pool = [c for c in pool if c.point.correct == max(x.point.correct for x in pool)]
    pool = [c for c in pool if c.saver_cost == min(x.saver_cost for x in pool)]
    pool = [c for c in pool if c.saver == min(x.saver for x in pool)]
    assert len(pool) >= 1
    winner = pool[0]
    if criterion != "paper" and winner.point.saving <= 0:
        return None
    return winner


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


@st.composite
def zoo_cases(draw, min_models=2, max_models=5, max_samples=60):
    """(names, costs, predictions, confidence, labels) of a small random zoo.

    Arrays are drawn as byte strings (one draw each, fast to generate and to shrink) and mapped to
    classes and confidences: from a handful of heavily tied values, from values on and around the
    paper grid, one value per model (all equal), or any float32 in [0, 1].
    """
    m = draw(st.integers(min_models, max_models))
    n = draw(st.integers(1, max_samples))
    kind = draw(st.sampled_from(["tied", "grid", "equal", "free"]))

    def draw_bytes(size):
        return np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype=np.uint8)

    if kind == "free":
        raw = draw_bytes(4 * m * n).view(np.uint32).astype(np.float64)
        confidence = (raw / 2.0**32).astype(np.float32).reshape(m, n)
    else:
        pool = np.array(
            TIED_CONFIDENCES if kind == "tied" else TIED_CONFIDENCES + GRID_EDGE_CONFIDENCES,
            dtype=np.float32,
        )
        picks = draw_bytes(m if kind == "equal" else m * n).astype(np.int64) % len(pool)
        confidence = np.broadcast_to(pool[picks].reshape(m, -1), (m, n)).copy()
    num_classes = draw(st.integers(1, 3))
    labels = draw_bytes(n).astype(np.int64) % num_classes
    predictions = (draw_bytes(m * n).astype(np.int64) % num_classes).reshape(m, n)
    if draw(st.booleans()):
        # A saver identical to some base: same predictions, same confidences.
        src, dst = draw(st.lists(st.integers(0, m - 1), min_size=2, max_size=2, unique=True))
        predictions[dst] = predictions[src]
        confidence[dst] = confidence[src]
    costs = draw(st.lists(st.sampled_from(COSTS), min_size=m, max_size=m))
    names = draw(st.permutations(NAMES))[:m]
    return tuple(names), costs, predictions, confidence, labels


def cheaper_pairs(zoo: Zoo):
    """All candidate pairs (base, saver) with cost_saver < cost_base."""
    return [
        (b, s)
        for b in range(len(zoo.names))
        for s in range(len(zoo.names))
        if zoo.costs[s] < zoo.costs[b]
    ]


budget_lists = st.lists(st.sampled_from(BUDGETS), min_size=1, max_size=6).map(
    lambda drops: ["0", "0.5", "2", "1000", *drops]
)


# --------------------------------------------------------------------------------------------
# Zoo
# --------------------------------------------------------------------------------------------


def test_zoo_from_predictions_marks_top1_hits_and_keeps_float32_confidence():
    zoo = Zoo.from_predictions(
        ["a", "b"],
        [1, 2],
        np.array([[0, 1, 2], [2, 1, 0]]),
        np.array([[0.5, 0.25, 1.0], [0.1, 0.2, 0.3]]),
        np.array([0, 1, 0]),
    )
    assert zoo.names == ("a", "b")
    assert zoo.costs.dtype == np.float64
    assert zoo.correct.tolist() == [[1, 1, 0], [0, 1, 1]]
    assert zoo.confidence.dtype == np.float32
    assert zoo.correct_counts.tolist() == [2, 2]
    assert zoo.num_samples == 3


def test_zoo_rejects_arrays_that_disagree():
    with pytest.raises(ValueError):
        Zoo(("a",), np.ones(1), np.ones((1, 3), np.uint8), np.ones((1, 2), np.float32))
    with pytest.raises(ValueError):
        Zoo(("a",), np.ones(2), np.ones((1, 3), np.uint8), np.ones((1, 3), np.float32))


@SPEC
@given(zoo_cases())
def test_cheaper_than_and_dearer_than_are_strict_in_cost(case):
    zoo = zoo_of(case)
    m = len(zoo.names)
    for row in range(m):
        cheaper = [r for r in range(m) if zoo.costs[r] < zoo.costs[row]]
        dearer = [r for r in range(m) if zoo.costs[r] > zoo.costs[row]]
        assert cheaper_than(zoo, row).tolist() == cheaper
        assert dearer_than(zoo, row).tolist() == dearer


# --------------------------------------------------------------------------------------------
# Budget criterion
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_drop", "num_samples", "expected"),
    [
        (0, 60, 0),
        (0.5, 60, 0),  # 0.3 samples may be lost: none
        (2, 60, -1),  # 1.2 samples: one
        (2.5, 40, -1),  # exactly one sample
        (5, 20, -1),  # exactly one sample
        (0.1, 1000, -1),  # exactly one sample (binary 0.1 is a hair above 1/10)
        (0.3, 1000, -3),  # exactly three samples (binary 0.3 is a hair below 3/10)
        (0.7, 1000, -7),
        (0.57, 10000, -57),  # 0.57 * 10000 / 100 is 56.99999999999999 in floating point
        (1.14, 5000, -57),
        (100, 60, -60),
        (1000, 60, -600),
    ],
)
def test_min_correct_diff_is_the_exact_integer_bound(max_drop, num_samples, expected):
    assert min_correct_diff(max_drop, num_samples) == expected


def test_budget_exactly_on_the_bound_is_feasible():
    # N = 5000 and δ = 1.14 points allow exactly 57 lost samples (a float product gives 56.99...).
    n, lost = 5000, 57
    saver = np.zeros(n, int)
    saver[:lost] = 1
    zoo = Zoo.from_predictions(
        ["s", "b"], [1, 2], np.stack([saver, np.zeros(n, int)]), np.full((2, n), 0.5), np.zeros(n)
    )
    scan = scan_saver(zoo, 0, [1], [1.14, 1.13])
    assert scan.budget_exits.tolist() == [[n, 0]]
    assert budget_point(zoo, scan, 0, 0).correct == n - lost


@pytest.mark.parametrize("max_drop", [-0.5, -1, -1e-9])
def test_negative_max_drop_is_rejected(max_drop):
    zoo = Zoo.from_predictions(
        ["s", "b"], [1, 2], np.zeros((2, 3), int), np.full((2, 3), 0.5), np.zeros(3, int)
    )
    with pytest.raises(ValueError):
        min_correct_diff(max_drop, 10)
    with pytest.raises(ValueError):
        scan_saver(zoo, 0, [1], [0.5, max_drop])


@SPEC
@given(zoo_cases(), budget_lists)
def test_budget_point_is_the_largest_feasible_exit_set(case, budgets):
    zoo, ref = zoo_of(case), reference_of(case)
    drops = [float(d) for d in budgets]
    for s in range(len(zoo.names)):
        bases = dearer_than(zoo, s)
        if len(bases) == 0:
            continue
        scan = scan_saver(zoo, s, bases, drops)
        assert scan.max_drops == tuple(drops)
        for bi, b in enumerate(bases):
            for j, budget in enumerate(budgets):
                point = budget_point(zoo, scan, bi, j)
                exits, correct = ref.budget(b, s, budget)
                assert (point.exits, point.correct) == (exits, correct), (b, s, budget)
                assert point.base_correct == ref.base_correct(b)
                assert point.num_samples == ref.n
                assert point.cost_ratio == ref.costs[s] / ref.costs[b]
                assert point.saving == ref.saving(b, s, exits)


@SPEC
@given(zoo_cases())
def test_budget_zero_never_loses_a_sample_and_a_huge_budget_lets_everything_exit(case):
    zoo, ref = zoo_of(case), reference_of(case)
    for b, s in cheaper_pairs(zoo):
        scan = scan_saver(zoo, s, [b], [0, 1000])
        strict, loose = budget_point(zoo, scan, 0, 0), budget_point(zoo, scan, 0, 1)
        assert strict.correct >= ref.base_correct(b)
        assert loose.exits == ref.n
        assert loose.correct == sum(ref.ok[s])
        assert loose.relative_cost == ref.costs[s] / ref.costs[b]


@SPEC
@given(zoo_cases(), budget_lists)
def test_budget_order_does_not_matter(case, budgets):
    zoo = zoo_of(case)
    drops = [float(d) for d in budgets]
    for s in range(len(zoo.names)):
        bases = dearer_than(zoo, s)
        if len(bases) == 0:
            continue
        forward = scan_saver(zoo, s, bases, drops)
        backward = scan_saver(zoo, s, bases, drops[::-1])
        assert forward.budget_exits.tolist() == backward.budget_exits[:, ::-1].tolist()
        assert forward.budget_diff.tolist() == backward.budget_diff[:, ::-1].tolist()


def test_ties_in_confidence_exit_together_under_a_budget():
    # The saver is wrong on one of two samples tied at 0.9 and right on the other: the pair can
    # only take both (one sample lost) or neither. With a budget of less than one sample, neither.
    zoo = Zoo.from_predictions(
        ["s", "b"],
        [1, 2],
        np.array([[0, 1, 0, 0], [0, 0, 0, 0]]),
        np.array([[0.9, 0.9, 0.2, 0.2], [0.5, 0.5, 0.5, 0.5]]),
        np.zeros(4, int),
    )
    scan = scan_saver(zoo, 0, [1], [0, 24.9, 25])
    assert [budget_point(zoo, scan, 0, j).exits for j in range(3)] == [0, 0, 4]
    assert [budget_point(zoo, scan, 0, j).correct for j in range(3)] == [4, 4, 3]


def test_all_equal_confidences_exit_all_or_nothing():
    zoo = Zoo.from_predictions(
        ["s", "b"],
        [1, 4],
        np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 1]]),
        np.full((2, 5), 0.7),
        np.zeros(5, int),
    )
    assert [p.exits for p in pair_curve(zoo, 1, 0)] == [0, 5]
    # All exit: 3 right instead of the base's 4, one sample (20 points) lost.
    scan = scan_saver(zoo, 0, [1], [0, 19.9, 20])
    assert scan.budget_exits.tolist() == [[0, 0, 5]]
    assert scan.budget_diff.tolist() == [[0, 0, -1]]
    point = paper_point(zoo, scan, 0)
    assert (point.exits, point.correct) == (5, 3)  # crossing at the first t below 0.7


def test_a_saver_identical_to_its_base_lets_everything_exit_and_never_crosses():
    predictions = np.array([[0, 1, 0, 2], [0, 1, 0, 2]])
    confidence = np.array([[0.9, 0.3, 0.0005, 1.0], [0.9, 0.3, 0.0005, 1.0]])
    zoo = Zoo.from_predictions(["s", "b"], [1, 2], predictions, confidence, np.zeros(4, int))
    scan = scan_saver(zoo, 0, [1], [0])
    point = budget_point(zoo, scan, 0, 0)
    assert (point.exits, point.correct, point.saving) == (4, 2, 0.5)
    paper = paper_point(zoo, scan, 0)
    # No grid threshold crosses; at the last grid point (~0.001) the 0.0005 sample stays.
    assert (paper.exits, paper.correct) == (3, 2)
    assert paper.delta_c == 0.5 - 0.75


def test_a_single_sample_has_two_exit_sets():
    zoo = Zoo.from_predictions(
        ["s", "b"], [1, 2], np.array([[1], [0]]), np.array([[0.5], [0.9]]), np.array([0])
    )
    curve = pair_curve(zoo, 1, 0)
    assert [(p.exits, p.correct) for p in curve] == [(0, 1), (1, 0)]
    scan = scan_saver(zoo, 0, [1], [0, 99.9, 100])
    assert scan.budget_exits.tolist() == [[0, 0, 1]]
    paper = paper_point(zoo, scan, 0)
    assert paper.exits == 1 and paper.correct == 0
    assert paper.threshold == GRID32[next(g for g, t in enumerate(GRID32) if 0.5 > t)]


# --------------------------------------------------------------------------------------------
# Paper criterion
# --------------------------------------------------------------------------------------------


def test_paper_grid_is_the_contract_grid():
    assert np.array_equal(PAPER_GRID, GRID)


@SPEC
@given(zoo_cases())
def test_paper_point_is_the_first_grid_crossing(case):
    zoo, ref = zoo_of(case), reference_of(case)
    for s in range(len(zoo.names)):
        bases = dearer_than(zoo, s)
        if len(bases) == 0:
            continue
        scan = scan_saver(zoo, s, bases, [0])
        for bi, b in enumerate(bases):
            point = paper_point(zoo, scan, bi)
            g, exits, correct, crossed = ref.paper(b, s)
            assert (point.exits, point.correct) == (exits, correct), (b, s)
            assert point.delta_c == ref.delta_c(b, s, exits)
            if crossed:
                assert point.threshold == float(GRID32[g])
            assert ref.exits_at(s, point.threshold) == point.exits


@SPEC
@given(zoo_cases())
def test_paper_point_without_crossing_is_the_last_grid_point(case):
    zoo, ref = zoo_of(case), reference_of(case)
    for b, s in cheaper_pairs(zoo):
        g, exits, _, crossed = ref.paper(b, s)
        if crossed:
            continue
        point = paper_point(zoo, scan_saver(zoo, s, [b], [0]), 0)
        assert point.threshold == float(GRID32[-1]) == float(GRID32[g])
        assert point.exits == exits


def test_paper_point_without_crossing_reports_the_last_grid_point_not_the_first_equivalent():
    # The saver is never worse than the base: no threshold crosses, so the match is the last t.
    zoo = Zoo.from_predictions(
        ["s", "b"], [1, 2], np.array([[0, 0], [1, 1]]), np.full((2, 2), 0.9), np.zeros(2, int)
    )
    point = paper_point(zoo, scan_saver(zoo, 0, [1], [0]), 0)
    assert point.exits == 2
    assert point.threshold == float(GRID32[-1])


@pytest.mark.parametrize(
    ("value", "first_exit_index"),
    [
        (0.5, 501),  # GRID[500] is a hair below 0.5, but rounds to 0.5 in float32
        (0.25, 751),  # likewise GRID[750] and 0.25
        (0.999, 2),  # float32(0.999) equals GRID[1] in float32: not above it
        (0.9995, 1),
        (1.0, 1),  # never above t = 1
        (0.0005, None),  # below every grid point: never exits
        (0.0, None),
    ],
)
def test_paper_thresholds_compare_in_float32_as_the_seed_code_did(value, first_exit_index):
    # The saver is wrong where the base is right, so the first t with an exit is the match.
    zoo = Zoo.from_predictions(
        ["s", "b"],
        [1, 2],
        np.array([[1, 1, 1], [0, 0, 0]]),
        np.array([[value, 0.0002, 0.0001], [0.5, 0.5, 0.5]], dtype=np.float32),
        np.zeros(3, int),
    )
    expected = next((g for g, t in enumerate(GRID) if np.float32(value) > np.float32(t)), None)
    assert expected == first_exit_index
    point = paper_point(zoo, scan_saver(zoo, 0, [1], [0]), 0)
    if first_exit_index is None:
        assert point.exits == 0
    else:
        assert point.exits == 1
        assert point.threshold == float(np.float32(GRID[first_exit_index]))
        assert point.correct == 2


#: Enough bases to take the engine's multi-threaded kernels (small calls run serially).
MANY_BASES = kernels.PARALLEL_MIN_BASES + 4


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(["tied", "free"]), budget_lists)
def test_many_bases_at_once_agree_with_brute_force(seed, kind, budgets):
    rng = np.random.default_rng(seed)
    m, n = MANY_BASES + 1, int(rng.integers(1, 41))
    if kind == "tied":
        confidence = rng.choice(np.array(TIED_CONFIDENCES, np.float32), size=(m, n))
    else:
        confidence = rng.random((m, n), dtype=np.float32)
    case = (
        tuple(f"m{i:02d}" for i in range(m)),
        [0.5] + [1.0 + i for i in range(m - 1)],
        rng.integers(0, 2, (m, n)),
        confidence,
        rng.integers(0, 2, n),
    )
    zoo, ref = zoo_of(case), reference_of(case)
    bases = list(dearer_than(zoo, 0))
    assert len(bases) == MANY_BASES
    scan = scan_saver(zoo, 0, bases, [float(d) for d in budgets])
    for bi, b in enumerate(bases):
        for j, budget in enumerate(budgets):
            point = budget_point(zoo, scan, bi, j)
            assert (point.exits, point.correct) == ref.budget(b, 0, budget)
        g, exits, correct, _ = ref.paper(b, 0)
        point = paper_point(zoo, scan, bi)
        assert (point.threshold, point.exits, point.correct) == (float(GRID32[g]), exits, correct)
    thresholds = scan.budget_threshold[:, ::-1]  # each base scored at other budgets' thresholds
    exits, diff = apply_thresholds(zoo, 0, bases, thresholds)
    for bi, b in enumerate(bases):
        for j in range(thresholds.shape[1]):
            assert exits[bi, j] == ref.exits_at(0, thresholds[bi, j])
            assert diff[bi, j] == ref.diff_at(b, 0, thresholds[bi, j])


# --------------------------------------------------------------------------------------------
# Thresholds, curves and the Pareto front
# --------------------------------------------------------------------------------------------


@SPEC
@given(zoo_cases(), budget_lists)
def test_reported_thresholds_reproduce_their_exit_sets(case, budgets):
    zoo, ref = zoo_of(case), reference_of(case)
    drops = [float(d) for d in budgets]
    for s in range(len(zoo.names)):
        bases = dearer_than(zoo, s)
        if len(bases) == 0:
            continue
        scan = scan_saver(zoo, s, bases, drops)
        for bi in range(len(bases)):
            for j in range(len(drops)):
                point = budget_point(zoo, scan, bi, j)
                assert ref.exits_at(s, point.threshold) == point.exits
            point = paper_point(zoo, scan, bi)
            assert ref.exits_at(s, point.threshold) == point.exits
        for point in pair_curve(zoo, int(bases[0]), s):
            assert ref.exits_at(s, point.threshold) == point.exits


@SPEC
@given(zoo_cases())
def test_pair_curve_lists_every_distinct_exit_set(case):
    zoo, ref = zoo_of(case), reference_of(case)
    for b, s in cheaper_pairs(zoo):
        curve = pair_curve(zoo, b, s)
        expected = [(len(e), correct) for e, correct in ref.curve(b, s)]
        assert [(p.exits, p.correct) for p in curve] == expected
        assert all(p.base_correct == ref.base_correct(b) for p in curve)


@SPEC
@given(zoo_cases(), st.data())
def test_apply_thresholds_agrees_with_brute_force(case, data):
    zoo, ref = zoo_of(case), reference_of(case)
    s = data.draw(st.integers(0, len(zoo.names) - 1))
    bases = data.draw(st.lists(st.integers(0, len(zoo.names) - 1), min_size=1, max_size=4))
    observed = sorted({float(c) for c in ref.conf[s]})
    near = [float(np.nextafter(np.float32(c), np.float32(d))) for c in observed for d in (-1, 2)]
    pool = observed + near + [float(t) for t in GRID[[0, 1, 500, 750, 999]]]
    thresholds = st.one_of(st.sampled_from(pool), st.floats(-0.5, 1.5))
    j = data.draw(st.integers(1, 4))
    table = np.array(
        [data.draw(st.lists(thresholds, min_size=j, max_size=j)) for _ in bases],
        dtype=np.float64,
    )
    exits, diff = apply_thresholds(zoo, s, bases, table)
    assert exits.shape == diff.shape == table.shape
    for bi, b in enumerate(bases):
        for k in range(j):
            assert exits[bi, k] == ref.exits_at(s, table[bi, k])
            assert diff[bi, k] == ref.diff_at(b, s, table[bi, k])


@SPEC
@given(zoo_cases())
def test_pareto_front_of_a_pair_curve_is_its_undominated_points(case):
    zoo = zoo_of(case)
    for b, s in cheaper_pairs(zoo):
        curve = pair_curve(zoo, b, s)
        front = pareto_front(curve)
        assert [(p.relative_cost, p.accuracy) for p in front] == undominated(curve)
        assert all(p in curve for p in front)


operating_points = st.builds(
    OperatingPoint,
    threshold=st.just(0.5),
    exits=st.integers(0, 8),
    correct=st.integers(0, 8),
    base_correct=st.just(4),
    num_samples=st.just(8),
    cost_ratio=st.sampled_from([0.125, 0.25, 0.5, 0.75]),
)


@SPEC
@given(st.lists(operating_points, max_size=20))
def test_pareto_front_keeps_exactly_the_undominated_points_cheapest_first(points):
    front = pareto_front(points)
    assert [(p.relative_cost, p.accuracy) for p in front] == undominated(points)
    assert all(any(p is q for q in points) for p in front)


def test_operating_point_reports_the_contract_quantities():
    point = OperatingPoint(
        threshold=0.5, exits=3, correct=5, base_correct=6, num_samples=8, cost_ratio=0.25
    )
    assert point.exit_ratio == 3 / 8
    assert point.accuracy == 5 / 8
    assert point.base_accuracy == 6 / 8
    assert point.relative_cost == 0.25 + (1 - 3 / 8)
    assert point.saving == 1 - (0.25 + (1 - 3 / 8))
    assert point.delta_c == 0.25 - 3 / 8


# --------------------------------------------------------------------------------------------
# Choosing the best saver of a base
# --------------------------------------------------------------------------------------------


def _candidate(name, cost, exits, correct, base_cost=1.0, n=4):
    point = OperatingPoint(0.5, exits, correct, 3, n, cost / base_cost)
    return Candidate(name, cost, point)


def test_best_candidate_budget_prefers_the_largest_saving():
    small = _candidate("a", 0.25, 2, 3)  # saving 0.25
    large = _candidate("b", 0.25, 3, 2)  # saving 0.5
    assert best_candidate([small, large], "budget") is large


def test_best_candidate_budget_breaks_saving_ties_by_higher_accuracy():
    worse = _candidate("a", 0.25, 3, 2)
    better = _candidate("b", 0.25, 3, 3)
    assert worse.point.saving == better.point.saving
    assert best_candidate([worse, better], "budget") is better


def test_best_candidate_budget_breaks_accuracy_ties_by_the_cheaper_saver():
    # 1 - (0.25 + 1/4) == 1 - (0.5 + 0) == 0.5 exactly: a tie in saving across savers.
    cheap = _candidate("z", 0.25, 3, 3)
    dear = _candidate("a", 0.5, 4, 3)
    assert cheap.point.saving == dear.point.saving == 0.5
    assert best_candidate([dear, cheap], "budget") is cheap


def test_best_candidate_budget_breaks_cost_ties_by_name():
    first = _candidate("alpha", 0.25, 3, 3)
    second = _candidate("beta", 0.25, 3, 3)
    assert best_candidate([second, first], "budget") is first


def test_best_candidate_budget_has_no_saver_without_a_positive_saving():
    nothing = _candidate("a", 0.25, 1, 3)  # saving exactly 0
    loss = _candidate("b", 0.5, 0, 3)  # saving -0.5
    assert nothing.point.saving == 0
    assert best_candidate([nothing, loss], "budget") is None
    assert best_candidate([], "budget") is None
    assert best_candidate([], "paper") is None


def test_best_candidate_paper_prefers_the_smallest_delta_c_then_cheaper_then_name():
    small = _candidate("z", 0.5, 4, 0)  # ΔC = -0.5
    large = _candidate("a", 0.25, 2, 4)  # ΔC = -0.25
    assert best_candidate([large, small], "paper") is small
    cheap = _candidate("y", 0.25, 3, 0)  # ΔC = 0.25 - 0.75 == -0.5 exactly
    assert cheap.point.delta_c == small.point.delta_c
    assert best_candidate([small, cheap], "paper") is cheap
    named = _candidate("x", 0.25, 3, 0)
    assert best_candidate([cheap, named, small], "paper") is named


def test_best_candidate_paper_returns_a_saver_even_without_saving():
    only = _candidate("a", 0.5, 0, 0)  # ΔC = 0.5 > 0
    assert best_candidate([only], "paper") is only


candidates = st.builds(
    _candidate,
    name=st.sampled_from(["a", "b", "c"]),
    cost=st.sampled_from([0.25, 0.5, 0.75]),
    exits=st.integers(0, 4),
    correct=st.integers(0, 4),
)


@SPEC
@given(st.lists(candidates, max_size=8), st.sampled_from(["budget", "paper"]))
def test_best_candidate_follows_the_tie_rules_in_order(pool, criterion):
    expected = reference_best(pool, criterion)
    chosen = best_candidate(pool, criterion)
    if expected is None:
        assert chosen is None
    else:
        assert chosen is not None
        assert chosen.saver == expected.saver
        assert chosen.saver_cost == expected.saver_cost
        assert chosen.point == expected.point


@SPEC
@given(zoo_cases(), st.sampled_from(BUDGETS))
def test_best_saver_of_each_base_is_the_best_feasible_pair(case, budget):
    zoo, ref = zoo_of(case), reference_of(case)
    m = len(zoo.names)
    per_base = {b: ([], []) for b in range(m)}
    for s in range(m):
        bases = dearer_than(zoo, s)
        if len(bases) == 0:
            continue
        scan = scan_saver(zoo, s, bases, [float(budget)])
        for bi, b in enumerate(bases):
            budget_list, paper_list = per_base[int(b)]
            name, cost = zoo.names[s], float(zoo.costs[s])
            budget_list.append(Candidate(name, cost, budget_point(zoo, scan, bi, 0)))
            paper_list.append(Candidate(name, cost, paper_point(zoo, scan, bi)))
    for b in range(m):
        savers = [s for s in range(m) if ref.costs[s] < ref.costs[b]]
        # Budget: over every feasible exit set of every cheaper saver.
        options = []
        for s in savers:
            for exit_set, correct in ref.curve(b, s):
                if ref.is_feasible(b, correct, budget):
                    saving = -ref.exact_delta_c(b, s, len(exit_set))  # saving = -ΔC, exactly
                    options.append((-saving, -correct, ref.costs[s], ref.names[s], len(exit_set)))
        chosen = best_candidate(per_base[b][0], "budget")
        if not options or -min(options)[0] <= 0:
            assert chosen is None
        else:
            _, neg_correct, _, name, exits = min(options)
            assert chosen is not None
            assert (chosen.saver, chosen.point.exits, chosen.point.correct) == (
                name,
                exits,
                -neg_correct,
            )
        # Paper: smallest ΔC at each pair's match as the seed's floats say, then cheaper saver,
        # then name.
        matches = []
        for s in savers:
            _, exits, _, _ = ref.paper(b, s)
            matches.append((ref.delta_c(b, s, exits), ref.costs[s], ref.names[s], exits))
        chosen = best_candidate(per_base[b][1], "paper")
        if not matches:
            assert chosen is None
        else:
            _, _, name, exits = min(matches)
            assert chosen is not None
            assert (chosen.saver, chosen.point.exits) == (name, exits)
