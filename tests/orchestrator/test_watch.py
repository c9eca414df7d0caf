"""The watcher on a simulated timm release, with real sweeps on local Ray and PostgreSQL.

A release is a plugin module that registers tiny ResNets with timm's ``register_model``, whose
pretrained configs point at local safetensors files (``file``), as timm's own configs point at
the hub. Release 2 adds a model and gives an existing one new weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from sqlalchemy import select

from db.arrays import from_npy
from db.models import Model, PredictionChunk, RegistrySnapshot, Sweep
from db.session import session_factory
from tests.factories import brute_force_best_saving, saverzoo, saverzoo_json, stored_zoo
from tests.orchestrator.sweeping import on_postgres

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Overwriting .* in registry:UserWarning"),  # release 2
]

PLUGIN = """
import os
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, _create_resnet

RELEASE, PREFIX, FOLDER = {release}, "{prefix}", "{folder}"


def _cfg(weights):
    return {{"file": f"{{FOLDER}}/{{weights}}.safetensors", "num_classes": 3,
            "input_size": (3, 64, 64), "pool_size": (2, 2), "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
            "first_conv": "conv1.0", "classifier": "fc"}}


cfgs = {{f"{{PREFIX}}_small.r1": _cfg("small-1"),
        f"{{PREFIX}}_large.r1": _cfg(f"large-{{RELEASE}}")}}
if RELEASE >= 2:
    cfgs[f"{{PREFIX}}_medium.r1"] = _cfg("medium-1")
default_cfgs = generate_default_cfgs(cfgs)


def _resnet(variant, width, pretrained, **kwargs):
    args = dict(block=BasicBlock, layers=(1, 1, 1, 1), stem_width=width // 2, stem_type="deep",
                avg_down=True, channels=(width, width, 2 * width, 2 * width), num_classes=3)
    return _create_resnet(variant, pretrained, **dict(args, **kwargs))


def _register(size, width):
    def build(pretrained=False, **kwargs):
        return _resnet(f"{{PREFIX}}_{{size}}", width, pretrained, **kwargs)

    build.__name__ = f"{{PREFIX}}_{{size}}"
    build.__module__ = __name__
    register_model(build)


_register("small", 8)
_register("large", 32)
if RELEASE >= 2:
    _register("medium", 16)
"""

WEIGHTS = """
import sys, torch, timm
from safetensors.torch import save_file
import {module}
for name, file, seed in [("small", "small-1", 0), ("large", "large-1", 1), ("large", "large-2", 2),
                         ("medium", "medium-1", 3)]:
    torch.manual_seed(seed)
    model = timm.create_model(f"{prefix}_{{name}}", pretrained=False)
    save_file(model.state_dict(), f"{folder}/{{file}}.safetensors")
