"""Write evaluation images as WebDataset shards, on disk or in S3, resumably.

Each sample keeps the original JPEG bytes (never re-encoded) under ``jpg``, its class index under
``cls`` and its source file name under ``filename``. Shards are built by webdataset's ``TarWriter``
in a temporary file, then renamed into place (disk) or uploaded (S3): a shard is visible complete
or not at all. A journal (``_progress.json``) beside the shards records each finished shard with a
digest of what it holds, so a rerun skips exactly the finished shards. Last comes ``_info.json`` in
timm's form, so ``timm.data.create_dataset('wds/NAME', root=...)`` reads the shards too.
"""

from __future__ import annotations

import glob
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

from cluster.errors import InputError, ServiceError
from cluster.objectstore import (
    S3Url,
    delete_object,
    ensure_bucket,
    get_bytes,
    object_exists,
    put_bytes,
    s3_client,
    upload_file,
)
from cluster.validate import child_path
from cluster.validate import name as valid_name
from workers.shards import decode_problem, local_path
from workers.sources import Source, SourceImage

JOURNAL = "_progress.json"
OWNER_KEY = "__dataset__"  # the journal's record of which dataset the folder holds
MANIFEST = "_info.json"
FIXED_MTIME = 0.0  # same inputs, same tar bytes


@dataclass(frozen=True)
class ShardPlan:
    index: int
    name: str
    images: list[SourceImage]

    @property
    def keys(self) -> list[str]:
        return [image.key for image in self.images]

    @property
    def labels(self) -> list[int]:
        return [image.label for image in self.images]

    def digest(self) -> str:
        """What the shard holds: keys, names, labels, file sizes and modification times."""
        digest = hashlib.blake2b(digest_size=16)
        for image in self.images:
            stat = _stat(image)
            digest.update(
                f"{image.key}\0{image.filename}\0{image.label}\0{stat.st_size}\0"
                f"{stat.st_mtime_ns}\n".encode()
            )
        return digest.hexdigest()


def _stat(image: SourceImage) -> os.stat_result:
    try:
        return image.path.stat()
    except OSError as error:
        raise InputError(f"cannot read source image {image.path}: {error.strerror}") from None


@dataclass(frozen=True)
class WrittenShard:
    index: int
    url: str
    keys: list[str]
    labels: list[int]
    failed: dict[str, str]  # key -> why its JPEG does not decode


def shard_name(dataset: str, index: int) -> str:
    """The file (or object) name of a shard: only a valid dataset name becomes one."""
    return f"{valid_name(dataset, 'dataset name')}-{index:06d}.tar"


def brace_urls(base_url: str, dataset: str, num_shards: int) -> str:
    """All shard URLs in brace notation."""
    valid_name(dataset, "dataset name")
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
        self.root = Path(local_path(url))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):  # a folder we may write into
                pass
        except OSError as error:
            reason = "it is a file" if self.root.is_file() else (error.strerror or str(error))
            raise InputError(
                f"--out {url}: cannot write shards there ({reason}); give a folder you may write"
            ) from None

    def url_of(self, name: str) -> str:
        return str(self.root.resolve() / name)

    def _shard_path(self, name: str) -> Path:
        """``root/name`` for a shard's ``name`` (``shard_name``'s form), proven inside ``root``."""
        dataset, _, tail = name.rpartition("-")
        return child_path(self.root, dataset, f"-{tail}", "dataset name")

    def staging_dir(self) -> Path:
        return self.root  # same file system: the final rename is atomic

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def put(self, staged: Path, name: str) -> None:
        os.replace(staged, self._shard_path(name))

    def read_text(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text() if path.exists() else None

    def write_text(self, name: str, text: str) -> None:
        staged = self.root / f".{name}.partial"
        staged.write_text(text)
        os.replace(staged, self.root / name)

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


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
        return object_exists(self.client, self.base.child(name))

    def put(self, staged: Path, name: str) -> None:
        upload_file(self.client, staged, self.base.child(name))

    def read_text(self, name: str) -> str | None:
        data = get_bytes(self.client, self.base.child(name), missing_ok=True)
        return None if data is None else data.decode()

    def write_text(self, name: str, text: str) -> None:
        put_bytes(self.client, self.base.child(name), text.encode())

    def delete(self, name: str) -> None:
        delete_object(self.client, self.base.child(name))


# Where shards go, by URL scheme; anything else is an error that names the schemes we know.
DESTINATIONS: dict[str, type[LocalDestination] | type[S3Destination]] = {
    "s3": S3Destination,
    "file": LocalDestination,
    "": LocalDestination,
}


def destination_for(url: str) -> LocalDestination | S3Destination:
    scheme = urllib.parse.urlparse(url).scheme
    try:
        return DESTINATIONS[scheme](url)
    except KeyError:
        raise InputError(
            f"--out {url!r}: shards go to s3://bucket/prefix or a local folder, not {scheme}://"
        ) from None


def _read_and_check(image: SourceImage) -> tuple[bytes, str | None]:
    try:
        data = image.path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read source image {image.path}: {error.strerror}") from None
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
                {
                    "__key__": image.key,
                    "jpg": data,
                    "cls": str(image.label),
                    "filename": image.filename,
                }
            )
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


