"""Bad dataset input (names, labels, class counts, sample keys, --out) fails in one line, early.

Each refusal leaves no dataset row and writes nothing, inside the out folder or outside it.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.factories import flat_imagenet, image_folder, jpeg_bytes, row_counts, saverzoo

BAD_NAMES = [
    "./../escaped",
    "../x",
    "a/b",
    "a\\b",
    "/abs",
    "a..b",
    "..",
    ".hidden",
    "-leading",
    "x\ny",
    "x\x00y",
    "x\ty",
    "",
    "a" * 5000,
]


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def one_line_failure(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_tar(path: Path, samples: list[tuple[str, bytes]]) -> None:
    """A WebDataset shard of (key, cls) samples with real JPEGs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for index, (key, cls) in enumerate(samples):
            for suffix, data in (("cls", cls), ("jpg", jpeg_bytes(index, (16, 16), "RGB"))):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def empty_db(use_database):
    saverzoo("db", "upgrade")
    return use_database


@pytest.mark.parametrize("bad", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_bad_dataset_names_are_refused_before_anything_is_written(empty_db, tmp_path, bad):
    image_folder(tmp_path / "work" / "src")
    write_tar(tmp_path / "work" / "tars" / "t-000000.tar", [("a", b"0"), ("b", b"1")])
    out = tmp_path / "work" / "out" / "inner"
    before_rows, before_files = row_counts(empty_db), files_under(tmp_path)

    results = [
        saverzoo("datasets", "make-shards", tmp_path / "work" / "src", "--out", out, "--name", bad),
        saverzoo("datasets", "make-shards", tmp_path / "work" / "tars", "--name", bad),
        saverzoo(
            "datasets", "add", "--shards", tmp_path / "work" / "tars" / "t-000000.tar", "--", bad
        ),
    ]

    for result in results:
        assert "dataset name" in one_line_failure(result)
    assert files_under(tmp_path) == before_files  # nothing under out, nothing beside it
    assert row_counts(empty_db) == before_rows


def test_shard_writing_refuses_a_bad_name_itself(tmp_path):
    from cluster.errors import InputError
    from workers.shard_writer import make_shards
    from workers.sources import find_source

    image_folder(tmp_path / "src")
    source = find_source(tmp_path / "src")
    for bad in ("./../escaped", "a/b", ""):
        with pytest.raises(InputError, match="dataset name"):
            make_shards(source, bad, str(tmp_path / "out"))
    assert not (tmp_path / "escaped-000000.tar").exists()
    assert not any((tmp_path / "out").glob("*.tar"))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["0", "1", "99999999999", "2"], "line 3: label 99999999999 is outside 0..32766"),
        (["0", "-1", "2"], "line 2: label -1 is outside 0..32766"),
        (["0", "", "1", "cat"], "line 4 is not an integer label"),  # its text is not repeated
        (["0", "1.0"], "line 2 is not an integer label"),
        (["1_000", "2"], "line 1 is not an integer label"),
        (["٣", "2"], "line 1 is not an integer label"),
        (["9" * 5000], "line 1 is not an integer label"),
    ],
)
def test_labels_file_lines_that_are_not_class_indices_name_their_line(
    empty_db, tmp_path, lines, message
):
    flat_imagenet(tmp_path / "val", count=len(lines))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    before = row_counts(empty_db)

    result = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "val",
        "--labels",
        labels,
        "--out",
        tmp_path / "out",
        "--name",
        "flat",
    )

    assert message in one_line_failure(result)
    assert not (tmp_path / "out").exists()
    assert row_counts(empty_db) == before


