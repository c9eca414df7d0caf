"""Reference evaluation equals an independent timm pipeline, and lands in the database once."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sqlalchemy import select
from timm.data import create_transform, resolve_data_config

from db.arrays import from_npy
from db.models import Model, PredictionChunk
from db.session import session_factory
from tests.factories import row_counts, saverzoo
from tests.workers.zoo import MODELS, OVERRIDES
from workers.profile import profile


# Different input sizes, crop_pct, interpolation and mean/std (overrides of the last one).
def independent_top5(arch, checkpoint, overrides, files):
    """timm's own evaluation, written plainly: create_model, resolve_data_config, a loop."""
    from safetensors.torch import load_file

    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(load_file(str(checkpoint)))
    model.eval()
    config = resolve_data_config(dict(overrides), model=model, use_test_size=True)
    transform = create_transform(**config)
    classes, probs = [], []
    with torch.no_grad():
        for path in files:
            image = Image.open(path).convert("RGB")
            p = torch.softmax(model(transform(image)[None]).float(), dim=-1)[0]
            top = p.topk(5)
            classes.append(top.indices.numpy())
            probs.append(top.values.numpy())
    return np.array(classes), np.array(probs)


def stored_top5(url, model_name):
    with session_factory(url).begin() as session:
        model = session.scalar(select(Model).where(Model.name == model_name))
        chunks = session.scalars(
            select(PredictionChunk)
            .where(PredictionChunk.model_id == model.id)
            .order_by(PredictionChunk.shard_index)
        ).all()
        return (
            np.concatenate([from_npy(c.topk_classes) for c in chunks]),
            np.concatenate([from_npy(c.topk_probs) for c in chunks]),
        )


def test_reference_mode_equals_an_independent_timm_pipeline(zoo_dataset, use_database):
    made, tmp_path = zoo_dataset
    result = saverzoo(
        "evaluate",
        "--models",
        "seeded-efficientnet,seeded-resnet",
        "--models",
        "seeded-vit",
        "--dataset",
        "tiny",
        "--batch-size",
        "4",
    )
    assert result.exit_code == 0, result.output

    files = [tmp_path / "src" / name for name in sorted(made)]  # the shards' sample order
    for name, (arch, _) in MODELS.items():
        expected_classes, expected_probs = independent_top5(
            arch, tmp_path / f"{name}.safetensors", OVERRIDES.get(name, {}), files
        )
        classes, probs = stored_top5(use_database, name)
        assert (classes[:, 0] == expected_classes[:, 0]).all(), name  # 100% top-1 agreement
        np.testing.assert_allclose(probs, expected_probs, rtol=1e-4, atol=1e-6)


def test_one_pass_for_many_models_writes_what_one_at_a_time_writes(zoo_dataset, use_database):
    together = saverzoo("evaluate", "--models", "seeded-*", "--dataset", "tiny")
    assert together.exit_code == 0, together.output
    joint = {name: stored_top5(use_database, name) for name in MODELS}
    for name in MODELS:
        alone = saverzoo("evaluate", "--models", name, "--dataset", "tiny", "--batch-size", "3")
        assert alone.exit_code == 0, alone.output
        classes, probs = stored_top5(use_database, name)
        assert (classes == joint[name][0]).all()
        np.testing.assert_allclose(probs, joint[name][1], rtol=1e-5, atol=1e-7)


def test_rerunning_replaces_chunks_and_updates_the_search(zoo_dataset, use_database):
    first = saverzoo("evaluate", "--models", "seeded-*", "--dataset", "tiny")
    counts = row_counts(use_database)
    again = saverzoo("evaluate", "--models", "seeded-*", "--dataset", "tiny")

    assert first.exit_code == 0 and again.exit_code == 0
    assert row_counts(use_database) == counts
    assert counts["prediction_chunks"] == 3 * 3  # 3 models x 3 shards
    assert counts["pair_results"] > 0  # the saver search took the models in


def test_a_corrupted_jpeg_is_counted_and_a_missing_checkpoint_reported(zoo_dataset, use_database):
    made, tmp_path = zoo_dataset
    (tmp_path / "seeded-resnet.safetensors").unlink()  # this model can no longer load
    broken = tmp_path / "src" / "n00000001" / "n00000001_0002.JPEG"
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated JPEG
    made_shards = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "broken-shards",
        "--name",
        "broken",
        "--shard-size",
        "5",
    )
    assert made_shards.exit_code == 0, made_shards.output

    result = saverzoo("evaluate", "--models", "seeded-*", "--dataset", "broken")

    assert result.exit_code == 1  # one model did not load: said, and the others finished
    assert "not evaluated: seeded-resnet" in result.stderr
    assert "2 models evaluated on 12 samples (1 do not decode)" in result.stdout
    classes, probs = stored_top5(use_database, "seeded-vit")
    assert len(classes) == len(made)  # every sample in line with its shard
    assert (classes == -1).all(axis=1).sum() == 1 and (probs == 0).all(axis=1).sum() == 1


