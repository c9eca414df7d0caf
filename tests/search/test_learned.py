"""Learned confidence: a sample exits at the saver where a rule trained on the saver's own top-k
output, scored out of fold, is surer than the threshold that its top-1 answer is right.
Checked against a brute force over every threshold of scores computed here from the records, and
for honesty: no sample's score depends on its own label."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import delete, select

from db.deferral_rules import FEATURES, FOLDS, Rule, score
from db.models import LearnedRules, Model
from db.queries import dataset_samples, get_dataset
from db.session import session_factory
from search.learned import fold_of, out_of_fold, train_rules
from search.pairs import calibration_mask
from tests.factories import saverzoo, saverzoo_json
from tests.search.test_margin import brute_force_best as margin_brute_force

NAMES = [f"m{i}" for i in range(5)]
CLASSES = 6


def topk_records(directory, seed: int, names=NAMES, samples: int = 240, shift: int = 0):
    """TinySaver records with top-3 classes and probabilities. Labels of classes 0 and 1 are
    noisy (half of them wrong whatever the model says): a saver is unreliable there however sure
    it is, which only its predicted class tells. ``shift`` moves every model's probabilities (a
    re-evaluated model)."""
    gmacs = np.sort(np.random.default_rng(99).uniform(0.1, 10, len(NAMES)))  # on every dataset
    rng = np.random.default_rng(seed)
    truth_labels = rng.integers(0, CLASSES, samples)
    noisy = (truth_labels < 2) & (rng.random(samples) < 0.5)
    labels = np.where(noisy, (truth_labels + 1) % CLASSES, truth_labels)
    skill = np.sort(rng.uniform(0.5, 0.9, len(NAMES)))
    directory.mkdir(parents=True, exist_ok=True)
    truth, info = {}, {}
    for row, name in enumerate(NAMES):
        sees = rng.random(samples) < skill[row]
        first = np.where(sees, truth_labels, (truth_labels + 2) % CLASSES)
        p1 = np.clip(0.35 + 0.4 * sees + 0.25 * rng.random(samples) + 0.01 * shift, 0, 0.99)
        p2 = (1 - p1) * rng.uniform(0.3, 0.9, samples)
        p3 = (1 - p1 - p2) * rng.uniform(0.2, 0.9, samples)
        classes = np.stack([first, (first + 1) % CLASSES, (first + 3) % CLASSES], axis=1)
        probs = np.round(np.stack([p1, p2, p3], axis=1), 3).astype(np.float32)
        truth[name] = (classes, probs, gmacs[row])
        if name not in names:
            continue
        np.savez(
            directory / f"{name}_test.npz",
            label=labels[:, None],
            preds=classes[None],
            confs=probs[None],
        )
        info[name] = {"macs": float(gmacs[row] * 1e9), "params": 1e6}
    (directory / "complexity_info.json").write_text(json.dumps(info))
    return directory, truth, labels


def learned_scores(url: str, dataset: str, truth: dict, labels: np.ndarray) -> dict:
    """Each model's in-sample and held-out learned scores, computed here from the records."""
    with session_factory(url).begin() as session:
        data = get_dataset(session, dataset)
        keys = dataset_samples(session, data).keys
        folds, calibration = fold_of(keys, FOLDS), calibration_mask(keys, data.holdout_fraction)
    scores = {}
    for name, (classes, probs, _) in truth.items():
        correct = classes[:, 0] == labels
        rules = train_rules(probs, classes, correct, folds, calibration, FOLDS)
        scores[name] = out_of_fold(rules, probs, classes, folds, calibration)
    return {"scores": scores, "calibration": calibration}


def brute_force_best(truth: dict, labels, scores: dict, base: str, drop: float):
    """(saver, saving) of the largest saving over every cheaper saver and learned threshold: the
    margin's brute force, on each model's correctness and out-of-fold score."""
    on_scores = {
        name: (classes[:, 0] == labels, scores[name][0], cost)
        for name, (classes, _, cost) in truth.items()
    }
    return margin_brute_force(on_scores, base, drop)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("drop", ["0", "1"])
