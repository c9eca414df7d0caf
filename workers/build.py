"""How a model is built: a timm architecture on the meta device (cost, data config) or with its
weights for evaluation.

Three sources of weights, by the spec's ``source``:
- ``timm``: a pretrained ``arch.tag`` from the Hugging Face cache; with no network
  (``HF_HUB_OFFLINE=1``) a missing weight is an error that says how to pre-fetch it;
- ``checkpoint``: a local safetensors or ``.pth`` file (``workers.weights``, ``weights_only=True``),
  registered with ``saverzoo models add``;
- ``random``: random weights, only when asked for explicitly, and recorded so results say so;
  seeded by a stable hash of the model's name (``workers.spec.random_seed``), so every build of
  the same name, in any process, has the same weights and a rerun never mixes two initialisations.

The data config is timm's ``resolve_data_config``: explicit options first, then the model's
pretrained config (its test settings), then timm's defaults. Explicit options are checked
(``checked_overrides``) before a model is registered or built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from workers.profile import Profile, profile
from workers.registry import load_plugins
from workers.spec import DATA_CONFIG_KEYS, ModelLoadError, ModelSpec, checked_overrides, random_seed
from workers.weights import fit, read_checkpoint, reason


def _kwargs(spec: ModelSpec) -> dict:
    kwargs = {} if spec.num_classes is None else {"num_classes": spec.num_classes}
    size = spec.data_overrides.get("input_size")
    if spec.weights_of is not None and spec.source in ("timm", "random") and size is not None:
        # An architecture with a fixed input size (a ViT's position embedding) is built at the
        # variant's size; timm resamples the pretrained embedding as it loads the weights.
        pretrained = timm.models.get_pretrained_cfg(_timm_name(spec))
        if pretrained is not None and pretrained.fixed_input_size:
            kwargs["img_size"] = int(size[-1])
    return kwargs


def _timm_name(spec: ModelSpec) -> str:
    """What timm builds: ``arch.tag`` keeps the tag's pretrained (and so data) config; a
    resolution variant builds the model whose weights it evaluates."""
    return spec.weights_name if spec.source in ("timm", "random") else spec.arch


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
            model = timm.create_model(spec.weights_name, pretrained=True, **kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(random_seed(spec.weights_name))  # a variant: its base's
                model = timm.create_model(_timm_name(spec), pretrained=False, **kwargs)
    except (OSError, RuntimeError, ValueError) as error:  # hub errors arrive as these
        if spec.source == "timm":
            raise ModelLoadError(
                f"the weights of {spec.name!r} are not available offline ({type(error).__name__})"
                f'; fetch them once with network: python -c "import timm; '
                f"timm.create_model('{spec.weights_name}', pretrained=True)\", or pass "
                "--random-weights"
            ) from None
        raise ModelLoadError(f"cannot build {spec.arch!r}: {error}") from None
    if spec.source == "checkpoint":
        assert spec.checkpoint is not None  # a checkpoint model always has its path
        fit(model, read_checkpoint(Path(spec.checkpoint)), spec)
    return model.eval()


def cost(spec: ModelSpec, model: torch.nn.Module, input_size: tuple) -> Profile:
    """The model's profile at ``input_size``, or a ``ModelLoadError`` if it cannot run there."""
    try:
        return profile(model, tuple(input_size))
    except (RuntimeError, AssertionError, ValueError, TypeError) as error:
        raise ModelLoadError(
            f"{spec.arch!r} cannot run on inputs of {tuple(input_size)}: {reason(error)}; "
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


def with_variants(specs: Sequence[ModelSpec], sizes: Sequence[int]) -> list[ModelSpec]:
    """Each model, followed by its resolution variants at ``sizes``: the same weights at those
    square test sizes, the rest of the data config its own. A size equal to the model's own test
    size is the model itself and is left out."""
    result: list[ModelSpec] = []
    for spec in specs:
        result.append(spec)
        if not sizes or spec.weights_of is not None:
            continue
        own = data_config(spec, skeleton(spec))["input_size"]
        result += [spec.at_size(size) for size in sizes if (3, size, size) != tuple(own)]
    return result
