"""Register datasets of WebDataset shards: shards, per-shard keys and labels, failed samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from webdataset.shardlists import expand_urls

from cluster.errors import InputError
from db.arrays import from_npy
from db.models import Dataset, DatasetShard
from db.queries import add_shard, find_dataset, keys_digest
from search.selection import centipoints
from workers.shard_writer import WrittenShard
from workers.shards import decode_problem, read_shard


class ShardContents(Protocol):
    """What registration compares of a shard: its keys and labels, in order."""

    keys: list[str]
    labels: list[int]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    shard_urls: str  # brace notation
    num_classes: int | None  # None: the largest label + 1
    label_source: str


def expand_shards(pattern: str) -> list[str]:
    """``s3://b/p/val-{000000..000063}.tar`` (webdataset's brace notation) as a list of URLs."""
    urls = expand_urls(pattern)
    if not urls:
        raise InputError(f"--shards {pattern!r} names no shard")
    return urls


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


def _same_samples(session: Session, dataset: Dataset, shards: list[ShardContents]) -> bool:
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


def check_name(session: Session, name: str, shards: list[ShardContents]) -> None:
    """Refuse, before anything is written, a name registered with other samples or labels."""
    existing = find_dataset(session, name)
    if existing is not None and not _same_samples(session, existing, shards):
        raise InputError(
            f"dataset {name!r} is registered with other samples or labels; choose another --name"
        )


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
    labels = np.concatenate([np.asarray(s.labels, dtype=np.int64) for s in shards])
    if len(labels) == 0:
        raise InputError(f"dataset {spec.name!r} would have no samples")
    num_classes = spec.num_classes if spec.num_classes is not None else int(labels.max()) + 1
    if labels.max() >= num_classes or labels.min() < 0:
        raise InputError(f"labels of {spec.name!r} fall outside 0..{num_classes - 1}")
    check_name(session, spec.name, shards)
    existing = find_dataset(session, spec.name)
    if existing is not None:
        _update_locations(session, existing, spec, shards)
        return existing, False
    dataset = Dataset(
        name=spec.name,
        shard_urls=spec.shard_urls,
        num_samples=len(labels),
        num_classes=num_classes,
        label_source=spec.label_source,
        budgets_centipoints=sorted({centipoints(b) for b in budgets}),
        holdout_fraction=holdout_fraction,
    )
    session.add(dataset)
    session.flush()
    for shard in shards:
        add_shard(
            session, dataset, shard.index, shard.keys, np.asarray(shard.labels), url=shard.url,
            failed_samples=shard.failed,
        )  # fmt: skip
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
