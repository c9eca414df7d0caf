"""What a model is: its name, architecture, where its weights come from, its data options.

A ``ModelSpec`` is a plain value (no torch): the CLI checks a registration's options with it
before anything heavy is imported, and the driver hands specs to Ray workers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

from cluster import validate
from cluster.errors import InputError

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


# Resizes that both preprocessing modes run (torchvision resizes tensors with these only).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


CROP_MODES = ("center", "squash", "border")


MAX_INPUT_SIZE = 2048  # pixels a side; timm's largest pretrained configs use 1024


MIN_INPUT_SIZE = 8


# crop_pct sets the resize before the crop (input / crop_pct): timm's configs use 0.875 to 1.15;
# far outside, the resize grows without bound or keeps almost nothing of the image.
CROP_PCT_RANGE = (0.25, 2.0)


# A resolution variant: the same weights evaluated at another square test size, named
# ``name+SIZEpx``. ``+`` never appears in a superseded model's ``name@hash`` nor in timm's names.
VARIANT = re.compile(r"^(?P<base>.+)\+(?P<size>[0-9]{1,4})px$")


def variant_name(name: str, size: int) -> str:
    return f"{name}+{size}px"


def split_variant(name: str) -> tuple[str, int | None]:
    """The model a variant's weights are, and its test size; ``(name, None)`` for no variant."""
    match = VARIANT.match(name)
    if match is None:
        return name, None
    return match["base"], int(match["size"])


def input_sizes(text: str | None) -> list[int]:
    """``--input-sizes 128,160,192`` as sizes, each checked; none for None or empty."""
    if not text:
        return []
    sizes = []
    for part in text.split(","):
        try:
            size = int(part.strip())
        except ValueError:
            raise InputError(
                f"--input-sizes {text!r}: give square sides separated by commas, e.g. 128,160,192"
            ) from None
        sizes.append(validate.integer(size, "--input-sizes", MIN_INPUT_SIZE, MAX_INPUT_SIZE))
    return sorted(set(sizes))


class ModelLoadError(InputError):
    """A model cannot be built or its weights cannot be loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model for evaluation (stored with it in the database)."""

    name: str  # timm arch.tag, or the user's name for a checkpoint
    arch: str
    source: str  # timm | checkpoint | random
    checkpoint: str | None = None
    num_classes: int | None = None
    data_overrides: dict = field(default_factory=dict)  # explicit options win over timm's config
    weights_of: str | None = None  # a resolution variant: the model whose weights it evaluates

    @property
    def random_weights(self) -> bool:
        return self.source == "random"

    @property
    def weights_name(self) -> str:
        """The name the weights belong to (the variant's base model, or this one)."""
        return self.weights_of or self.name

    def at_size(self, size: int) -> ModelSpec:
        """The same weights at a square test size ``size`` (the rest of the data config its own)."""
        if self.weights_of is not None:
            raise InputError(f"{self.name!r} is already a resolution variant")
        return replace(
            self,
            name=variant_name(self.name, size),
            data_overrides={**self.data_overrides, "input_size": (3, size, size)},
            weights_of=self.name,
        )


def timm_spec(name: str, *, random_weights: bool = False) -> ModelSpec:
    """A timm model by ``arch``, ``arch.tag`` or a variant's ``arch.tag+SIZEpx``."""
    import timm

    from workers.registry import load_plugins

    base, size = split_variant(name)
    if size is not None:
        validate.integer(size, "a variant's input size", MIN_INPUT_SIZE, MAX_INPUT_SIZE)
        return timm_spec(base, random_weights=random_weights).at_size(size)
    load_plugins()
    arch = name.split(".", 1)[0]
    if arch not in timm.list_models():
        raise ModelLoadError(f"timm has no architecture {arch!r} (timm {timm.__version__})")
    return ModelSpec(name, arch, "random" if random_weights else "timm")


def random_seed(name: str) -> int:
    """The seed of a model built without pretrained weights: a stable hash of its name (the same
    in every process and Python version, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


def checked_overrides(overrides: dict) -> dict:
    """Explicit data options, each checked; tuples where timm wants tuples.

    ``input_size`` is ``(3, H, W)`` with sides of ``MIN_INPUT_SIZE``..``MAX_INPUT_SIZE``; ``mean``
    three numbers in [0, 1]; ``std`` three in (0, 1]; ``crop_pct`` in ``CROP_PCT_RANGE``;
    ``interpolation`` one of ``INTERPOLATIONS``; ``crop_mode`` one of ``CROP_MODES``.
    """
    unknown = sorted(set(overrides) - set(DATA_CONFIG_KEYS))
    if unknown:
        raise InputError(f"unknown data options {unknown}: use {', '.join(DATA_CONFIG_KEYS)}")
    checked = {}
    for key, value in overrides.items():
        if value is not None:
            checked[key] = _CHECKS[key](value)
    return checked


def _input_size(value: object) -> tuple[int, int, int]:
    sides = list(value) if isinstance(value, list | tuple) else None
    if sides is None or len(sides) != 3:
        raise InputError(f"--input-size {value!r}: give the side of a square input, e.g. 224")
    validate.integer(sides[0], "input channels", 3, 3)
    for side in sides[1:]:
        validate.integer(side, "--input-size", MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    channels, height, width = (int(v) for v in sides)
    return channels, height, width


def _channels(what: str, low_open: bool):
    def check(value: object) -> tuple[float, float, float]:
        values = list(value) if isinstance(value, list | tuple) else None
        if values is None or len(values) != 3:
            raise InputError(f"{what} {value!r}: give three numbers, one per channel (R,G,B)")
        r, g, b = (validate.number(v, what, low=0.0, high=1.0, low_open=low_open) for v in values)
        return r, g, b

    return check


def _choice(what: str, choices: tuple[str, ...]):
    def check(value: object) -> str:
        if value not in choices:
            raise InputError(f"{what} {value!r}: use {', '.join(choices)}")
        return value

    return check


def _crop_pct(value: object) -> float:
    low, high = CROP_PCT_RANGE
    return validate.number(value, "--crop-pct", low=low, high=high)


_CHECKS = {
    "input_size": _input_size,
    "mean": _channels("--mean", low_open=False),
    "std": _channels("--std", low_open=True),
    "crop_pct": _crop_pct,
    "interpolation": _choice("--interpolation", INTERPOLATIONS),
    "crop_mode": _choice("crop_mode", CROP_MODES),
}