def test_learned_answers_equal_the_brute_force(use_database, tmp_path, seed, drop):
    directory, truth, labels = topk_records(tmp_path / "records", seed)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    rows = saverzoo_json(
        "savers", "best", "--dataset", "val", "--confidence", "learned", "--max-drop", drop
    )
    scores = learned_scores(use_database, "val", truth, labels)["scores"]
    for row in rows:
        saver, saving = brute_force_best(truth, labels, scores, row["base"], float(drop))
        assert row["saver"] == saver, row
        if saver is not None:
            assert row["saving"] == pytest.approx(saving, abs=1e-12)
            exits = scores[saver][0].astype(np.float64) > row["threshold"]
            assert exits.mean() == pytest.approx(row["exit_ratio"])
    top1 = saverzoo_json("savers", "best", "--dataset", "val", "--max-drop", drop)
    pairs = zip(rows, top1, strict=True)
    assert any(a["saver"] != b["saver"] or a["saving"] != b["saving"] for a, b in pairs)


def test_held_out_learned_thresholds_are_scored_by_rules_trained_on_the_calibration_half(
    use_database, tmp_path
):
    directory, truth, labels = topk_records(tmp_path / "records", 2)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    computed = learned_scores(use_database, "val", truth, labels)
    evaluation = ~computed["calibration"]
    rows = saverzoo_json(
        "savers", "best", "--dataset", "val", "--confidence", "learned", "--holdout"
    )
    checked = 0
    for row in rows:
        if row["saver"] is None:
            continue
        held_out = computed["scores"][row["saver"]][1]
        exits = held_out[evaluation].astype(np.float64) > row["threshold"]
        assert exits.mean() == pytest.approx(row["exit_ratio"]), row
        checked += 1
    assert checked


def test_learned_pairs_are_kept_up_to_date_as_models_arrive(use_database, tmp_path):
    first, _, _ = topk_records(tmp_path / "a", 0, names=NAMES[:2])
    assert saverzoo("records", "import", first, "--dataset", "val").exit_code == 0
    saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "learned")  # now kept
    rest, _, _ = topk_records(tmp_path / "b", 0, names=NAMES[2:])
    assert saverzoo("records", "import", rest, "--dataset", "val").exit_code == 0
    everything, _, _ = topk_records(tmp_path / "c", 0)
    assert saverzoo("records", "import", everything, "--dataset", "fresh").exit_code == 0
    for options in ([], ["--holdout"], ["--criterion", "paper"], ["--max-drop", "1"]):
        incremental = saverzoo_json(
            "savers", "best", "--dataset", "val", "--confidence", "learned", *options
        )
        fresh = saverzoo_json(
            "savers", "best", "--dataset", "fresh", "--confidence", "learned", *options
        )
        assert incremental == fresh, options


def test_a_model_evaluated_again_gets_new_rules_and_other_signals_keep_their_answers(
    use_database, tmp_path
):
    directory, _, _ = topk_records(tmp_path / "a", 3)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    before = {
        signal: saverzoo_json("savers", "best", "--dataset", "val", "--confidence", signal)
        for signal in ("max", "margin")
    }
    saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "learned")
    for signal, rows in before.items():  # keeping the learned signal changes no other answer
        assert saverzoo_json("savers", "best", "--dataset", "val", "--confidence", signal) == rows
    stored = rules_of(use_database, "val")
    assert set(stored) == set(NAMES)
    rule = stored[NAMES[0]]
    assert rule.folds == FOLDS and rule.library.startswith("scikit-learn ")
    assert len(rule.rules["folds"]) == FOLDS
    assert rule.rules["everything"]["features"][-1] == "class_accuracy"

    changed, _, _ = topk_records(tmp_path / "b", 3, names=NAMES[:1], shift=3)
    replace = ("records", "import", changed, "--replace")
    assert saverzoo(*replace, "--dataset", "val").exit_code == 0
    again = rules_of(use_database, "val")
    assert again[NAMES[0]].rules != rule.rules  # trained again on the new predictions
    assert all(again[n].rules == stored[n].rules for n in NAMES[1:])  # the others kept theirs
    # The same answers as a dataset imported with the new predictions from the start.
    fresh = topk_records(tmp_path / "d", 3, names=NAMES[1:])[0]
    assert saverzoo("records", "import", fresh, "--dataset", "fresh").exit_code == 0
    assert saverzoo(*replace, "--dataset", "fresh").exit_code == 0
    for options in ([], ["--holdout"]):
        args = ("savers", "best", "--confidence", "learned", *options)
        assert saverzoo_json(*args, "--dataset", "val") == saverzoo_json(
            *args, "--dataset", "fresh"
        )


