"""Where a model's weights come from, and its evaluation data config.

Three sources, decided by one function (``weights_source``) and loaded by one dispatch:
- ``timm``: a pretrained ``arch.tag`` from the Hugging Face cache; with no network
  (``HF_HUB_OFFLINE=1``) a missing weight is an error that says how to pre-fetch it;
- ``checkpoint``: a local safetensors or ``.pth`` file (loaded with ``weights_only=True``),
  registered with ``saverzoo models add``;
- ``random``: random weights, only when asked for explicitly, and recorded so results say so.

The data config is timm's ``resolve_data_config``: explicit options first, then the model's
pretrained config (its test settings), then timm's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from cluster.errors import InputError
from workers.profile import Profile, profile
from workers.registry import load_plugins

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


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
    """The model with its weights, in eval mode, on the CPU."""
    load_plugins()
    kwargs = _kwargs(spec)
    try:
        if spec.source == "timm":
            model = timm.create_model(spec.name, pretrained=True, **kwargs)
        else:
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
        model.load_state_dict(_state_dict(Path(spec.checkpoint)))
    return model.eval()


def _state_dict(path: Path) -> dict:
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelLoadError(f"checkpoint {path} cannot be read safely: {error}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def data_config(spec: ModelSpec, model: torch.nn.Module) -> dict:
    """timm's eval data config: explicit overrides, then pretrained test settings, defaults."""
    resolved = resolve_data_config(dict(spec.data_overrides), model=model, use_test_size=True)
    return {key: resolved[key] for key in DATA_CONFIG_KEYS if key in resolved}


def describe(spec: ModelSpec) -> tuple[dict, Profile]:
    """Data config and cost without loading weights (on the ``meta`` skeleton): what a sweep
    plans and registers with before any worker loads the model."""
    model = skeleton(spec)
    config = data_config(spec, model)
    return config, profile(model, tuple(config["input_size"]))
