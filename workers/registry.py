"""The pretrained models the installed timm offers, and what identifies each one's weights.

An entry is one pretrained ``arch.tag`` with the fields of timm's pretrained config that say where
its weights come from (hub id and file name, URL, local file) and those that set its evaluation
data (input size, interpolation, crop, mean and std). Two entries with equal fields load the same
weights and preprocess the same way; a changed field means the stored predictions are stale.

Models that timm does not ship (a team's own ``@register_model`` architectures) come from plugin
modules named by the ``timm_plugins`` setting, imported before timm's registry is read, here and
in every worker.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache

import timm
from timm.models import get_pretrained_cfg

from cluster.errors import InputError

WEIGHT_FIELDS = ("source", "hf_hub_id", "hf_hub_filename", "url", "file")
DATA_FIELDS = (
    "input_size",
    "test_input_size",
    "fixed_input_size",
    "interpolation",
    "crop_pct",
    "test_crop_pct",
    "crop_mode",
    "mean",
    "std",
    "num_classes",
)


@dataclass(frozen=True)
class Entry:
    name: str  # arch.tag
    weights: dict
    data_config: dict

    @property
    def weights_id(self) -> str:
        return canonical(self.weights)


def canonical(value: dict) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def entry(name: str) -> Entry:
    """The registry entry of one pretrained ``arch.tag``."""
    load_plugins()
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise InputError(f"timm {timm.__version__} has no pretrained model {name!r}")
    weights = {f: getattr(cfg, f) for f in WEIGHT_FIELDS if getattr(cfg, f, None) not in (None, "")}
    data = {f: _plain(getattr(cfg, f)) for f in DATA_FIELDS if getattr(cfg, f, None) is not None}
    return Entry(name, weights, data)


def installed(patterns: Sequence[str] = ()) -> list[Entry]:
    """Every pretrained entry of the installed timm (and plugins), or those matching a pattern."""
    load_plugins()
    names = timm.list_pretrained()
    if patterns:
        names = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
    return [entry(name) for name in sorted(names)]


def digest(entries: Sequence[Entry]) -> str:
    """One fingerprint of a whole registry: equal registries, equal digests."""
    hasher = hashlib.blake2b(digest_size=16)
    for e in sorted(entries, key=lambda e: e.name):
        hasher.update(canonical({"n": e.name, "w": e.weights, "d": e.data_config}).encode())
    return hasher.hexdigest()


def load_plugins() -> None:
    from cluster.settings import get_settings

    _import_plugins(tuple(get_settings().timm_plugins))


@cache
def _import_plugins(modules: tuple[str, ...]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise InputError(
                f"timm plugin module {module!r} does not import ({error}); check "
                "SAVERZOO_TIMM_PLUGINS and that the module is on this machine's Python path"
            ) from None
