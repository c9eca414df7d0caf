"""A node-local cache of shards read from object storage: each node reads a shard once.

Every worker of a node shares one folder (``SAVERZOO_SHARD_CACHE_DIR``). A shard is copied there
under a temporary name and renamed into place when the copy is complete and flushed, so a
killed download is never read as a shard: only complete files carry a cache name, and what a
dead copy leaves (``*.part-PID``) is removed once its process is gone. When two workers want
the same shard at once, one copies it and the other waits for the rename (an exclusive lock
file says who copies). The least recently used shards leave when the folder passes its size
limit. Local files are never cached: they are read where they are.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cluster.errors import ServiceError
from cluster.processes import alive

WAIT_FOR_OTHER_S = 600.0  # a copy by another worker of the node that takes longer is stale
POLL_S = 0.05


class ShardCache:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self.copies = 0  # shards this process copied from object storage

    def name_of(self, url: str, version: str) -> Path:
        """The cache's file for ``url`` at ``version`` (its ETag): a digest, so no URL ever
        becomes a path, and an object written again gets a name of its own."""
        digest = hashlib.sha256(f"{url}\n{version}".encode()).hexdigest()[:40]
        return self.folder / f"{digest}.tar"

    def local(self, url: str, version: str, open_remote: Callable[..., BinaryIO]) -> Path:
        """A complete local copy of the shard at ``url``, copied here first if need be;
        ``open_remote(url, version=version)`` reads that very version or fails."""
        target = self.name_of(url, version)
        deadline = time.monotonic() + WAIT_FOR_OTHER_S
        while True:
            if target.exists():
                os.utime(target)  # recently used
                return target
            lock = target.with_suffix(".lock")
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                if _stale(lock) or time.monotonic() > deadline:
                    lock.unlink(missing_ok=True)  # its copier died: take over
                else:
                    time.sleep(POLL_S)
                continue
            try:
                if not target.exists():
                    self._copy(url, version, target, open_remote)
                return target
            finally:
                lock.unlink(missing_ok=True)

    def _copy(
        self, url: str, version: str, target: Path, open_remote: Callable[..., BinaryIO]
    ) -> None:
        part = target.with_name(f"{target.name}.part-{os.getpid()}")
        try:
            with open_remote(url, version=version or None) as remote, part.open("wb") as local:
                shutil.copyfileobj(remote, local, length=1 << 20)
                local.flush()
                os.fsync(local.fileno())
            os.replace(part, target)  # atomic: the name appears only for a complete copy
        except OSError as error:
            raise ServiceError(f"cannot cache shard {url} in {self.folder}: {error}") from None
        finally:
            part.unlink(missing_ok=True)
        self.copies += 1
        self._evict(keep=target)

    def _evict(self, keep: Path) -> None:
        """Least recently used shards out until the folder fits ``max_bytes``; dead parts too."""
        for part in self.folder.glob("*.part-*"):
            pid = part.name.rpartition("-")[2]
            if not (pid.isdigit() and alive(int(pid))):
                part.unlink(missing_ok=True)
        shards = sorted(self.folder.glob("*.tar"), key=_mtime)
        total = sum(_size(p) for p in shards)
        for path in shards:
            if total <= self.max_bytes:
                break
            if path != keep:
                total -= _size(path)
                path.unlink(missing_ok=True)


def _stale(lock: Path) -> bool:
    try:
        return time.time() - lock.stat().st_mtime > WAIT_FOR_OTHER_S
    except FileNotFoundError:
        return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