def test_profile_of_resnet50_matches_its_model_card():
    measured = profile(timm.create_model("resnet50", pretrained=False), (3, 224, 224))
    assert measured.gmacs == pytest.approx(4.1, abs=0.05)
    assert measured.params_m == pytest.approx(25.6, abs=0.05)


def test_pretrained_weights_missing_offline_is_a_clear_error(monkeypatch):
    from workers.build import build
    from workers.spec import ModelLoadError, timm_spec

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"not available offline.*--random-weights"):
        build(timm_spec("resnet18.a1_in1k"))


def test_evaluation_records_measured_throughput_per_device_type(zoo_dataset, use_database):
    from tests.factories import saverzoo_json

    result = saverzoo("evaluate", "--models", "seeded-*", "--dataset", "tiny", "--batch-size", "4")
    assert result.exit_code == 0, result.output

    listed = {row["name"]: row for row in saverzoo_json("models", "list")["items"]}
    for name in MODELS:
        assert set(listed[name]["images_per_s"]) == {"cpu"}
        assert listed[name]["images_per_s"]["cpu"] > 0


def test_fast_mode_through_the_cli_stores_every_chunk(zoo_dataset, use_database):
    result = saverzoo("evaluate", "--models", "seeded-*", "--dataset", "tiny", "--mode", "fast")
    assert result.exit_code == 0, result.output
    assert row_counts(use_database)["prediction_chunks"] == 3 * 3
    for name in MODELS:
        classes, probs = stored_top5(use_database, name)
        assert classes.shape == (12, 5) and (classes >= 0).all() and (probs > 0).all()


def test_an_unknown_mode_is_a_one_line_error(zoo_dataset):
    result = saverzoo("evaluate", "--models", "seeded-vit", "--dataset", "tiny", "--mode", "x")
    assert result.exit_code == 1
    assert "--mode 'x': use fast or reference" in result.stderr


def test_two_evaluations_of_a_random_weights_model_store_the_same_predictions(
    zoo_dataset, use_database
):
    """Random weights are seeded by the model's name, so a rerun (after a crash, say) never
    mixes two initialisations under one name; the seed is recorded with the model."""
    from tests.factories import saverzoo_json
    from workers.spec import random_seed

    args = ["evaluate", "--models", "test_resnet", "--random-weights", "--dataset", "tiny"]
    first = saverzoo(*args)
    stored = stored_top5(use_database, "test_resnet")
    torch.rand(1000)  # this process's random state moves on; the model's seed does not
    again = saverzoo(*args, "--batch-size", "5")

    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    classes, probs = stored_top5(use_database, "test_resnet")
    assert (classes == stored[0]).all()
    np.testing.assert_allclose(probs, stored[1], rtol=1e-5, atol=1e-7)
    shown = saverzoo_json("models", "show", "test_resnet")
    assert shown["random_weights"] is True
    assert str(random_seed("test_resnet")) in shown["weights_id"]


def test_evaluating_a_checkpoint_keeps_the_identity_recorded_at_registration(
    zoo_dataset, use_database
):
    from tests.factories import saverzoo_json

    registered = saverzoo_json("models", "show", "seeded-vit")["weights_id"]
    result = saverzoo("evaluate", "--models", "seeded-vit", "--dataset", "tiny")

    assert result.exit_code == 0, result.output
    assert '"blake2b"' in registered
    assert saverzoo_json("models", "show", "seeded-vit")["weights_id"] == registered


@pytest.mark.parametrize("batch_size", ["0", "-1", "100000000"])
def test_a_batch_size_out_of_range_is_a_one_line_error(zoo_dataset, batch_size):
    result = saverzoo(
        "evaluate", "--models", "seeded-vit", "--dataset", "tiny", "--batch-size", batch_size
    )
    assert result.exit_code == 1
    assert f"--batch-size {batch_size}: use a positive number up to 65,536" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_in_process_evaluation_runs_models_in_bundles_that_fit_the_memory_budget(
    zoo_dataset, use_database, monkeypatch
):
    """As a sweep's worker does: a model larger than the budget runs alone, and what is stored
    is what one bundle of every model stores."""
    import workers.unit
    from orchestrator.ingest.evaluation import evaluate_dataset
    from workers.identity import resolve_specs

    sessions = session_factory(use_database)
    with sessions.begin() as session:
        specs = resolve_specs(session, ["seeded-*"], random_weights=False)
    together = evaluate_dataset(sessions, "tiny", specs)
    joint = {name: stored_top5(use_database, name) for name in MODELS}
    monkeypatch.setattr(workers.unit, "CPU_MODEL_BYTES", 1)  # every model over the budget
    steps: list[tuple[int, int]] = []

    alone = evaluate_dataset(sessions, "tiny", specs, progress=lambda *step: steps.append(step))

    assert steps[-1] == (3 * 3, 3 * 3)  # 3 bundles of one model x 3 shards
    assert (alone.samples, sorted(alone.evaluated)) == (together.samples, sorted(MODELS))
    for name in MODELS:
        classes, probs = stored_top5(use_database, name)
        assert (classes == joint[name][0]).all()
        np.testing.assert_allclose(probs, joint[name][1], rtol=1e-5, atol=1e-7)