def rules_of(url: str, dataset: str) -> dict[str, LearnedRules]:
    with session_factory(url).begin() as session:
        data = get_dataset(session, dataset)
        rows = session.execute(
            select(Model.name, LearnedRules)
            .join(Model, Model.id == LearnedRules.model_id)
            .where(LearnedRules.dataset_id == data.id)
        ).all()
        session.expunge_all()
        return dict(rows)


def test_no_sample_is_scored_by_a_rule_that_saw_its_label():
    rng = np.random.default_rng(0)
    n = 300
    probs = np.sort(rng.dirichlet(np.ones(4), n).astype(np.float32), axis=1)[:, ::-1].copy()
    classes = np.stack([rng.integers(0, 5, n)] + [rng.integers(5, 9, n)] * 3, axis=1)
    correct = rng.random(n) < probs[:, 0]
    keys = [f"sample-{i}" for i in range(n)]
    folds, calibration = fold_of(keys, FOLDS), calibration_mask(keys, 0.5)
    rules = train_rules(probs, classes, correct, folds, calibration, FOLDS)
    in_sample, holdout = out_of_fold(rules, probs, classes, folds, calibration)
    again = out_of_fold(
        train_rules(probs, classes, correct, folds, calibration, FOLDS),
        probs,
        classes,
        folds,
        calibration,
    )
    assert np.array_equal(in_sample, again[0]) and np.array_equal(holdout, again[1])  # determined
    for i in (0, int(np.flatnonzero(~calibration)[0]), int(np.flatnonzero(calibration)[0])):
        flipped = correct.copy()
        flipped[i] = not flipped[i]
        other = train_rules(probs, classes, flipped, folds, calibration, FOLDS)
        in_sample_, holdout_ = out_of_fold(other, probs, classes, folds, calibration)
        assert in_sample_[i] == in_sample[i]  # its own label never reaches its score
        assert holdout_[i] == holdout[i]
        if not calibration[i]:  # an evaluation label reaches no held-out score at all
            assert np.array_equal(holdout_, holdout)


def test_learned_without_scikit_learn_says_what_to_install(use_database, tmp_path):
    directory, _, _ = topk_records(tmp_path / "records", 0)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    blocker = tmp_path / "blocked"  # first on the path: scikit-learn as if not installed
    (blocker / "sklearn").mkdir(parents=True)
    (blocker / "sklearn" / "__init__.py").write_text("raise ImportError('not installed')\n")

    def without_sklearn(*args: str) -> subprocess.CompletedProcess:
        script = (
            f"import sys; sys.path.insert(0, {str(blocker)!r}); "
            f"from orchestrator.cli import app; app({list(args)!r})"
        )
        env = {**os.environ, "SAVERZOO_DATABASE_URL": use_database}
        return subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )

    refused = without_sklearn("savers", "best", "--dataset", "val", "--confidence", "learned")
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.endswith(
        "learned confidence trains a rule per saver with scikit-learn, which is not "
        "installed: pip install 'saverzoo[search]'"
    )
    for signal in ("max", "margin"):  # every other question answers on the base install
        answered = without_sklearn("savers", "best", "--dataset", "val", "--confidence", signal)
        assert answered.returncode == 0, answered.stderr

    # A curve trains no rule but the saver's: with the saver's rules stored, and the base's not,
    # it answers without scikit-learn, as with it.
    saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "learned")
    with session_factory(use_database).begin() as session:
        base = session.query(Model).filter_by(name=NAMES[-1]).one().id
        session.execute(delete(LearnedRules).where(LearnedRules.model_id == base))
    curve = ("savers", "curve", NAMES[-1], NAMES[0], "--dataset", "val", "--confidence", "learned")
    drawn = without_sklearn(*curve, "--json")
    assert drawn.returncode == 0, drawn.stderr
    assert json.loads(drawn.stdout) == saverzoo_json(*curve)


