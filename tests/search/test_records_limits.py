"""Reading records is bounded: hostile or careless files are refused in one line, before they cost
memory or time, and the line never quotes what the file holds."""

from __future__ import annotations

import io
import json
import os
import signal
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy

from search import records
from search.records import RecordsError, read_records
from tests.factories import records_dir, row_counts, saverzoo, small_zoo

SECRET = "SECRET-CONTENT"


# ----- building records, hostile ones included ----------------------------------------------------
def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _header_only(shape: tuple[int, ...], dtype: str = "<i8", data: bytes = b"") -> bytes:
    """An npy member whose header claims ``shape`` whatever data follows it."""
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data  # the magic string, the header's length and the header


def _arrays(samples: int = 4, top_k: int = 1, exits: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, samples)
    return {
        "label": labels[:, None],
        "preds": rng.integers(0, 10, (exits, samples, top_k)),
        "confs": rng.random((exits, samples, top_k)),
    }


def _write_npz(path, members: dict[str, bytes | np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            data = _npy_bytes(content) if isinstance(content, np.ndarray) else content
            archive.writestr(f"{name}.npy", data)


def _folder(tmp_path, members=None, complexity: bytes | None = None, model: str = "m"):
    """A records folder of one model; ``members`` replace or add arrays of a sound file."""
    directory = tmp_path / "records"
    _write_npz(directory / f"{model}_test.npz", {**_arrays(), **(members or {})})
    info = json.dumps({model: {"macs": 4e9, "params": 5e6, "acc": 0.5}}).encode()
    (directory / "complexity_info.json").write_bytes(info if complexity is None else complexity)
    return directory


def _refusal(directory) -> str:
    with pytest.raises(RecordsError) as caught:
        read_records(directory)
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message, message
    return message


@pytest.fixture
def no_hang():
    """A read that blocks fails the test after 10 seconds instead of hanging the run."""

    def interrupt(signum, frame):
        raise TimeoutError("the read blocked")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ----- npz headers: checked before anything is decompressed ---------------------------------------
def test_an_npz_whose_header_claims_a_huge_shape_is_refused_before_loading(tmp_path):
    directory = _folder(tmp_path, {"preds": _header_only((10**9, 5), data=b"\0" * 2**20)})
    tracemalloc.start()
    try:
        message = _refusal(directory)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert "m_test.npz: preds: its header claims shape (1000000000, 5)" in message
    assert "but its zip member holds 1,048,704 bytes" in message
    assert peak < 16 * 2**20  # the claimed 40 GB were never allocated


def test_a_header_whose_size_disagrees_with_the_zip_directory_is_refused(tmp_path):
    directory = _folder(tmp_path, {"confs": _header_only((1, 4, 1), "<f8", b"\0" * 8)})

    message = _refusal(directory)

    assert "confs: its header claims shape (1, 4, 1) of <f8 (160 bytes)" in message
    assert "its zip member holds 136 bytes" in message


def test_more_samples_than_the_project_stores_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("cluster.validate.MAX_SAMPLES", 3)

    assert "N 4 is outside 1..3" in _refusal(_folder(tmp_path))


def test_a_top_k_beyond_the_bound_is_refused(tmp_path):
    directory = _folder(tmp_path, _arrays(samples=2, top_k=records.MAX_TOP_K + 1))

    assert "top 1,001 classes" in _refusal(directory)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"preds": np.asfortranarray(np.zeros((2, 4, 3), np.int64))}, "Fortran order"),
        ({"keys": np.array(["a", 1, None, 2.0], dtype=object)}, "plain array"),
        ({"confs": np.zeros((1, 4, 1), np.complex64)}, "confs must be real numbers"),
        ({"preds": np.zeros((1, 4, 1), np.float32)}, "integer class indices"),
        ({"keys": np.array([b"a", b"b", b"c", b"d"])}, "keys must be a list of text"),
        (
            {"preds": b"\x93NUMPY\x01\x00\x10\x00" + b"{'" + SECRET.encode() + b"'}  \n"},
            "no readable npy header",
        ),
        ({"preds": b"PK" + SECRET.encode()}, "no readable npy header"),
        ({"label": np.zeros((3, 1), np.int64)}, "3 labels but predictions for 4"),
    ],
)
def test_arrays_that_are_not_plain_records_are_refused_from_their_header(
    tmp_path, members, message
):
    assert message in _refusal(_folder(tmp_path, members))


