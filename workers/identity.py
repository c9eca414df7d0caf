"""Which model a name means, and its record in the database: timm names and patterns, registered
checkpoints, weights identities, and registration that refuses another model under a known name."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path

import timm
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster import validate
from cluster.errors import InputError
from cluster.userfiles import MIB, read_text_bounded
from db.models import Model
from db.queries import upsert_model
from workers.profile import Profile
from workers.registry import canonical, entry, load_plugins
from workers.spec import ModelSpec, random_seed, split_variant, timm_spec
from workers.weights import checkpoint_digest

MAX_MODEL_LIST_BYTES = 4 * MIB  # a list of every timm model's name is about 40 KB


def split_patterns(values: Sequence[str]) -> list[str]:
    """``--models a,b --models 'convnext*' --models @zoo.txt`` as one list of names/patterns.

    ``@FILE`` reads names or patterns from a file, one per line (``#`` starts a comment); the file
    is read with a size limit, and a line that is not a name or pattern is named by its number,
    never quoted (the file may not be what the user meant to show).
    """
    parts: list[str] = []
    for value in values:
        if not value.startswith("@"):
            parts.extend(value.split(","))
            continue
        path = Path(value[1:]).expanduser()
        text = read_text_bounded(path, f"--models {value}", MAX_MODEL_LIST_BYTES)
        for number, line in enumerate(text.splitlines(), start=1):
            part = line.split("#", 1)[0].strip()
            if not part:
                continue
            try:
                validate.model_pattern(part)
            except InputError:
                raise InputError(
                    f"--models {value}: line {number} is not a model name or pattern (a list "
                    "file holds one per line)"
                ) from None
            parts.append(part)
    return [part.strip() for part in parts if part.strip()]


def spec_of(model: Model) -> ModelSpec:
    """A registered model's spec, as ``models add`` or an earlier evaluation stored it."""
    source = "random" if model.random_weights else model.source
    if model.source != "checkpoint":
        base, size = split_variant(model.name)  # a timm variant says its size in its name
        spec = ModelSpec(base, model.arch or base, source, num_classes=model.num_classes)
        return spec if size is None else spec.at_size(size)
    return ModelSpec(
        model.name,
        model.arch or model.name,
        source,
        model.checkpoint,
        model.num_classes,
        model.data_config or {},
    )


def resolve_specs(
    session: Session,
    patterns: Sequence[str],
    *,
    random_weights: bool,
    exclude: Sequence[str] = (),
) -> list[ModelSpec]:
    """Registered checkpoint models by name or pattern, else timm names and patterns, minus
    the names that match an ``exclude`` pattern."""
    load_plugins()
    registered = {
        m.name: m
        for m in session.scalars(
            select(Model).where(Model.source == "checkpoint", Model.superseded_at.is_(None))
        )
    }
    specs: dict[str, ModelSpec] = {}
    for pattern in split_patterns(patterns):
        local = [name for name in registered if fnmatch.fnmatchcase(name, pattern)]
        if local:
            specs.update({name: spec_of(registered[name]) for name in local})
            continue
        if any(ch in pattern for ch in "*?["):
            # Patterns name pretrained tags unless random weights are asked for.
            names = timm.list_models(pattern, pretrained=not random_weights)
            if not names:
                raise InputError(f"--models {pattern!r} matches no timm model")
        else:
            names = [pattern]
        for name in names:
            specs[name] = timm_spec(name, random_weights=random_weights)
    excluded = split_patterns(exclude)
    specs = {
        name: spec
        for name, spec in specs.items()
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in excluded)
    }
    if not specs:
        raise InputError(
            "--models names no model" + (" once --exclude is applied" if excluded else "")
        )
    return list(specs.values())


def register(
    session: Session, spec: ModelSpec, config: dict, cost: Profile, weights: str | None = None
) -> Model:
    """Store the model's description: source, cost, data config.

    The same model again updates its row; another model under a registered name (other weights,
    architecture, classes or data config, or another kind of source) is refused, because the
    predictions stored under the name would then belong to two models. ``weights``: what
    identifies the weights, when the caller knows more than the spec (a checkpoint's digest).
    """
    existing = session.scalar(select(Model).where(Model.name == spec.name))
    weights = weights or weights_id(spec)
    if existing is not None:
        conflict = identity_conflict(existing, spec, config, weights)
        if conflict is not None:
            raise InputError(
                f"model {spec.name!r} is already registered with {conflict}; its predictions "
                "would mix two models: register this one under another name"
            )
        if spec.source == "checkpoint":
            weights = _richer(existing.weights_id, weights)
    return upsert_model(
        session,
        name=spec.name,
        arch=spec.arch,
        source="checkpoint" if spec.source == "checkpoint" else "timm",
        gmacs=cost.gmacs,
        params_m=cost.params_m,
        input_size=list(config["input_size"]),
        crop_pct=config.get("crop_pct"),
        interpolation=config.get("interpolation"),
        data_config=plain_config(config),
        timm_version=timm.__version__,
        checkpoint=spec.checkpoint,
        num_classes=spec.num_classes,
        random_weights=spec.random_weights,
        weights_id=weights,
    )