def test_show_curve_and_score_on_take_the_learned_signal_too(use_database, tmp_path):
    directory, truth, labels = topk_records(tmp_path / "records", 1)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    elsewhere, other_truth, _ = topk_records(tmp_path / "other", 4)
    assert saverzoo("records", "import", elsewhere, "--dataset", "other").exit_code == 0
    best = {
        r["base"]: r
        for r in saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "learned")
    }
    base = NAMES[-1]
    shown = saverzoo_json("savers", "show", base, "--dataset", "val", "--confidence", "learned")
    assert shown["best"]["saver"] == best[base]["saver"] and shown["confidence"] == "learned"
    curve = saverzoo_json(
        "savers", "curve", base, NAMES[0], "--dataset", "val", "--confidence", "learned"
    )
    in_sample = learned_scores(use_database, "val", truth, labels)["scores"][NAMES[0]][0]
    assert curve["confidence"] == "learned"
    assert curve["num_exit_sets"] == len(np.unique(in_sample)) + 1

    moved = saverzoo_json(
        "savers", "best", "--dataset", "val", "--score-on", "other", "--confidence", "learned"
    )
    everything = {
        name: rule.rules["everything"] for name, rule in rules_of(use_database, "val").items()
    }
    checked = 0
    for row in moved:
        if row["saver"] is None:
            continue
        classes, probs, _ = other_truth[row["saver"]]
        rule = Rule.from_json(everything[row["saver"]])
        exits = score(rule, probs, classes).astype(np.float64) > row["threshold"]
        assert exits.mean() == pytest.approx(row["exit_ratio"]), row
        checked += 1
    assert checked


def test_the_api_answers_on_the_learned_signal_once_the_dataset_keeps_it(use_database, tmp_path):
    from tests.factories import api_client

    directory, _, _ = topk_records(tmp_path / "records", 0)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    client = api_client(use_database)
    asked = {"dataset": "val", "confidence": "learned", "holdout": "true"}
    refused = client.get("/v1/savers", params=asked)
    assert refused.status_code == 422 and "keeps no pairs on learned" in refused.text
    kept = saverzoo_json(
        "savers", "best", "--dataset", "val", "--confidence", "learned", "--holdout"
    )
    answered = client.get("/v1/savers", params=asked)
    assert answered.status_code == 200 and answered.json() == kept
    curve = client.get(f"/v1/pairs/{NAMES[-1]}/{NAMES[0]}/curve", params=asked | {"holdout": None})
    assert curve.status_code == 200 and curve.json()["confidence"] == "learned"


def test_a_sample_without_a_prediction_is_scored_like_any_other():
    """Records mark an image that did not decode with class -1 and probability 0: the rule leaves
    it out of its class table (its class accuracy is the overall one) and scores it."""
    rng = np.random.default_rng(0)
    n = 200
    probs = np.sort(rng.dirichlet(np.ones(4), n), axis=1)[:, ::-1][:, :3].astype(np.float32)
    classes = rng.integers(0, 5, (n, 3))
    correct = rng.random(n) < probs[:, 0]
    classes[7], probs[7], correct[7] = -1, 0.0, False
    keys = [f"k{i}" for i in range(n)]
    folds, calibration = fold_of(keys, FOLDS), calibration_mask(keys, 0.5)
    rules = train_rules(probs, classes, correct, folds, calibration, FOLDS)
    in_sample, holdout = out_of_fold(rules, probs, classes, folds, calibration)
    assert np.isfinite(in_sample).all() and np.isfinite(holdout).all()
    rule = rules.everything
    assert sum(rule.class_total) == n - 1
    assert rule.class_accuracy(np.array([-1]))[0] == pytest.approx(
        sum(rule.class_correct) / sum(rule.class_total)
    )


def test_a_probability_that_is_not_finite_counts_as_zero_in_training_and_scoring():
    """The softmax of an infinite logit is NaN: the rule still trains, and scores such an output
    as one whose probabilities are 0, in the search and (the same function) at run time."""
    rng = np.random.default_rng(0)
    n = 300
    probs = np.sort(rng.dirichlet(np.ones(8) * 0.3, n), axis=1)[:, ::-1][:, :5].astype(np.float32)
    classes = rng.integers(0, 50, (n, 5))
    correct = rng.random(n) < probs[:, 0]
    probs[5, 0], probs[6] = np.nan, np.inf
    keys = [f"k{i}" for i in range(n)]
    folds, calibration = fold_of(keys, FOLDS), calibration_mask(keys, 0.5)
    rules = train_rules(probs, classes, correct, folds, calibration, FOLDS)
    zeroed = np.where(np.isfinite(probs), probs, 0.0).astype(np.float32)
    scored = score(rules.everything, probs, classes)
    assert np.isfinite(scored).all()
    assert np.array_equal(scored, score(rules.everything, zeroed, classes))


