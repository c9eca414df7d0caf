"""Re-evaluation when timm releases models: compare, supersede, sweep what is new or changed.

One pass (``watch_once``) on one dataset, in the caller's transaction:
1. lock the dataset row, so concurrent watchers of a dataset take turns (the second then finds
   the first one's sweep running and submits nothing);
2. read the installed timm's whole registry and record it as a snapshot when it differs from
   every snapshot of that timm version; the patterns then scope what is considered;
3. decide per pretrained tag (``plan_changes``, pure): new to the dataset, new weights (its weights
   identity differs from the one evaluated), new data config (against the last snapshot), or skip
   (up to date, already in a queued or running sweep);
4. supersede the stale models: the row is renamed ``name@weights`` and marked, its predictions kept
   for the record and left out of every search, and the datasets it was on are searched again
   (its pairs go, the affected bases' best savers are recomputed);
5. submit one sweep of the changed tags, with a unique key that a racing watcher cannot repeat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import timm
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cluster.errors import InputError
from db.models import (
    Dataset,
    Model,
    PredictionChunk,
    RegistryEntry,
    RegistrySnapshot,
    Sweep,
    utc_now,
)
from db.queries import complete_model_ids, get_dataset, lock_dataset_search
from orchestrator.sweeps.store import QUEUED, RUNNING, SweepOptions, submit
from search.service import SaverSearch
from workers import registry
from workers.registry import Entry

NEW, NEW_WEIGHTS, NEW_DATA_CONFIG = "new", "new weights", "new data config"
SUBMITTER = "saverzoo watch"


@dataclass(frozen=True)
class Evaluated:
    """What the database knows of a tag: the weights evaluated, and whether it is complete."""

    weights_id: str | None
    complete: bool


@dataclass
class WatchSummary:
    dataset: str
    timm_version: str
    entries: int
    snapshot_id: int
    new_snapshot: bool
    changes: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    skipped: dict[str, int] = field(default_factory=dict)  # why -> how many
    superseded: list[str] = field(default_factory=list)
    sweep_id: int | None = None

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "timm_version": self.timm_version,
            "entries": self.entries,
            "snapshot": self.snapshot_id,
            "new_snapshot": self.new_snapshot,
            "changes": [{"model": name, "why": why} for name, why in self.changes],
            "skipped": self.skipped,
            "superseded": self.superseded,
            "sweep": self.sweep_id,
        }


def plan_changes(
    entries: Sequence[Entry],
    evaluated: dict[str, Evaluated],
    previous: dict[str, dict],
    active: dict[str, int],
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(tag, why) of every tag to sweep, and how many were skipped for each reason.

    ``previous``: data configs in the last snapshot; ``active``: tags in queued or running sweeps.
    A tag evaluated before weights identities were recorded (``weights_id`` None) is taken as
    evaluated with today's weights.
    """
    changes: list[tuple[str, str]] = []
    skipped: dict[str, int] = {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for e in entries:
        known = evaluated.get(e.name)
        if e.name in active:
            skip("in a queued or running sweep")
        elif known is not None and known.weights_id not in (None, e.weights_id):
            changes.append((e.name, NEW_WEIGHTS))
        elif known is not None and e.name in previous and previous[e.name] != e.data_config:
            changes.append((e.name, NEW_DATA_CONFIG))
        elif known is None or not known.complete:
            changes.append((e.name, NEW))
        else:
            skip("up to date")
    return changes, skipped


def watch_once(
    session: Session,
    dataset_name: str,
    patterns: Sequence[str],
    options: SweepOptions,
) -> WatchSummary:
    """One pass of the watcher on a dataset (see the module's docstring); nothing is started."""
    dataset = get_dataset(session, dataset_name)
    lock_dataset_search(session, dataset)
    session.refresh(dataset)
    everything = registry.installed()
    entries = [e for e in everything if any(fnmatchcase(e.name, p) for p in patterns)]
    if not entries:
        raise InputError(
            f"--models {', '.join(patterns)} matches no pretrained model of timm {timm.__version__}"
        )
    snapshot, new_snapshot, previous = record_snapshot(session, everything)
    names = [e.name for e in entries]
    models = _models_named(session, names)
    complete = set(complete_model_ids(session, dataset))
    evaluated = {
        name: Evaluated(m.weights_id, m.id in complete)
        for name, m in models.items()
        if m.superseded_at is None
    }
    changes, skipped = plan_changes(entries, evaluated, previous, _active(session, dataset.id))
    summary = WatchSummary(
        dataset.name, timm.__version__, len(entries), snapshot.id, new_snapshot, changes, skipped
    )
    if not changes:
        return summary
    stale = [models[name] for name, why in changes if why in (NEW_WEIGHTS, NEW_DATA_CONFIG)]
    summary.superseded = supersede(session, stale)
    sweep = submit(session, dataset.name, [name for name, _ in changes], options)
    sweep.submitted_by = SUBMITTER
    sweep.key = sweep_key(session, dataset.id, changes)
    session.flush()  # a racing watcher with the same key fails here (unique), rolled back
    summary.sweep_id = sweep.id
    return summary


def record_snapshot(
    session: Session, entries: Sequence[Entry]
) -> tuple[RegistrySnapshot, bool, dict[str, dict]]:
    """This registry's snapshot (made if new), whether it is new, and the data configs of the
    latest snapshot before it. Two watchers recording the same registry at once: one row."""
    version, fingerprint = timm.__version__, registry.digest(entries)
    latest = session.scalar(select(RegistrySnapshot).order_by(RegistrySnapshot.id.desc()).limit(1))
    previous = {} if latest is None else _data_configs(session, latest.id)
    same = _snapshot(session, version, fingerprint)
    if same is not None:
        return same, False, previous
    snapshot = RegistrySnapshot(timm_version=version, digest=fingerprint, num_entries=len(entries))
    snapshot.entries = [
        RegistryEntry(name=e.name, weights=e.weights, data_config=e.data_config) for e in entries
    ]
    try:
        with session.begin_nested():
            session.add(snapshot)
    except IntegrityError:  # recorded by a watcher of another dataset meanwhile
        theirs = _snapshot(session, version, fingerprint)
        assert theirs is not None  # the row this insert collided with
        return theirs, False, previous
    return snapshot, True, previous


def _snapshot(session: Session, version: str, fingerprint: str) -> RegistrySnapshot | None:
    return session.scalar(
        select(RegistrySnapshot).where(
            RegistrySnapshot.timm_version == version, RegistrySnapshot.digest == fingerprint
        )
    )


def _data_configs(session: Session, snapshot_id: int) -> dict[str, dict]:
    return dict(
        session.execute(
            select(RegistryEntry.name, RegistryEntry.data_config).where(
                RegistryEntry.snapshot_id == snapshot_id
            )
        ).all()
    )


def _models_named(session: Session, names: list[str]) -> dict[str, Model]:
    models = {}
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        models.update(
            {m.name: m for m in session.scalars(select(Model).where(Model.name.in_(chunk)))}
        )
    return models


def _active(session: Session, dataset_id: int) -> dict[str, int]:
    """Tags in queued or running sweeps on the dataset, and the sweep."""
    active = {}
    for sweep in session.scalars(
        select(Sweep).where(Sweep.dataset_id == dataset_id, Sweep.state.in_((QUEUED, RUNNING)))
    ):
        active.update(dict.fromkeys(sweep.models, sweep.id))
    return active


def supersede(session: Session, models: Sequence[Model]) -> list[str]:
    """Mark stale models (renamed ``name@<hash>``, unique per row) and their resolution
    variants (the same weights), and search their datasets again."""
    from workers.spec import split_variant

    stale_names = {m.name for m in models}
    variants = session.scalars(
        select(Model).where(
            Model.name.contains("+", autoescape=True), Model.superseded_at.is_(None)
        )
    ).all()
    models = [*models, *(v for v in variants if split_variant(v.name)[0] in stale_names)]
    renamed = []
    for model in models:
        stale = f"{model.id}|{model.weights_id}".encode()
        tag = hashlib.blake2b(stale, digest_size=5).hexdigest()
        model.name, model.superseded_at = f"{model.name}@{tag}", utc_now()
        renamed.append(model.name)
    session.flush()
    dataset_ids = session.scalars(
        select(PredictionChunk.dataset_id)
        .where(PredictionChunk.model_id.in_([m.id for m in models]))
        .distinct()
    ).all()
    search = SaverSearch()
    for dataset_id in dataset_ids:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None  # its predictions were just read
        search.refresh(session, dataset)
    return renamed


def sweep_key(session: Session, dataset_id: int, changes: list[tuple[str, str]]) -> str:
    """The same for two watchers racing from the same state; new for a later retry (the count of
    the dataset's sweeps has grown by then)."""
    count = session.scalar(
        select(func.count()).select_from(Sweep).where(Sweep.dataset_id == dataset_id)
    )
    what = hashlib.blake2b(registry.canonical({"c": sorted(changes)}).encode(), digest_size=12)
    return f"watch:{dataset_id}:{count}:{what.hexdigest()}"
