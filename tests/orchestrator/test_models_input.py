"""`saverzoo models add`: every option checked at registration, one name for one model."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.factories import records_dir, row_counts, saverzoo, saverzoo_json, small_zoo


@pytest.fixture
def checkpoint(tmp_path):
    def make(arch="test_resnet", seed=0, name="weights.safetensors", **kwargs):
        torch.manual_seed(seed)
        path = tmp_path / name
        save_file(timm.create_model(arch, pretrained=False, **kwargs).state_dict(), str(path))
        return path

    return make


def _refused(database_url, args, message):
    saverzoo("db", "upgrade")
    before = row_counts(database_url)
    result = saverzoo(*args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output and "weights_only=False" not in result.output
    assert row_counts(database_url) == before
    return result


BAD_OPTIONS = [
    (["--std", "0,0,0"], "--std 0.0 is outside (0, 1]"),
    (["--std", "nan,0.2,0.2"], "--std must be a finite number"),
    (["--crop-pct", "-1"], "--crop-pct -1.0 is outside"),
    (["--crop-pct", "inf"], "--crop-pct must be a finite number"),
    (["--crop-pct", "nan"], "--crop-pct must be a finite number"),
    (["--interpolation", "bogus"], "--interpolation 'bogus'"),
    (["--mean", "abc"], "--mean 'abc': give three numbers"),
    (["--mean", "0.5,0.5"], "--mean (0.5, 0.5): give three numbers"),
    (["--mean", "0.5,inf,0.5"], "--mean must be a finite number"),
    (["--mean", ""], "--mean '': give three numbers"),
    (["--input-size", "0"], "--input-size 0 is outside 8..2048"),
    (["--input-size", "-3"], "--input-size -3 is outside 8..2048"),
    (["--input-size", "1000000"], "--input-size 1000000 is outside 8..2048"),
    (["--num-classes", "0"], "--num-classes 0 is outside 1..32767"),
    (["--num-classes", "100000"], "--num-classes 100000 is outside 1..32767"),
    (["--arch", "no_such_arch"], "cannot build 'no_such_arch'"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_a_data_config_that_cannot_work_is_refused_at_registration(
    use_database, checkpoint, options, message
):
    args = ["models", "add", "mine", "--arch", "test_resnet", "--checkpoint", checkpoint()]
    _refused(use_database, [*args, *options], message)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "is empty"),
        ("m" * 5000, "5000 characters"),
        ("a/b", "contains '/'"),
        ("../up", "contains '..'"),
        ("_x", "does not start with a letter or digit"),
        ("resnet\uff15\uff10", "is not in Unicode's NFKC form ('resnet50')"),  # full-width digits
        ("\ufb01ne", "is not in Unicode's NFKC form ('fine')"),
    ],  # a ligature
)
def test_a_model_name_must_be_a_valid_name(use_database, checkpoint, name, message):
    args = ["models", "add", name, "--arch", "test_resnet", "--checkpoint", checkpoint()]
    _refused(use_database, args, message)


def test_an_input_size_the_architecture_cannot_take_is_refused(use_database, checkpoint):
    args = ["models", "add", "mine", "--arch", "test_vit3", "--checkpoint", checkpoint("test_vit3")]
    _refused(use_database, [*args, "--input-size", "64"], "cannot run on inputs of (3, 64, 64)")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: torch.save([torch.zeros(1)], p), "holds a list, not a state dict"),
        (lambda p: torch.save({"w": __import__("numpy").zeros(1)}, p), "Unsupported global"),
        (lambda p: torch.save({"fc.weight": torch.zeros(3, 3)}, p), "does not fit 'test_resnet'"),
    ],
)
def test_a_checkpoint_that_does_not_load_is_one_line(use_database, tmp_path, make, message):
    path = tmp_path / "weights.pth"
    make(path)
    args = ["models", "add", "mine", "--arch", "test_resnet", "--checkpoint", path]
    _refused(use_database, args, message)


def test_registering_the_same_model_again_changes_nothing(use_database, checkpoint):
    args = ["models", "add", "mine", "--arch", "test_resnet", "--checkpoint", checkpoint()]
    first = saverzoo(*args, "--crop-pct", "0.9")
    listed = saverzoo_json("models", "show", "mine")
    counts = row_counts(use_database)

    again = saverzoo(*args, "--crop-pct", "0.9")

    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert saverzoo_json("models", "show", "mine") == listed
    assert row_counts(use_database) == counts


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 1}, "other weights"),
        ({"name": "elsewhere.safetensors"}, "other weights"),
        ({"options": ["--crop-pct", "0.8"]}, "another data config (crop_pct 0.95, not 0.8)"),
        ({"options": ["--interpolation", "nearest"]}, "(interpolation 'bilinear', not 'nearest')"),
        ({"arch": "test_efficientnet"}, "the architecture 'test_resnet', not 'test_efficientnet'"),
        ({"options": ["--num-classes", "10"], "num_classes": 10}, "the default classes, not 10"),
    ],
)
def test_another_model_under_a_registered_name_is_refused(
    use_database, checkpoint, change, message
):
    saverzoo("models", "add", "mine", "--arch", "test_resnet", "--checkpoint", checkpoint())
    shown = saverzoo_json("models", "show", "mine")
    extra = {"num_classes": change["num_classes"]} if "num_classes" in change else {}
    arch = change.get("arch", "test_resnet")
    path = checkpoint(
        arch, change.get("seed", 0), change.get("name", "weights.safetensors"), **extra
    )
    if "seed" in change:  # the same path, other bytes
        path = checkpoint(arch, change["seed"])
    args = ["models", "add", "mine", "--arch", arch, "--checkpoint", path]

    result = _refused(use_database, [*args, *change.get("options", [])], message)

    assert "register this one under another name" in result.stderr
    assert saverzoo_json("models", "show", "mine") == shown


def test_a_checkpoint_under_the_name_of_imported_records_is_refused(
    use_database, tmp_path, checkpoint
):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")
    shown = saverzoo_json("models", "show", zoo.names[1])
    args = ["models", "add", zoo.names[1], "--arch", "test_resnet", "--checkpoint", checkpoint()]

    _refused(use_database, args, "already registered with imported records, not a checkpoint")

    assert saverzoo_json("models", "show", zoo.names[1]) == shown


@pytest.mark.parametrize("kind", ["secret line", "device", "fifo", "folder"])
def test_a_models_list_file_is_read_bounded_and_never_quoted(use_database, tmp_path, kind):
    """``--models @FILE`` names a file: a line that is not a model name is named by its number
    (the file may hold what the user did not mean to show), and only a regular file is read."""
    import os
    from pathlib import Path

    listed = tmp_path / "models.txt"
    if kind == "secret line":
        listed.write_text("test_resnet\nroot:$6$S3CRET-HASH:19000:0:99999:7:::\n")
    elif kind == "device":
        listed = Path("/dev/zero")  # never ends
    elif kind == "fifo":
        os.mkfifo(listed)  # no writer: reading would wait for ever
    else:
        listed.mkdir()

    imported = saverzoo(
        "records", "import", records_dir(tmp_path / "r", small_zoo()), "--dataset", "val"
    )
    assert imported.exit_code == 0, imported.output

    result = saverzoo(
        "records", "export", "--dataset", "val", "--models", f"@{listed}", "--out", tmp_path / "out"
    )

    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "S3CRET" not in result.output
    if kind == "secret line":
        assert f"--models @{listed}: line 2 is not a model name or pattern" in result.stderr
    else:
        assert f"{listed} is a " in result.stderr and ", not a file" in result.stderr


def test_a_name_that_differs_from_a_stored_one_only_in_case_is_refused(use_database, checkpoint):
    added = saverzoo("models", "add", "mine", "--arch", "test_resnet", "--checkpoint", checkpoint())
    assert added.exit_code == 0, added.output
    args = ["models", "add", "MINE", "--arch", "test_resnet", "--checkpoint", checkpoint(seed=1)]
    _refused(
        use_database, args, "model name 'MINE' differs from the stored model 'mine' only in case"
    )
