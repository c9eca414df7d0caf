"""Only saverzoo's own shard schemes reach a reader: at registration, and again at read time."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import update

from cluster.errors import InputError
from cluster.validate import expand_shards
from db.models import DatasetShard
from db.session import session_factory
from tests.factories import image_folder, row_counts, saverzoo, saverzoo_json
from workers.shards import ShardError, read_shard


def hostile_urls(marker) -> list[str]:
    """Shard URLs webdataset would hand to a shell, curl, gsutil or standard input."""
    return [
        f"pipe:touch {marker}; cat /dev/null",
        f"PIPE:touch {marker}",
        "http://127.0.0.1:9/x-000000.tar",
        "https://example.org/x.tar",
        "gs://bucket/x.tar",
        "ftp://host/x.tar",
        "-",
        "file://host/data/x.tar",
        f"{{pipe:touch {marker};,/tmp/x}}.tar",  # a brace that hides a scheme
        "s3:///no-bucket.tar",
    ]


@pytest.fixture
def registered(use_database, tmp_path):
    """A dataset of real shards on disk, registered through the CLI."""
    image_folder(tmp_path / "src")
    made = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "shards",
        "--name",
        "tiny",
        "--shard-size",
        "8",
    )
    assert made.exit_code == 0, made.output
    return saverzoo_json("datasets", "show", "tiny")["shard_list"]


def store_url(database_url: str, index: int, url: str) -> None:
    """Write a shard URL straight into the database, as an older version might have stored it."""
    with session_factory(database_url).begin() as session:
        session.execute(
            update(DatasetShard).where(DatasetShard.shard_index == index).values(url=url)
        )


def test_a_pipe_url_stored_in_the_database_is_refused_when_read_and_never_runs(
    registered, use_database, tmp_path
):
    marker = tmp_path / "PWNED"
    real = registered[0]["url"]
    store_url(use_database, 0, f"pipe:touch {marker}; cat {real}")
    [stored] = [s["url"] for s in saverzoo_json("datasets", "show", "tiny")["shard_list"][:1]]

    with pytest.raises(ShardError, match="the scheme 'pipe' is not supported"):
        list(read_shard(stored))
    result = saverzoo(
        "evaluate", "--models", "test_resnet", "--random-weights", "--dataset", "tiny"
    )

    assert result.exit_code == 1, result.output
    assert "the scheme 'pipe' is not supported" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("index", range(len(hostile_urls("M"))))
def test_every_url_saverzoo_does_not_read_itself_is_refused_when_read(
    registered, use_database, tmp_path, index
):
    marker = tmp_path / "PWNED"
    url = hostile_urls(marker)[index]
    store_url(use_database, 1, url)
    with pytest.raises(ShardError) as raised:
        list(read_shard(url))
    assert len(str(raised.value).splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("index", range(len(hostile_urls("M"))))
def test_shard_urls_saverzoo_cannot_read_itself_are_refused_at_registration(
    use_database, tmp_path, index
):
    marker = tmp_path / "PWNED"
    url = hostile_urls(marker)[index]
    saverzoo("db", "upgrade")
    before = row_counts(use_database)

    result = saverzoo("datasets", "add", "hostile", "--shards", url)

    assert result.exit_code == 1, result.output
    assert "shard URL" in result.stderr or "--shards" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert row_counts(use_database) == before
    assert not marker.exists()


@pytest.mark.parametrize(
    "pattern",
    [
        "s-{000000..999999999}.tar",
        "s3://b/s-{0000..9999}-{0000..9999}.tar",
        "a-{0..99999}.tar::b-{0..99999}.tar",
        "s-{0.." + "9" * 5000 + "}.tar",  # more digits than Python turns into an int
    ],
)
def test_a_brace_pattern_past_the_cap_is_refused_by_count_before_expanding(pattern):
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InputError, match="--shards") as raised:
            expand_shards(pattern, max_shards=100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 5_000_000  # bytes: nothing was expanded
    assert len(str(raised.value).splitlines()) == 1


@pytest.mark.parametrize(
    "pattern",
    [
        "s-{0..999999999..1}.tar",  # a step: bash notation saverzoo does not count
        "s-{a..z}.tar",
        "s-{-1..999999999}.tar",
        "s-{a,{b,c}}.tar",
        "s-{0..3.tar",
        "s-${HOME}.tar",  # webdataset would substitute WDS_HOME from the environment
    ],
)
def test_brace_forms_outside_saverzoos_notation_are_refused_not_expanded(pattern):
    with pytest.raises(InputError, match="--shards"):
        expand_shards(pattern, max_shards=100_000)


def test_the_shard_cap_is_a_setting(use_database, tmp_path, monkeypatch):
    from cluster.settings import get_settings

    image_folder(tmp_path / "src")
    made = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "shards",
        "--name",
        "tiny",
        "--shard-size",
        "4",
    )
    assert made.exit_code == 0, made.output
    monkeypatch.setenv("SAVERZOO_MAX_SHARDS", "3")
    get_settings.cache_clear()
    pattern = str(tmp_path / "shards" / "tiny-{000000..000003}.tar")

    refused = saverzoo("datasets", "add", "four", "--shards", pattern)
    within = saverzoo("datasets", "add", "three", "--shards", pattern.replace("03}", "02}"))

    assert refused.exit_code == 1 and "expands to 4 shards, more than the 3" in refused.stderr
    assert within.exit_code == 0, within.output
    assert [d["name"] for d in saverzoo_json("datasets", "list")] == ["three", "tiny"]


def test_brace_ranges_expand_as_written(tmp_path):
    assert expand_shards("/d/s-{000..002}.tar", 10) == [f"/d/s-{i:03d}.tar" for i in range(3)]
    assert expand_shards("/d/{a,b}-{8..10}.tar", 10) == [
        "/d/a-8.tar",
        "/d/a-9.tar",
        "/d/a-10.tar",
        "/d/b-8.tar",
        "/d/b-9.tar",
        "/d/b-10.tar",
    ]
    assert expand_shards("s3://b/x.tar::file:///d/y.tar", 10) == ["s3://b/x.tar", "file:///d/y.tar"]


def test_a_journal_entry_naming_a_file_outside_the_folder_never_deletes_it(tmp_path):
    import json

    from workers.shard_writer import make_shards
    from workers.sources import find_source

    image_folder(tmp_path / "src")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "shards"
    out.mkdir()
    entry = {"digest": "0", "failed": {}}
    journal = {"__dataset__": "tiny", "../victim.txt": entry, "tiny-000000.tar": "x"}
    (out / "_progress.json").write_text(json.dumps(journal))

    shards = make_shards(find_source(tmp_path / "src"), "tiny", str(out), shard_size=8)

    assert victim.read_text() == "keep me"
    assert len(shards) == 2 and all(Path(s.url).parent == out.resolve() for s in shards)
