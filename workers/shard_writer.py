"""Write evaluation images as WebDataset shards, on disk or in S3, resumably.

Each sample keeps the original JPEG bytes (never re-encoded) under ``jpg``, its class index under
``cls`` and its source file name under ``filename``. Shards are built by webdataset's ``TarWriter``
in a temporary file, then renamed into place (disk) or uploaded (S3): a shard is visible complete
or not at all. A journal (``_progress.json``) beside the shards records each finished shard with a
digest of what it holds, so a rerun skips exactly the finished shards. Last comes ``_info.json`` in
timm's form, so ``timm.data.create_dataset('wds/NAME', root=...)`` reads the shards too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from webdataset import TarWriter

from cluster.errors import InputError
from cluster.objectstore import (
    S3Url,
    ensure_bucket,
    get_bytes,
    object_metadata,
    put_bytes,
    s3_client,
    upload_file,
)
from workers.shards import decode_problem
from workers.sources import Source, SourceImage

JOURNAL = "_progress.json"
MANIFEST = "_info.json"
FIXED_MTIME = 0.0  # same inputs, same tar bytes


@dataclass(frozen=True)
class ShardPlan:
    index: int
    name: str
    images: list[SourceImage]

    def digest(self) -> str:
        """What the shard holds: keys, names, labels and file sizes (not the bytes: cheap)."""
        digest = hashlib.blake2b(digest_size=16)
        for image in self.images:
            size = image.path.stat().st_size
            digest.update(f"{image.key}\0{image.filename}\0{image.label}\0{size}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class WrittenShard:
    index: int
    url: str
    keys: list[str]
    labels: list[int]
    failed: dict[str, str]  # key -> why its JPEG does not decode


def shard_name(dataset: str, index: int) -> str:
    return f"{dataset}-{index:06d}.tar"


def brace_urls(base_url: str, dataset: str, num_shards: int) -> str:
    """All shard URLs in webdataset's brace notation."""
    last = num_shards - 1
    return f"{base_url.rstrip('/')}/{dataset}-{{{0:06d}..{last:06d}}}.tar"


def plan_shards(source: Source, dataset: str, shard_size: int) -> list[ShardPlan]:
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, not {shard_size}")
    images = source.images
    return [
        ShardPlan(i, shard_name(dataset, i), images[start : start + shard_size])
        for i, start in enumerate(range(0, len(images), shard_size))
    ]


class LocalDestination:
    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlparse(url)
        self.root = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else url)
        self.root.mkdir(parents=True, exist_ok=True)

    def url_of(self, name: str) -> str:
        return str(self.root.resolve() / name)

    def staging_dir(self) -> Path:
        return self.root  # same file system: the final rename is atomic

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def put(self, staged: Path, name: str) -> None:
        os.replace(staged, self.root / name)

    def read_text(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text() if path.exists() else None

    def write_text(self, name: str, text: str) -> None:
        staged = self.root / f".{name}.partial"
        staged.write_text(text)
        os.replace(staged, self.root / name)


class S3Destination:
    def __init__(self, url: str) -> None:
        self.base = S3Url.parse(url)
        self.client = s3_client()
        ensure_bucket(self.client, self.base.bucket)

    def url_of(self, name: str) -> str:
        return str(self.base.child(name))

    def staging_dir(self) -> Path | None:
        return None  # the system's temporary folder

    def exists(self, name: str) -> bool:
        return object_metadata(self.client, self.base.child(name)) is not None

    def put(self, staged: Path, name: str) -> None:
        try:
            upload_file(self.client, staged, self.base.child(name))
        finally:
            staged.unlink(missing_ok=True)

    def read_text(self, name: str) -> str | None:
        if not self.exists(name):
            return None
        return get_bytes(self.client, self.base.child(name)).decode()

    def write_text(self, name: str, text: str) -> None:
        put_bytes(self.client, self.base.child(name), text.encode())


# Where shards go, by URL scheme; anything else is an error that names the schemes we know.
DESTINATIONS = {"s3": S3Destination, "file": LocalDestination, "": LocalDestination}


def destination_for(url: str) -> LocalDestination | S3Destination:
    scheme = urllib.parse.urlparse(url).scheme
    try:
        return DESTINATIONS[scheme](url)
    except KeyError:
        raise InputError(
            f"--out {url!r}: shards go to s3://bucket/prefix or a local folder, not {scheme}://"
        ) from None


def _read_and_check(image: SourceImage) -> tuple[bytes, str | None]:
    data = image.path.read_bytes()
    return data, decode_problem(data)


def write_tar(plan: ShardPlan, path: Path, pool: ThreadPoolExecutor) -> dict[str, str]:
    """Write one shard to ``path``; returns the samples whose JPEG does not decode."""
    failed = {}
    with open(path, "wb") as stream, TarWriter(stream, mtime=FIXED_MTIME) as writer:
        for image, (data, problem) in zip(
            plan.images, pool.map(_read_and_check, plan.images), strict=True
        ):
            if problem is not None:
                failed[image.key] = problem  # kept in the shard; recorded, never silently dropped
            writer.write(
                {"__key__": image.key, "jpg": data, "cls": str(image.label),
                 "filename": image.filename}
            )  # fmt: skip
    return failed


def timm_manifest(dataset: str, split: str, shards: list[WrittenShard], names: list[str]) -> dict:
    lengths = [len(s.keys) for s in shards]
    return {
        "name": dataset,
        "splits": {
            split: {
                "name": split,
                "num_samples": sum(lengths),
                "filenames": names,
                "shard_lengths": lengths,
            }
        },
    }


def make_shards(
    source: Source,
    dataset: str,
    out_url: str,
    *,
    shard_size: int = 1000,
    split: str = "validation",
    progress: Callable[[int, int], None] | None = None,
) -> list[WrittenShard]:
    """Write (or finish writing) the shards of ``source``; returns every shard, in order."""
    plans = plan_shards(source, dataset, shard_size)
    destination = destination_for(out_url)
    journal = json.loads(destination.read_text(JOURNAL) or "{}")
    written = []
    done = 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for plan in plans:
            digest = plan.digest()
            entry = journal.get(plan.name)
            if not (entry and entry["digest"] == digest and destination.exists(plan.name)):
                with tempfile.NamedTemporaryFile(
                    dir=destination.staging_dir(), prefix=f".{plan.name}.", delete=False
                ) as staged:
                    staged_path = Path(staged.name)
                try:
                    failed = write_tar(plan, staged_path, pool)
                    destination.put(staged_path, plan.name)
                finally:
                    staged_path.unlink(missing_ok=True)
                entry = {"digest": digest, "failed": failed}
                journal[plan.name] = entry
                destination.write_text(JOURNAL, json.dumps(journal, indent=1))
            written.append(
                WrittenShard(
                    plan.index,
                    destination.url_of(plan.name),
                    [image.key for image in plan.images],
                    [image.label for image in plan.images],
                    entry["failed"],
                )
            )
            done += len(plan.images)
            if progress:
                progress(done, len(source.images))
    manifest = timm_manifest(dataset, split, written, [p.name for p in plans])
    destination.write_text(MANIFEST, json.dumps(manifest, indent=1))
    return written