def plain_config(config: dict) -> dict:
    """A data config as the database stores it (lists, not tuples)."""
    return {k: _plain(v) for k, v in config.items()}


KINDS = {
    "timm": "timm's pretrained weights",
    "checkpoint": "a checkpoint",
    "records": "imported records",
}


def _kind(source: str, random_weights: bool) -> str:
    return "random weights" if random_weights else KINDS.get(source, source)


def identity_conflict(existing: Model, spec: ModelSpec, config: dict, weights: str | None):
    """What differs between a registered model and the one ``spec`` describes, or None.

    A timm tag whose pretrained weights changed is not a conflict: ``saverzoo watch`` supersedes
    those. Nor are records named after a timm tag, evaluated as that tag: they are taken as its
    predictions, and its measured cost replaces the one the records claimed (the caller moves
    the pairs). A checkpoint is another model when its file, architecture, classes or data config
    differ; a random-weights model when its seed does.
    """
    old = _kind(existing.source, existing.random_weights)
    new = _kind("checkpoint" if spec.source == "checkpoint" else "timm", spec.random_weights)
    if old == _kind("records", False) and new == _kind("timm", False):
        return None
    if old != new:
        return f"{old}, not {new}"
    if spec.source == "checkpoint":
        if existing.arch != spec.arch:
            return f"the architecture {existing.arch!r}, not {spec.arch!r}"
        if existing.num_classes != spec.num_classes:
            return f"{existing.num_classes or 'the default'} classes, not {spec.num_classes}"
        if not _same_file(existing, weights):
            return f"other weights ({existing.checkpoint})"
        stored, given = existing.data_config or {}, plain_config(config)
        changed = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
        if changed:
            shown = ", ".join(f"{k} {stored.get(k)!r}, not {given.get(k)!r}" for k in changed)
            return f"another data config ({shown})"
    if spec.random_weights and existing.weights_id not in (None, weights):
        return f"other random weights ({existing.weights_id})"
    return None


def _weights_fields(identity: str | None) -> dict:
    try:
        fields = json.loads(identity) if identity else {}
    except json.JSONDecodeError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _same_file(existing: Model, given: str | None) -> bool:
    """Whether a registered checkpoint and ``given`` name the same weights: equal on what both
    record (a model registered before digests were recorded has its path only)."""
    old = _weights_fields(existing.weights_id) or {"checkpoint": existing.checkpoint}
    new = _weights_fields(given)
    shared = set(old) & set(new)
    return bool(shared) and all(old[k] == new[k] for k in shared)


def _richer(stored: str | None, given: str | None) -> str | None:
    """Of two identities of the same file, the one that records more (its digest)."""
    return stored if len(_weights_fields(stored)) > len(_weights_fields(given)) else given


def weights_id(spec: ModelSpec) -> str | None:
    """What identifies the weights evaluated: timm's pretrained cfg fields, the checkpoint file,
    or the seed of random weights."""
    if spec.source == "checkpoint":
        return canonical({"checkpoint": spec.checkpoint})
    if spec.random_weights:
        return canonical({"random_seed": random_seed(spec.weights_name)})
    if spec.source == "timm" and "." in spec.weights_name:
        return entry(spec.weights_name).weights_id
    return None  # an architecture's default tag (resolved by timm at load)


def checkpoint_id(path: str) -> str:
    """A checkpoint's identity with its digest: recorded when ``models add`` registers it."""
    return canonical({"checkpoint": path, "blake2b": checkpoint_digest(Path(path))})


def _plain(value: object) -> object:  # JSON-friendly tuples
    return list(value) if isinstance(value, tuple) else value


def register_all(
    session: Session, described: Sequence[tuple[ModelSpec, dict, Profile]]
) -> tuple[dict[str, int], list[int]]:
    """Register models; their ids by name, and the ids of those whose cost changed."""
    names = [spec.name for spec, _, _ in described]
    costs_before = dict(
        session.execute(select(Model.name, Model.gmacs).where(Model.name.in_(names))).all()
    )
    ids = {spec.name: register(session, spec, config, cost).id for spec, config, cost in described}
    changed = [
        ids[spec.name]
        for spec, _, cost in described
        if spec.name in costs_before and costs_before[spec.name] != cost.gmacs
    ]
    return ids, changed