def test_a_class_accuracy_that_says_nothing_does_not_cost_the_rule_its_ranking():
    """A saver whose correctness depends on its top-1 probability alone, over many classes seen a
    few times each: the class table is noise. Trained on class accuracies that included each
    sample's own label, the rule trusted that noise (AUC 0.66 against the top-1's 0.75); left out,
    the rule ranks as well as the top-1 and gives the class next to no weight."""
    rng = np.random.default_rng(0)
    n, num_classes = 5000, 1000
    p1 = rng.uniform(0.3, 1.0, n)
    correct = rng.random(n) < p1
    probs = np.stack([p1, (1 - p1) * 0.5, (1 - p1) * 0.2], axis=1).astype(np.float32)
    classes = rng.integers(0, num_classes, (n, 3))
    keys = [f"k{i}" for i in range(n)]
    folds, calibration = fold_of(keys, FOLDS), calibration_mask(keys, 0.5)
    rules = train_rules(probs, classes, correct, folds, calibration, FOLDS)
    in_sample, _ = out_of_fold(rules, probs, classes, folds, calibration)

    def auc(scores):  # the probability that a right answer outranks a wrong one
        ranks = np.argsort(np.argsort(scores, kind="stable")) + 1.0
        right = correct.sum()
        return (ranks[correct].sum() - right * (right + 1) / 2) / (right * (n - right))

    assert auc(in_sample) > auc(p1) - 0.01
    assert abs(rules.everything.coef[FEATURES.index("class_accuracy")]) < 0.2


def test_a_rule_of_another_version_is_trained_again_not_read(monkeypatch):
    """A change of the rule's features or training bumps RULE_VERSION: stored rules of another
    version are refused (so trained again), and the learned arrays' basis changes with it (so
    they are derived again rather than kept as current)."""
    import search.learned_arrays as learned_arrays
    from db.deferral_rules import RULE_VERSION
    from db.models import Dataset

    rng = np.random.default_rng(0)
    probs = np.sort(rng.dirichlet(np.ones(4), 100), axis=1)[:, ::-1][:, :3].astype(np.float32)
    classes, correct = rng.integers(0, 5, (100, 3)), rng.random(100) < probs[:, 0]
    keys = [f"k{i}" for i in range(100)]
    folds, calibration = fold_of(keys, FOLDS), calibration_mask(keys, 0.5)
    stored = train_rules(probs, classes, correct, folds, calibration, FOLDS).everything.as_json()
    assert Rule.from_json(stored) is not None
    with pytest.raises(ValueError, match="version"):
        Rule.from_json({**stored, "version": RULE_VERSION - 1})
    with pytest.raises(ValueError, match="version"):
        Rule.from_json({k: v for k, v in stored.items() if k != "version"})
    dataset = Dataset(learned_folds=FOLDS, holdout_fraction=0.5)
    basis = learned_arrays.learned_basis(dataset)
    monkeypatch.setattr(learned_arrays, "RULE_VERSION", RULE_VERSION + 1)
    assert learned_arrays.learned_basis(dataset) != basis


def test_without_a_calibration_half_no_held_out_score_is_trained_on_evaluation_samples():
    """An empty calibration half trains its rules on nothing: every held-out score is the same
    constant, never an out-of-fold score trained on other evaluation samples."""
    rng = np.random.default_rng(0)
    n = 200
    probs = np.sort(rng.dirichlet(np.ones(4), n), axis=1)[:, ::-1][:, :3].astype(np.float32)
    classes, correct = rng.integers(0, 5, (n, 3)), rng.random(n) < probs[:, 0]
    folds = fold_of([f"k{i}" for i in range(n)], FOLDS)
    nowhere = np.zeros(n, dtype=bool)
    rules = train_rules(probs, classes, correct, folds, nowhere, FOLDS)
    in_sample, holdout = out_of_fold(rules, probs, classes, folds, nowhere)
    assert len(np.unique(holdout)) == 1
    assert len(np.unique(in_sample)) > 1


def test_records_with_more_than_the_runtimes_top_k_train_rules_a_cascade_can_run():
    """Records may store a top-10; a cascade's runtime keeps a top-5 of each output. The rules
    read the top 5, so the runtime's output is enough to score a sample, and scores it alike."""
    from db.deferral_rules import MAX_TOPK
    from workers.evaluate import TOP_K

    assert MAX_TOPK == TOP_K

    rng = np.random.default_rng(0)
    n = 200
    probs = np.sort(rng.dirichlet(np.ones(12), n), axis=1)[:, ::-1][:, :10].astype(np.float32)
    classes, correct = rng.integers(0, 20, (n, 10)), rng.random(n) < probs[:, 0]
    keys = [f"k{i}" for i in range(n)]
    folds, calibration = fold_of(keys, FOLDS), calibration_mask(keys, 0.5)
    rule = train_rules(probs, classes, correct, folds, calibration, FOLDS).everything
    assert rule.topk == MAX_TOPK
    runtime = probs[:, :MAX_TOPK].copy(), classes[:, :MAX_TOPK].copy()
    assert np.array_equal(score(rule, *runtime), score(rule, probs, classes))