def test_an_npz_of_many_members_is_refused_before_its_directory_is_read(tmp_path):
    extra = {f"x{i}": b"" for i in range(records.MAX_ZIP_MEMBERS)}

    assert "zip directory lists 67 members" in _refusal(_folder(tmp_path, extra))


def test_a_missing_array_is_named(tmp_path):
    directory = tmp_path / "records"
    _folder(tmp_path)
    _write_npz(directory / "m_test.npz", {"label": _arrays()["label"]})

    assert "lacks the arrays ['confs', 'preds']" in _refusal(directory)


def test_an_npy_file_where_an_npz_belongs_is_one_line(tmp_path):
    directory = _folder(tmp_path)
    np.save(directory / "m.npy", np.arange(4))
    os.replace(directory / "m.npy", directory / "m_test.npz")

    assert "is a single .npy array, not an .npz archive" in _refusal(directory)


def test_a_file_that_is_no_zip_is_one_line(tmp_path):
    directory = _folder(tmp_path)
    (directory / "m_test.npz").write_text(SECRET)

    assert "m_test.npz is not a readable npz file" in _refusal(directory)


# ----- only regular files are read ----------------------------------------------------------------
def test_a_fifo_named_like_records_is_refused_without_blocking(tmp_path, no_hang):
    directory = _folder(tmp_path)
    (directory / "m_test.npz").unlink()
    os.mkfifo(directory / "m_test.npz")

    assert "m_test.npz is a FIFO, not a file" in _refusal(directory)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_linked_in_as_records_is_refused_without_reading(tmp_path, no_hang):
    directory = _folder(tmp_path)
    (directory / "m_test.npz").unlink()
    (directory / "m_test.npz").symlink_to("/dev/zero")

    assert "m_test.npz is a character device, not a file" in _refusal(directory)


def test_a_directory_named_like_records_is_refused(tmp_path):
    directory = _folder(tmp_path)
    (directory / "m_test.npz").unlink()
    (directory / "m_test.npz").mkdir()

    assert "m_test.npz is a directory, not a file" in _refusal(directory)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_complexity_info_that_is_not_a_regular_file_is_refused(tmp_path, kind, no_hang):
    directory = _folder(tmp_path)
    path = directory / "complexity_info.json"
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()

    assert "complexity_info.json is a" in _refusal(directory)


# ----- complexity_info.json: bounded, strict JSON -------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"m": {"macs": ' + b"7" * 5000 + b"}}", "an integer of 5,000 digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper than"),
        (b'{"m": {"macs": 4e9}, "\xff\xfe' + SECRET.encode() + b'": 1}', "is not UTF-8 text"),
        (b'["m", 4e9]', "must be a JSON object"),
        (b'{"m": {"macs": NaN}}', "holds NaN, which is not a finite number"),
        (b'{"m": {"macs": 4e9, "acc": Infinity}}', "holds Infinity, which is not a finite"),
        (b'{"m": {"macs": 1e999}}', "a number too large for a float"),
        (b'{"m": {"macs": "\\q' + SECRET.encode() + b'"}}', "is not valid JSON (line 1, column"),
        (b'{"m": {"macs": 4e9}}\n' + SECRET.encode(), "is not valid JSON (line 2, column 1)"),
    ],
)
def test_a_complexity_info_the_import_cannot_trust_is_one_line(tmp_path, content, message):
    message_seen = _refusal(_folder(tmp_path, complexity=content))

    assert message in message_seen and "complexity_info.json" in message_seen


def test_a_complexity_info_beyond_its_size_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_COMPLEXITY_BYTES", 1000)
    padded = json.dumps({"m": {"macs": 4e9}, "pad": "x" * 2000}).encode()

    assert "is larger than 1,000 bytes" in _refusal(_folder(tmp_path, complexity=padded))


# ----- memory: bounded from the headers, before anything is loaded --------------------------------
def _two_models(tmp_path, samples=50, top_k=5):
    directory = tmp_path / "records"
    arrays = _arrays(samples=samples, top_k=top_k)
    for name in ("a", "b"):
        _write_npz(directory / f"{name}_test.npz", arrays)
    info = {name: {"macs": 1e9 * (i + 1)} for i, name in enumerate(("a", "b"))}
    (directory / "complexity_info.json").write_text(json.dumps(info))
    return directory


