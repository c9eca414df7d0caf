"""The sweep's incremental saver search, in a process of its own.

A process, not a thread of the driver: the search is Python around numba kernels, and as a
thread of the driver it held the interpreter lock for a share of every dispatch (the driver's
time per unit was half as much again, its p99 twice). Its own process also runs on a core of its
own where the driver's machine has one, at the lowest CPU priority.

The driver and the search speak JSON lines over the child's standard input and output: first the
database and dataset, then each batch of stored model ids; the child answers each search with
the models it searched, the time it took and an error, if any. A closed input (the driver done,
or gone) ends the child once it has searched what it was given. Each search is one transaction,
so a search killed or failed mid-way leaves nothing half-written; what it did not search, the
end of the sweep (or ``sweep resume``) does.

Run as ``python -m orchestrator.sweeps.search_process``, a command of its own, not a fork or a
spawn of the driver (which runs Ray, and whose main script may not be safe to import again).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO

from sqlalchemy.orm import sessionmaker

SEARCH_NICENESS = 19  # the search yields the CPU to the driver and the workers


def database_url(sessions: sessionmaker) -> str:
    """The URL the driver's sessions connect to, password included: it reaches the child on its
    standard input, never a command line or a log."""
    return sessions.kw["bind"].url.render_as_string(hide_password=False)


class BackgroundSearch:
    """The driver's handle of the search process: ``stored`` hands it models whose chunks landed
    (it searches the complete ones, each once); ``close`` waits until it has searched them."""

    def __init__(self, sessions: sessionmaker, dataset: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,  # a line at a time: each batch reaches the child as it is handed over
        )
        # Written by the answers' thread alone; the driver reads them (the bench while running).
        self.searched: set[int] = set()
        self.seconds = 0.0
        self.error: str | None = None
        self._send({"database_url": database_url(sessions), "dataset": dataset})
        self._answers = threading.Thread(
            target=self._read_answers, name="search-answers", daemon=True
        )
        self._answers.start()

    def stored(self, model_ids: Iterable[int]) -> None:
        self._send(list(model_ids))

    def end_input(self) -> None:
        """Nothing more to search: the child ends once it has searched what it was handed."""
        with contextlib.suppress(OSError):  # a child that died has closed its end
            assert self._process.stdin is not None
            self._process.stdin.close()

    def close(self) -> None:
        """Let the child search what it was handed, then wait for it to end."""
        self.end_input()
        self._process.wait()
        self._answers.join()
        if self._process.returncode and self.error is None:
            self.error = f"the search process ended with exit code {self._process.returncode}"

    def _send(self, message: object) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
        except (BrokenPipeError, ValueError):  # the child died: the sweep's end searches
            self.error = self.error or "the search process ended early"

    def _read_answers(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            answer = json.loads(line)  # the child prints nothing else there (see main)
            self.searched.update(answer["searched"])
            self.seconds += answer["seconds"]
            self.error = self.error or answer["error"]


def serve(lines: IO[str], answers: IO[str]) -> None:
    """The search process: a setup line, then batches of stored model ids, searched in one
    transaction each (everything handed over meanwhile in one go), until the input closes."""
    from db.session import session_factory  # the child's imports, not the driver's
    from orchestrator.sweeps.completion import models_evaluated
    from search.service import SaverSearch

    setup = json.loads(lines.readline() or "{}")
    if not setup:
        return  # the driver closed before it said what to search
    sessions = session_factory(setup["database_url"])
    search = SaverSearch()  # keeps the zoo loaded between batches
    batches: queue.Queue[list[int] | None] = queue.Queue()
    threading.Thread(target=_read_batches, args=(lines, batches), daemon=True).start()
    searched: set[int] = set()
    failed = False
    done = False
    while not done:
        batch = [batches.get()]
        with contextlib.suppress(queue.Empty):
            while True:
                batch.append(batches.get_nowait())
        done = None in batch
        fresh = {i for ids in batch if ids for i in ids} - searched
        if not fresh or failed:
            continue
        began = time.monotonic()
        finished: list[int] = []
        error = None
        try:
            with sessions.begin() as session:
                finished = models_evaluated(session, setup["dataset"], sorted(fresh), search=search)
            searched.update(finished)
        except Exception as caught:  # noqa: BLE001 - the end of the sweep searches what is missing
            failed, error = True, f"{type(caught).__name__}: {caught}"
        answer = {"searched": finished, "seconds": time.monotonic() - began, "error": error}
        try:
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
        except BrokenPipeError:  # the driver is gone; what was searched is committed
            os.dup2(os.open(os.devnull, os.O_WRONLY), answers.fileno())  # nothing left to say
            return


def _read_batches(lines: IO[str], batches: queue.Queue[list[int] | None]) -> None:
    for line in lines:
        batches.put(json.loads(line))
    batches.put(None)


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(SEARCH_NICENESS)
    # The answers keep the real standard output; anything else printed goes to standard error.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
