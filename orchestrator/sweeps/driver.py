"""The sweep driver: worker actors on a Ray cluster pulling work units from a dynamic queue.

One actor per GPU of the cluster (``num_gpus=1``), or on a cluster without GPUs one per
``cpus_per_worker`` CPUs. Each idle actor gets the largest pending unit, so fast and slow nodes
finish together. Actors write their chunks to the database themselves; the driver only keeps the
books (unit states, attempts, errors, throughput) and hands each model whose last chunk landed to
the incremental search, one result at a time, so each model is searched once.

Failures: an actor that dies (killed, its node lost, a fatal GPU error) loses only its in-flight
unit, which goes back to the queue (a retried unit skips chunks that exist); a replacement actor
starts when the cluster has room for it. A unit that fails ``max_attempts`` times is marked failed
with its last error and the sweep goes on. A driver that dies leaves the sweep running without a
heartbeat; ``sweep resume`` plans the missing chunks again and finishes it.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from cluster.errors import InputError, ServiceError
from cluster.ray_cluster import ray_api, worker_environment
from cluster.settings import Settings
from db.models import Dataset, Sweep, SweepUnit, utc_now
from db.queries import dataset_shards
from orchestrator.sweeps.completion import models_evaluated, store_throughput
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
from search.service import SaverSearch
from workers.report import UnitReport

if TYPE_CHECKING:
    from cluster.ray_cluster import ActorHandle, ObjectRef, RayTaskError

ray = ray_api()  # before Ray is first imported here: token authentication decided

POLL_S = 0.5
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0  # a running sweep without a heartbeat this long has lost its driver
NO_WORKER_TIMEOUT_S = 120.0  # pending work, no worker alive and no room to start one


@dataclass
class SweepProgress:
    units_done: int
    units_total: int
    images_done: int  # images x models
    images_total: int
    images_per_s: float


@dataclass
class _Unit:
    row_id: int
    index: int
    models: list[str]
    shard: int
    attempts: int
    images: int  # samples x models of the unit


def this_driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _driver_alive(sweep: Sweep) -> bool:
    """Whether another driver is running the sweep (same host: its pid; else its heartbeat)."""
    if sweep.state != RUNNING or not sweep.driver or sweep.driver == this_driver():
        return False
    host, _, pid = sweep.driver.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    beat = sweep.heartbeat_at
    if beat is None:
        return False
    if beat.tzinfo is None:  # SQLite returns naive datetimes in UTC
        beat = beat.replace(tzinfo=utc_now().tzinfo)
    return utc_now() - beat < timedelta(seconds=STALE_AFTER_S)


class SweepDriver:
    """Runs one sweep to its end on the Ray cluster this process is connected to."""

    def __init__(
        self,
        sessions: sessionmaker,
        settings: Settings,
        sweep_id: int,
        progress: Callable[[SweepProgress], None] | None = None,
    ) -> None:
        self.sessions, self.settings, self.sweep_id = sessions, settings, sweep_id
        self.progress = progress
        self.actors: dict[ActorHandle, str] = {}  # live actor -> where it runs
        self.starting: dict[ObjectRef, ActorHandle] = {}
        self.idle: list[ActorHandle] = []
        self.in_flight: dict[ObjectRef, tuple[ActorHandle, _Unit, float]] = {}
        self.searched: set[int] = set()
        self.failed_units = 0
        self.images_done = 0
        self.started = time.monotonic()
        # For the scheduling-overhead benchmark: per unit, the driver's round trip and the
        # worker's own time.
        self.round_trips: list[tuple[float, float]] = []
        self.bookkeeping_s = 0.0  # the driver's own time per result: unit rows, search
        self.first_worker_s: float | None = None  # until the first worker was ready
        self.workers_started = 0
        self._beat = 0.0  # when the heartbeat was last written

    # -- the sweep's rows -------------------------------------------------------------------

    def _claim(self) -> deque[_Unit]:
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
            rows = plan(session, sweep)
            units = [
                _Unit(
                    r.id,
                    r.unit_index,
                    r.models,
                    r.shard_index,
                    0,
                    self.shards[r.shard_index].samples * len(r.models),
                )
                for r in rows
            ]
        self.images_total = sum(u.images for u in units)
        self.units_total = len(units)
        return deque(units)

    def _update_unit(self, unit: _Unit, **values) -> None:
        with self.sessions.begin() as session:
            row = session.get(SweepUnit, unit.row_id)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utc_now()

    def _sweep_state(self) -> str:
        with self.sessions.begin() as session:
            sweep = session.get(Sweep, self.sweep_id)
            if time.monotonic() - self._beat > HEARTBEAT_S:
                sweep.heartbeat_at = utc_now()
                self._beat = time.monotonic()
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

    # -- actors -----------------------------------------------------------------------------

    def _actor_resources(self) -> dict:
        """Decided once per run: GPU workers stay GPU workers while nodes come and go."""
        if ray.cluster_resources().get("GPU", 0) >= 1:
            return {"num_gpus": 1, "num_cpus": 1}
        return {"num_gpus": 0, "num_cpus": self.options.cpus_per_worker}

    def _wanted(self, pending: int) -> int:
        useful = pending + len(self.in_flight)
        if len(self.actors) + len(self.starting) >= useful:
            return useful  # enough workers: no need to ask Ray
        total = ray.cluster_resources()
        if self.resources["num_gpus"]:
            slots = int(total.get("GPU", 0))
        else:
            slots = int(total.get("CPU", 0) // self.resources["num_cpus"])
        return max(0, min(slots, self.options.max_workers or slots, useful))

    def _room_for_one(self) -> bool:
        free = ray.available_resources()
        if self.resources["num_gpus"] and free.get("GPU", 0) < 1:
            return False
        return free.get("CPU", 0) >= self.resources["num_cpus"]

    def _start_actors(self, pending: int) -> None:
        while len(self.actors) + len(self.starting) < self._wanted(pending):
            if not self._room_for_one():
                return
            from workers.actor import EvalActor  # imports Ray: after ray_api() above

            # ray.remote's stubs give back the class itself; at runtime it is an ActorClass.
            actor = EvalActor.options(  # type: ignore[attr-defined]
                **self.resources, runtime_env={"env_vars": self.worker_env}
            ).remote(self.options.eval_options())
            self.starting[actor.where.remote()] = actor
            time.sleep(0.05)  # let Ray account for it before the next room check

    def _actor_ready(self, ref: ObjectRef) -> None:
        actor = self.starting.pop(ref)
        try:
            self.actors[actor] = ray.get(ref)
            self.idle.append(actor)
            self.workers_started += 1
            if self.first_worker_s is None:
                self.first_worker_s = time.monotonic() - self.started
        except ray.exceptions.RayError as error:
            self.last_start_error = str(error).strip().splitlines()[0]

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> str:
        """Run the sweep to its end; returns its final state."""
        pending = self._claim()
        self.resources = self._actor_resources()
        if self.options.device.startswith("cuda") and not self.resources["num_gpus"]:
            return self._finish(FAILED, "--device cuda, but the Ray cluster has no GPU")
        self.worker_env = worker_environment(self.settings)
        no_worker_since = None
        try:
            while pending or self.in_flight:
                if self._sweep_state() == CANCELLED:
                    return self._finish(CANCELLED)
                self._start_actors(len(pending))
                while self.idle and pending:
                    self._dispatch(self.idle.pop(), pending.popleft())
                waiting = [*self.in_flight, *self.starting]
                if not waiting:
                    no_worker_since = no_worker_since or time.monotonic()
                    if time.monotonic() - no_worker_since > NO_WORKER_TIMEOUT_S:
                        reason = getattr(self, "last_start_error", "the cluster has no room")
                        return self._finish(FAILED, f"no worker could start: {reason}")
                    time.sleep(POLL_S)
                    continue
                no_worker_since = None
                ready, _ = ray.wait(waiting, num_returns=1, timeout=POLL_S)
                for ref in ready:
                    if ref in self.starting:
                        self._actor_ready(ref)
                    else:
                        self._collect(ref, pending)
        except BaseException:
            self._stop_actors()
            with self.sessions.begin() as session:  # interrupted: resumable, not running
                sweep = session.get(Sweep, self.sweep_id)
                if sweep.state == RUNNING:
                    sweep.state, sweep.driver = QUEUED, None
                    sweep.error = "interrupted; `saverzoo sweep resume` finishes it"
            raise
        self._stop_actors()
        self._search_what_is_missing()
        if self.failed_units:
            return self._finish(FAILED, f"{self.failed_units} work units failed every attempt")
        return self._finish(DONE)

    def _search_what_is_missing(self) -> None:
        """Pairs of models whose last chunks landed while no driver was looking (a driver killed
        between a worker's write and its own bookkeeping) are computed now; nothing else is."""
        with self.sessions.begin() as session:
            dataset = session.scalar(select(Dataset).where(Dataset.name == self.dataset))
            SaverSearch().refresh(session, dataset)

    def _dispatch(self, actor, unit: _Unit) -> None:
        unit.attempts += 1
        self._update_unit(
            unit, state=UNIT_RUNNING, attempts=unit.attempts, worker=self.actors[actor]
        )
        shard = self.shards[unit.shard]
        specs = [self.specs[name] for name in unit.models]
        ids = {name: self.model_ids[name] for name in unit.models}
        ref = actor.run.remote(self.dataset, shard, specs, ids)
        self.in_flight[ref] = (actor, unit, time.monotonic())

    def _collect(self, ref: ObjectRef, pending: deque[_Unit]) -> None:
        began = time.monotonic()
        try:
            self._collect_result(ref, pending)
        finally:
            self.bookkeeping_s += time.monotonic() - began

    def _collect_result(self, ref: ObjectRef, pending: deque[_Unit]) -> None:
        actor, unit, started = self.in_flight.pop(ref)
        try:
            report: UnitReport = ray.get(ref)
        except ray.exceptions.RayActorError as error:  # worker killed, node lost, GPU fatal
            self.actors.pop(actor, None)
            self._retry(unit, pending, f"worker lost ({_first_line(error)})")
            return
        except ray.exceptions.RayTaskError as error:  # inside the unit: shard, database
            self.idle.append(actor)
            self._retry(unit, pending, _task_error(error))
            return
        self.idle.append(actor)
        seconds = time.monotonic() - started
        self.round_trips.append((seconds, report.seconds))
        with self.sessions.begin() as session:
            store_throughput(session, self.model_ids, report.throughput, report.device_type)
            stored = [self.model_ids[name] for name in report.stored + report.skipped]
            fresh = [i for i in stored if i not in self.searched]
            self.searched.update(models_evaluated(session, self.dataset, fresh))
        images = self.shards[unit.shard].samples * len(report.stored)
        self.images_done += images
        if report.failed:
            unit.models = list(report.failed)  # only the failing models are tried again
            self._update_unit(unit, images=images, seconds=seconds, models=unit.models)
            errors = "; ".join(f"{name}: {why}" for name, why in report.failed.items())
            self._retry(unit, pending, errors)
        else:
            # A unit done on a later attempt keeps the error of the attempt before (history).
            self._update_unit(unit, state=DONE, images=images, seconds=seconds)
        self._report_progress()

    def _retry(self, unit: _Unit, pending: deque[_Unit], error: str) -> None:
        if unit.attempts >= self.options.max_attempts:
            self.failed_units += 1
            self._update_unit(unit, state=FAILED, error=error)
        else:
            self._update_unit(unit, state=PENDING, error=error)
            pending.append(unit)
        self._report_progress()

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.progress(
            SweepProgress(
                self._units_finished(),
                self.units_total,
                self.images_done,
                self.images_total,
                self.images_done / elapsed,
            )
        )

    def _units_finished(self) -> int:
        with self.sessions.begin() as session:
            return session.scalar(
                select(func.count()).where(
                    SweepUnit.sweep_id == self.sweep_id, SweepUnit.state.in_((DONE, FAILED))
                )
            )

    def _stop_actors(self) -> None:
        for actor in [*self.actors, *self.starting.values()]:
            ray.kill(actor, no_restart=True)
        self.actors.clear()
        self.starting.clear()
        self.idle.clear()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _task_error(error: RayTaskError) -> str:
    cause = error.cause if getattr(error, "cause", None) is not None else error
    if isinstance(cause, ServiceError | InputError):
        return str(cause)
    return f"{type(cause).__name__}: {_first_line(cause)}"
