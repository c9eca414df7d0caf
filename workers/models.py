"""Where a model's weights come from, and its evaluation data config.

Three sources, decided by one function (``weights_source``) and loaded by one dispatch:
- ``timm``: a pretrained ``arch.tag`` from the Hugging Face cache; with no network
  (``HF_HUB_OFFLINE=1``) a missing weight is an error that says how to pre-fetch it;
- ``checkpoint``: a local safetensors or ``.pth`` file (loaded with ``weights_only=True``),
  registered with ``saverzoo models add``;
- ``random``: random weights, only when asked for explicitly, and recorded so results say so;
  seeded by a stable hash of the model's name (``random_seed``), so every build of the same name,
  in any process, has the same weights and a rerun never mixes two initialisations.

The data config is timm's ``resolve_data_config``: explicit options first, then the model's
pretrained config (its test settings), then timm's defaults. Explicit options are checked
(``checked_overrides``) before a model is registered or built: a config that cannot preprocess an
image is refused in one line, never found out by a crash in the middle of an evaluation.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from cluster import validate
from cluster.errors import InputError
from workers.profile import Profile, profile
from workers.registry import load_plugins

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
# Resizes that both preprocessing modes run (torchvision resizes tensors with these only).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
CROP_MODES = ("center", "squash", "border")
MAX_INPUT_SIZE = 2048  # pixels a side; timm's largest pretrained configs use 1024
MIN_INPUT_SIZE = 8
# crop_pct sets the resize before the crop (input / crop_pct): timm's configs use 0.875 to 1.15;
# far outside, the resize grows without bound or keeps almost nothing of the image.
CROP_PCT_RANGE = (0.25, 2.0)


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

    @property
    def random_weights(self) -> bool:
        return self.source == "random"


def timm_spec(name: str, *, random_weights: bool = False) -> ModelSpec:
    """A timm model by ``arch`` or ``arch.tag``."""
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
    return tuple(int(v) for v in sides)


def _channels(what: str, low_open: bool):
    def check(value: object) -> tuple[float, float, float]:
        values = list(value) if isinstance(value, list | tuple) else None
        if values is None or len(values) != 3:
            raise InputError(f"{what} {value!r}: give three numbers, one per channel (R,G,B)")
        return tuple(validate.number(v, what, low=0.0, high=1.0, low_open=low_open) for v in values)

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


def _kwargs(spec: ModelSpec) -> dict:
    return {} if spec.num_classes is None else {"num_classes": spec.num_classes}


def _timm_name(spec: ModelSpec) -> str:
    """What timm builds: ``arch.tag`` keeps the tag's pretrained (and so data) config."""
    return spec.name if spec.source in ("timm", "random") else spec.arch


def skeleton(spec: ModelSpec) -> torch.nn.Module:
    """The architecture without weights, on the ``meta`` device: no memory, no download.

    It carries the same pretrained config (so the same data config) as the real model, and
    costs are counted on it in a fraction of a second. A model whose construction computes with
    tensors cannot be built on ``meta``; it is built on the CPU with random weights instead.
    """
    load_plugins()
    try:
        with torch.device("meta"):
            return timm.create_model(_timm_name(spec), pretrained=False, **_kwargs(spec)).eval()
    except (RuntimeError, NotImplementedError, ValueError):
        pass
    try:
        return timm.create_model(_timm_name(spec), pretrained=False, **_kwargs(spec)).eval()
    except (RuntimeError, ValueError) as error:
        raise ModelLoadError(f"cannot build {spec.arch!r}: {error}") from None