"""


class Releases:
    """Publishes releases of a pretend timm for one test (names unique to the test)."""

    def __init__(self, root, monkeypatch):
        self.prefix = f"zoo{uuid.uuid4().hex[:6]}"
        self.root, self.monkeypatch = root, monkeypatch
        root.mkdir()
        for release in (1, 2):
            text = PLUGIN.format(release=release, prefix=self.prefix, folder=root)
            (root / f"{self.module(release)}.py").write_text(text)
        script = WEIGHTS.format(module=self.module(2), prefix=self.prefix, folder=root)
        subprocess.run([sys.executable, "-c", script], cwd=root, check=True)
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.setenv("PYTHONPATH", str(root))  # the Ray workers import the plugin too

    def module(self, release: int) -> str:
        return f"{self.prefix}_release{release}"

    def publish(self, release: int) -> None:
        from cluster.settings import get_settings

        self.monkeypatch.setenv("SAVERZOO_TIMM_PLUGINS", self.module(release))
        get_settings.cache_clear()

    def name(self, size: str) -> str:
        return f"{self.prefix}_{size}.r1"


@pytest.fixture
def releases(sweep_dataset, tmp_path, monkeypatch):
    return Releases(tmp_path / "plugins", monkeypatch)


def watch(releases: Releases, *args: str):
    return saverzoo(
        "watch",
        "--once",
        "--dataset",
        "tiny",
        "--models",
        f"{releases.prefix}_*",
        "--batch-size",
        "4",
        *args,
    )


def sweeps(url: str) -> list[Sweep]:
    with session_factory(url).begin() as session:
        return session.scalars(select(Sweep).order_by(Sweep.id)).all()


def chunk_probs(url: str, model_name: str) -> np.ndarray:
    with session_factory(url).begin() as session:
        chunks = session.scalars(
            select(PredictionChunk)
            .join(Model, Model.id == PredictionChunk.model_id)
            .where(Model.name == model_name)
            .order_by(PredictionChunk.shard_index)
        ).all()
        return np.concatenate([from_npy(c.topk_probs) for c in chunks])


def assert_best_savers_match_brute_force(url: str) -> list[dict]:
    best = saverzoo_json("savers", "best", "--dataset", "tiny")
    zoo, _ = stored_zoo(url, "tiny")
    for row in best:
        expected = brute_force_best_saving(zoo, zoo.names.index(row["base"]))
        assert (row["saving"] or 0.0) == pytest.approx(expected, abs=1e-9), row
    return best


@on_postgres
def test_a_release_sweeps_exactly_its_new_and_changed_models(releases, use_database):
    url = use_database
    releases.publish(1)
    first = watch(releases, "--wait")
    assert first.exit_code == 0, first.output
    small, large, medium = (releases.name(s) for s in ("small", "large", "medium"))
    assert set(sweeps(url)[0].models) == {small, large}
    assert {row["base"] for row in assert_best_savers_match_brute_force(url)} == {small, large}
    old_large = chunk_probs(url, large)

    again = watch(releases)
    assert again.exit_code == 0 and "nothing to sweep" in again.output
    assert len(sweeps(url)) == 1

    releases.publish(2)  # zoo_medium is new; zoo_large has new weights
    second = watch(releases, "--wait", "--json")
    assert second.exit_code == 0, second.output
    summary, _ = json.JSONDecoder().raw_decode(second.stdout)  # then the sweep's own lines
    assert sorted((c["model"], c["why"]) for c in summary["changes"]) == [
        (large, "new weights"),
        (medium, "new"),
    ]
    assert summary["skipped"] == {"up to date": 1}
    assert set(sweeps(url)[1].models) == {large, medium}
    assert all(s.state == "done" for s in sweeps(url))

    # The old weights' predictions are kept, marked, and out of every search.
    [superseded] = summary["superseded"]
    assert superseded.startswith(f"{large}@")
    assert np.array_equal(chunk_probs(url, superseded), old_large)
    assert not np.array_equal(chunk_probs(url, large), old_large)
    best = assert_best_savers_match_brute_force(url)
    assert {row["base"] for row in best} == {small, medium, large}
    listed = [m["name"] for m in saverzoo_json("models", "list")["items"]]
    assert superseded not in listed
    everything = saverzoo_json("models", "list", "--superseded")["items"]
    assert superseded in [m["name"] for m in everything]
    assert saverzoo_json("models", "show", superseded)["superseded_at"] is not None

    third = watch(releases)
    assert "nothing to sweep" in third.output and len(sweeps(url)) == 2
    with session_factory(url).begin() as session:  # each release's whole registry, recorded once
        snapshots = session.scalars(select(RegistrySnapshot).order_by(RegistrySnapshot.id)).all()
        assert len(snapshots) == 2 and snapshots[1].num_entries == snapshots[0].num_entries + 1
        recorded = {e.name: e for e in snapshots[1].entries}
        assert {small, medium, large} <= set(recorded) and len(recorded) > 1000  # timm's too
        assert recorded[large].weights["file"].endswith("large-2.safetensors")


@on_postgres
def test_two_watchers_at_once_submit_one_sweep(releases, use_database):
    releases.publish(1)
    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "watch",
        "--once",
        "--dataset",
        "tiny",
        "--models",
        f"{releases.prefix}_*",
        "--no-start",
    ]
    watchers = [
        subprocess.Popen(
            command,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in watchers]
    assert [w.returncode for w in watchers] == [0, 0], outputs
    [sweep] = sweeps(use_database)
    assert sweep.state == "queued" and len(sweep.models) == 2
    assert sum("sweep 1 submitted" in o for o in outputs) == 1, outputs
