"""Sweeps in the database: submit, plan, report, cancel (Ray: ``orchestrator.sweeps.driver``).

Submitting checks everything it can before a sweep row exists: the dataset, the model patterns
(expanded and described on the ``meta`` device: data config and cost, no weights) and that the
dataset's shards can be read. What is done is never stored with the sweep: planning compares the
sweep's models with the prediction chunks that exist, so a resumed or re-submitted sweep plans
exactly the missing (model, shard) work.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cluster import validate
from cluster.errors import InputError
from db.models import Dataset, Model, PredictionChunk, Sweep, SweepUnit, utc_now
from db.queries import Conflict, NotFound, get_dataset
from orchestrator.sweeps.plan import DEFAULT_BUNDLE_SECONDS, PlannedModel, Unit, plan_units
from search.service import SaverSearch
from workers.preprocess_key import preprocessing_key

if TYPE_CHECKING:  # torch and timm only where a sweep is planned
    from workers.evaluate import EvalOptions
    from workers.spec import ModelSpec

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
PENDING, UNIT_RUNNING = "pending", "running"
REQUEST_KEY = "request"  # Sweep.key of a request sent with an idempotency key; watch uses "watch"


@dataclass(frozen=True, kw_only=True)
class SweepOptions:
    """What a sweep's workers do, and how the driver schedules them."""

    device: str = "cpu"
    mode: str | None = None  # None: fast on a GPU, reference on the CPU
    batch_size: int = 64
    random_weights: bool = False
    compile: bool = False
    max_attempts: int = 3  # a unit that fails this often is marked failed
    bundle_gmacs: float | None = None  # None: bundles by modelled time (bundle_seconds)
    cpus_per_worker: int = 1  # on a cluster without GPUs: one worker per this many CPUs
    max_workers: int | None = None
    bundle_seconds: float = DEFAULT_BUNDLE_SECONDS

    def eval_options(self) -> EvalOptions:
        from workers.evaluate import EvalOptions

        return EvalOptions.choose(
            self.device, self.mode, self.batch_size, compile=self.compile, check_device=False
        )

    def check(self) -> None:
        self.eval_options()  # raises InputError on a bad mode, device or batch size
        if self.device.startswith("cuda:"):
            raise InputError(
                f"--device {self.device}: each of a sweep's workers has a GPU of its own; "
                "use --device cuda"
            )
        if self.max_attempts < 1:
            raise InputError(f"--max-attempts {self.max_attempts}: use 1 or more")
        if self.cpus_per_worker < 1:
            raise InputError(f"--cpus-per-worker {self.cpus_per_worker}: use 1 or more")
        if self.max_workers is not None and self.max_workers < 1:
            raise InputError(f"--workers {self.max_workers}: use 1 or more")
        if self.bundle_gmacs is not None:
            validate.number(self.bundle_gmacs, "--bundle-gmacs", low=0.0, high=1e9)
        validate.number(self.bundle_seconds, "--bundle-seconds", low=0.0, high=86400.0)


def submit(
    session: Session,
    dataset_name: str,
    patterns: Sequence[str],
    options: SweepOptions,
    *,
    exclude: Sequence[str] = (),
    input_sizes: Sequence[int] = (),
) -> Sweep:
    """A queued sweep, its models (and their resolution variants at ``input_sizes``) registered
    with their costs; bad input raises InputError."""
    from workers.build import describe, with_variants
    from workers.identity import register_all, resolve_specs
    from workers.spec import ModelLoadError

    options.check()
    dataset = get_dataset(session, dataset_name)
    check_readable(session, dataset)  # before the models are described: it fails fastest
    specs = resolve_specs(session, patterns, random_weights=options.random_weights, exclude=exclude)
    try:
        specs = with_variants(specs, input_sizes)
    except ModelLoadError as error:
        raise InputError(str(error)) from None
    described = []
    for spec in specs:
        try:
            described.append((spec, *describe(spec)))
        except ModelLoadError as error:
            raise InputError(f"model {spec.name!r}: {error}") from None
    _ids, cost_changed = register_all(session, described)
    SaverSearch().costs_changed(session, cost_changed, skip=set())
    sweep = Sweep(
        dataset_id=dataset.id,
        submitted_by=_user(),
        model_patterns=list(patterns),
        models=[spec.name for spec in specs],
        options=asdict(options),
        state=QUEUED,
    )
    session.add(sweep)
    session.flush()
    return sweep


