"""A saver search task whose Ray worker is killed while it computes is run again by Ray, and the
stored rows are those of the in-process search."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from cluster.ray_cluster import connected
from db.schema import upgrade
from search.service import SaverSearch
from tests.search.test_ray_pairs import search_into, stored_rows

pytestmark = [pytest.mark.ray, pytest.mark.slow]
TASK_TITLE = b"ray::_block_columns"  # Ray's title of a worker process while it runs a block


def _running_tasks() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(TASK_TITLE):
                found.append(int(entry.name))
        except OSError:
            continue  # ended while looked at
    return found


def _kill_the_first_task(killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set() and not killed:
        for pid in _running_tasks()[:1]:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)


@pytest.fixture
def fresh_ray():
    """A Ray of its own: its workers load the search's kernels in their first task, which
    leaves time to see that task running."""
    with connected(None, num_cpus=2):
        yield


def test_a_killed_search_task_is_retried(database_url, tmp_path, fresh_ray):
    from search.ray_pairs import RayPairs

    upgrade(database_url)
    names = [f"tied{i:02d}" for i in range(14)]
    search_into(database_url, tmp_path / "a", "here", SaverSearch(), [names])
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_the_first_task, args=(killed, stop))
    killer.start()
    try:
        search_into(database_url, tmp_path / "b", "ray", SaverSearch(pairs=RayPairs()), [names])
    finally:
        stop.set()
        killer.join()
    assert killed, "no search task was seen running"
    assert stored_rows(database_url, "here") == stored_rows(database_url, "ray")