def build(spec: ModelSpec) -> torch.nn.Module:
    """The model with its weights, in eval mode, on the CPU.

    Without pretrained weights the model is built under its own seed (``random_seed``), in a
    forked RNG so that the caller's random state is left as it was.
    """
    load_plugins()
    kwargs = _kwargs(spec)
    try:
        if spec.source == "timm":
            model = timm.create_model(spec.name, pretrained=True, **kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(random_seed(spec.name))
                model = timm.create_model(_timm_name(spec), pretrained=False, **kwargs)
    except (OSError, RuntimeError, ValueError) as error:  # hub errors arrive as these
        if spec.source == "timm":
            raise ModelLoadError(
                f"the weights of {spec.name!r} are not available offline ({type(error).__name__})"
                f'; fetch them once with network: python -c "import timm; '
                f"timm.create_model('{spec.name}', pretrained=True)\", or pass --random-weights"
            ) from None
        raise ModelLoadError(f"cannot build {spec.arch!r}: {error}") from None
    if spec.source == "checkpoint":
        _fit(model, read_checkpoint(Path(spec.checkpoint)), spec)
    return model.eval()


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a safetensors or ``.pth`` file (``weights_only=True``), or a
    ``ModelLoadError`` that says what is wrong with the file."""
    if path.is_dir():
        raise ModelLoadError(f"checkpoint {path} is a directory: give the weights file in it")
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"checkpoint {path} is empty")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - the Rust reader raises its own types
            raise ModelLoadError(
                f"checkpoint {path} is not a readable safetensors file ({_reason(error)})"
            ) from None
    else:
        try:
            with warnings.catch_warnings():  # torch's warnings about odd files: the error says it
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - unpickling raises anything
            raise ModelLoadError(
                f"checkpoint {path} cannot be loaded as plain tensors ({_reason(error)}); save "
                "the weights with torch.save(model.state_dict(), path) or as safetensors"
            ) from None
    return _tensors(path, state)


def _reason(error: Exception) -> str:
    """One line of why a file did not load, without torch's advice to unpickle arbitrary code."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if "weights_only" not in line]
    return lines[0].split(". ", 1)[0].rstrip(".") if lines else type(error).__name__


def _tensors(path: Path, state: object) -> dict[str, torch.Tensor]:
    """The state dict in what a checkpoint holds (itself, or its ``state_dict``/``model``)."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ModelLoadError(
            f"checkpoint {path} holds a {type(state).__name__}, not a state dict (parameter "
            "names to tensors); save model.state_dict()"
        )
    if not state:
        raise ModelLoadError(f"checkpoint {path} holds no tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(
                f"checkpoint {path}: {str(key)[:60]!r} holds a {type(value).__name__}, not a "
                "tensor; save model.state_dict()"
            )
    return state


def _fit(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec) -> None:
    """Load ``state`` into ``model``, or say in one line which keys and shapes do not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (file {list(state[k].shape)}, model {list(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = [
        f"{len(found)} {what} ({_few(found)})"
        for what, found in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("tensors of another shape", shapes))
        if found
    ]  # fmt: skip
    if not problems:
        try:
            model.load_state_dict(state)
            return
        except RuntimeError as error:
            problems = [_reason(error)]
    hint = (
        " (keys start with 'module.': save model.module.state_dict())"
        if unexpected and all(k.startswith("module.") for k in unexpected)
        else ""
    )
    classes = f" with {spec.num_classes} classes" if spec.num_classes is not None else ""
    raise ModelLoadError(
        f"checkpoint {spec.checkpoint} does not fit {spec.arch!r}{classes}: "
        f"{'; '.join(problems)}{hint}; check --arch and --num-classes"
    )


def _few(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (", …" if len(items) > shown else "")


def checkpoint_digest(path: Path) -> str:
    """A digest of the checkpoint file's bytes: what tells two weights files apart."""
    hasher = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def cost(spec: ModelSpec, model: torch.nn.Module, input_size: tuple) -> Profile:
    """The model's profile at ``input_size``, or a ``ModelLoadError`` if it cannot run there."""
    try:
        return profile(model, tuple(input_size))
    except (RuntimeError, AssertionError, ValueError, TypeError) as error:
        raise ModelLoadError(
            f"{spec.arch!r} cannot run on inputs of {tuple(input_size)}: {_reason(error)}; "
            "give an --input-size the architecture takes"
        ) from None


def data_config(spec: ModelSpec, model: torch.nn.Module) -> dict:
    """timm's eval data config: explicit overrides, then pretrained test settings, defaults."""
    overrides = checked_overrides(spec.data_overrides)
    resolved = resolve_data_config(overrides, model=model, use_test_size=True)
    return {key: resolved[key] for key in DATA_CONFIG_KEYS if key in resolved}


def describe(spec: ModelSpec) -> tuple[dict, Profile]:
    """Data config and cost without loading weights (on the ``meta`` skeleton): what a sweep
    plans and registers with before any worker loads the model."""
    model = skeleton(spec)
    config = data_config(spec, model)
    return config, cost(spec, model, config["input_size"])
