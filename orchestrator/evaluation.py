"""Evaluate models on a registered dataset in this process, shard by shard, and store the results.

Each shard's chunks are written in a transaction of their own (an upsert on the chunk key, so a
rerun replaces and never duplicates); once a model has every shard, the incremental saver search
takes it in. A model that cannot be loaded is reported and the others go on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import timm
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cluster.errors import InputError
from db.models import Dataset, DatasetShard, Model, ModelThroughput, utc_now
from db.queries import complete_model_ids, get_dataset, upsert_model
from db.upsert import upsert
from search.service import SaverSearch
from workers.evaluate import EvalOptions, Throughput, device_type
from workers.models import ModelLoadError, ModelSpec, timm_spec
from workers.profile import Profile
from workers.registry import canonical, entry, load_plugins
from workers.unit import ShardTask, UnitRunner


def split_patterns(values: Sequence[str]) -> list[str]:
    """``--models a,b --models 'convnext*' --models @zoo.txt`` as one list of names/patterns.

    ``@FILE`` reads names or patterns from a file, one per line (``#`` starts a comment).
    """
    parts = []
    for value in values:
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                lines = path.read_text().splitlines()
            except OSError as error:
                raise InputError(
                    f"--models {value}: cannot read {path} ({error.strerror})"
                ) from None
            parts.extend(line.split("#", 1)[0] for line in lines)
        else:
            parts.extend(value.split(","))
    return [part.strip() for part in parts if part.strip()]


def spec_of(model: Model) -> ModelSpec:
    """A registered model's spec, as ``models add`` or an earlier evaluation stored it."""
    source = "random" if model.random_weights else model.source
    overrides = (model.data_config or {}) if model.source == "checkpoint" else {}
    return ModelSpec(
        model.name, model.arch or model.name, source, model.checkpoint, model.num_classes, overrides
    )


def resolve_specs(
    session: Session,
    patterns: Sequence[str],
    *,
    random_weights: bool,
    exclude: Sequence[str] = (),
) -> list[ModelSpec]:
    """Registered checkpoint models by name or pattern, else timm names and patterns, minus
    the names that match an ``exclude`` pattern."""
    load_plugins()
    registered = {
        m.name: m
        for m in session.scalars(
            select(Model).where(Model.source == "checkpoint", Model.superseded_at.is_(None))
        )
    }
    specs: dict[str, ModelSpec] = {}
    for pattern in split_patterns(patterns):
        local = [name for name in registered if fnmatch.fnmatchcase(name, pattern)]
        if local:
            specs.update({name: spec_of(registered[name]) for name in local})
            continue
        if any(ch in pattern for ch in "*?["):
            # Patterns name pretrained tags unless random weights are asked for.
            names = timm.list_models(pattern, pretrained=not random_weights)
            if not names:
                raise InputError(f"--models {pattern!r} matches no timm model")
        else:
            names = [pattern]
        for name in names:
            specs[name] = timm_spec(name, random_weights=random_weights)
    excluded = split_patterns(exclude)
    specs = {
        name: spec
        for name, spec in specs.items()
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in excluded)
    }
    if not specs:
        raise InputError(
            "--models names no model" + (" once --exclude is applied" if excluded else "")
        )
    return list(specs.values())


def register(session: Session, spec: ModelSpec, config: dict, cost: Profile) -> Model:
    """Store the model's description: source, cost, data config (the same model: updated)."""
    return upsert_model(
        session,
        name=spec.name,
        arch=spec.arch,
        source="checkpoint" if spec.source == "checkpoint" else "timm",
        gmacs=cost.gmacs,
        params_m=cost.params_m,
        input_size=list(config["input_size"]),
        crop_pct=config.get("crop_pct"),
        interpolation=config.get("interpolation"),
        data_config={k: _plain(v) for k, v in config.items()},
        timm_version=timm.__version__,
        checkpoint=spec.checkpoint,
        num_classes=spec.num_classes,
        random_weights=spec.random_weights,
        weights_id=weights_id(spec),
    )


def weights_id(spec: ModelSpec) -> str | None:
    """What identifies the weights evaluated: timm's pretrained cfg fields, or the file."""
    if spec.source == "checkpoint":
        return canonical({"checkpoint": spec.checkpoint})
    if spec.source == "timm" and "." in spec.name:
        return entry(spec.name).weights_id
    return None  # random weights, or an architecture's default tag (resolved by timm at load)


