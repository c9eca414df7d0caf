"""Generated bad input against every command and route: refused in one line, nothing changed.

For each command of the CLI, hypothesis draws bad names, shard URLs, numbers and files and the
test asserts what a user is promised: exit status 1, exactly one line on stderr that is a refusal
(never a traceback, never the "unexpected" line of a bug), the database unchanged (a checksum of
every row of every table) and no file written anywhere under the working folder. The same for the
HTTP API: a 4xx answer with a JSON error, never a 5xx.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.validate import name_problem
from orchestrator.cli.group import UNEXPECTED
from tests.factories import database_checksum, image_folder, records_dir, saverzoo, small_zoo

pytestmark = pytest.mark.slow
EXAMPLES = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DATASET = "val"


# ----- the world the bad input is thrown at ---------------------------------------------------
@dataclass
class Home:
    root: Path
    url: str
    records: Path
    images: Path
    marker: Path  # a command smuggled into input would create this file
    checkpoint: Path  # a good checkpoint of test_resnet

    def files(self) -> set[Path]:
        return {p for p in self.root.rglob("*") if not p.name.endswith("-journal")}

    def checksum(self) -> str:
        return database_checksum(self.url)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A database holding one imported dataset of six models, as the working folder."""
    from cluster.settings import get_settings

    root = tmp_path_factory.mktemp("home")
    url = f"sqlite:///{root / 'saverzoo.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAVERZOO_DATABASE_URL", url)
        patch.setenv("SAVERZOO_REPORT_DIR", str(root / "reports"))
        patch.setenv("SAVERZOO_OBJECTSTORE_DIR", str(root / "objectstore"))
        patch.chdir(root)
        get_settings.cache_clear()
        records = records_dir(root, small_zoo(num_samples=120))
        imported = saverzoo("records", "import", records, "--dataset", DATASET)
        assert imported.exit_code == 0, imported.output
        image_folder(root / "images")
        checkpoint = root / "good.pth"
        _torch_save(_test_resnet_state(), checkpoint)
        yield Home(root, url, records, root / "images", root / "PWNED", checkpoint)
        get_settings.cache_clear()


