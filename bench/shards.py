"""Read throughput of shards from the local object store: ``python -m bench.shards``.

Writes ``--shards`` shards of ``--samples-per-shard`` real JPEGs (``--image-size`` pixels square,
random content, so about ImageNet-sized files at 500) into the running object store or a fresh
one started for the run, then reads them back with ``workers.shards.read_shard``: sequentially, and
with ``--threads`` shards at a time. Prints MB/s and samples/s.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cluster.localstore import LocalObjectStore
from workers.shard_writer import make_shards
from workers.shards import read_shard
from workers.sources import Source, SourceImage, sample_key


def write_images(folder: Path, count: int, size: int) -> Source:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    # A smooth random field compresses like a photograph, unlike white noise.
    base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    for i in range(count):
        shifted = np.roll(base, i, axis=(0, 1))
        picture = Image.fromarray(shifted).resize((size, size), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        path = folder / f"img_{i:06d}.JPEG"
        path.write_bytes(buffer.getvalue())
        images.append(SourceImage(sample_key(i), path, path.name, i % 1000))
    return Source(images, 1000, "bench")


def read_throughput(urls: list[str], threads: int) -> tuple[float, int, int]:
    def consume(url: str) -> tuple[int, int]:
        samples = list(read_shard(url))
        return len(samples), sum(len(s.jpeg) for s in samples)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(consume, urls))
    elapsed = time.perf_counter() - start
    return elapsed, sum(n for n, _ in results), sum(b for _, b in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="saverzoo-shards-bench-"))
    store = LocalObjectStore(workdir / "store", 28433)
    if not os.environ.get("SAVERZOO_S3_ENDPOINT_URL"):
        os.environ["SAVERZOO_OBJECTSTORE_DIR"] = str(store.directory)
        os.environ["SAVERZOO_OBJECTSTORE_PORT"] = str(store.port)
        store.up()
    try:
        source = write_images(
            workdir / "images", args.shards * args.samples_per_shard, args.image_size
        )
        start = time.perf_counter()
        shards = make_shards(
            source,
            "bench",
            f"s3://saverzoo-bench-{uuid.uuid4().hex[:8]}/val",
            shard_size=args.samples_per_shard,
        )
        written = time.perf_counter() - start
        urls = [s.url for s in shards]
        total_bytes = sum(p.path.stat().st_size for p in source.images)
        print(
            f"{len(urls)} shards x {args.samples_per_shard} JPEGs ({args.image_size} px, "
            f"{total_bytes / len(source.images) / 1e3:.0f} KB mean); written (with JPEG checks) "
            f"in {written:.1f} s"
        )
        for threads in (1, args.threads):
            elapsed, samples, size = read_throughput(urls, threads)
            print(
                f"read with {threads} thread(s): {size / elapsed / 1e6:.0f} MB/s, "
                f"{samples / elapsed:.0f} samples/s ({samples} samples, {elapsed:.2f} s)"
            )
    finally:
        store.down()


if __name__ == "__main__":
    main()
