"""Time to answers in modelled time (bench.answers, bench.schedule): the search behind a sweep
takes its models in batches, pairs each once, and is never made faster by the GPUs' schedule
or slower by more cores."""

from __future__ import annotations

import pytest

from bench.answers import ROWS_PER_PAIR, SearchCosts, search_run, zoo_pairs
from bench.schedule import schedule
from bench.sweep_costs import fit_anchors, pick, read_zoo

FREE = SearchCosts(ms_per_pair=0.0, us_per_row=0.0)


@pytest.fixture(scope="module")
def small_sweep():
    """120 models of the zoo, spread over its sizes, and the cost model."""
    return pick(read_zoo(), 120), fit_anchors()


def test_a_zoo_pairs_every_two_models_of_different_cost():
    assert zoo_pairs([1.0, 2.0, 3.0]) == 3
    assert zoo_pairs([1.0, 1.0, 2.0]) == 2  # the two of cost 1 make no pair
    assert zoo_pairs([5.0] * 4) == 0


def test_each_model_pairs_with_every_model_completed_before_it():
    completions = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0)]
    one_at_a_time = search_run(completions, SearchCosts(ms_per_pair=10.0, us_per_row=0.0))

    assert one_at_a_time.pairs == 0 + 1 + 2 + 3
    assert one_at_a_time.batches == 4  # each model searched before the next completes
    assert one_at_a_time.answers_at == pytest.approx(4.0 + 3 * 0.010)


def test_models_completed_while_the_search_is_busy_form_its_next_batch():
    completions = [(0.0, 1.0), (0.0, 2.0), (0.5, 3.0), (0.6, 4.0), (0.7, 5.0)]
    busy = SearchCosts(ms_per_pair=1000.0, us_per_row=0.0)  # a second a pair

    run = search_run(completions, busy)

    # 1 pair at 0 (until 1 s), then the three completed meanwhile: 2 + 3 + 4 pairs (until 10 s).
    assert run.batches == 2 and run.pairs == 10
    assert run.answers_at == pytest.approx(10.0) and run.last_batch_s == pytest.approx(9.0)


def test_rows_are_written_once_per_pair_criterion_and_signal_in_one_process():
    completions = [(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]
    writes_only = SearchCosts(ms_per_pair=0.0, us_per_row=1e6, signals=2, cores=64)

    run = search_run(completions, writes_only)

    assert run.write_s == pytest.approx(3 * 2 * ROWS_PER_PAIR)  # not divided by the cores
    assert run.answers_at == pytest.approx(run.write_s)


def test_a_free_search_answers_when_the_last_model_completes(small_sweep):
    zoo, costs = small_sweep
    figures = schedule(zoo, costs, gpus=16, shards=10, search=FREE)

    assert figures["answers_s"] == figures["last_model_s"] == figures["makespan_s"]
    assert figures["answers_over_makespan"] == 1.0
    assert figures["search_pairs"] == zoo_pairs([m.gmacs for m in zoo])


def test_a_dear_search_keeps_the_answers_waiting_but_not_the_gpus(small_sweep):
    zoo, costs = small_sweep
    free = schedule(zoo, costs, gpus=16, shards=10, search=FREE)
    dear = schedule(zoo, costs, gpus=16, shards=10, search=SearchCosts(100.0, 0.0))

    assert dear["makespan_s"] == free["makespan_s"]  # the search does not touch the schedule
    # At 0.1 s a pair the search is behind the sweep: its answers wait for its serial work.
    assert dear["answers_s"] >= dear["search_compute_s"] > free["makespan_s"]
    assert dear["answers_over_makespan"] > 2


def test_more_cores_never_make_the_answers_later(small_sweep):
    zoo, costs = small_sweep
    answers = [
        schedule(zoo, costs, gpus=16, shards=10, search=SearchCosts(20.0, 50.0, 2, cores))[
            "answers_s"
        ]
        for cores in (1, 2, 8, 64)
    ]

    assert answers == sorted(answers, reverse=True)
    assert answers[-1] < answers[0]
