"""Where a model's weights come from: a local checkpoint read safely (``weights_only=True``)
and fitted to its architecture, each failure one line naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch

from workers.spec import ModelLoadError, ModelSpec


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
                f"checkpoint {path} is not a readable safetensors file ({reason(error)})"
            ) from None
    else:
        try:
            with warnings.catch_warnings():  # torch's warnings about odd files: the error says it
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - unpickling raises anything
            raise ModelLoadError(
                f"checkpoint {path} cannot be loaded as plain tensors ({reason(error)}); save "
                "the weights with torch.save(model.state_dict(), path) or as safetensors"
            ) from None
    return _tensors(path, state)


def reason(error: Exception) -> str:
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


def fit(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec) -> None:
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
        for what, found in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("tensors of another shape", shapes),
        )
        if found
    ]
    if not problems:
        try:
            model.load_state_dict(state)
            return
        except RuntimeError as error:
            problems = [reason(error)]
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