@pytest.mark.parametrize(
    "change",
    [
        {"mean": [0.0] * 5},
        {"scale": [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]},
        {"coef": [float("nan")] * 6},
        {"intercept": float("inf")},
        {"intercept": "1.0"},
        {"topk": 0},
        {"topk": True},
        {"class_correct": [3], "class_total": [2]},
        {"class_total": [1, 2]},
        {"coef": None},
        {"mean": [10**400] * 6},
    ],
)
def test_a_damaged_rule_is_refused_in_one_line(change):
    """A rule is read from an exported folder (user input) and from the database: every field is
    checked, and what is wrong is said in one line, never a traceback from numpy later."""
    from cluster.errors import InputError

    rule = Rule(
        topk=3,
        mean=(0.0,) * 6,
        scale=(1.0,) * 6,
        coef=(0.5,) * 6,
        intercept=0.1,
        class_correct=(1,),
        class_total=(2,),
    ).as_json()
    assert Rule.from_json(json.loads(json.dumps(rule))) is not None
    with pytest.raises(InputError) as refused:
        Rule.from_json({**rule, **change})
    assert "\n" not in str(refused.value)
    with pytest.raises(InputError):
        Rule.from_json([rule])


def test_stored_rules_that_do_not_read_as_rules_are_trained_again(use_database, tmp_path):
    """A stored row that is not this version's rules (or is damaged) is not current: the rules
    are trained again, never a TypeError from deep inside the update."""
    from sqlalchemy import update

    from search.criteria import LEARNED
    from search.learned_arrays import derive_learned

    directory, _, _ = topk_records(tmp_path / "a", 0, names=NAMES[:2])
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "learned")
    with session_factory(use_database).begin() as session:
        dataset = get_dataset(session, "val")
        ids = [session.query(Model).filter_by(name=n).one().id for n in NAMES[:2]]
        expected = derive_learned(session, dataset, ids, LEARNED, store=False)
        for damaged in ({"folds": 3}, [1, 2], {"folds": [], "calibration_folds": []}):
            session.execute(update(LearnedRules).values(rules=damaged))
            again = derive_learned(session, dataset, ids, LEARNED, store=False)
            assert all(np.array_equal(a, b) for a, b in zip(again, expected, strict=True))


def test_the_worker_install_can_keep_the_learned_signal_up_to_date():
    """The sweep completes models (and so trains their rules on a dataset that keeps `learned`)
    where the worker extra is installed, as the deployed image installs it: the worker extra
    holds everything the search extra does."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras["search"]) <= set(extras["worker"])
    assert 'pip install ".[worker]"' in (root / "infra/docker/Dockerfile").read_text()


def test_score_on_reads_the_rules_of_the_savers_alone(use_database, tmp_path):
    """Scored on another dataset, a learned cascade needs its saver's rule, never its base's:
    the answers stand without the rules of a model that saves no base."""
    directory, _, _ = topk_records(tmp_path / "records", 1)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    elsewhere, _, _ = topk_records(tmp_path / "other", 4)
    assert saverzoo("records", "import", elsewhere, "--dataset", "other").exit_code == 0
    args = ("savers", "best", "--dataset", "val", "--score-on", "other", "--confidence", "learned")
    moved = saverzoo_json(*args)
    savers = {row["saver"] for row in moved}
    assert NAMES[-1] not in savers  # the dearest model saves nothing
    with session_factory(use_database).begin() as session:
        dearest = session.query(Model).filter_by(name=NAMES[-1]).one().id
        session.execute(delete(LearnedRules).where(LearnedRules.model_id == dearest))
    assert saverzoo_json(*args) == moved


def test_a_dataset_cross_fits_on_the_default_folds_and_refuses_fewer_than_two():
    from cluster.errors import InputError
    from db.models import Dataset

    assert Dataset.__table__.c.learned_folds.default.arg == FOLDS
    assert len(np.unique(fold_of([f"k{i}" for i in range(100)], FOLDS))) == FOLDS
    for folds in (0, 1):
        with pytest.raises(InputError, match="2 folds or more"):
            fold_of(["a", "b"], folds)