def _no_read(*args):
    raise AssertionError("an array was read")


def test_records_beyond_the_memory_bound_are_refused_before_any_array_is_read(
    tmp_path, monkeypatch
):
    directory = _two_models(tmp_path)
    monkeypatch.setattr(records, "CHUNK_BYTES", 64)
    needed = 6 * 2 * 50 * 5 + 50 * 8 + 50 * (8 + 8) + 4 * 64  # predictions, labels, reading
    monkeypatch.setattr(records, "MAX_RECORDS_BYTES", needed - 1)
    monkeypatch.setattr(records, "_load_npz", _no_read)

    message = _refusal(directory)

    assert "the records of 2 models (500 top-k predictions on 50 samples)" in message
    assert "split the models into several folders" in message and "same --dataset" in message
    monkeypatch.setattr(records, "MAX_RECORDS_BYTES", needed)
    with pytest.raises(AssertionError, match="an array was read"):
        read_records(directory)  # at the bound: reading starts


def test_one_model_beyond_the_memory_bound_is_told_to_keep_fewer_classes(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_RECORDS_BYTES", 1000)

    assert "keep fewer top classes" in _refusal(_folder(tmp_path))


def test_reading_a_chunk_at_a_time_gives_the_arrays_as_they_are(tmp_path, monkeypatch):
    """Exit 0 only, any integer or float dtype and byte order, -1 at probability 0 kept."""
    monkeypatch.setattr(records, "CHUNK_BYTES", 24)
    arrays = _arrays(samples=37, top_k=3, exits=4)
    arrays["preds"][0, 5, 1] = -1
    arrays["confs"][0, 5, 1] = 0.0
    arrays["preds"] = arrays["preds"].astype(">i4")
    arrays["label"] = arrays["label"].astype(np.uint8)
    keys = np.array([f"key{i:03d}" for i in range(37)])
    directory = _folder(tmp_path, {**arrays, "keys": keys})

    loaded = read_records(directory)

    model = loaded.models[0]
    assert model.topk_classes.dtype == np.int16 and model.topk_probs.dtype == np.float32
    assert model.topk_classes.tolist() == arrays["preds"][0].tolist()
    assert np.array_equal(model.topk_probs, arrays["confs"][0].astype(np.float32))
    assert loaded.labels.tolist() == arrays["label"][:, 0].tolist()
    assert loaded.keys == keys.tolist()


# ----- acc: a fraction, as the seed code writes it ------------------------------------------------
@pytest.mark.parametrize("acc", [0.761, 76.1, None])
def test_acc_is_not_read_so_a_fraction_or_a_percentage_imports_alike(tmp_path, acc):
    info = {"m": {"macs": 4e9, **({} if acc is None else {"acc": acc})}}
    directory = _folder(tmp_path, complexity=json.dumps(info).encode())

    assert read_records(directory).models[0].gmacs == 4.0


def test_records_export_writes_acc_as_a_fraction_like_the_seed_code(use_database, tmp_path):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")

    exported = saverzoo("records", "export", "--dataset", "val", "--out", tmp_path / "export")

    assert exported.exit_code == 0, exported.output
    info = json.loads((tmp_path / "export" / "complexity_info.json").read_text())
    for row, name in enumerate(zoo.names):
        top1 = float(np.mean(zoo.predictions[row] == zoo.labels))
        assert info[name]["acc"] == pytest.approx(top1) and 0 <= info[name]["acc"] <= 1


# ----- through the command line -------------------------------------------------------------------
def test_a_huge_header_through_the_cli_is_one_line_and_creates_nothing(use_database, tmp_path):
    directory = records_dir(tmp_path, small_zoo())
    _write_npz(directory / "zoo000_test.npz", {**_arrays(), "preds": _header_only((10**9, 5))})
    saverzoo("db", "upgrade")
    before = row_counts(use_database)

    result = saverzoo("records", "import", directory, "--dataset", "val")

    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "zoo000_test.npz: preds: its header claims shape (1000000000, 5)" in result.stderr
    assert "internal error" not in result.stderr
    assert row_counts(use_database) == before and before["datasets"] == 0
