"""A learned cascade at run time exits exactly where the search said its rule would (CPU): the
rule travels as plain numbers, in the database's choice and in an exported folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from db.deferral_rules import Rule, score
from db.models import Model
from db.queries import dataset_samples, get_dataset, topk_predictions
from db.session import session_factory
from orchestrator.cascades import cascade_from_store
from search.pairs import calibration_mask
from tests.factories import saverzoo, saverzoo_json
from tests.workers.test_cascade import BASE, evaluated, stored  # noqa: F401  (a fixture)
from workers.cascade import Cascade

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def saver_outputs(url: str, saver: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The saver's stored top-k classes and probabilities, and the calibration half."""
    with session_factory(url).begin() as session:
        dataset = get_dataset(session, "tiny")
        model = session.query(Model).filter_by(name=saver).one()
        classes, probs = topk_predictions(session, dataset, model.id)
        keys = dataset_samples(session, dataset).keys
        return classes, probs, calibration_mask(keys, dataset.holdout_fraction)


def test_a_learned_cascade_exits_where_the_search_scored_its_rule(evaluated, tmp_path):  # noqa: F811
    images, _, _ = stored(evaluated)
    kept = saverzoo("savers", "best", "--dataset", "tiny", "--confidence", "learned")
    assert kept.exit_code == 0, kept.output
    for holdout in (False, True):
        flags = ["--holdout"] if holdout else []
        chosen = saverzoo_json(
            "savers", "show", BASE, "--dataset", "tiny", "--criterion", "paper",
            "--confidence", "learned", *flags,
        )["best"]  # fmt: skip
        cascade = cascade_from_store(
            BASE, "tiny", criterion="paper", holdout=holdout, confidence="learned"
        )
        assert cascade.saver.spec.name == chosen["saver"]
        assert cascade.threshold == chosen["threshold"]
        classes, probs, calibration = saver_outputs(evaluated, chosen["saver"])
        expected = score(cascade.rule, probs, classes)
        output = cascade(images)
        assert np.array_equal(output.saver_confidence, expected)  # the same bits
        assert np.array_equal(output.exits, expected > cascade.threshold)
        measured = output.exits[~calibration] if holdout else output.exits
        # In-sample exits were counted on out-of-fold scores; the deployed rule saw every sample.
        if holdout:  # the evaluation half was scored by this very rule: the search's exits
            assert measured.mean() == pytest.approx(chosen["exit_ratio"])

        folder = cascade.export(tmp_path / f"cascade-{holdout}")
        meta = json.loads((folder / "cascade.json").read_text())
        assert meta["confidence"] == "learned"
        assert Rule.from_json(meta["rule"]) == cascade.rule  # plain numbers, no pickle
        loaded = Cascade.load(folder)(images)
        assert np.array_equal(loaded.exits, output.exits)
        assert np.array_equal(loaded.classes, output.classes)

        exported = tmp_path / f"exported-{holdout}"
        command = saverzoo(
            "cascade", "export", BASE, "--dataset", "tiny", "--criterion", "paper",
            "--confidence", "learned", *flags, "--out", exported,
        )  # fmt: skip
        assert command.exit_code == 0, command.output
        assert Rule.from_json(json.loads((exported / "cascade.json").read_text())["rule"]) == (
            cascade.rule
        )
        assert np.array_equal(Cascade.load(exported)(images).exits, output.exits)


def test_a_learned_cascade_without_its_rule_is_refused(evaluated):  # noqa: F811
    from tests.workers.test_cascade import specs

    with pytest.raises(ValueError, match="needs its deferral rule"):
        Cascade.build(*specs(evaluated), threshold=0.5, confidence="learned")


def test_an_exported_folder_whose_cascade_json_is_not_one_is_refused_in_one_line(
    database_url, tmp_path
):
    """cascade.json is read with a bound and parsed before any model is built."""
    from cluster.errors import InputError
    from workers.cascade import EXPORT_FILE, MAX_EXPORT_BYTES

    (tmp_path / EXPORT_FILE).write_text(" " * (MAX_EXPORT_BYTES + 1))
    with pytest.raises(InputError, match="larger than"):
        Cascade.load(tmp_path)
    (tmp_path / EXPORT_FILE).write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        Cascade.load(tmp_path)


def test_a_learned_export_loaded_on_another_confidence_says_why_not(database_url, tmp_path):
    """A learned cascade's threshold is a rule's score: asked to run on max, the export says
    so in one line (and a max export is not run on a rule it does not have)."""
    from cluster.errors import InputError
    from workers.cascade import EXPORT_FILE

    (tmp_path / EXPORT_FILE).write_text(json.dumps({"confidence": "learned", "threshold": 0.5}))
    with pytest.raises(InputError, match="exported on the 'learned' confidence"):
        Cascade.load(tmp_path, confidence="max")
    (tmp_path / EXPORT_FILE).write_text(json.dumps({"confidence": "max", "threshold": 0.5}))
    with pytest.raises(InputError, match="exported on the 'max' confidence"):
        Cascade.load(tmp_path, confidence="learned")
