"""The cascade at run time answers exactly as the search engine simulated it (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from db.models import Model
from db.queries import dataset_samples, dataset_shards, get_dataset, top1_predictions
from db.session import session_factory
from orchestrator.cascades import cascade_from_store
from tests.factories import saverzoo, saverzoo_json
from tests.workers.zoo import MODELS
from workers.cascade import Cascade
from workers.identity import spec_of
from workers.shards import decode_rgb, read_shard

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

BASE, SAVER = "seeded-resnet", "seeded-vit"  # different input sizes, crops and normalisations


@pytest.fixture
def evaluated(zoo_dataset, use_database):
    result = saverzoo(
        "evaluate", "--models", ",".join(MODELS), "--dataset", "tiny", "--batch-size", "4"
    )
    assert result.exit_code == 0, result.output
    return use_database


def stored(url: str) -> tuple[list[np.ndarray], np.ndarray, dict[str, tuple]]:
    """The dataset's images (decoded, in its order), labels, and each model's stored top-1."""
    with session_factory(url).begin() as session:
        dataset = get_dataset(session, "tiny")
        images = [
            np.asarray(decode_rgb(sample.jpeg))
            for shard in dataset_shards(session, dataset)
            for sample in read_shard(shard.url)
        ]
        labels = dataset_samples(session, dataset).labels
        ids = {name: session.query(Model).filter_by(name=name).one().id for name in MODELS}
        classes, probs = top1_predictions(session, dataset, list(ids.values()))
    return images, labels, {n: (classes[i], probs[i]) for i, n in enumerate(ids)}


def simulated(
    predictions: dict, threshold: float, saver: str = SAVER
) -> tuple[np.ndarray, np.ndarray]:
    """The engine's cascade: exit where the saver's confidence is above the threshold."""
    saver_classes, saver_probs = predictions[saver]
    exits = saver_probs > threshold
    return exits, np.where(exits, saver_classes, predictions[BASE][0])


def specs(url: str):
    with session_factory(url).begin() as session:
        return [spec_of(session.query(Model).filter_by(name=n).one()) for n in (SAVER, BASE)]


def test_the_cascade_matches_the_engines_simulation_at_any_threshold(evaluated):
    images, labels, predictions = stored(evaluated)
    saver_probs = predictions[SAVER][1]
    cascade = Cascade.build(*specs(evaluated), threshold=float(np.median(saver_probs)))
    for threshold in (float(np.median(saver_probs)), float(np.quantile(saver_probs, 0.25))):
        cascade.threshold = threshold
        output = cascade(images)
        exits, answers = simulated(predictions, threshold)
        assert 0 < exits.sum() < len(images)  # a mixed batch
        assert np.array_equal(output.exits, exits)
        assert np.array_equal(output.classes[:, 0], answers)
        assert (output.classes[:, 0] == labels).mean() == (answers == labels).mean()
        assert output.answered_by == [SAVER if e else BASE for e in exits]


def test_a_cascade_from_the_store_uses_the_searchs_saver_and_threshold(evaluated):
    images, _labels, predictions = stored(evaluated)
    cascade = cascade_from_store(BASE, "tiny", criterion="paper")
    chosen = saverzoo_json("savers", "show", BASE, "--dataset", "tiny", "--criterion", "paper")
    assert cascade.saver.spec.name == chosen["best"]["saver"]
    assert cascade.threshold == chosen["best"]["threshold"]
    output = cascade(images)
    assert output.exits.mean() == pytest.approx(chosen["best"]["exit_ratio"])
    exits, answers = simulated(predictions, cascade.threshold, cascade.saver.spec.name)
    assert np.array_equal(output.exits, exits)
    assert np.array_equal(output.classes[:, 0], answers)


def test_a_margin_cascade_exits_on_the_top_two_difference_the_search_used(evaluated):
    images, _, _ = stored(evaluated)
    with session_factory(evaluated).begin() as session:
        dataset = get_dataset(session, "tiny")
        ids = [session.query(Model).filter_by(name=n).one().id for n in (SAVER, BASE)]
        classes, margins = top1_predictions(session, dataset, ids, "margin")
    threshold = float(np.median(margins[0]))
    cascade = Cascade.build(*specs(evaluated), threshold=threshold, confidence="margin")
    output = cascade(images)
    exits = margins[0] > threshold
    assert 0 < exits.sum() < len(images)
    assert np.array_equal(output.exits, exits)
    assert np.allclose(output.saver_confidence, margins[0], atol=1e-6)
    assert np.array_equal(output.classes[:, 0], np.where(exits, classes[0], classes[1]))
    kept = saverzoo("savers", "best", "--dataset", "tiny", "--confidence", "margin")
    assert kept.exit_code == 0, kept.output
    chosen = cascade_from_store(BASE, "tiny", criterion="paper", confidence="margin")
    assert chosen.confidence == "margin"


def test_all_exit_none_exit_and_single_input_batches(evaluated):
    images, _, predictions = stored(evaluated)
    cascade = Cascade.build(*specs(evaluated), threshold=-1.0)
    everyone = cascade(images)  # every confidence is above -1: the base never runs
    assert everyone.exits.all() and not cascade.runners[BASE].timed_shapes  # never ran
    assert np.array_equal(everyone.classes[:, 0], predictions[SAVER][0])

    cascade.threshold = 1.0  # no probability is above 1: the base answers everything
    nobody = cascade(images)
    assert not nobody.exits.any()
    assert np.array_equal(nobody.classes[:, 0], predictions[BASE][0])
    assert [shape[0] for shape in cascade.runners[BASE].timed_shapes] == [len(images)]

    one = cascade(images[3:4])
    assert one.classes.shape == (1, 5) and one.classes[0, 0] == predictions[BASE][0][3]
    with pytest.raises(ValueError, match="at least one image"):
        cascade([])


@pytest.mark.slow
def test_an_exported_cascade_answers_the_same_without_the_database(evaluated, tmp_path):
    images, _, _ = stored(evaluated)
    out = tmp_path / "cascade"
    exported = saverzoo(
        "cascade", "export", BASE, "--dataset", "tiny", "--criterion", "paper", "--out", out
    )
    assert exported.exit_code == 0, exported.output
    meta = json.loads((out / "cascade.json").read_text())
    assert {meta["saver"]["name"], meta["base"]["name"]} <= set(MODELS)
    expected = cascade_from_store(BASE, "tiny", criterion="paper")(images)

    np.savez(tmp_path / "images.npz", *images)
    script = f"""