def submit_once(
    session: Session,
    request_key: str,
    dataset_name: str,
    patterns: Sequence[str],
    options: SweepOptions,
    *,
    exclude: Sequence[str] = (),
    input_sizes: Sequence[int] = (),
) -> tuple[Sweep, bool]:
    """The sweep a client's key submitted, and whether it is new: a repeat of the same request
    finds the first one; the same key with another request raises ``Conflict``.

    The key is stored in ``Sweep.key`` (unique) as ``request:<key digest>:<request digest>``, so
    two racing identical requests make one row: the second one's flush fails (IntegrityError).
    """
    prefix = f"{REQUEST_KEY}:{_digest(validate.request_key(request_key))}:"
    wanted = prefix + _digest(_request(dataset_name, patterns, exclude, options, input_sizes))
    earlier = session.scalar(select(Sweep).where(Sweep.key.startswith(prefix)))
    if earlier is not None and earlier.key != wanted:
        raise Conflict(
            f"the idempotency key {request_key!r} was used for sweep {earlier.id}, a different "
            "request; send a new key for a new sweep"
        )
    if earlier is not None:
        return earlier, False
    sweep = submit(
        session, dataset_name, patterns, options, exclude=exclude, input_sizes=input_sizes
    )
    sweep.key = wanted
    session.flush()
    return sweep, True


def keyed_sweep(session: Session, request_key: str) -> Sweep | None:
    """The sweep a client's key submitted, if any (a racing request's, after an IntegrityError)."""
    prefix = f"{REQUEST_KEY}:{_digest(request_key)}:"
    return session.scalar(select(Sweep).where(Sweep.key.startswith(prefix)))


