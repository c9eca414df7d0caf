"""Resolution variants: the same weights at other test sizes, registered as NAME+SIZEpx and
searched as ordinary models, so a model's own low-resolution variant can be its saver."""

from __future__ import annotations

import pytest

from cluster.errors import InputError
from tests.factories import saverzoo, saverzoo_json
from workers.build import describe, with_variants
from workers.spec import input_sizes, split_variant, timm_spec, variant_name


def test_a_variant_name_says_its_model_and_size_and_is_not_a_superseded_name():
    assert variant_name("resnet18.a1_in1k", 160) == "resnet18.a1_in1k+160px"
    assert split_variant("resnet18.a1_in1k+160px") == ("resnet18.a1_in1k", 160)
    assert split_variant("resnet18.a1_in1k@3f9a0c12de") == ("resnet18.a1_in1k@3f9a0c12de", None)
    assert split_variant("resnet18.a1_in1k") == ("resnet18.a1_in1k", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [("160,abc", "give square sides separated by commas"), ("4", "--input-sizes 4 is outside")],
)
def test_bad_input_sizes_are_refused(text, message):
    with pytest.raises(InputError, match=message):
        input_sizes(text)


def test_input_sizes_are_sorted_once_each():
    assert input_sizes("192, 128,160,128") == [128, 160, 192]
    assert input_sizes(None) == [] and input_sizes("") == []


@pytest.mark.parametrize("name", ["test_resnet.r160_in1k", "test_vit.r160_in1k"])
def test_a_variant_is_the_same_model_at_another_size_and_costs_less(name):
    """A ViT's position embedding is built at the variant's size (a fixed input size)."""
    base = timm_spec(name, random_weights=True)
    specs = with_variants([base], [96, 160])  # 160 is the model's own size: not a variant
    assert [s.name for s in specs] == [name, f"{name}+96px"]
    (config, cost), (small_config, small_cost) = (describe(s) for s in specs)
    assert small_config["input_size"] == (3, 96, 96)
    assert small_config["crop_pct"] == config["crop_pct"]  # the rest of its data config its own
    assert small_cost.gmacs < cost.gmacs
    # The same weights (a ViT's position embedding resampled to fewer positions).
    assert small_cost.params_m == pytest.approx(cost.params_m, rel=0.02)
    assert timm_spec(f"{name}+96px", random_weights=True) == specs[1]  # the name rebuilds it


@pytest.mark.ray
@pytest.mark.slow
def test_a_sweep_evaluates_the_variants_and_the_search_treats_them_as_models(
    sweep_dataset, use_database
):
    models = "test_resnet.r160_in1k,test_vit.r160_in1k"
    swept = saverzoo(
        "sweep",
        "submit",
        "--models",
        models,
        "--random-weights",
        "--dataset",
        "tiny",
        "--input-sizes",
        "64,96",
        "--wait",
        "--batch-size",
        "4",
    )
    assert swept.exit_code == 0, swept.output
    expected = {f"{m}{size}" for m in models.split(",") for size in ("", "+64px", "+96px")}
    listed = saverzoo_json("models", "list", "--dataset", "tiny", "--limit", "100")["items"]
    assert {m["name"] for m in listed} == expected
    detail = {name: saverzoo_json("models", "show", name) for name in expected}
    for name in expected:
        base = split_variant(name)[0]
        assert detail[name]["weights_id"] == detail[base]["weights_id"]  # the same weights
        assert set(detail[name]["accuracy"]) == {"tiny"}
    assert detail["test_vit.r160_in1k+64px"]["input_size"] == [3, 64, 64]
    rows = saverzoo_json("savers", "best", "--dataset", "tiny", "--max-drop", "2")
    assert {r["base"] for r in rows} == expected
    pairs = saverzoo_json(
        "savers",
        "show",
        "test_vit.r160_in1k",
        "--dataset",
        "tiny",
        "--max-drop",
        "100",
        "--alternatives",
        "10",
    )
    candidates = {a["saver"] for a in [pairs["best"], *pairs["alternatives"]] if a}
    assert "test_vit.r160_in1k+64px" in candidates  # its own low-resolution variant


def test_models_add_registers_a_checkpoints_variants(sweep_dataset, use_database):
    path = sweep_dataset / "test_resnet.safetensors"
    added = saverzoo(
        "models",
        "add",
        "mine",
        "--arch",
        "test_resnet",
        "--checkpoint",
        path,
        "--input-sizes",
        "64,160",
    )
    assert added.exit_code == 0, added.output
    assert "'mine+64px' registered" in added.stdout and "+160px" not in added.stdout
    small = saverzoo_json("models", "show", "mine+64px")
    assert small["input_size"] == [3, 64, 64] and small["source"] == "checkpoint"
    assert small["gmacs"] < saverzoo_json("models", "show", "mine")["gmacs"]
    evaluated = saverzoo("evaluate", "--models", "mine*", "--dataset", "tiny", "--batch-size", "4")
    assert evaluated.exit_code == 0, evaluated.output
    assert "2 models evaluated" in evaluated.stdout


def test_evaluate_takes_input_sizes_too(sweep_dataset, use_database):
    evaluated = saverzoo(
        "evaluate",
        "--models",
        "test_resnet.r160_in1k",
        "--random-weights",
        "--input-sizes",
        "64",
        "--dataset",
        "tiny",
        "--batch-size",
        "4",
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "2 models evaluated" in evaluated.stdout
    assert [r["base"] for r in saverzoo_json("savers", "best", "--dataset", "tiny")] == [
        "test_resnet.r160_in1k+64px",
        "test_resnet.r160_in1k",
    ]


def test_superseding_a_model_supersedes_its_variants(use_database, tmp_path):
    from db.queries import get_model
    from db.session import session_factory
    from orchestrator.sweeps.watch import supersede
    from search.synthetic import SyntheticZoo
    from tests.factories import records_dir, small_zoo

    zoo = small_zoo(num_models=4)
    names = ["zoo000", "zoo001", "zoo001+64px", "zoo0011+64px"]  # the last: another model's
    zoo = SyntheticZoo(names, zoo.gmacs, zoo.labels, zoo.predictions, zoo.confidence)
    assert (
        saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val").exit_code == 0
    )
    with session_factory(use_database).begin() as session:
        renamed = supersede(session, [get_model(session, "zoo001")])
    assert [name.split("@")[0] for name in renamed] == ["zoo001", "zoo001+64px"]
    listed = saverzoo_json("models", "list", "--dataset", "val")["items"]
    assert {m["name"] for m in listed} == {"zoo000", "zoo0011+64px"}
