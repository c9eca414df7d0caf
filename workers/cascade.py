"""The cascade at run time: the saver first, the base only where the saver is unsure.

``Cascade`` takes a batch of decoded images (uint8, any sizes), preprocesses them per model with
each model's own data config (the evaluation's own preprocessing: timm's eval transform on the
CPU, the decode-once device transform on a GPU, bf16 there), runs the saver on all of them,
keeps the saver's answer where its confidence is above the threshold (the search's rule: an
input exits when ``confidence > threshold``), and runs the base on the others only. The confidence
is the saver's top-1 probability (``max``), its margin over the top-2 (``margin``), or a learned
deferral rule's score of the saver's top-k output (``learned``: the rule's plain parameters,
applied by ``db.deferral_rules.score`` exactly as the search applied them).

It is built explicitly from two model specs and a threshold (``Cascade.build``; the database's
choice of saver and threshold comes from ``orchestrator.cascades.cascade_from_store``), or from
an exported folder (``Cascade.load``, no database needed; ``export`` writes one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import create_transform

from cluster.errors import InputError
from cluster.userfiles import read_text_bounded
from db.deferral_rules import Rule, score
from workers.evaluate import EvalOptions, LoadedModel
from workers.preprocess import DeviceTransform
from workers.profile import Profile
from workers.registry import load_plugins
from workers.spec import ModelSpec

EXPORT_FILE = "cascade.json"
LEARNED = "learned"  # the confidence whose threshold reads a rule's score (search.criteria)
# A cascade.json is a few KB: a learned rule's class table of 1,000 classes is about 10 KB, so
# this leaves room for a million classes and refuses a file that is not one.
MAX_EXPORT_BYTES = 16 * 2**20


@dataclass(frozen=True)
class CascadeOutput:
    """Per input: the merged top-k, which model answered, and the saver's confidence."""

    classes: np.ndarray  # int64 (N, k)
    probs: np.ndarray  # float32 (N, k)
    exits: np.ndarray  # bool (N,): the saver answered
    saver_confidence: np.ndarray  # float32 (N,)
    names: tuple[str, str]  # (saver, base)

    @property
    def answered_by(self) -> list[str]:
        saver, base = self.names
        return [saver if exit_ else base for exit_ in self.exits]


