"""What a model is built from: checkpoints, data options and seeds, checked before any use."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from cluster.errors import InputError
from workers.build import build
from workers.spec import ModelLoadError, ModelSpec, checked_overrides, random_seed
from workers.weights import read_checkpoint


def _state():
    return timm.create_model("test_resnet", pretrained=False).state_dict()


class NotATensor:
    pass


CHECKPOINTS = {
    "an empty .pth": (lambda p: p.write_bytes(b""), ".pth", "is empty"),
    "garbage as .pth": (lambda p: p.write_bytes(b"\x80garbage" * 9), ".pth", "as plain tensors ("),
    "garbage as safetensors": (
        lambda p: p.write_bytes(b"garbage" * 9),
        ".safetensors",
        "not a readable safetensors",
    ),
    "a truncated safetensors": (
        lambda p: (save_file(_state(), str(p)), p.write_bytes(p.read_bytes()[:999])),
        ".safetensors",
        "not a readable safetensors",
    ),
    "a truncated .pth": (
        lambda p: (torch.save(_state(), p), p.write_bytes(p.read_bytes()[:999])),
        ".pth",
        "failed reading zip archive",
    ),
    "a list": (lambda p: torch.save([torch.zeros(2)], p), ".pth", "holds a list, not a state dict"),
    "a numpy array inside": (
        lambda p: torch.save({"w": np.zeros(2)}, p),
        ".pth",
        "Unsupported global",
    ),
    "an object of a class": (lambda p: torch.save(NotATensor(), p), ".pth", "Unsupported global"),
    "a number among the tensors": (
        lambda p: torch.save({"w": torch.zeros(1), "n": 3}, p),
        ".pth",
        "'n' holds a int, not a tensor",
    ),
    "an empty dict": (lambda p: torch.save({}, p), ".pth", "holds no tensors"),
    "a directory": (lambda p: p.mkdir(), ".pth", "is a directory"),
    "nothing": (lambda p: None, ".pth", "does not exist"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_a_checkpoint_that_cannot_be_read_is_one_line_without_unsafe_advice(tmp_path, case):
    make, suffix, message = CHECKPOINTS[case]
    path = tmp_path / f"weights{suffix}"
    make(path)

    with pytest.raises(ModelLoadError) as raised:
        read_checkpoint(path)

    text = str(raised.value)
    assert message in text and str(path) in text
    assert "\n" not in text and "weights_only=False" not in text and "False" not in text


@pytest.mark.parametrize(
    ("arch", "num_classes", "saved", "message"),
    [
        ("test_efficientnet", None, _state, "missing keys (conv_stem.weight"),
        ("test_resnet", 10, _state, "fc.weight (file [1000, 96], model [10, 96])"),
        (
            "test_resnet",
            None,
            lambda: {f"module.{k}": v for k, v in _state().items()},
            "save model.module.state_dict()",
        ),
        (
            "test_resnet",
            None,
            lambda: {**_state(), "extra.weight": torch.zeros(1)},
            "1 unexpected keys (extra.weight)",
        ),
        ("test_resnet", None, lambda: {"state_dict": _state()}, None),
        ("test_resnet", None, lambda: {"model": _state(), "epoch": 3}, None),
    ],
)
def test_a_checkpoint_must_fit_its_architecture(tmp_path, arch, num_classes, saved, message):
    path = tmp_path / "weights.pth"
    torch.save(saved(), path)
    spec = ModelSpec("mine", arch, "checkpoint", str(path), num_classes)

    if message is None:
        build(spec)  # the wrappers of training scripts are unwrapped
        return
    with pytest.raises(ModelLoadError) as raised:
        build(spec)
    text = str(raised.value)
    assert message in text and "check --arch and --num-classes" in text and "\n" not in text


BAD_DATA_OPTIONS = [
    ({"std": (0.0, 0.0, 0.0)}, "--std 0.0 is outside (0, 1]"),
    ({"std": (0.2, float("nan"), 0.2)}, "--std must be a finite number"),
    ({"mean": (0.5, 0.5)}, "give three numbers"),
    ({"mean": (0.5, float("inf"), 0.5)}, "--mean must be a finite number"),
    ({"mean": (-0.5, 0.5, 0.5)}, "--mean -0.5 is outside [0, 1]"),
    ({"crop_pct": -1.0}, "--crop-pct -1.0 is outside [0.25, 2]"),
    ({"crop_pct": 0.0}, "--crop-pct 0.0 is outside"),
    ({"crop_pct": float("nan")}, "--crop-pct must be a finite number"),
    ({"crop_pct": True}, "--crop-pct must be a number"),
    ({"interpolation": "bogus"}, "--interpolation 'bogus': use bilinear, bicubic, nearest"),
    ({"interpolation": "lanczos"}, "use bilinear, bicubic, nearest"),
    ({"input_size": (3, 0, 0)}, "--input-size 0 is outside 8..2048"),
    ({"input_size": (3, 100_000, 100_000)}, "--input-size 100000 is outside 8..2048"),
    ({"input_size": (1, 224, 224)}, "input channels 1 is outside 3..3"),
    ({"input_size": 224}, "give the side of a square input"),
    ({"crop_mode": "zoom"}, "crop_mode 'zoom': use center, squash, border"),
    ({"scale": 2}, "unknown data options ['scale']"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_DATA_OPTIONS)
def test_data_options_that_cannot_preprocess_an_image_are_refused(overrides, message):
    with pytest.raises(InputError) as raised:
        checked_overrides(overrides)
    assert message in str(raised.value)


def test_good_data_options_come_back_as_timm_takes_them():
    stored = {
        "input_size": [3, 96, 96],
        "mean": [0, 0.5, 1],
        "std": [1, 0.5, 0.25],
        "crop_pct": 1.15,
        "interpolation": "bicubic",
        "crop_mode": "center",
    }

    checked = checked_overrides(stored)

    assert checked["input_size"] == (3, 96, 96) and checked["mean"] == (0.0, 0.5, 1.0)
    assert checked["crop_pct"] == 1.15 and checked["interpolation"] == "bicubic"


def test_random_weights_are_seeded_by_the_model_name():
    torch.manual_seed(0)
    first = build(ModelSpec("test_resnet", "test_resnet", "random")).state_dict()
    torch.rand(100)  # whatever the process's random state, the same name builds the same weights
    again = build(ModelSpec("test_resnet", "test_resnet", "random")).state_dict()
    other = build(ModelSpec("test_resnet.r160_in1k", "test_resnet", "random")).state_dict()

    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert random_seed("test_resnet") == 1155472478943948855  # blake2b: every process agrees


def test_building_a_random_model_leaves_the_callers_random_state_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build(ModelSpec("test_resnet", "test_resnet", "random"))
    assert torch.equal(torch.rand(3), expected)