def _request(
    dataset_name: str,
    patterns: Sequence[str],
    exclude: Sequence[str],
    options: SweepOptions,
    input_sizes: Sequence[int] = (),
) -> str:
    """What defines a sweep request, canonical: the same request gives the same text."""
    what: dict[str, object] = {
        "dataset": dataset_name,
        "models": list(patterns),
        "exclude": list(exclude),
        "options": asdict(options),
    }
    if input_sizes:  # absent when none: keys of requests made before the option stay valid
        what["input_sizes"] = sorted(input_sizes)
    return json.dumps(what, sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container: say so rather than fail
        return "unknown"


def check_readable(session: Session, dataset: Dataset) -> None:
    """Open the dataset's first shard: refused credentials or a dead store fail here, at once."""
    from db.queries import dataset_shards
    from workers.shards import open_shard

    shards = dataset_shards(session, dataset)
    if not shards or not any(shard.url for shard in shards):
        raise InputError(
            f"dataset {dataset.name!r} has no shards to evaluate (it was imported from "
            "records); sweep a dataset registered from its shards (`saverzoo datasets add`)"
        )
    missing = [shard.index for shard in shards if not shard.url]
    if missing:
        raise InputError(
            f"dataset {dataset.name!r}: shards {', '.join(map(str, missing[:5]))} have no URL; "
            "register its shards again with `saverzoo datasets add`"
        )
    stream = open_shard(shards[0].url)  # ShardError (a ServiceError) names the shard and cause
    stream.close()


MAX_ROW_ID = 2**63 - 1  # the largest key PostgreSQL's bigint and SQLite's integer hold


def get_sweep(session: Session, sweep_id: int) -> Sweep:
    # An id no database column can hold names no sweep: asking would be the driver's overflow.
    sweep = session.get(Sweep, sweep_id) if 1 <= sweep_id <= MAX_ROW_ID else None
    if sweep is None:
        raise NotFound(f"no sweep {sweep_id}; `saverzoo sweep list` shows the sweeps")
    return sweep


def dataset_of(session: Session, sweep: Sweep) -> Dataset:
    dataset = session.get(Dataset, sweep.dataset_id)
    assert dataset is not None  # a foreign key: a dataset is deleted with its sweeps
    return dataset


def options_of(sweep: Sweep) -> SweepOptions:
    return SweepOptions(**sweep.options)


def sweep_specs(session: Session, sweep: Sweep) -> tuple[list[ModelSpec], dict[str, int]]:
    """The sweep's models as specs, and their ids."""
    from workers.identity import spec_of

    models = session.scalars(select(Model).where(Model.name.in_(sweep.models))).all()
    random = options_of(sweep).random_weights
    specs = []
    for model in models:
        spec = spec_of(model)
        if random and spec.source == "timm":
            spec = replace(spec, source="random")
        specs.append(spec)
    return specs, {model.name: model.id for model in models}


def done_work(session: Session, dataset: Dataset, model_ids: dict[str, int]) -> set[tuple]:
    """(model name, shard index) of every chunk that exists for these models."""
    names = {i: name for name, i in model_ids.items()}
    rows = session.execute(
        select(PredictionChunk.model_id, PredictionChunk.shard_index).where(
            PredictionChunk.dataset_id == dataset.id,
            PredictionChunk.model_id.in_(list(names)),
        )
    )
    return {(names[model_id], shard) for model_id, shard in rows}


def _planned_models(session: Session, sweep: Sweep) -> list[PlannedModel]:
    """The sweep's models as the planner sees them: cost, size and preprocessing."""
    models = session.scalars(select(Model).where(Model.name.in_(sweep.models))).all()
    return [
        PlannedModel(m.name, preprocessing_key(m.data_config), m.gmacs, m.params_m) for m in models
    ]


@dataclass(frozen=True)
class SweepPlan:
    units: list[tuple[SweepUnit, Unit]]  # each row with its planned unit (its modelled time)
    models: list[PlannedModel]


def plan(session: Session, sweep: Sweep, workers: int | None = None) -> SweepPlan:
    """Replace the sweep's units by the missing work, planned afresh (largest first) for
    ``workers`` workers (None: bundles by the time budget alone)."""
    from db.queries import dataset_shards

    dataset = dataset_of(session, sweep)
    planned = _planned_models(session, sweep)
    shards = dataset_shards(session, dataset)
    ids = session.execute(select(Model.name, Model.id).where(Model.name.in_(sweep.models)))
    done = done_work(session, dataset, dict(ids.all()))  # SQLAlchemy 2.1: a Result is no mapping
    options = options_of(sweep)
    units = plan_units(planned, shards, done, options.bundle_gmacs, options.bundle_seconds, workers)
    session.execute(delete(SweepUnit).where(SweepUnit.sweep_id == sweep.id))
    rows = [
        SweepUnit(
            sweep_id=sweep.id,
            unit_index=index,
            models=list(unit.models),
            shard_index=unit.shard,
            gmacs=unit.gmacs,
            state=PENDING,
            attempts=0,
            images=0,
            seconds=0.0,
        )
        for index, unit in enumerate(units)
    ]
    session.add_all(rows)
    session.flush()
    return SweepPlan(list(zip(rows, units, strict=True)), planned)


def cancel(session: Session, sweep_id: int) -> Sweep:
    """Mark a sweep cancelled; its driver stops its workers at its next look (within a second)."""
    sweep = get_sweep(session, sweep_id)
    if sweep.state in FINISHED:
        raise InputError(f"sweep {sweep_id} is {sweep.state} already")
    sweep.state = CANCELLED
    sweep.finished_at = utc_now()
    return sweep


def list_sweeps(session: Session) -> list[dict]:
    sweeps = session.scalars(select(Sweep).order_by(Sweep.id)).all()
    names = dict(session.execute(select(Dataset.id, Dataset.name)).all())
    return [
        {
            "id": s.id,
            "dataset": names.get(s.dataset_id),
            "state": s.state,
            "models": len(s.models),
            "submitted_by": s.submitted_by,
            "submitted_at": _iso(s.submitted_at),
            "finished_at": _iso(s.finished_at),
        }
        for s in sweeps
    ]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def status(session: Session, sweep_id: int) -> dict:
    """Per-model progress (chunks present of shards), throughput, ETA, failures, and on
    ImageNet-1k validation the models whose top-1 is far from timm's published figure."""
    from db.queries import dataset_shards
    from orchestrator.answers import accuracy_checks

    sweep = get_sweep(session, sweep_id)
    dataset = dataset_of(session, sweep)
    _, ids = sweep_specs(session, sweep)
    shards = dataset_shards(session, dataset)
    done = done_work(session, dataset, ids)
    units = session.scalars(select(SweepUnit).where(SweepUnit.sweep_id == sweep.id)).all()
    images = sum(u.images for u in units)
    seconds = sum(u.seconds for u in units)
    remaining_gmacs = sum(u.gmacs for u in units if u.state in (PENDING, UNIT_RUNNING))
    done_gmacs = sum(u.gmacs for u in units if u.state == DONE)
    rate = done_gmacs / seconds if seconds else None  # GMACs per worker-second
    workers = max(1, len({u.worker for u in units if u.state == UNIT_RUNNING}))
    by_state = dict(
        session.execute(
            select(SweepUnit.state, func.count())
            .where(SweepUnit.sweep_id == sweep.id)
            .group_by(SweepUnit.state)
        ).all()
    )
    return {
        "id": sweep.id,
        "dataset": dataset.name,
        "state": sweep.state,
        "error": sweep.error,
        "search_error": sweep.search_error,  # the saver search failed during its last run
        "submitted_by": sweep.submitted_by,
        "submitted_at": _iso(sweep.submitted_at),
        "finished_at": _iso(sweep.finished_at),
        "driver": sweep.driver,
        "heartbeat_at": _iso(sweep.heartbeat_at),
        "options": sweep.options,
        "models": {
            name: {
                "shards_done": sum((name, s.index) in done for s in shards),
                "shards": len(shards),
            }
            for name in sweep.models
        },
        "units": {state: by_state.get(state, 0) for state in (PENDING, UNIT_RUNNING, DONE, FAILED)},
        "images_per_worker_s": images / seconds if seconds else None,
        "eta_s": remaining_gmacs / rate / workers if rate and sweep.state == RUNNING else None,
        "accuracy_warnings": accuracy_checks(session, dataset, list(ids.values())),
        "failures": [  # units not done whose last attempt failed
            {"models": u.models, "shard": u.shard_index, "attempts": u.attempts, "error": u.error}
            for u in units
            if u.error and u.state != DONE
        ],
        "retried_units": sum(u.attempts > 1 and u.state == DONE for u in units),
    }
