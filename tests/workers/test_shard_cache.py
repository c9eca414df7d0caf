"""The node's shard cache: each shard read from object storage once per node, a half-written copy
never read, an object written again copied again, and the folder kept within its size."""

from __future__ import annotations

import subprocess
import threading
import uuid

import pytest

from cluster.objectstore import S3Url, s3_client
from workers.shard_cache import ShardCache
from workers.shards import object_version, open_shard

pytestmark = pytest.mark.s3


def put(url: str, data: bytes) -> None:
    location = S3Url.parse(url)
    client = s3_client()
    try:
        client.create_bucket(Bucket=location.bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    client.put_object(Bucket=location.bucket, Key=location.key, Body=data)


@pytest.fixture
def shard(use_s3) -> str:
    url = f"s3://saverzoo-cache-{uuid.uuid4().hex[:8]}/val-000.tar"
    put(url, b"tar bytes " * 1000)
    return url


class Counting:
    """``open_shard``, counting the reads that reach object storage."""

    def __init__(self) -> None:
        self.reads = 0
        self.lock = threading.Lock()

    def __call__(self, url: str, version: str | None = None):
        with self.lock:
            self.reads += 1
        return open_shard(url, version=version)


def test_a_shard_is_read_from_object_storage_once_and_then_from_the_node(shard, tmp_path):
    cache, remote = ShardCache(tmp_path, 10**9), Counting()

    first = cache.local(shard, object_version(shard), remote)
    again = cache.local(shard, object_version(shard), remote)

    assert first == again and first.read_bytes() == b"tar bytes " * 1000
    assert remote.reads == 1


def test_workers_of_a_node_asking_at_once_share_one_read(shard, tmp_path):
    remote, version = Counting(), object_version(shard)
    caches = [ShardCache(tmp_path, 10**9) for _ in range(6)]  # one per worker of the node
    paths = []

    threads = [
        threading.Thread(target=lambda c=c: paths.append(c.local(shard, version, remote)))
        for c in caches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert remote.reads == 1 and len(set(paths)) == 1


def test_a_copy_killed_half_way_is_never_read_and_is_cleaned_up(shard, tmp_path):
    cache, version = ShardCache(tmp_path, 10**9), object_version(shard)
    target = cache.name_of(shard, version)
    copier = subprocess.Popen(["true"])  # a worker that was copying, then died
    copier.wait()
    part = target.with_name(f"{target.name}.part-{copier.pid}")
    part.write_bytes(b"tar by")  # what its copy left

    path = cache.local(shard, version, Counting())

    assert path.read_bytes() == b"tar bytes " * 1000
    assert not part.exists()


def test_a_failed_copy_leaves_no_shard_behind(shard, tmp_path):
    cache, version = ShardCache(tmp_path, 10**9), object_version(shard)

    class Broken:
        def __init__(self, url, version=None):
            self.stream = open_shard(url, version=version)

        def __enter__(self):
            return self

        def __exit__(self, *_):
            self.stream.close()

        def read(self, size=-1):
            raise ConnectionResetError("the connection dropped")

    with pytest.raises(Exception, match="cannot cache shard"):
        cache.local(shard, version, Broken)

    assert list(tmp_path.iterdir()) == []


def test_an_object_written_again_is_copied_again(shard, tmp_path):
    cache, remote = ShardCache(tmp_path, 10**9), Counting()
    cache.local(shard, object_version(shard), remote)

    put(shard, b"new bytes " * 1000)
    path = cache.local(shard, object_version(shard), remote)

    assert path.read_bytes() == b"new bytes " * 1000 and remote.reads == 2


def test_the_least_recently_used_shards_leave_when_the_folder_is_full(use_s3, tmp_path):
    urls = [f"s3://saverzoo-cache-{uuid.uuid4().hex[:8]}/val-{i}.tar" for i in range(3)]
    for url in urls:
        put(url, bytes(4000))
    cache = ShardCache(tmp_path, 9000)  # two shards fit

    paths = [cache.local(url, object_version(url), open_shard) for url in urls]

    assert [p.exists() for p in paths] == [False, True, True]