def _plain(value: object) -> object:  # JSON-friendly tuples
    return list(value) if isinstance(value, tuple) else value


def register_all(
    session: Session, described: Sequence[tuple[ModelSpec, dict, Profile]]
) -> tuple[dict[str, int], list[int]]:
    """Register models; their ids by name, and the ids of those whose cost changed."""
    names = [spec.name for spec, _, _ in described]
    costs_before = dict(
        session.execute(select(Model.name, Model.gmacs).where(Model.name.in_(names))).all()
    )
    ids = {spec.name: register(session, spec, config, cost).id for spec, config, cost in described}
    changed = [
        ids[spec.name]
        for spec, _, cost in described
        if spec.name in costs_before and costs_before[spec.name] != cost.gmacs
    ]
    return ids, changed


def dataset_shards(session: Session, dataset: Dataset) -> list[ShardTask]:
    return [
        ShardTask(s.shard_index, s.url, s.num_samples)
        for s in session.scalars(
            select(DatasetShard)
            .where(DatasetShard.dataset_id == dataset.id)
            .order_by(DatasetShard.shard_index)
        )
    ]


def models_evaluated(
    session: Session,
    dataset_name: str,
    model_ids: Sequence[int],
    cost_changed: Sequence[int] = (),
) -> list[int]:
    """Hand the models that now have every chunk to the incremental search (the rest wait)."""
    dataset = get_dataset(session, dataset_name)
    complete = set(complete_model_ids(session, dataset))
    finished = [i for i in model_ids if i in complete]
    search = SaverSearch()
    search.models_completed(session, dataset, finished)
    # A cost is the model's: the other datasets it is evaluated on move with it.
    search.costs_changed(session, list(cost_changed), skip={dataset.id})
    return finished


@dataclass
class EvaluationSummary:
    dataset: str
    evaluated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> why it was not evaluated
    samples: int = 0
    undecodable: int = 0


def evaluate_dataset(
    sessions: sessionmaker,
    dataset_name: str,
    specs: Sequence[ModelSpec],
    *,
    options: EvalOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationSummary:
    """Evaluate ``specs`` on every shard of the dataset; store chunks shard by shard.

    A model that fails to load or to run is named in the summary and the others finish; a
    model that failed part-way is not complete, so the search leaves it out.
    """
    options = options or EvalOptions()
    summary = EvaluationSummary(dataset_name)
    runner = UnitRunner(sessions, options)
    loaded = []
    for spec in specs:
        try:
            loaded.append(runner.load(spec))
        except ModelLoadError as error:
            summary.failed[spec.name] = str(error)
    if not loaded:
        return summary
    with sessions.begin() as session:
        shards = dataset_shards(session, get_dataset(session, dataset_name))
        ids, cost_changed = register_all(session, [(m.spec, m.config, m.profile) for m in loaded])
    running = [model.spec for model in loaded]
    measured: dict[str, Throughput] = {}
    for done, shard in enumerate(shards, start=1):
        report = runner.run(dataset_name, shard, running, ids, skip_done=False)
        summary.failed.update(report.failed)
        running = [spec for spec in running if spec.name not in summary.failed]
        for name, throughput in report.throughput.items():
            measured.setdefault(name, Throughput()).add(throughput)
        summary.samples += report.samples
        summary.undecodable += report.undecodable
        if progress:
            progress(done, len(shards))
    with sessions.begin() as session:
        store_throughput(session, ids, measured, device_type(options.device))
        models_evaluated(session, dataset_name, list(ids.values()), cost_changed)
    summary.evaluated = [spec.name for spec in running]
    return summary


def store_throughput(
    session: Session,
    ids: dict[str, int],
    measured: dict[str, Throughput],
    device: str,
) -> None:
    """The latest measurement per (model, device type) replaces the one before."""
    upsert(
        session,
        ModelThroughput,
        [
            {
                "model_id": ids[name],
                "device_type": device,
                "batch_size": throughput.batch_size,
                "images_per_s": throughput.images_per_s,
                "peak_memory_mb": throughput.peak_memory_mb,
                "measured_at": utc_now(),
            }
            for name, throughput in measured.items()
            if throughput.images
        ],
        key=["model_id", "device_type"],
    )