@pytest.mark.parametrize(
    ("num_classes", "message"),
    [
        ("1099511627777", "--num-classes 1099511627777 is outside 1..32767"),
        ("0", "--num-classes 0 is outside 1..32767"),
        ("-5", "--num-classes -5 is outside 1..32767"),
        ("2", "range 0..2 falls outside 0..1"),  # fewer classes than the labels use
    ],
)
def test_class_counts_outside_storage_or_below_the_labels_are_refused_before_writing(
    empty_db, tmp_path, num_classes, message
):
    image_folder(tmp_path / "src")
    before = row_counts(empty_db)

    result = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "out",
        "--name",
        "tiny",
        "--num-classes",
        num_classes,
    )

    assert message in one_line_failure(result)
    assert not (tmp_path / "out").exists()
    assert row_counts(empty_db) == before


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (b"99999999999", "cls 99999999999 is outside 0..32766"),
        (b"-1", "cls -1 is outside 0..32766"),
        (b"dog", "has a non-integer cls"),
        (b"1.5", "has a non-integer cls"),
        (b"9" * 5000, "has a non-integer cls"),
    ],
)
def test_a_tar_sample_whose_cls_is_not_a_class_index_is_refused(empty_db, tmp_path, cls, message):
    shard = tmp_path / "tars" / "t-000000.tar"
    write_tar(shard, [("a", b"0"), ("b", cls)])
    before = row_counts(empty_db)

    added = saverzoo("datasets", "add", "t", "--shards", shard)
    folder = saverzoo("datasets", "make-shards", tmp_path / "tars", "--name", "t")

    for result in (added, folder):
        line = one_line_failure(result)
        assert message in line and "'b'" in line
    assert row_counts(empty_db) == before


@pytest.mark.parametrize(
    "shards",
    [
        [[("a", b"0"), ("b", b"1"), ("a", b"1")]],  # twice in one shard, apart
        [[("a", b"0"), ("b", b"1")], [("c", b"0"), ("b", b"1")]],  # in two shards
        [[("a", b"0"), ("a", b"1")]],  # twice in a row: one sample with two jpg files
    ],
    ids=["one-shard", "across-shards", "adjacent"],
)
def test_duplicate_sample_keys_are_refused_at_registration(empty_db, tmp_path, shards):
    for index, samples in enumerate(shards):
        write_tar(tmp_path / "tars" / f"t-{index:06d}.tar", samples)
    pattern = str(tmp_path / "tars" / f"t-{{000000..{len(shards) - 1:06d}}}.tar")
    before = row_counts(empty_db)

    added = saverzoo("datasets", "add", "t", "--shards", pattern)
    folder = saverzoo("datasets", "make-shards", tmp_path / "tars", "--name", "t")

    for result in (added, folder):
        line = one_line_failure(result)
        assert "appears" in line, line
    assert row_counts(empty_db) == before


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process may not write into (root writes anywhere but into /sys)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return folder
    kernel = Path("/sys/kernel")
    try:
        with tempfile.TemporaryFile(dir=kernel):
            pass
    except OSError:
        return kernel
    pytest.skip("no folder here refuses writes to this user")


@pytest.mark.parametrize("kind", ["regular-file", "under-a-file", "unwritable-folder"])
def test_an_out_that_cannot_hold_shards_is_one_line(empty_db, tmp_path, kind):
    image_folder(tmp_path / "src")
    (tmp_path / "file.txt").write_text("not a folder")
    out = {
        "regular-file": lambda: tmp_path / "file.txt",
        "under-a-file": lambda: tmp_path / "file.txt" / "shards",
        "unwritable-folder": lambda: _unwritable_folder(tmp_path),
    }[kind]()
    before = row_counts(empty_db)

    result = saverzoo("datasets", "make-shards", tmp_path / "src", "--out", out, "--name", "tiny")

    line = one_line_failure(result)
    assert f"--out {out}: cannot write shards there" in line
    assert "database" not in line
    assert (tmp_path / "file.txt").read_text() == "not a folder"
    assert row_counts(empty_db) == before


@pytest.mark.parametrize("kind", ["device", "fifo", "folder", "too large"])
def test_a_labels_file_that_is_not_a_small_regular_file_is_refused_before_reading(
    empty_db, tmp_path, kind, monkeypatch
):
    import workers.sources

    flat_imagenet(tmp_path / "val", count=3)
    labels = tmp_path / "labels"
    if kind == "device":
        labels = Path("/dev/zero")  # never ends
    elif kind == "fifo":
        os.mkfifo(labels)  # no writer: reading would wait for ever
    elif kind == "folder":
        labels.mkdir()
    else:
        labels.write_text("0\n1\n2\n")
        monkeypatch.setattr(workers.sources, "MAX_LABELS_BYTES", 4)

    result = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "val",
        "--labels",
        labels,
        "--out",
        tmp_path / "out",
        "--name",
        "flat",
    )

    line = one_line_failure(result)
    assert str(labels) in line
    expected = {
        "device": "is a character device, not a file",
        "fifo": "is a FIFO, not a file",
        "folder": "is a directory, not a file",
        "too large": "is larger than 4 bytes",
    }
    assert expected[kind] in line
    assert not (tmp_path / "out").exists()