import numpy as np
from workers.cascade import Cascade
images = list(np.load("{tmp_path / "images.npz"}").values())
output = Cascade.load("{out}")(images)
np.savez("{tmp_path / "answers.npz"}", classes=output.classes, exits=output.exits)
"""
    nowhere = "postgresql+psycopg://nobody@127.0.0.1:9/none"  # any database access would fail
    env = {**os.environ, "SAVERZOO_DATABASE_URL": nowhere}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    answers = np.load(tmp_path / "answers.npz")
    assert np.array_equal(answers["exits"], expected.exits)
    assert np.array_equal(answers["classes"], expected.classes)

    files = []
    for index in (0, 1):
        files.append(tmp_path / f"image-{index}.png")
        Image.fromarray(images[index]).save(files[-1])
    printed = subprocess.run(
        [sys.executable, str(out / "load_cascade.py"), *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert [line.split("\t")[1] for line in lines] == [
        f"class {c}" for c in expected.classes[:2, 0]
    ]


def test_the_benchmark_measures_both_paths_at_the_asked_exit_ratio(tmp_path, database_url):
    from bench.cascade import main

    main(
        [
            "--images",
            "4",
            "--batch-size",
            "2",
            "--pairs",
            "test_resnet:test_vit",
            "--exit-ratios",
            "0.5",
            "--json",
            str(tmp_path / "bench.json"),
        ]
    )
    [result] = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert result["exit_ratio"] == 0.5 and result["base_alone_s"] > 0 and result["cascade_s"] > 0
    assert 0.5 < result["predicted_relative_cost"] < 1.5


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_cascade_runs_in_bf16_and_agrees_with_the_cpu(evaluated):
    images, _, _ = stored(evaluated)
    saver, base = specs(evaluated)
    on_cpu = Cascade.build(saver, base, threshold=0.5)(images)
    cascade = Cascade.build(saver, base, threshold=0.5, device="cuda")
    assert cascade.options.amp and cascade.options.mode == "fast"
    on_gpu = cascade(images)
    # bf16 and on-device resizing move probabilities a little: most answers stay the same.
    assert (on_gpu.classes[:, 0] == on_cpu.classes[:, 0]).mean() >= 0.75