def _journal(destination: LocalDestination | S3Destination, dataset: str, out_url: str) -> dict:
    """Finished shards by name; a folder holds the shards (and manifest) of one dataset only."""
    try:
        stored = json.loads(destination.read_text(JOURNAL) or "{}")
    except ValueError:
        raise InputError(
            f"{out_url}/{JOURNAL} is not saverzoo's journal; give the shards an empty --out"
        ) from None
    if not isinstance(stored, dict):
        raise InputError(f"{out_url}/{JOURNAL} is not saverzoo's journal; use an empty --out")
    owner = stored.pop(OWNER_KEY, dataset)
    if owner != dataset:
        raise InputError(
            f"{out_url} holds the shards of dataset {owner!r}; give {dataset!r} its own --out"
        )
    # The journal is a file anyone may edit: only entries naming this dataset's shards count, so
    # a name in it (``../x``) never becomes a file to delete; the rest is written again.
    ours = {shard_name(dataset, i) for i in range(len(stored))}
    return {
        name: entry
        for name, entry in stored.items()
        if name in ours
        and isinstance(entry, dict)
        and isinstance(entry.get("digest"), str)
        and isinstance(entry.get("failed"), dict)
    }


def _save_journal(destination: LocalDestination | S3Destination, journal: dict, dataset: str):
    destination.write_text(JOURNAL, json.dumps({OWNER_KEY: dataset, **journal}, indent=1))


def _remove_part_written(staging: Path, plans: list[ShardPlan]) -> None:
    """Remove the staged files a killed run left (a kill skips the clean-up of ``make_shards``);
    they are named after the shard they were becoming, so only this dataset's are touched."""
    for plan in plans:
        for leftover in staging.glob(f".{glob.escape(plan.name)}.*"):
            leftover.unlink(missing_ok=True)


def _forget_other_plans(
    destination: LocalDestination | S3Destination,
    journal: dict,
    digests: dict[str, str],
    dataset: str,
) -> None:
    """Remove what an earlier, different plan wrote here (its shards, its manifest).

    Only shards the journal records as ours are deleted; the manifest goes until this run rewrites
    it, so timm never reads one that describes other shards.
    """
    stale = sorted(set(journal) - set(digests))
    for name in stale:
        destination.delete(name)
        del journal[name]
    if stale:
        _save_journal(destination, journal, dataset)
    if stale or any(journal.get(n, {}).get("digest") != d for n, d in digests.items()):
        destination.delete(MANIFEST)


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
    valid_name(dataset, "dataset name")  # it becomes file and object names below
    plans = plan_shards(source, dataset, shard_size)
    destination = destination_for(out_url)
    journal = _journal(destination, dataset, out_url)
    digests = {plan.name: plan.digest() for plan in plans}
    _forget_other_plans(destination, journal, digests, dataset)
    staging = destination.staging_dir()
    if staging is not None:  # the system's temporary folder (S3) is not this dataset's alone
        _remove_part_written(staging, plans)
    written: list[WrittenShard] = []
    done = 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for plan in plans:
            digest = digests[plan.name]
            entry = journal.get(plan.name)
            if not (entry and entry["digest"] == digest and destination.exists(plan.name)):
                with tempfile.NamedTemporaryFile(
                    dir=destination.staging_dir(), prefix=f".{plan.name}.", delete=False
                ) as staged:
                    staged_path = Path(staged.name)
                try:
                    failed = write_tar(plan, staged_path, pool)
                    destination.put(staged_path, plan.name)
                except OSError as error:  # a full disk, a folder made read-only meanwhile
                    raise ServiceError(
                        f"cannot write shard {plan.name} to {out_url}: "
                        f"{error.strerror or error}; the {len(written)} shards written before "
                        "it are kept: make room and run the same command again to finish"
                    ) from None
                finally:
                    staged_path.unlink(missing_ok=True)  # gone already where put renamed it
                entry = {"digest": digest, "failed": failed}
                journal[plan.name] = entry
                _save_journal(destination, journal, dataset)
            written.append(
                WrittenShard(
                    plan.index,
                    destination.url_of(plan.name),
                    plan.keys,
                    plan.labels,
                    entry["failed"],
                )
            )
            done += len(plan.images)
            if progress:
                progress(done, len(source.images))
    manifest = timm_manifest(dataset, split, written, [p.name for p in plans])
    destination.write_text(MANIFEST, json.dumps(manifest, indent=1))
    return written