class Cascade:
    def __init__(
        self,
        saver: LoadedModel,
        base: LoadedModel,
        threshold: float,
        device: str = "cpu",
        batch_size: int = 64,
        confidence: str = "max",
        rule: Mapping[str, Any] | None = None,
    ) -> None:
        if confidence not in ("max", "margin", "learned"):
            raise InputError(f"confidence must be 'max', 'margin' or 'learned', not {confidence!r}")
        if (confidence == "learned") != (rule is not None):
            raise InputError("a learned cascade needs its deferral rule, and only it takes one")
        self.saver, self.base, self.threshold = saver, base, float(threshold)
        self.confidence = confidence  # max: the saver's top-1 probability; margin: top-1 - top-2
        self.rule = None if rule is None else Rule.from_json(rule)  # learned: its score
        self.options = EvalOptions.choose(device, None, batch_size)
        self.runners = {m.spec.name: m.runner(self.options) for m in (saver, base)}
        self.transforms = {m.spec.name: self._transform(m.config) for m in (saver, base)}

    # ----- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, saver: ModelSpec, base: ModelSpec, threshold: float, **options) -> Cascade:
        """Two models by spec (weights loaded as evaluation loads them) and a threshold."""
        return cls(LoadedModel.load(saver), LoadedModel.load(base), threshold, **options)

    @classmethod
    def load(cls, folder: Path, **options) -> Cascade:
        """An exported cascade (``export``): both models and the threshold, no database."""
        from safetensors.torch import load_file

        load_plugins()
        meta = _export_meta(Path(folder) / EXPORT_FILE)
        exported = meta.get("confidence", "max")
        asked = options.get("confidence", exported)
        if LEARNED in (exported, asked) and asked != exported:
            raise InputError(
                f"this cascade was exported on the {exported!r} confidence, and its threshold is "
                f"for that signal: load it without confidence=, or export it with "
                f"--confidence {asked}"
            )
        loaded = []
        for role in ("saver", "base"):
            model = meta[role]
            module = timm.create_model(
                model["timm_name"], pretrained=False, num_classes=model["num_classes"]
            )
            module.load_state_dict(load_file(Path(folder) / f"{role}.safetensors"))
            spec = ModelSpec(model["name"], model["arch"], "checkpoint")
            params_m = sum(p.numel() for p in module.parameters()) / 1e6
            cost = Profile(params_m, model["gmacs"], tuple(model["data_config"]["input_size"]))
            loaded.append(LoadedModel(spec, module.eval(), model["data_config"], cost))
        saver, base = loaded
        options.setdefault("confidence", exported)
        options.setdefault("rule", meta.get("rule"))
        return cls(saver, base, meta["threshold"], **options)

    def _transform(self, config: dict):
        if self.options.mode == "reference":
            return create_transform(**config, is_training=False)
        return DeviceTransform(config, self.options.device)

    # ----- running -------------------------------------------------------------------------------
    def __call__(self, images: Sequence) -> CascadeOutput:
        """The cascade's answers for decoded images: uint8 arrays (H, W, 3) or (H, W), PIL
        images, or uint8 tensors (3, H, W)."""
        images = self._converted(images)
        saver, base = self.saver.spec.name, self.base.spec.name
        classes, probs = self._top_k(saver, images)
        if self.rule is not None:
            confidence = score(self.rule, probs, classes)
        else:
            confidence = probs[:, 0].copy()
        if self.confidence == "margin":
            confidence -= probs[:, 1]
        exits = confidence > self.threshold
        unsure = np.flatnonzero(~exits)
        if len(unsure):
            base_classes, base_probs = self._top_k(base, [images[i] for i in unsure])
            k = min(classes.shape[1], base_classes.shape[1])
            classes, probs = classes[:, :k].copy(), probs[:, :k].copy()
            classes[unsure], probs[unsure] = base_classes[:, :k], base_probs[:, :k]
        return CascadeOutput(classes, probs, exits, confidence, (saver, base))

    def base_alone(self, images: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """The base's top-k on every image, as it would run without a saver."""
        return self._top_k(self.base.spec.name, self._converted(images))

    def _converted(self, images: Sequence) -> list:
        if len(images) == 0:
            raise InputError("the cascade needs at least one image")
        if self.options.mode == "reference":
            return [_as_pil(image) for image in images]
        return [_as_tensor(image) for image in images]

    def _top_k(self, name: str, images: list) -> tuple[np.ndarray, np.ndarray]:
        transform = self.transforms[name]
        if self.options.mode == "reference":
            batch = torch.stack([transform(image) for image in images])
        else:
            batch = transform([image.to(self.options.device) for image in images])
        return self.runners[name].top_k(batch.to(self.options.device))

    # ----- exporting -----------------------------------------------------------------------------
    def export(self, folder: Path, about: dict | None = None) -> Path:
        """Both models' weights (safetensors), data configs, the threshold and a loader script."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "threshold": self.threshold,
            "timm_version": timm.__version__,
            **(about or {}),
            "confidence": self.confidence,
        }
        if self.rule is not None:
            meta["rule"] = self.rule.as_json()  # plain numbers: applied by Cascade.load
        for role, model in (("saver", self.saver), ("base", self.base)):
            state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
            save_file(state, str(folder / f"{role}.safetensors"))
            meta[role] = {
                "name": model.spec.name,
                "arch": model.spec.arch,
                # An arch.tag keeps its pretrained config (model arguments included).
                "timm_name": model.spec.name if model.spec.source == "timm" else model.spec.arch,
                "num_classes": model.module.num_classes,
                "data_config": {k: _plain(v) for k, v in model.config.items()},
                "gmacs": model.profile.gmacs,
            }
        (folder / EXPORT_FILE).write_text(json.dumps(meta, indent=1))
        (folder / "load_cascade.py").write_text(LOADER)
        return folder


LOADER = '''"""Run this exported cascade on image files: python load_cascade.py IMAGE [IMAGE ...]

Needs saverzoo's worker extras (torch, timm), not its database. From Python:
    from workers.cascade import Cascade
    cascade = Cascade.load("path/to/this/folder")          # device="cuda" on a GPU
    output = cascade([uint8_image, ...])                     # output.classes, .probs, .answered_by
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from workers.cascade import Cascade

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.splitlines()[0])
    cascade = Cascade.load(Path(__file__).resolve().parent)
    images = [np.asarray(Image.open(path).convert("RGB")) for path in sys.argv[1:]]
    output = cascade(images)
    for path, top, prob, model in zip(sys.argv[1:], output.classes[:, 0], output.probs[:, 0],
                                      output.answered_by):
        print(f"{path}\\tclass {top}\\tp={prob:.4f}\\tby {model}")
'''


def _export_meta(path: Path) -> dict[str, Any]:
    """An exported cascade's cascade.json, read with a bound (a folder is user input)."""
    text = read_text_bounded(path, "cascade", MAX_EXPORT_BYTES)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        where = f"{error.msg}, line {error.lineno}"
        raise InputError(f"cascade: {path} is not JSON ({where})") from None
    if not isinstance(meta, dict):
        raise InputError(f"cascade: {path} must hold a JSON object")
    return meta


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.permute(1, 2, 0).cpu().numpy() if image.ndim == 3 else image.cpu().numpy()
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InputError(f"images must be uint8, not {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def _as_tensor(image) -> torch.Tensor:
    """uint8 (3, H, W), as the device transform takes them."""
    return torch.from_numpy(np.asarray(_as_pil(image))).permute(2, 0, 1).contiguous()
