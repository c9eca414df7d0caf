"""The sweep's incremental saver search, in a process of its own.

A process, not a thread of the driver: the search is Python around numba kernels, and as a
thread of the driver it held the interpreter lock for a share of every dispatch (the driver's
time per unit was half as much again, its p99 twice). Its own process also runs on a core of its
own where the driver's machine has one, at the lowest CPU priority.

The driver and the search speak JSON lines over the child's standard input and output: first the
database, dataset and sweep, then each batch of stored model ids; the child answers each search
with the models it searched, the time it took and an error, if any, and sends its log records
the same way, for the driver's handlers to write (one process writes a background driver's log
file, which rotates). A closed input (the driver done, or gone) ends the child once it has
searched what it was given. Each search is one transaction, so a search killed or failed mid-way
leaves nothing half-written; what it did not search, the end of the sweep (or ``sweep resume``)
does.

A search that fails (or a child that dies) is recorded in the sweep's row (``search_error``),
where ``saverzoo sweep status`` shows it, and logged at WARNING; the child searches nothing more.

Run as ``python -m orchestrator.sweeps.search_process``, a command of its own, not a fork or a
spawn of the driver (which runs Ray, and whose main script may not be safe to import again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from cluster.logs import SweepLog
from cluster.redact import error_line
from db.models import Sweep

SEARCH_NICENESS = 19  # the search yields the CPU to the driver and the workers
# Its name, not "__main__", in the child too (run with -m), whose records the driver writes.
logger = logging.getLogger(__spec__.name if __spec__ else __name__)
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


def database_url(sessions: sessionmaker) -> str:
    """The URL the driver's sessions connect to, password included: it reaches the child on its
    standard input, never a command line or a log."""
    return sessions.kw["bind"].url.render_as_string(hide_password=False)


class BackgroundSearch:
    """The driver's handle of the search process: ``stored`` hands it models whose chunks landed
    (it searches the complete ones, each once); ``close`` waits until it has searched them.

    ``sweep_id``: the sweep whose models these are; its row records the search's error (None:
    nowhere, the error is only logged and kept in ``error``). ``ray_address``: the running Ray
    cluster whose spare CPUs compute the pairs (the child joins it); None: the child computes
    them itself.
    """

    def __init__(
        self,
        sessions: sessionmaker,
        dataset: str,
        sweep_id: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        self._sessions = sessions
        self.sweep_id = sweep_id
        self.log: Log = logger if self.sweep_id is None else SweepLog(logger, self.sweep_id)
        self._record(None)  # a search starts afresh: an earlier driver's error is history
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
        self.answered_at: float | None = None  # time.monotonic() of the last answer
        self.error: str | None = None
        self._failing = threading.Lock()  # the first error is the one recorded
        self._send(
            {
                "database_url": database_url(sessions),
                "dataset": dataset,
                "sweep_id": self.sweep_id,
                "ray_address": ray_address,
                "log_level": logger.getEffectiveLevel(),  # the child sends only what is kept
            }
        )
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
        if self._process.returncode:
            self.fail(self._end(), log=True)

    def _send(self, message: object) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
        except BrokenPipeError:  # the child died: the sweep's end searches
            self.fail(self._end(), log=True)
        except ValueError:  # its input closed here already
            self.fail("models were handed to the search after its input was closed", log=True)

    def _end(self) -> str:
        """How the child ended (it has, or is ending: it closed its input)."""
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "the search process stopped reading what it is handed"
        if code < 0:
            return f"the search process was killed ({signal.Signals(-code).name})"
        return f"the search process ended early, with exit code {code}"

    def _read_answers(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                answer = json.loads(line)  # the child prints nothing else there (see main)
            except ValueError:  # a line cut short: the child was killed while writing it
                self.fail("the search process sent an unreadable answer")
                return
            if "log" in answer:  # one of the child's records, for this process's handlers
                record = logging.makeLogRecord(answer["log"])
                logging.getLogger(record.name).handle(record)
                continue
            self.searched.update(answer["searched"])
            self.seconds += answer["seconds"]
            self.answered_at = time.monotonic()
            if answer["error"]:
                self.fail(answer["error"], log=False)  # the child logged it

    def fail(self, error: str, *, log: bool = True) -> None:
        """The search's first error: logged (unless the child did), recorded in the sweep's row."""
        with self._failing:
            if self.error is not None:
                return
            self.error = error
        if log:
            self.log.warning("saver search failed: %s", error)
        self._record(error)

    def _record(self, error: str | None) -> None:
        """The search's error in its sweep's row, where ``sweep status`` reads it."""
        if self.sweep_id is None:
            return
        try:
            with self._sessions.begin() as session:
                session.execute(
                    update(Sweep).where(Sweep.id == self.sweep_id).values(search_error=error)
                )
        except SQLAlchemyError as caught:  # the database that failed the search, likely
            self.log.warning("cannot record the saver search's error: %s", _first_line(caught))


class Answers:
    """The child's answers and log records, one JSON line each, from any of its threads."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream, self._lock = stream, threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._stream.write(json.dumps(message) + "\n")
            self._stream.flush()


