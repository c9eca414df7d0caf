"""Register datasets of WebDataset shards: shards, per-shard keys and labels, failed samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from webdataset.shardlists import expand_urls

from cluster.errors import InputError
from db.models import Dataset, DatasetShard
from db.queries import add_shard, find_dataset, keys_digest
from search.selection import centipoints
from workers.shard_writer import WrittenShard
from workers.shards import decode_problem, read_shard


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


def register(
    session: Session,
    spec: DatasetSpec,
    shards: list[WrittenShard],
    *,
    budgets: list[float],
    holdout_fraction: float,
) -> tuple[Dataset, bool]:
    """Create the dataset, or confirm it holds exactly these samples; returns (it, created)."""
    labels = np.concatenate([np.asarray(s.labels, dtype=np.int64) for s in shards])
    if len(labels) == 0:
        raise InputError(f"dataset {spec.name!r} would have no samples")
    num_classes = spec.num_classes or int(labels.max()) + 1
    if labels.max() >= num_classes or labels.min() < 0:
        raise InputError(f"labels of {spec.name!r} fall outside 0..{num_classes - 1}")
    digests = [keys_digest(s.keys) for s in shards]
    existing = find_dataset(session, spec.name)
    if existing is not None:
        stored = session.scalars(
            select(DatasetShard.keys_digest)
            .where(DatasetShard.dataset_id == existing.id)
            .order_by(DatasetShard.shard_index)
        ).all()
        if list(stored) != digests:
            raise InputError(
                f"dataset {spec.name!r} is registered with other samples; choose another --name"
            )
        _record_failures(session, existing, shards)
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


def _record_failures(session: Session, dataset: Dataset, shards: list[WrittenShard]) -> None:
    rows = session.scalars(select(DatasetShard).where(DatasetShard.dataset_id == dataset.id)).all()
    by_index = {row.shard_index: row for row in rows}
    for shard in shards:
        by_index[shard.index].failed_samples = shard.failed
