"""The worker benchmark runs end to end on a tiny zoo (its numbers are recorded, not asserted)."""

from __future__ import annotations

import json

import pytest

from bench.worker import main, make_shards
from workers.shards import read_shard


@pytest.mark.slow
def test_the_benchmark_reports_every_model_and_the_zoo(tmp_path):
    out = tmp_path / "bench.json"
    main(
        [
            "--device",
            "cpu",
            "--mode",
            "fast",
            "--images",
            "6",
            "--shard-size",
            "4",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--models",
            "test_resnet,test_efficientnet",
            "--workdir",
            str(tmp_path / "shards"),
            "--json",
            str(out),
        ]
    )

    report = json.loads(out.read_text())
    assert [m["model"] for m in report["models"]] == ["test_resnet", "test_efficientnet"]
    assert all(m["ceiling_img_s"] > 0 and m["worker_img_s"] > 0 for m in report["models"])
    zoo = report["zoo"]
    assert zoo["images"] == 6 and zoo["models"] == 2
    assert zoo["decode_once_s"] > 0 and zoo["per_model_loader_s"] > 0
    assert report["device"] == "cpu" and report["options"]["mode"] == "fast"


def test_benchmark_shards_are_made_once_and_hold_natural_jpegs(tmp_path):
    urls = make_shards(tmp_path, images=5, shard_size=2)
    stamps = [path.stat().st_mtime_ns for path in tmp_path.rglob("*.tar")]

    assert make_shards(tmp_path, images=5, shard_size=2) == urls  # reused, not rewritten
    assert [path.stat().st_mtime_ns for path in tmp_path.rglob("*.tar")] == stamps
    samples = [sample for url in urls for sample in read_shard(url)]
    assert [s.key for s in samples] == [f"{i:08d}" for i in range(5)]
    assert all(20_000 < len(s.jpeg) < 120_000 for s in samples)  # ImageNet-like sizes
