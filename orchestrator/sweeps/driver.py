"""The sweep driver: a pool of workers (Ray actors on a cluster) fed from a queue of work units.

A worker running a short unit also holds its next (``PlannedQueue.wants``), so it does not wait
for the driver where the round trip would show; a long unit is held alone, so that the next
stays in the queue for whichever worker ends first.
The units are laid out over the workers from their modelled times before the first is handed
out, and corrected by stealing as they run (``PlannedQueue``).
Workers write their chunks to the database themselves; the driver keeps the books (unit states,
attempts, errors, throughput) in one transaction per batch of results, and hands each model
whose last chunk landed to the incremental search in a process of its own
(``search_process.BackgroundSearch``), so each model is searched once and nothing waits for it.

Failures: a worker that dies (killed, its node lost, a fatal GPU error) loses only its units in
flight, which go back to the queue (a retried unit skips chunks that exist); a replacement starts
when the cluster has room for it. A unit that fails ``max_attempts`` times is marked failed with
its last error and the sweep goes on. A driver that dies leaves the sweep running without a
heartbeat; ``sweep resume`` plans the missing chunks again, searches what was not searched and
finishes it. The driver logs the sweep's start, each steal and its end at INFO, and a unit
retried, a worker lost or a unit failed for good at WARNING, each record naming the sweep (and
the unit).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from cluster.errors import InputError
from cluster.logs import SweepLog
from cluster.processes import alive
from cluster.ray_cluster import worker_environment
from cluster.redact import error_line
from cluster.settings import Settings
from db.models import Dataset, Sweep, SweepUnit, utc_now
from db.queries import dataset_shards
from orchestrator.sweeps.completion import store_throughput
from orchestrator.sweeps.plan import load_seconds
from orchestrator.sweeps.pool import Pending, RayPool, UnitFailed, Worker, WorkerLost, WorkerPool
from orchestrator.sweeps.queue import PlannedQueue, QueuedUnit, feed
from orchestrator.sweeps.search_process import BackgroundSearch
from orchestrator.sweeps.store import (
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    UNIT_RUNNING,
    get_sweep,
    options_of,
    plan,
    sweep_specs,
)
from search.ray_pairs import RayPairs
from search.service import SaverSearch
from workers.report import UnitReport

POLL_S = 0.5
HEARTBEAT_S = 5.0  # also how often a cancellation is looked for
STALE_AFTER_S = 60.0  # a running sweep without a heartbeat this long has lost its driver
NO_WORKER_TIMEOUT_S = 120.0  # pending work, no worker alive and no room to start one
# The books (unit rows, throughput) are written this often, not per result: a driver killed in
# between loses only bookkeeping (planning again reads the chunks, which workers wrote).
FLUSH_EVERY_S = 0.5


logger = logging.getLogger(__name__)


@dataclass
class DriverTimes:
    """What the benchmarks read of a run, in seconds since the driver started."""

    ready_s: list[float] = field(default_factory=list)  # until each worker was ready
    round_trips: list[tuple[float, float]] = field(default_factory=list)  # per unit, and worker's
    per_unit_s: list[float] = field(default_factory=list)  # the driver's own time, per result
    bookkeeping_s: float = 0.0  # the driver's own time in all (its loop, not the waits)
    bookkeeping_cpu_s: float = 0.0  # the same on the driver's CPU: less waiting for a core
    units_done_s: float | None = None  # until the last unit's result (the workers freed)


@dataclass
class SweepProgress:
    units_done: int
    units_total: int
    images_done: int  # images x models
    images_total: int
    images_per_s: float


def this_driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _driver_alive(sweep: Sweep) -> bool:
    """Whether another driver is running the sweep (same host: its pid; else its heartbeat)."""
    if sweep.state != RUNNING or not sweep.driver or sweep.driver == this_driver():
        return False
    host, _, pid = sweep.driver.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return alive(int(pid))
    beat = sweep.heartbeat_at
    if beat is None:
        return False
    if beat.tzinfo is None:  # SQLite returns naive datetimes in UTC
        beat = beat.replace(tzinfo=utc_now().tzinfo)
    return utc_now() - beat < timedelta(seconds=STALE_AFTER_S)


class SweepDriver:
    """Runs one sweep to its end on a pool of workers: by default Ray actors on the cluster this
    process is connected to."""

    search_class: type[BackgroundSearch] = BackgroundSearch

    def __init__(
        self,
        sessions: sessionmaker,
        settings: Settings,
        sweep_id: int,
        progress: Callable[[SweepProgress], None] | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.sessions, self.settings, self.sweep_id = sessions, settings, sweep_id
        self.progress, self._given_pool = progress, pool
        self.workers: dict[Worker, str] = {}  # live worker -> where it runs
        self.starting: dict[Pending, Worker] = {}
        self.in_flight: dict[Pending, tuple[Worker, QueuedUnit, float]] = {}
        self.failed_units = 0
        self.units_finished = 0  # done or failed for good
        self.images_done = 0
        self.started = time.monotonic()
        self.times = DriverTimes()
        self.log = SweepLog(logger, sweep_id)
        self.last_start_error = "the cluster has no room"
        self._rows: dict[int, dict[str, Any]] = {}  # unit rows to write, by id
        self._measured: list[UnitReport] = []  # throughput to write
        self._beat = 0.0  # when the heartbeat was last written
        self._looked = 0.0  # when the sweep's state was last read
        self._cancelled = False

    # -- the sweep's rows -------------------------------------------------------------------

    def _claim(self) -> None:
        with self.sessions.begin() as session:
            sweep = get_sweep(session, self.sweep_id)
            if sweep.state in (DONE, CANCELLED):  # a failed sweep may be tried again
                raise InputError(f"sweep {self.sweep_id} is {sweep.state}; nothing to run")
            if _driver_alive(sweep):
                raise InputError(
                    f"sweep {self.sweep_id} is being run by {sweep.driver}; cancel it or wait"
                )
            sweep.state, sweep.driver, sweep.heartbeat_at = RUNNING, this_driver(), utc_now()
            sweep.error = None
            self.options = options_of(sweep)
            dataset = session.get(Dataset, sweep.dataset_id)
            self.dataset = dataset.name
            self.shards = {s.index: s for s in dataset_shards(session, dataset)}
            specs, self.model_ids = sweep_specs(session, sweep)
            self.specs = {spec.name: spec for spec in specs}

    def _plan(self, workers: int) -> PlannedQueue[Worker]:
        """The missing work planned afresh for ``workers`` workers, laid out over them."""
        with self.sessions.begin() as session:
            planned = plan(session, get_sweep(session, self.sweep_id), workers)
            units = [
                QueuedUnit(
                    row.id,
                    row.unit_index,
                    row.models,
                    row.shard_index,
                    unit.seconds,
                    images=self.shards[row.shard_index].samples * len(row.models),
                )
                for row, unit in planned.units
            ]
        self.images_total = sum(u.images for u in units)
        self.units_total = len(units)
        loads = {m.name: load_seconds(m.params_m) for m in planned.models}
        self.log.info("%d units planned for %d workers", len(units), workers)
        return PlannedQueue(units, workers, loads, on_steal=self._stolen)

    def _stolen(self, thief: Worker, victim: Worker, units: int) -> None:
        where = self.workers.get(thief, "?"), self.workers.get(victim, "?")
        self.log.info("worker %s took %d units from worker %s", where[0], units, where[1])

    def _expected_workers(self) -> int:
        """How many workers the sweep will have: the cluster's slots, at most ``--workers``."""
        slots = self.pool.slots()
        return max(1, min(slots, self.options.max_workers or slots))

    def _note(self, unit: QueuedUnit, **values: Any) -> None:
        """A change of a unit's row, written with the next batch of books."""
        self._rows.setdefault(unit.row_id, {}).update(values, updated_at=utc_now())

    def _flush(self) -> str:
        """Every change since the last flush in one transaction, the heartbeat when due; the
        sweep's state (a cancellation shows here)."""
        with self.sessions.begin() as session:
            if self._rows:
                session.execute(
                    update(SweepUnit), [{"id": row, **values} for row, values in self._rows.items()]
                )
                self._rows.clear()
            for report in self._measured:
                store_throughput(session, self.model_ids, report.throughput, report.device_type)
            self._measured.clear()
            sweep = session.get(Sweep, self.sweep_id)
            assert sweep is not None  # claimed above; a sweep row is never deleted
            now = time.monotonic()
            if now - self._beat > HEARTBEAT_S:
                sweep.heartbeat_at, self._beat = utc_now(), now
            self._looked = now
            self._cancelled = sweep.state == CANCELLED
            return sweep.state

    def _finish(self, state: str, error: str | None = None) -> str:
        with self.sessions.begin() as session:
            sweep = session.get(Sweep, self.sweep_id)
            if sweep.state != CANCELLED:
                sweep.state, sweep.error = state, error
                sweep.finished_at = utc_now()
            state = sweep.state
            session.execute(
                update(SweepUnit)
                .where(SweepUnit.sweep_id == self.sweep_id, SweepUnit.state == UNIT_RUNNING)
                .values(state=PENDING)
                .execution_options(synchronize_session=False)
            )
        return state

    # -- workers ----------------------------------------------------------------------------

    def _wanted(self, pending: int) -> int:
        useful = pending + len(self.in_flight)
        if len(self.workers) + len(self.starting) >= useful:
            return useful  # enough workers: no need to ask the cluster
        slots = self.pool.slots()
        return max(0, min(slots, self.options.max_workers or slots, useful))

    def _start_workers(self, pending: int) -> None:
        """As many workers as are wanted and fit now, started together (never more than the
        cluster's slots: the ones starting count)."""
        missing = self._wanted(pending) - len(self.workers) - len(self.starting)
        if missing <= 0:
            return
        for _ in range(min(missing, self.pool.room())):
            worker, ready = self.pool.start()
            self.starting[ready] = worker

    def _worker_ready(self, ready: Pending) -> None:
        worker = self.starting.pop(ready)
        try:
            self.workers[worker] = self.pool.where(ready)
        except WorkerLost as error:
            self.last_start_error = str(error)
            return
        self.times.ready_s.append(time.monotonic() - self.started)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> str:
        """Run the sweep to its end; returns its final state."""
        self._claim()
        self.pool: WorkerPool = self._given_pool or RayPool(
            self.options.eval_options,
            worker_environment(self.settings),
            self.options.cpus_per_worker,
            sweep_id=self.sweep_id,
        )
        pending = self._plan(self._expected_workers())
        if self.options.device.startswith("cuda") and not self.pool.uses_gpus:
            return self._finish(FAILED, "--device cuda, but the Ray cluster has no GPU")
        self.search = self.search_class(
            self.sessions, self.dataset, self.sweep_id, self._search_address()
        )
        try:
            state, error = self._run_units(pending)
        except BaseException:
            # Workers and search end before the row says resumable, so that no second driver
            # (`sweep resume`) runs beside them.
            self._end_run()
            with self.sessions.begin() as session:  # interrupted: resumable, not running
                sweep = session.get(Sweep, self.sweep_id)
                if sweep.state == RUNNING:
                    sweep.state, sweep.driver = QUEUED, None
                    sweep.error = "interrupted; `saverzoo sweep resume` finishes it"
            raise
        self._end_run()
        if state == DONE:
            self._search_what_is_missing()
            if self.failed_units:
                state, error = FAILED, f"{self.failed_units} work units failed every attempt"
        state = self._finish(state, error)
        self.log.info("%s after %.1f s", state, time.monotonic() - self.started)
        return state

    def _run_units(self, pending: PlannedQueue[Worker]) -> tuple[str, str | None]:
        """Feeds the workers until no unit is left: how the run ended (a state, an error)."""
        no_worker_since = None
        while pending or self.in_flight:
            if time.monotonic() - self._looked > FLUSH_EVERY_S:
                self._flush()
            if self._cancelled:  # seen by this flush or by the last batch's
                return CANCELLED, None
            self._start_workers(len(pending))
            self._feed(pending)
            waiting = [*self.in_flight, *self.starting]
            if not waiting:
                no_worker_since = no_worker_since or time.monotonic()
                if time.monotonic() - no_worker_since > NO_WORKER_TIMEOUT_S:
                    return FAILED, f"no worker could start: {self.last_start_error}"
                time.sleep(POLL_S)
                continue
            no_worker_since = None
            self._handle(self.pool.wait(waiting, POLL_S), pending)
        self._flush()
        self.times.units_done_s = time.monotonic() - self.started
        self.log.info("every unit ended: a makespan of %.1f s", self.times.units_done_s)
        return DONE, None

    def _feed(self, pending: PlannedQueue[Worker]) -> None:
        """Every live worker gets units while the queue says it wants one."""
        feed(pending, list(self.workers), time.monotonic(), self._dispatch)

    def _handle(self, ready: list[Pending], pending: PlannedQueue[Worker]) -> None:
        """The results that are ready, with one flush of the books for all of them."""
        began, began_cpu = time.monotonic(), time.thread_time()
        results = 0
        for ref in ready:
            if ref in self.starting:
                self._worker_ready(ref)
            else:
                self._collect(ref, pending)
                results += 1
        if results:
            self._feed(pending)
            self._report_progress()
            spent = time.monotonic() - began
            self.times.bookkeeping_s += spent
            self.times.bookkeeping_cpu_s += time.thread_time() - began_cpu
            self.times.per_unit_s.extend([spent / results] * results)

    def _search_address(self) -> str | None:
        """Where the search computes its pairs: the sweep's Ray when the workers leave it CPUs."""
        if not isinstance(self.pool, RayPool):
            return None
        return self.pool.search_address(self._expected_workers())

    def _ray_pairs(self) -> RayPairs | None:
        """The sweep's Ray computes what is left, once its workers have stopped."""
        return RayPairs() if isinstance(self.pool, RayPool) else None

    def _search_what_is_missing(self) -> None:
        """Pairs of models whose last chunks landed while no driver was looking (a driver killed
        between a worker's write and its own bookkeeping) are computed now; nothing else is."""
        try:
            with self.sessions.begin() as session:
                dataset = session.scalar(select(Dataset).where(Dataset.name == self.dataset))
                SaverSearch(pairs=self._ray_pairs()).refresh(session, dataset)
        except Exception as error:  # noqa: BLE001 - the units are done: shown by `sweep status`
            self.search.fail(f"{type(error).__name__}: {error_line(error)}")

    def _dispatch(self, worker: Worker, unit: QueuedUnit, following: QueuedUnit | None) -> None:
        unit.attempts += 1
        self._note(unit, state=UNIT_RUNNING, attempts=unit.attempts, worker=self.workers[worker])
        shard = self.shards[unit.shard]
        specs = [self.specs[name] for name in unit.models]
        ids = {name: self.model_ids[name] for name in unit.models}
        # The next unit's shard is copied to the node meanwhile.
        prefetch = self.shards[following.shard] if following is not None else None
        ref = self.pool.submit(worker, self.dataset, shard, specs, ids, prefetch, unit.index)
        self.in_flight[ref] = (worker, unit, time.monotonic())

    def _collect(self, ref: Pending, pending: PlannedQueue[Worker]) -> None:
        worker, unit, started = self.in_flight.pop(ref)
        pending.finished(worker, unit, time.monotonic())
        try:
            report = self.pool.result(ref)
        except WorkerLost as error:
            self.log.for_unit(unit.index).warning(
                "worker %s lost: %s", self.workers.pop(worker, "?"), error
            )
            pending.release(worker)
            self._retry(unit, pending, str(error))
            return
        except UnitFailed as error:
            self._retry(unit, pending, str(error))
            return
        seconds = time.monotonic() - started
        self.times.round_trips.append((seconds, report.seconds))
        self._measured.append(report)
        self.search.stored(self.model_ids[name] for name in report.stored + report.skipped)
        images = self.shards[unit.shard].samples * len(report.stored)
        self.images_done += images
        if report.failed:
            unit.models = list(report.failed)  # only the failing models are tried again
            self._note(unit, images=images, seconds=seconds, models=unit.models)
            errors = "; ".join(f"{name}: {why}" for name, why in report.failed.items())
            self._retry(unit, pending, errors)
        else:
            # A unit done on a later attempt keeps the error of the attempt before (history).
            self._note(unit, state=DONE, images=images, seconds=seconds)
            self.units_finished += 1

    def _retry(self, unit: QueuedUnit, pending: PlannedQueue[Worker], error: str) -> None:
        log = self.log.for_unit(unit.index)
        if unit.attempts >= self.options.max_attempts:
            log.warning("failed for good after %d attempts: %s", unit.attempts, error)
            self.failed_units += 1
            self.units_finished += 1
            self._note(unit, state=FAILED, error=error)
        else:
            log.warning("to be retried after attempt %d: %s", unit.attempts, error)
            self._note(unit, state=PENDING, error=error)
            pending.put(unit)

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.progress(
            SweepProgress(
                self.units_finished,
                self.units_total,
                self.images_done,
                self.images_total,
                self.images_done / elapsed,
            )
        )

    def _end_run(self) -> None:
        """Whichever way the units' run ended: the workers stopped, the search's last models
        searched (it is waited for)."""
        self._stop_workers()
        self.search.close()

    def _stop_workers(self) -> None:
        for worker in [*self.workers, *self.starting.values()]:
            self.pool.stop(worker)
        self.workers.clear()
        self.starting.clear()
