"""Register datasets of WebDataset shards: shards, per-shard keys and labels, failed samples.

Shard patterns use a brace notation of saverzoo's own, expanded here and nowhere else: ``{N..M}``
(ascending, zero-padded as written) and ``{a,b,c}``, several patterns joined with ``::``. It is
exactly what ``cluster.validate.pattern_size`` counts, so the cap on the number of shards holds
before anything is expanded. webdataset's ``expand_urls`` is not used: it also substitutes
``${VAR}`` from the environment after any count, and its brace library turns a whole range into a
list before yielding the first URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.errors import InputError
from cluster.validate import (
    MAX_CLASSES,
    class_indices,
    integer,
    shard_url,
    unique_keys,
)
from cluster.validate import name as valid_name
from db.arrays import from_npy
from db.models import Dataset, DatasetShard
from db.queries import add_shard, find_dataset, keys_digest, refuse_case_twin
from search.selection import centipoints
from workers.shard_writer import WrittenShard
from workers.shards import decode_problem, read_shard


class ShardContents(Protocol):
    """What registration compares of a shard: its keys and labels, in order."""

    @property
    def keys(self) -> list[str]: ...

    @property
    def labels(self) -> list[int]: ...


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    shard_urls: str  # brace notation
    num_classes: int | None  # None: the largest label + 1
    label_source: str
    imagenet_val: bool = False  # ImageNet-1k validation: top-1 checked against timm's figures


def check_shard_list(urls: list[str], max_shards: int) -> list[str]:
    """A list of shard URLs (a folder's tar files) under the same rules as a pattern."""
    if len(urls) > max_shards:
        raise InputError(
            f"{len(urls):,} shards, more than the {max_shards:,} allowed (setting "
            "SAVERZOO_MAX_SHARDS)"
        )
    return [shard_url(url) for url in urls]


def read_for_registration(
    urls: list[str], progress: Callable[[int, int], None] | None = None
) -> list[WrittenShard]:
    """Keys, labels and undecodable samples of existing shards, read through once."""
    shards = []
    for index, url in enumerate(urls):
        keys, labels, failed = [], [], {}
        for sample in read_shard(url):
            keys.append(sample.key)
            labels.append(sample.label)
            if (problem := decode_problem(sample.jpeg)) is not None:
                failed[sample.key] = problem
        shards.append(WrittenShard(index, url, keys, labels, failed))
        if progress:
            progress(index + 1, len(urls))
    return shards


def _same_samples(session: Session, dataset: Dataset, shards: Sequence[ShardContents]) -> bool:
    """Whether the registered dataset holds exactly these keys and labels, shard by shard."""
    stored = session.scalars(
        select(DatasetShard)
        .where(DatasetShard.dataset_id == dataset.id)
        .order_by(DatasetShard.shard_index)
    ).all()
    return len(stored) == len(shards) and all(
        row.keys_digest == keys_digest(shard.keys)
        and np.array_equal(from_npy(row.labels), np.asarray(shard.labels))
        for row, shard in zip(stored, shards, strict=True)
    )


def check_name(session: Session, name: str, shards: Sequence[ShardContents]) -> None:
    """Refuse, before anything is written, a name registered with other samples or labels."""
    existing = find_dataset(session, name)
    if existing is not None and not _same_samples(session, existing, shards):
        raise InputError(
            f"dataset {name!r} is registered with other samples or labels; choose another --name"
        )


def checked_labels(spec: DatasetSpec, shards: Sequence[ShardContents]) -> tuple[np.ndarray, int]:
    """All labels, and the class count, once both fit what the database stores (int16 classes).

    Sample keys must be unique across the dataset: a held-out split picks samples by key.
    """
    unique_keys((key for shard in shards for key in shard.keys), f"dataset {spec.name!r}")
    what = f"labels of dataset {spec.name!r}"
    parts = [class_indices(np.asarray(s.labels), what) for s in shards]  # before any narrowing
    labels = np.concatenate([p.astype(np.int64) for p in parts]) if parts else np.zeros(0)
    if len(labels) == 0:
        raise InputError(f"dataset {spec.name!r} would have no samples")
    if spec.num_classes is None:
        num_classes = int(labels.max()) + 1
    else:
        num_classes = integer(spec.num_classes, "--num-classes", 1, MAX_CLASSES)
    class_indices(labels, what, num_classes)
    return labels, num_classes


def register(
    session: Session,
    spec: DatasetSpec,
    shards: list[WrittenShard],
    *,
    budgets: list[float],
    holdout_fraction: float,
) -> tuple[Dataset, bool]:
    """Create the dataset, or confirm it holds exactly these samples; returns (it, created).

    A dataset registered again with the same samples and labels takes the new shard locations
    (shards moved) and the new record of samples that do not decode.
    """
    valid_name(spec.name, "dataset name")
    labels, num_classes = checked_labels(spec, shards)
    check_name(session, spec.name, shards)
    existing = find_dataset(session, spec.name)
    if existing is not None:
        _update_locations(session, existing, spec, shards)
        existing.imagenet_val = existing.imagenet_val or spec.imagenet_val  # marks, never unmarks
        return existing, False
    refuse_case_twin(session, Dataset, spec.name)
    dataset = Dataset(
        name=spec.name,
        shard_urls=spec.shard_urls,
        num_samples=len(labels),
        num_classes=num_classes,
        label_source=spec.label_source,
        imagenet_val=spec.imagenet_val,
        budgets_centipoints=sorted({centipoints(b) for b in budgets}),
        holdout_fraction=holdout_fraction,
    )
    session.add(dataset)
    session.flush()
    for shard in shards:
        add_shard(
            session,
            dataset,
            shard.index,
            shard.keys,
            np.asarray(shard.labels),
            url=shard.url,
            failed_samples=shard.failed,
        )
    return dataset, True


def _update_locations(
    session: Session, dataset: Dataset, spec: DatasetSpec, shards: list[WrittenShard]
) -> None:
    dataset.shard_urls = spec.shard_urls
    rows = session.scalars(select(DatasetShard).where(DatasetShard.dataset_id == dataset.id)).all()
    by_index = {row.shard_index: row for row in rows}
    for shard in shards:
        by_index[shard.index].url = shard.url
        by_index[shard.index].failed_samples = shard.failed
