"""Shards in a real S3 server (SeaweedFS) and on disk: written, registered, read back exactly."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest

from cluster.objectstore import S3Url, get_bytes, s3_client
from tests.factories import flat_imagenet, image_folder, row_counts, saverzoo, saverzoo_json
from workers.shard_writer import make_shards
from workers.shards import SampleFailures, ShardError, decoded, read_shard
from workers.sources import find_source

pytestmark = pytest.mark.s3


def bucket_url(prefix: str = "val") -> str:
    return f"s3://saverzoo-test-{uuid.uuid4().hex[:8]}/{prefix}"


def read_all(urls: list[str]) -> list:
    return [sample for url in urls for sample in read_shard(url)]


def test_image_folder_round_trips_through_s3_byte_for_byte(use_s3, use_database, tmp_path):
    made = image_folder(tmp_path / "src")
    out = bucket_url()

    result = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        out,
        "--name",
        "tiny",
        "--shard-size",
        "4",
    )

    assert result.exit_code == 0, result.output
    info = saverzoo_json("datasets", "show", "tiny")
    assert info["num_samples"] == len(made) == 15 and info["num_classes"] == 3
    assert [s["num_samples"] for s in info["shard_list"]] == [4, 4, 4, 3]
    assert info["shards"] == f"{out}/tiny-{{000000..000003}}.tar"
    samples = read_all([s["url"] for s in info["shard_list"]])
    assert [s.key for s in samples] == sorted(s.key for s in samples)  # sortable keys
    assert {s.filename: (s.jpeg, s.label) for s in samples} == made  # original bytes, labels
    manifest = json.loads(get_bytes(s3_client(), S3Url.parse(f"{out}/_info.json")))
    split = manifest["splits"]["validation"]
    assert split["num_samples"] == 15 and split["shard_lengths"] == [4, 4, 4, 3]


def test_flat_imagenet_layout_with_labels_file_on_disk(use_database, tmp_path):
    made, labels = flat_imagenet(tmp_path / "val")

    result = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "val",
        "--labels",
        labels,
        "--out",
        tmp_path / "shards",
        "--name",
        "flat",
        "--shard-size",
        "3",
    )

    assert result.exit_code == 0, result.output
    info = saverzoo_json("datasets", "show", "flat")
    samples = read_all([s["url"] for s in info["shard_list"]])
    assert {s.filename: (s.jpeg, s.label) for s in samples} == made
    assert info["num_classes"] == 4


def test_disk_and_s3_shards_hold_identical_samples(use_s3, tmp_path):
    image_folder(tmp_path / "src")
    source = find_source(tmp_path / "src")
    on_disk = make_shards(source, "same", str(tmp_path / "shards"), shard_size=6)
    in_s3 = make_shards(source, "same", bucket_url(), shard_size=6)
    assert read_all([s.url for s in on_disk]) == read_all([s.url for s in in_s3])


def test_timm_reads_the_shards_through_the_manifest(tmp_path):
    timm_data = pytest.importorskip("timm.data")
    made = image_folder(tmp_path / "src")
    make_shards(find_source(tmp_path / "src"), "tiny", str(tmp_path / "shards"), shard_size=4)

    dataset = timm_data.create_dataset(
        "wds/tiny", root=str(tmp_path / "shards"), split="validation", is_training=False
    )

    assert len(dataset) == len(made)
    labels = sorted(target for _, target in dataset)
    assert labels == sorted(label for _, label in made.values())


def test_an_interrupted_run_resumes_without_duplicate_or_missing_samples(use_s3, tmp_path):
    image_folder(tmp_path / "src")
    source = find_source(tmp_path / "src")
    out = bucket_url()

    def interrupt(done, total):
        if done >= 8:
            raise KeyboardInterrupt  # the user stops the run after two shards

    with pytest.raises(KeyboardInterrupt):
        make_shards(source, "tiny", out, shard_size=4, progress=interrupt)
    location = S3Url.parse(out)
    client = s3_client()
    listed = client.list_objects_v2(Bucket=location.bucket, Prefix=location.key)["Contents"]
    first_run = {o["Key"].rsplit("/", 1)[1]: o["ETag"] for o in listed}
    assert sorted(first_run) == ["_progress.json", "tiny-000000.tar", "tiny-000001.tar"]

    shards = make_shards(source, "tiny", out, shard_size=4)

    samples = read_all([s.url for s in shards])
    assert sorted(s.key for s in samples) == [image.key for image in source.images]
    listed = client.list_objects_v2(Bucket=location.bucket, Prefix=location.key)["Contents"]
    etags = {o["Key"].rsplit("/", 1)[1]: o["ETag"] for o in listed}
    assert etags["tiny-000000.tar"] == first_run["tiny-000000.tar"]  # finished shards kept
    assert sorted(etags) == ["_info.json", "_progress.json"] + [
        f"tiny-{i:06d}.tar" for i in range(4)
    ]


def test_a_truncated_shard_is_an_error_naming_it(tmp_path):
    image_folder(tmp_path / "src")
    [shard, *_] = make_shards(find_source(tmp_path / "src"), "t", str(tmp_path / "s"), shard_size=8)
    path = tmp_path / "s" / "t-000000.tar"
    data = path.read_bytes()

    path.write_bytes(data[: len(data) // 2 + 100])  # cut inside a member
    with pytest.raises(ShardError, match=r"t-000000\.tar is truncated"):
        list(read_shard(shard.url))

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        second_sample = tar.getmembers()[3].offset  # three members (cls, filename, jpg) each
    path.write_bytes(data[:second_sample])  # cut exactly between two samples: a "short" tar
    with pytest.raises(ShardError, match=r"t-000000\.tar has 1 samples but 8 are registered"):
        list(read_shard(shard.url, expected_samples=8))


def test_a_corrupted_jpeg_is_recorded_with_its_key_not_fatal(use_database, tmp_path):
    made = image_folder(tmp_path / "src")
    broken = tmp_path / "src" / "n00000001" / "n00000001_0002.JPEG"
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated JPEG

    result = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "shards",
        "--name",
        "broken",
        "--shard-size",
        "10",
    )

    assert result.exit_code == 0, result.output
    assert "1 samples do not decode" in result.stdout
    info = saverzoo_json("datasets", "show", "broken")
    [(shard_index, failed)] = [
        (s["index"], s["failed_samples"]) for s in info["shard_list"] if s["failed_samples"]
    ]
    [key] = failed
    failures = SampleFailures()
    good = list(decoded(read_shard(info["shard_list"][shard_index]["url"]), failures))
    assert list(failures.reasons) == [key]  # the reader's caller records it, and goes on
    assert len(good) == info["shard_list"][shard_index]["num_samples"] - 1
    assert info["num_samples"] == len(made)  # kept in the shard, counted, never dropped


def test_a_missing_object_is_an_error_naming_the_shard(use_s3):
    url = bucket_url("missing-000000.tar")
    s3_client().create_bucket(Bucket=S3Url.parse(url).bucket)
    with pytest.raises(ShardError, match=f"shard {url} does not exist"):
        list(read_shard(url))


@pytest.mark.parametrize(
    ("key", "secret", "message"),
    [
        ("nobody", "x", "access key is unknown"),
        (None, "wrong", "secret key does not match"),  # None: the store's own access key
    ],
)
def test_wrong_credentials_are_an_error_naming_the_shard(
    use_s3, monkeypatch, tmp_path, key, secret, message
):
    image_folder(tmp_path / "src")
    [shard, *_] = make_shards(find_source(tmp_path / "src"), "c", bucket_url(), shard_size=20)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key or use_s3.credentials[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with pytest.raises(ShardError, match=message) as raised:
        list(read_shard(shard.url))
    assert shard.url in str(raised.value)
    assert secret not in str(raised.value)


def test_a_stopped_object_store_is_an_error_saying_so(use_s3, monkeypatch):
    from cluster.settings import get_settings

    monkeypatch.setenv("SAVERZOO_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("SAVERZOO_S3_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    with pytest.raises(ShardError, match=r"object store at http://127\.0\.0\.1:9 is unreachable"):
        list(read_shard("s3://anything/x-000000.tar"))


@pytest.fixture
def own_local_store(free_port_block, tmp_path, monkeypatch):
    """A SeaweedFS of the test's own, found the way a user's is: as the local store, no keys."""
    from cluster.localstore import LocalObjectStore
    from cluster.settings import get_settings

    store = LocalObjectStore(tmp_path / "objectstore", free_port_block)
    for variable in (
        "SAVERZOO_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("SAVERZOO_OBJECTSTORE_DIR", str(store.directory))
    monkeypatch.setenv("SAVERZOO_OBJECTSTORE_PORT", str(free_port_block))
    monkeypatch.setenv("SAVERZOO_S3_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    store.up()
    try:
        yield store
    finally:
        store.down()
        get_settings.cache_clear()


def test_a_local_store_stopped_between_shards_is_reported_unreachable(own_local_store, tmp_path):
    image_folder(tmp_path / "src")
    shards = make_shards(find_source(tmp_path / "src"), "k", bucket_url(), shard_size=8)
    assert len(list(read_shard(shards[0].url))) == 8

    own_local_store.down()  # the store dies while a sweep reads its shards

    with pytest.raises(ShardError) as raised:
        list(read_shard(shards[1].url))
    message = str(raised.value)
    assert f"the object store at {own_local_store.endpoint} is unreachable" in message
    assert shards[1].url in message and "no credentials" not in message


def test_a_stopped_endpoint_store_is_reported_unreachable(free_port_block, tmp_path, monkeypatch):
    from cluster.localstore import LocalObjectStore
    from cluster.settings import get_settings

    store = LocalObjectStore(tmp_path / "objectstore", free_port_block)
    state = store.up()
    try:
        monkeypatch.setenv("SAVERZOO_S3_ENDPOINT_URL", state.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.credentials()[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.credentials()[1])
        monkeypatch.setenv("SAVERZOO_S3_MAX_ATTEMPTS", "1")
        get_settings.cache_clear()
        image_folder(tmp_path / "src")
        [shard, *_] = make_shards(find_source(tmp_path / "src"), "e", bucket_url(), shard_size=20)
    finally:
        store.down()
    with pytest.raises(ShardError, match=f"the object store at {state.endpoint} is unreachable"):
        list(read_shard(shard.url))
    get_settings.cache_clear()


def test_a_dropped_connection_rereads_the_shard_without_repeating_samples(use_s3, tmp_path):
    image_folder(tmp_path / "src")
    [shard, *_] = make_shards(find_source(tmp_path / "src"), "r", bucket_url(), shard_size=20)
    expected = list(read_shard(shard.url))
    opened = []

    def flaky_open(url, **pinned):
        from workers.shards import open_shard

        stream = open_shard(url, **pinned)
        opened.append(url)
        return stream if len(opened) > 1 else DropsAfter(stream, 4000)

    samples = list(read_shard(shard.url, opener=flaky_open))

    assert len(opened) == 2
    assert samples == expected


class DropsAfter:
    """A stream whose connection drops after some bytes (the failure, not the store, is fake)."""

    def __init__(self, stream, limit):
        self.stream, self.left = stream, limit
        self.version = getattr(stream, "version", None)

    def read(self, size=-1):
        if self.left <= 0:
            raise ConnectionResetError("connection reset by peer")
        data = self.stream.read(min(size, self.left) if size > 0 else self.left)
        self.left -= len(data)
        return data

    def close(self):
        self.stream.close()


def test_registering_existing_shards_reads_their_keys_and_labels(use_s3, use_database, tmp_path):
    made = image_folder(tmp_path / "src")
    out = bucket_url()
    make_shards(find_source(tmp_path / "src"), "tiny", out, shard_size=4)

    result = saverzoo("datasets", "add", "again", "--shards", f"{out}/tiny-{{000000..000003}}.tar")

    assert result.exit_code == 0, result.output
    listed = saverzoo_json("datasets", "list")
    assert [(d["name"], d["num_samples"], d["num_shards"]) for d in listed] == [
        ("again", len(made), 4)
    ]
    again = saverzoo("datasets", "add", "again", "--shards", f"{out}/tiny-{{000000..000003}}.tar")
    assert again.exit_code == 0 and "unchanged" in again.stdout


def test_bad_dataset_input_fails_in_one_line_and_registers_nothing(use_database, tmp_path):
    flat_imagenet(tmp_path / "flat")
    cases = [
        (
            ["datasets", "make-shards", tmp_path / "flat", "--out", tmp_path / "o", "--name", "x"],
            "give their labels with --labels",
        ),
        (
            ["datasets", "make-shards", tmp_path / "nope", "--out", tmp_path / "o", "--name", "x"],
            "is not a folder",
        ),
        (
            [
                "datasets",
                "make-shards",
                tmp_path / "flat",
                "--labels",
                tmp_path / "labels.txt",
                "--out",
                "ftp://host/x",
                "--name",
                "x",
            ],
            "not ftp://",
        ),
        (
            ["datasets", "add", "x", "--shards", str(tmp_path / "none-{000000..000001}.tar")],
            "does not exist",
        ),
        (["datasets", "show", "nope"], "unknown dataset"),
    ]
    saverzoo("db", "upgrade")
    before = row_counts(use_database)
    for args, message in cases:
        result = saverzoo(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert row_counts(use_database) == before


def test_a_connection_closed_early_rereads_the_shard(use_s3, tmp_path):
    from botocore.response import StreamingBody

    image_folder(tmp_path / "src")
    [shard, *_] = make_shards(find_source(tmp_path / "src"), "e", bucket_url(), shard_size=20)
    expected = list(read_shard(shard.url))
    data = get_bytes(s3_client(), S3Url.parse(shard.url))
    opened = []

    def closes_early_once(url, **pinned):
        from workers.shards import open_shard

        opened.append(url)
        if len(opened) == 1:  # as boto3 sees a body whose connection ends before its length
            return StreamingBody(io.BytesIO(data[:3000]), len(data))
        return open_shard(url, **pinned)

    assert list(read_shard(shard.url, opener=closes_early_once)) == expected
    assert len(opened) == 2


def test_rewriting_with_another_shard_size_leaves_no_stale_shard_or_manifest(tmp_path):
    image_folder(tmp_path / "src")
    source = find_source(tmp_path / "src")
    out = tmp_path / "shards"
    make_shards(source, "tiny", str(out), shard_size=4)

    shards = make_shards(source, "tiny", str(out), shard_size=8)

    assert sorted(p.name for p in out.iterdir()) == [
        "_info.json",
        "_progress.json",
        "tiny-000000.tar",
        "tiny-000001.tar",
    ]
    manifest = json.loads((out / "_info.json").read_text())
    assert manifest["splits"]["validation"]["shard_lengths"] == [8, 7]
    assert len(read_all([s.url for s in shards])) == 15


def test_a_folder_holds_one_datasets_shards(tmp_path):
    from cluster.errors import InputError

    image_folder(tmp_path / "src")
    source = find_source(tmp_path / "src")
    make_shards(source, "first", str(tmp_path / "shards"), shard_size=8)
    with pytest.raises(InputError, match="holds the shards of dataset 'first'"):
        make_shards(source, "second", str(tmp_path / "shards"), shard_size=8)


def test_new_labels_under_a_registered_name_are_refused_before_writing(use_database, tmp_path):
    made, labels = flat_imagenet(tmp_path / "val")
    args = ["--out", tmp_path / "shards", "--name", "flat", "--shard-size", "3"]
    first = saverzoo("datasets", "make-shards", tmp_path / "val", "--labels", labels, *args)
    assert first.exit_code == 0, first.output
    written = {p.name: p.read_bytes() for p in (tmp_path / "shards").glob("*.tar")}
    labels.write_text("0\n" * len(made))

    again = saverzoo("datasets", "make-shards", tmp_path / "val", "--labels", labels, *args)

    assert again.exit_code == 1 and "registered with other samples or labels" in again.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "shards").glob("*.tar")} == written


def test_file_urls_naming_a_host_are_refused():
    from cluster.errors import InputError
    from workers.shards import local_path

    assert local_path("file:///data/x.tar") == "/data/x.tar"
    assert local_path("file://localhost/data/x.tar") == "/data/x.tar"
    with pytest.raises(InputError, match="names a host"):
        local_path("file://data/x.tar")


def test_a_shard_rewritten_between_two_attempts_is_not_mixed_into_one_read(use_s3, tmp_path):
    image_folder(tmp_path / "src")
    [shard, *_] = make_shards(find_source(tmp_path / "src"), "v", bucket_url(), shard_size=20)
    location = S3Url.parse(shard.url)
    opened = []

    def rewritten_after_first_open(url, **pinned):
        from workers.shards import open_shard

        opened.append(pinned)
        stream = open_shard(url, **pinned)
        if len(opened) == 1:  # someone rewrites the shard while the first read is under way
            body = get_bytes(s3_client(), location) + b"\0" * 1024
            s3_client().put_object(Bucket=location.bucket, Key=location.key, Body=body)
            return DropsAfter(stream, 4000)
        return stream

    with pytest.raises(ShardError, match="changed while it was being read"):
        list(read_shard(shard.url, opener=rewritten_after_first_open))
    assert opened[1]["version"]  # the retry asked for the object first read


def test_a_full_disk_mid_way_is_one_line_and_the_shards_before_it_are_kept(
    use_database, tmp_path, monkeypatch
):
    import errno

    import workers.shard_writer as shard_writer

    image_folder(tmp_path / "src")
    real_write = shard_writer.write_tar
    calls = []

    def fills_the_disk(plan, path, pool):
        calls.append(plan.name)
        if len(calls) == 2:  # the second shard finds the disk full, part-written
            path.write_bytes(b"x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(plan, path, pool)

    monkeypatch.setattr(shard_writer, "write_tar", fills_the_disk)
    out = tmp_path / "shards"
    args = [
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        out,
        "--name",
        "tiny",
        "--shard-size",
        "4",
    ]

    full = saverzoo(*args)

    assert full.exit_code == 1
    assert full.stderr.strip() == (
        f"error: cannot write shard tiny-000001.tar to {out}: No space left on device; the 1 "
        "shards written before it are kept: make room and run the same command again to finish"
    )
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tar") == ["tiny-000000.tar"]
    assert not list(out.rglob(".tiny-*"))  # no part-written file left
    assert row_counts(use_database)["datasets"] == 0
    monkeypatch.setattr(shard_writer, "write_tar", real_write)
    again = saverzoo(*args)
    assert again.exit_code == 0, again.output
    assert row_counts(use_database)["datasets"] == 1


def test_a_part_written_shard_a_killed_run_left_is_removed_by_the_next_run(tmp_path):
    image_folder(tmp_path / "src")
    source = find_source(tmp_path / "src")
    out = tmp_path / "shards"
    out.mkdir()
    leftover = out / ".tiny-000001.tar.k9x2"  # as tempfile names a staged shard
    leftover.write_bytes(b"half a shard")
    other = out / ".other-000001.tar.k9x2"  # another dataset's: not ours to remove
    other.write_bytes(b"x")

    make_shards(source, "tiny", str(out), shard_size=8)

    assert not leftover.exists() and other.exists()