class ToDriver(logging.Handler):
    """The child's records, sent to the driver's process (``BackgroundSearch._read_answers``)."""

    def __init__(self, answers: Answers) -> None:
        super().__init__()
        self._answers = answers

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__, msg=record.getMessage(), args=None, exc_info=None)
            if record.exc_info:  # the traceback as text: the record's own does not travel
                fields["msg"] += "\n" + logging.Formatter().formatException(record.exc_info)
            fields = {k: v for k, v in fields.items() if _is_json(v)}
            self._answers.send({"log": fields})
        except BrokenPipeError:
            pass  # the driver is gone: nobody to tell
        except Exception:  # noqa: BLE001 - logging's own rule: a record never ends the process
            self.handleError(record)


def _is_json(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def serve(lines: IO[str], answers_stream: IO[str]) -> None:
    """The search process: a setup line, then batches of stored model ids, searched in one
    transaction each (everything handed over meanwhile in one go), until the input closes."""
    setup = json.loads(lines.readline() or "{}")
    if not setup:
        return  # the driver closed before it said what to search
    answers = Answers(answers_stream)
    log = _child_log(answers, setup)
    with contextlib.ExitStack() as stack:
        pairs = _ray_pairs(stack, setup.get("ray_address"), log)
        _search_batches(lines, answers, answers_stream, setup, log, pairs)


def _ray_pairs(stack: contextlib.ExitStack, address: str | None, log: Log) -> Any:
    """Pairs computed as Ray tasks on the cluster at ``address``, which this process joins for
    as long as ``stack`` lasts; None (computed here) without an address or when it cannot join."""
    if not address:
        return None
    from cluster.ray_cluster import RayUnavailable, connected
    from search.ray_pairs import RayPairs

    try:
        stack.enter_context(connected(address))
    except RayUnavailable as error:
        log.warning("the saver search computes its pairs in its own process: %s", error)
        return None
    log.info("the saver search computes its pairs as Ray tasks of the cluster at %s", address)
    return RayPairs()


def _search_batches(
    lines: IO[str],
    answers: Answers,
    answers_stream: IO[str],
    setup: dict[str, Any],
    log: Log,
    pairs: Any,
) -> None:
    from db.session import session_factory  # the child's imports, not the driver's
    from orchestrator.sweeps.completion import models_evaluated
    from search.service import SaverSearch

    sessions = session_factory(setup["database_url"])
    search = SaverSearch(pairs=pairs)  # keeps the zoo loaded between batches
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
            log.debug(
                "searched %d of %d models in %.2f s", len(finished), len(fresh), _since(began)
            )
        except Exception as caught:  # noqa: BLE001 - the end of the sweep searches what is missing
            failed, error = True, _first_line(caught)
            log.warning("saver search failed: %s; it searches nothing more", error)
        answer = {"searched": finished, "seconds": _since(began), "error": error}
        try:
            answers.send(answer)
        except BrokenPipeError:  # the driver is gone; what was searched is committed
            os.dup2(os.open(os.devnull, os.O_WRONLY), answers_stream.fileno())  # nothing to say
            return


def _child_log(answers: Answers, setup: dict[str, Any]) -> Log:
    """The child's records go to the driver's process at the level the driver keeps."""
    root = logging.getLogger()
    root.addHandler(ToDriver(answers))
    root.setLevel(setup.get("log_level", logging.WARNING))
    sweep_id = setup.get("sweep_id")
    return logger if sweep_id is None else SweepLog(logger, sweep_id)


def _since(began: float) -> float:
    return time.monotonic() - began


def _first_line(error: BaseException) -> str:
    """The error's type and first line, any password in it hidden (it is stored and logged)."""
    return f"{type(error).__name__}: {error_line(error)}"


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