def assert_refused(home: Home, args: list[str]) -> None:
    before_rows, before_files = home.checksum(), home.files()
    result = saverzoo(*args)
    shown = (
        f"saverzoo {' '.join(map(repr, args))}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert result.exit_code == 1, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert UNEXPECTED not in lines[0] and "Traceback" not in result.output, shown
    assert home.checksum() == before_rows, f"the database changed: {shown}"
    assert home.files() == before_files, f"files were written: {shown}"
    assert not home.marker.exists(), f"input ran a command: {shown}"


# ----- what is drawn ------------------------------------------------------------------------
SEPARATORS = ["/", "\\", "\x00", "\n", "\t", " ", ":", "*", "?", "'", '"', "<", "|", "$"]
bad_names = st.one_of(
    st.sampled_from(
        [
            "",
            "..",
            "../x",
            "a/b",
            "./../escaped",
            ".hidden",
            "-rf",
            "a..b",
            "x" * 5000,
            "é/..",
            "con\x7f",
            "name with space",
            "s3://bucket/key",
        ]
    ),
    st.builds(
        lambda a, s, b: a + s + b,
        st.text("abc", min_size=1, max_size=4),
        st.sampled_from(SEPARATORS),
        st.text("xyz", max_size=4),
    ),
    st.text(max_size=40).filter(lambda s: name_problem(s) is not None),
)
DANGEROUS_URLS = [
    "pipe:touch {marker}; cat x.tar",
    "pipe:touch {marker}",
    "http://127.0.0.1:9/x-{{0..1}}.tar",
    "https://example.com/x.tar",
    "gs://bucket/x.tar",
    "sftp://host/x.tar",
    "ais://bucket/x.tar",
    "-",
    "file://evil.example.com/x.tar",
    "s3://",
    "s3://bucket-only",
    "x-{{000000..999999999}}.tar",
    "{{0..99999999}}-{{0..99999999}}.tar",
    "x.tar\n; touch {marker}",
    "   ",
    "",
]
bad_urls = st.sampled_from(DANGEROUS_URLS)


# ----- names --------------------------------------------------------------------------------
NAME_COMMANDS: dict[str, Callable[[Home, str], list[str]]] = {
    "datasets add": lambda h, n: ["datasets", "add", n, "--shards", str(h.root / "x.tar")],
    "datasets make-shards": lambda h, n: [
        "datasets",
        "make-shards",
        str(h.images),
        "--name",
        n,
        "--out",
        str(h.root / "shards"),
    ],
    "records import": lambda h, n: ["records", "import", str(h.records), "--dataset", n],
    "records export": lambda h, n: ["records", "export", "--dataset", n, "--out", "exported"],
    "datasets show": lambda h, n: ["datasets", "show", n],
    "models show": lambda h, n: ["models", "show", n],
    "savers best": lambda h, n: ["savers", "best", "--dataset", n],
    "savers show": lambda h, n: ["savers", "show", n, "--dataset", DATASET],
    "savers curve": lambda h, n: ["savers", "curve", n, "zoo000", "--dataset", DATASET],
    "savers refresh": lambda h, n: ["savers", "refresh", "--dataset", n],
    "report": lambda h, n: ["report", "--dataset", n, "--out", "report"],
    "sweep submit": lambda h, n: ["sweep", "submit", "--models", "zoo000", "--dataset", n],
}


@pytest.mark.parametrize("command", sorted(NAME_COMMANDS))
@EXAMPLES
@given(name=bad_names)
def test_a_bad_name_is_refused_in_one_line_and_changes_nothing(home, command, name):
    assert_refused(home, NAME_COMMANDS[command](home, name))


# ----- shard URLs ---------------------------------------------------------------------------
@EXAMPLES
@given(url=bad_urls)
def test_a_shard_url_saverzoo_does_not_read_itself_is_refused_and_never_run(home, url):
    assert_refused(home, ["datasets", "add", "ok-name", "--shards", url.format(marker=home.marker)])


# ----- numbers ------------------------------------------------------------------------------
NOT_NUMBERS = ["abc", "", "true", "nan", "inf", "-inf", "1e309", "0x"]
NOT_COUNTS = [*NOT_NUMBERS, "1.5", "99999999999999999999"]
# Per option: how to pass a value, and values that are bad for it (beside the non-numbers).
NUMBER_COMMANDS: dict[str, tuple[Callable[[Home, str], list[str]], list[str]]] = {
    "savers best --max-drop": (
        lambda h, v: ["savers", "best", "--dataset", DATASET, "--max-drop", v],
        [*NOT_NUMBERS, "-1", "100.5", "1e20", "0.001"],
    ),
    "savers show --alternatives": (
        lambda h, v: ["savers", "show", "zoo005", "--dataset", DATASET, "--alternatives", v],
        [*NOT_COUNTS, "-1"],
    ),
    "models list --offset": (lambda h, v: ["models", "list", "--offset", v], [*NOT_COUNTS, "-1"]),
    "models list --limit": (
        lambda h, v: ["models", "list", "--limit", v],
        [*NOT_COUNTS, "0", "-1", "100000"],
    ),
    "make-shards --shard-size": (
        lambda h, v: [*_make_shards(h), "--shard-size", v],
        [*NOT_COUNTS, "0", "-1"],
    ),
    "make-shards --num-classes": (
        lambda h, v: [*_make_shards(h), "--num-classes", v],
        [*NOT_COUNTS, "0", "-1", "99999999999", "1"],  # 1 class: the labels go up to 2
    ),
    "models add --mean": (
        lambda h, v: _models_add(h, "--mean", v),
        [*NOT_NUMBERS, "0.5,0.5", "a,b,c", "nan,0,0"],
    ),
    "models add --std": (
        lambda h, v: _models_add(h, "--std", v),
        [*NOT_NUMBERS, "0,0,0", "-1,1,1", "inf,1,1"],
    ),
    "models add --crop-pct": (
        lambda h, v: _models_add(h, "--crop-pct", v),
        [*NOT_NUMBERS, "0", "-1", "100"],
    ),
    "models add --input-size": (
        lambda h, v: _models_add(h, "--input-size", v),
        [*NOT_COUNTS, "0", "-1", "1000000"],
    ),
    "models add --interpolation": (
        lambda h, v: _models_add(h, "--interpolation", v),
        ["bogus", "", "nearest; rm -rf"],
    ),
    "models add --num-classes": (
        lambda h, v: _models_add(h, "--num-classes", v),
        [*NOT_COUNTS, "0", "-1", "99999999999"],
    ),
}


def _make_shards(home: Home) -> list[str]:
    return ["datasets", "make-shards", str(home.images), "--name", "n", "--out", "shards"]


def _models_add(home: Home, option: str, value: str) -> list[str]:
    return [
        "models",
        "add",
        "new-model",
        "--arch",
        "test_resnet",
        "--checkpoint",
        str(home.checkpoint),
        option,
        value,
    ]


@pytest.mark.parametrize("command", sorted(NUMBER_COMMANDS))
@EXAMPLES
@given(data=st.data())
def test_a_bad_number_is_refused_in_one_line_and_changes_nothing(home, command, data):
    args, bad_values = NUMBER_COMMANDS[command]
    assert_refused(home, args(home, data.draw(st.sampled_from(bad_values))))


# ----- files --------------------------------------------------------------------------------
def _corrupt_records(home: Home, case: str) -> Path:
    folder = home.root / f"bad-records-{case}"
    if folder.exists():
        return folder
    folder.mkdir()
    source = sorted(home.records.glob("*_test.npz"))[0]
    info = json.loads((home.records / "complexity_info.json").read_text())
    name = source.name[: -len("_test.npz")]
    with np.load(source) as npz:
        label, preds, confs = npz["label"], npz["preds"], npz["confs"]
    arrays = {"label": label, "preds": preds, "confs": confs}
    macs = info[name]["macs"]
    if case == "empty npz":
        (folder / source.name).write_bytes(b"")
    elif case == "truncated npz":
        (folder / source.name).write_bytes(source.read_bytes()[:100])
    elif case == "png as npz":
        (folder / source.name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    else:
        arrays = {
            "class 2**40": {**arrays, "preds": np.full_like(preds, 2**40, dtype=np.int64)},
            "negative class": {**arrays, "preds": -preds - 1},
            "negative label": {**arrays, "label": label - 1000},
            "no samples": {"label": label[:0], "preds": preds[:, :0], "confs": confs[:, :0]},
            "k = 0": {**arrays, "preds": preds[..., :0], "confs": confs[..., :0]},
            "duplicate keys": {**arrays, "keys": np.array(["same"] * label.shape[0])},
            "nan confidence": {**arrays, "confs": np.full_like(confs, np.nan)},
        }.get(case, arrays)
        np.savez(folder / source.name, **arrays)
    macs = {
        "macs Infinity": "Infinity",
        "macs true": True,
        "macs negative": -5.0,
        "macs NaN": "NaN",
    }.get(case, macs)
    text = json.dumps({name: {**info[name], "macs": macs}})
    if case in {"macs Infinity", "macs NaN"}:
        text = text.replace(f'"{macs}"', macs)  # JSON as Python's json writes non-finite values
    if case == "empty complexity":
        text = ""
    (folder / "complexity_info.json").write_text(text)
    return folder


RECORD_CASES = [
    "empty npz",
    "truncated npz",
    "png as npz",
    "class 2**40",
    "negative class",
    "negative label",
    "no samples",
    "k = 0",
    "duplicate keys",
    "nan confidence",
    "macs Infinity",
    "macs true",
    "macs negative",
    "macs NaN",
    "empty complexity",
]


@pytest.mark.parametrize("case", RECORD_CASES)
def test_bad_records_are_refused_in_one_line_and_change_nothing(home, case):
    assert_refused(
        home, ["records", "import", str(_corrupt_records(home, case)), "--dataset", "other"]
    )


CHECKPOINTS: dict[str, Callable[[Path], None]] = {
    "empty .pth": lambda p: p.write_bytes(b""),
    "garbage .pth": lambda p: p.write_bytes(os.urandom(256)),
    "garbage .safetensors": lambda p: p.write_bytes(os.urandom(256)),
    "truncated .safetensors": lambda p: p.write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{"),
    "a folder": lambda p: p.mkdir(),
    "a list .pth": lambda p: _torch_save([1, 2, 3], p),
    "wrong keys .pth": lambda p: _torch_save({"nothing.weight": _zeros(3)}, p),
    "wrong shapes .pth": lambda p: _torch_save(_wrong_shapes(), p),
}


def _torch_save(value: object, path: Path) -> None:
    import torch

    torch.save(value, path)


def _zeros(*shape: int):
    import torch

    return torch.zeros(shape)


def _test_resnet_state() -> dict:
    import timm

    return timm.create_model("test_resnet", pretrained=False).state_dict()


def _wrong_shapes() -> dict:
    state = _test_resnet_state()
    return {key: _zeros(*(d + 1 for d in tensor.shape)) for key, tensor in state.items()}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_bad_checkpoints_are_refused_in_one_line_and_change_nothing(home, case):
    suffix = ".safetensors" if "safetensors" in case else ".pth"
    path = home.root / "checkpoints" / f"{case.split()[0]}-{len(case)}{suffix}"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        CHECKPOINTS[case](path)
    assert_refused(
        home,
        ["models", "add", "from-checkpoint", "--arch", "test_resnet", "--checkpoint", str(path)],
    )


@pytest.mark.parametrize("out", ["a-file", "/proc/forbidden", "a-file/below"])
def test_an_out_that_cannot_be_a_folder_is_refused_in_one_line(home, out):
    (home.root / "a-file").touch()
    for args in (
        ["records", "export", "--dataset", DATASET, "--out", out],
        ["report", "--dataset", DATASET, "--out", out],
        ["datasets", "make-shards", str(home.images), "--name", "n", "--out", out],
        ["cascade", "export", "zoo005", "--dataset", DATASET, "--out", out],
    ):
        assert_refused(home, args)


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_file_a_user_names_is_read_only_if_it_is_a_regular_file(home, kind):
    """/dev/zero never ends and a FIFO without a writer blocks: neither is read."""
    named = {"device": Path("/dev/zero"), "fifo": home.root / "a-fifo", "folder": home.root}[kind]
    if kind == "fifo" and not named.exists():
        os.mkfifo(named)
    for args in (
        ["records", "export", "--dataset", DATASET, "--models", f"@{named}", "--out", "x"],
        [
            "datasets",
            "make-shards",
            str(home.images),
            "--labels",
            str(named),
            "--name",
            "flat",
            "--out",
            "shards",
        ],
    ):
        assert_refused(home, args)


@pytest.mark.parametrize("command", ["status", "resume", "cancel"])
def test_an_id_no_database_column_holds_is_refused_in_one_line(home, command):
    assert_refused(home, ["sweep", command, str(10**25)])


@pytest.mark.parametrize("labels", ["abc\n", "1\n2\n", "99999999999\n" * 7, "-3\n" * 7, ""])
def test_a_bad_labels_file_is_refused_in_one_line(home, labels, tmp_path):
    flat = home.root / "flat"
    if not flat.exists():
        from tests.factories import flat_imagenet

        flat_imagenet(flat)
    labels_file = home.root / "labels-bad.txt"
    labels_file.write_text(labels)
    assert_refused(
        home,
        [
            "datasets",
            "make-shards",
            str(flat),
            "--labels",
            str(labels_file),
            "--name",
            "flat",
            "--out",
            "shards",
        ],
    )
