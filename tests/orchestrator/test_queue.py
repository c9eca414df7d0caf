"""The driver's queue: a plan that gives each worker the same modelled time, its models loaded
once where that is cheap, corrected by stealing; every unit handed out exactly once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.sweeps.queue import PlannedQueue, QueuedUnit, plan


def units_of(bundles: dict[str, tuple[int, float]]) -> list[QueuedUnit]:
    """``name: (shards, seconds a unit)``: one single-model bundle per name."""
    units = []
    for name, (shards, seconds) in bundles.items():
        for shard in range(shards):
            units.append(QueuedUnit(len(units), len(units), [name], shard, seconds))
    return units


def drain(queue: PlannedQueue[str], worker: str) -> list[QueuedUnit]:
    taken = []
    while (unit := queue.take(worker)) is not None:
        taken.append(unit)
    return taken


def list_times(lists) -> list[float]:
    return [sum(p.work + p.load for p in work_list.pieces) for work_list in lists]


def test_each_worker_is_planned_about_the_same_modelled_time_its_loads_included():
    work = {f"m{i}": (10, 0.5 + i % 7) for i in range(30)}  # cheap loads: may be split
    loads = dict.fromkeys(work, 0.1)
    units = units_of(work)

    lists = plan(units, 8, lambda bundle: sum(loads[m] for m in bundle))

    times = list_times(lists)
    longest_unit = max(u.work for u in units)
    assert max(times) - min(times) <= longest_unit + 0.2
    assert sorted(u.row_id for w in lists for p in w.pieces for u in p.units) == list(range(300))


def test_a_bundle_of_dear_loads_stays_whole_and_a_large_model_of_cheap_loads_is_split():
    work = {"small_models": (10, 1.0), "large": (40, 2.0), **{f"m{i}": (10, 1.0) for i in range(6)}}
    loads = {"small_models": 5.0, "large": 0.5, **{f"m{i}": 5.0 for i in range(6)}}

    lists = plan(units_of(work), 4, lambda bundle: sum(loads[m] for m in bundle))

    holding = {
        name: sum(any(p.units[0].models == [name] for p in w.pieces) for w in lists)
        for name in work
    }
    assert holding["small_models"] == 1  # loading it twice costs half its work
    assert holding["large"] >= 2  # 80 s against a share of about 50: split, loaded again


def test_dear_bundles_are_packed_best_fit_leaving_lists_free_for_a_bundle_too_large_for_one():
    """Eight dear bundles of 3 s and one of 15 s (3 units of 4 s, a 3 s load) on 4 workers: a
    share of about 10 s. Spread evenly, the eight leave every list 6 s used and none the room
    for the large one's load and half a unit, so all 15 s fall on one list (21 s) and the
    thieves that relieve it load its models again and again. Packed best fit (9, 9, 6 and 0 s
    used), the large one is split over the last two."""
    work = {"large": (3, 4.0), **{f"m{i}": (2, 1.25) for i in range(8)}}
    loads = {"large": 3.0, **{f"m{i}": 0.5 for i in range(8)}}

    lists = plan(units_of(work), 4, lambda bundle: sum(loads[m] for m in bundle))

    times = list_times(lists)
    holding = [w for w in lists if any(p.units[0].models == ["large"] for p in w.pieces)]
    assert max(times) <= 13.0  # a share of 10.5 and a unit of 4 s: not 21 s
    assert len(holding) == 2  # its models are loaded twice, by plan
    assert all(len(w.pieces) == 3 for w in lists if w not in holding)  # the small ones whole


def test_a_worker_runs_its_longest_units_first_and_ends_on_short_ones():
    queue: PlannedQueue[str] = PlannedQueue(units_of({"short": (3, 1.0), "long": (3, 5.0)}), 1)

    assert [u.models for u in drain(queue, "gpu0")] == [["long"]] * 3 + [["short"]] * 3


def test_an_idle_worker_steals_a_piece_nobody_started_whole():
    queue: PlannedQueue[str] = PlannedQueue(units_of({"a": (4, 3.0), "b": (4, 1.0)}), 1)
    assert queue.take("gpu0").models == ["a"]  # gpu0 adopts the one list: a, then b

    stolen = queue.take("gpu1")  # no list of its own: b moves to it, whole

    assert stolen.models == ["b"] and queue.peek("gpu1").models == ["b"]
    assert [queue.take("gpu0").models for _ in range(3)] == [["a"]] * 3  # gpu0 keeps to a


def test_an_idle_worker_splits_a_running_piece_so_both_end_together_after_its_load():
    queue: PlannedQueue[str] = PlannedQueue(units_of({"a": (8, 1.0)}), 1, {"a": 2.0})
    assert queue.take("gpu0", now=0.0).shard == 0  # it runs shard 0; 7 units of 1 s wait

    first = queue.take("gpu1", now=0.0)  # loads "a" (2 s): then 3 units end both in 5 s

    assert (first.shard, queue.peek("gpu1").shard) == (5, 6)  # the back end
    assert [queue.take("gpu0").shard for _ in range(4)] == [1, 2, 3, 4]


def test_an_idle_worker_does_not_load_a_bundle_for_a_unit_its_holder_will_start():
    queue: PlannedQueue[str] = PlannedQueue(
        [QueuedUnit(i, i, ["a"], i, 1.0) for i in range(2)], 1, {"a": 1.5}
    )
    assert queue.take("gpu0") is not None  # gpu0 holds "a"; one unit of it waits

    assert queue.take("gpu1") is None  # loading "a" takes longer than waiting for gpu0
    assert queue.take("gpu0") is not None and len(queue) == 0


def test_a_thief_relieves_the_worker_that_ends_last_counting_the_unit_it_runs():
    units = units_of({"large": (2, 12.0), "small": (8, 1.0)})
    queue: PlannedQueue[str] = PlannedQueue(units, 1, {"large": 2.5, "small": 2.5})
    assert queue.take("gpu0", now=0.0).models == ["large"]  # then large again, then small
    assert queue.take("gpu1", now=0.0).models == ["small"]  # the small piece moved whole

    # At 4 s gpu0 has 8 s of its unit and one more of 12 s: loading "large" and running it
    # ends at 18.5 s instead of 24.
    stolen = queue.take("gpu2", now=4.0)

    assert stolen is not None and stolen.models == ["large"]
    assert queue.peek("gpu0") is None


def test_a_thief_relieves_the_worker_that_ends_last_not_the_one_it_saves_most():
    units = units_of({"large": (2, 10.0), "small": (19, 1.0)})
    queue: PlannedQueue[str] = PlannedQueue(units, 2, {"large": 1.0})
    assert queue.take("gpu0", now=0.0).models == ["large"]  # ends at 20 s
    assert queue.take("gpu1", now=0.0).models == ["small"]  # ends at 19 s
    queue.finished("gpu1", units[2], now=1.0)
    assert queue.take("gpu1", now=1.0).models == ["small"]

    # Half of what gpu1 has left would save 9 s of its end; gpu0 ends last, 8 s sooner.
    stolen = queue.take("gpu2", now=1.0)

    assert stolen is not None and stolen.models == ["large"]


def test_the_clock_is_read_at_the_pace_learnt_from_finished_units():
    # The clock runs twice as slow as modelled time: 8 s of it is 4 modelled seconds.
    units = units_of({"a": (4, 4.0)})
    queue: PlannedQueue[str] = PlannedQueue(units, 1, {"a": 4.5})
    assert queue.take("gpu0", now=0.0).shard == 0
    queue.finished("gpu0", units[0], now=8.0)
    assert queue.take("gpu0", now=8.0).shard == 1  # runs until 16; shards 2 and 3 wait

    # At 14, 6 s of the clock into shard 1, gpu0 ends in 1 + 8 modelled seconds; a thief that
    # loads "a" ends shard 3 in 8.5. (Read as modelled seconds, the clock would say 8.)
    assert queue.take("gpu1", now=14.0).shard == 3


def test_a_unit_given_back_and_a_lost_workers_list_go_to_the_next_worker():
    queue: PlannedQueue[str] = PlannedQueue(units_of({"a": (3, 1.0)}), 1)
    unit = queue.take("gpu0")
    assert unit is not None

    queue.put(unit)  # its worker was lost ...
    queue.release("gpu0")  # ... with the rest of its list

    assert sorted(u.shard for u in drain(queue, "gpu1")) == [0, 1, 2]


def test_the_lists_of_planned_workers_that_never_start_are_shared_by_those_that_do():
    queue: PlannedQueue[str] = PlannedQueue(units_of({f"m{i}": (10, 1.0) for i in range(8)}), 4)
    taken = {"gpu0": 0, "gpu1": 0}
    busy = True
    while busy:  # the two take turns, one unit each, until neither gets one
        busy = False
        for worker in taken:
            if queue.take(worker) is not None:
                taken[worker] += 1
                busy = True

    assert sum(taken.values()) == 80 and abs(taken["gpu0"] - taken["gpu1"]) <= 5


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=3),
        st.tuples(st.integers(1, 12), st.floats(0.01, 20.0)),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 9),
    st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from(["take", "finish", "lose"])), max_size=80
    ),
)
def test_every_unit_is_handed_out_exactly_once_whoever_asks_and_whoever_is_lost(
    work, planned, asks
):
    """Workers ask in any order, more or fewer than planned, and finish units at any time; a
    lost worker's units in flight are given back; whoever is left drains the rest."""
    queue: PlannedQueue[int | str] = PlannedQueue(units_of(work), planned, dict.fromkeys(work, 1.0))
    done: list[int] = []
    running: dict[int, list[QueuedUnit]] = {}
    for now, (worker, ask) in enumerate(asks):
        if ask == "lose":
            for unit in running.pop(worker, []):
                queue.put(unit)
            queue.release(worker)
        elif ask == "finish" and running.get(worker):
            unit = running[worker].pop(0)
            queue.finished(worker, unit, now)
            done.append(unit.row_id)
        elif (unit := queue.take(worker, now)) is not None:
            running.setdefault(worker, []).append(unit)
    done += [u.row_id for units in running.values() for u in units]
    for worker in [*range(12), "late"]:  # the live ones, and one that joins at the end
        done += [u.row_id for u in drain(queue, worker)]

    assert sorted(done) == list(range(sum(n for n, _ in work.values())))
    assert len(queue) == 0


def test_a_worker_holds_its_next_unit_after_a_short_one_and_a_long_one_alone():
    units = units_of({"long": (1, 5.0), "short": (3, 0.4)})
    queue: PlannedQueue[str] = PlannedQueue(units, 1)
    assert queue.wants("gpu0")  # nothing held yet
    assert queue.take("gpu0").models == ["long"]
    assert not queue.wants("gpu0")  # 5 s held: its next stays where a thief can take it

    queue.finished("gpu0", units[0], now=5.0)
    assert queue.wants("gpu0") and queue.take("gpu0", now=5.0).models == ["short"]
    assert queue.wants("gpu0") and queue.take("gpu0", now=5.0).models == ["short"]
    assert not queue.wants("gpu0")  # two held: the one it runs and the next
