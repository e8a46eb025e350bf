"""The generative classifier: Bayes with a prior, calibration, adaptive sampling, three classes, the report."""

import math
import random
from collections import Counter

import pytest
import torch

from textdiff_core.classify import Classifier, fit_calibration, load_classifier
from textdiff_core.evaluate import evaluate_classifier, expected_calibration_error, paired_difference
from textdiff_core.models import LoadedModel, load_model
from textdiff_core.prediction import Prediction
from textdiff_core.records import Calibration

CLASSES = ["gloomy", "sunny", "stormy"]
WORDS = {"gloomy": ["sad", "grey", "dull"], "sunny": ["bright", "warm", "happy"], "stormy": ["wind", "rain", "thunder"]}


class PromptSensitiveToy(torch.nn.Module):
    """A masked LM that strongly prefers its class's words wherever the class name appears in the input."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.config = type("C", (), {"max_position_embeddings": 128, "is_decoder": False})()
        self.vocab = len(tokenizer)
        self.boost = {tokenizer.convert_tokens_to_ids(c): tokenizer.convert_tokens_to_ids(WORDS[c]) for c in CLASSES}
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for class_id, word_ids in self.boost.items():
            present = (input_ids == class_id).any(1)
            for w in word_ids:
                logits[present, :, w] += 6.0
        return type("O", (), {"logits": logits})()


@pytest.fixture(scope="module")
def toy_classifier():
    tok = load_model("tiny").tokenizer
    lm = LoadedModel(PromptSensitiveToy(tok), tok, "masked", "toy")
    return Classifier(lm, CLASSES, [f"{c} weather:" for c in CLASSES], method="elbo")


def _texts(n_per_class: int, seed: int = 0):
    rng = random.Random(seed)
    texts, labels = [], []
    for label, c in enumerate(CLASSES):
        for _ in range(n_per_class):
            texts.append(" ".join(rng.choice(WORDS[c]) for _ in range(6)) + " today")
            labels.append(label)
    return texts, labels


def test_three_classes_are_told_apart(toy_classifier):
    texts, labels = _texts(2)
    for text, label in zip(texts, labels, strict=True):
        p = toy_classifier.classify(text, samples=4, generator=torch.Generator().manual_seed(0))
        assert p.label == CLASSES[label] and len(p.posterior) == 3
        assert math.isclose(sum(p.posterior), 1.0, rel_tol=1e-6)


def test_prior_shifts_decisions_as_bayes_says():
    clf = Classifier(LoadedModel(torch.nn.Linear(1, 1), None, "causal", "x"), ["a", "b"], [None, None], "ar")
    ll = [-10.0, -11.0]
    assert clf.posterior(ll)[0] == pytest.approx(1 / (1 + math.exp(-1)))
    clf.log_prior = [math.log(0.2), math.log(0.8)]
    post = clf.posterior(ll)
    expected = [0.2 * math.exp(-10), 0.8 * math.exp(-11)]
    assert post == pytest.approx([e / sum(expected) for e in expected])
    assert post[1] > post[0], "a strong enough prior overturns a 1-nat likelihood lead"


def test_calibration_fitted_on_validation_lowers_ece_on_held_out_data():
    rng = random.Random(1)

    def overconfident(n):  # true logit gap g, but the model reports 4 g: far too sure
        preds, labels = [], []
        for _ in range(n):
            y = rng.randrange(2)
            gap = rng.gauss(1.0 if y == 1 else -1.0, 1.0)
            preds.append(Prediction("", ["a", "b"], [], [0.0, 4 * gap], [0, 0], [], 0, 0, 0.0))
            labels.append(y)
        return preds, labels

    val, val_y = overconfident(400)
    test, test_y = overconfident(400)
    prior = [math.log(0.5)] * 2
    clf = Classifier(LoadedModel(torch.nn.Linear(1, 1), None, "causal", "x"), ["a", "b"], [None, None], "ar")

    def ece(calibration):
        clf.calibration = calibration
        posts = [clf.posterior(p.log_likelihood) for p in test]
        conf = [max(q) for q in posts]
        correct = [q.index(max(q)) == y for q, y in zip(posts, test_y, strict=True)]
        return expected_calibration_error(conf, correct)

    fitted = fit_calibration(val, val_y, prior)
    assert 1.6 < fitted.temperature < 2.5, "the true temperature of a 4x overconfident gap is 2"
    assert ece(fitted) < 0.5 * ece(Calibration(bias=[0.0, 0.0]))


def test_adaptive_sampling_spends_fewer_passes_for_the_same_decisions(toy_classifier):
    texts, _ = _texts(3, seed=2)
    full = [toy_classifier.classify(t, 16, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(texts)]
    fast = [toy_classifier.classify(t, 16, adaptive=True, generator=torch.Generator().manual_seed(i))
            for i, t in enumerate(texts)]
    assert [p.label for p in fast] == [p.label for p in full]
    assert sum(p.forward_passes for p in fast) < 0.5 * sum(p.forward_passes for p in full)
    assert all(p.samples == 16 for p in full) and max(p.samples for p in fast) < 16


def test_evaluate_report_keys_are_present_and_consistent(toy_classifier):
    texts, labels = _texts(4, seed=3)
    report = evaluate_classifier(toy_classifier, texts, labels, samples=2, progress=False)
    for key in ("accuracy", "n", "accuracy_ci95", "per_class", "confusion", "ece", "latency_s", "examples_per_s"):
        assert key in report
    assert report["n"] == 12
    diagonal = sum(report["confusion"][i][i] for i in range(3))
    assert report["accuracy"] == pytest.approx(diagonal / 12)
    low, high = report["accuracy_ci95"]
    assert low <= report["accuracy"] <= high
    assert sum(v["support"] for v in report["per_class"].values()) == 12
    assert set(report["latency_s"]) >= {"mean", "median"} and report["examples_per_s"] > 0
    hits = sum(p == y for p, y in zip(report["predictions"], labels, strict=True))
    assert hits == diagonal, "the per-text predictions are the ones the confusion matrix counts"


def test_paired_difference_counts_discordant_pairs_and_tests_them_exactly():
    # A right on 10 texts B gets wrong, B right on 2 that A gets wrong, both right on 80, both wrong on 8
    a = [True] * 10 + [False] * 2 + [True] * 80 + [False] * 8
    b = [False] * 10 + [True] * 2 + [True] * 80 + [False] * 8
    result = paired_difference(a, b)
    assert (result["n"], result["a_only"], result["b_only"]) == (100, 10, 2)
    assert result["difference"] == pytest.approx(0.08)
    # exact McNemar: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert result["mcnemar_p"] == pytest.approx(2 * 79 / 4096)
    low, high = result["difference_ci95"]
    assert 0 < low < 0.08 < high < 0.16
    # the pairing: the per-text differences' spread, not two accuracies' (which would give about +-0.10)
    sd = math.sqrt((12 - 100 * 0.08**2) / 99)
    assert high - 0.08 == pytest.approx(1.96 * sd / 10)
    same = paired_difference(a, a)
    assert same["difference"] == 0 and same["difference_ci95"] == [0, 0] and same["mcnemar_p"] == 1.0
    swapped = paired_difference(b, a)
    assert swapped["difference"] == pytest.approx(-0.08) and swapped["mcnemar_p"] == result["mcnemar_p"]
    with pytest.raises(ValueError):
        paired_difference([True], [False, True])


def test_the_default_reading_is_the_one_the_calibration_chose_on_validation(tmp_path):
    """One rule (``records.best_reading``) for the CLI, the page and the synthetic-data judge: the reading with the
    better cross-fitted validation accuracy, ties to infill; the Bayes reading is named for the model's kind."""
    import json

    from textdiff_core.classify import default_reading

    def checkpoint(objective, accuracy):
        folder = tmp_path / f"{objective}-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "textdiff.json").write_text(json.dumps({"objective": objective}))
        if accuracy is not None:
            (folder / "calibration.json").write_text(json.dumps({"combined": {"cross_fitted_accuracy": accuracy}}))
        return str(folder)

    method, why = default_reading(checkpoint("diffusion", {"bayes": 0.81, "infill": 0.89, "combined": 0.89}))
    assert method == "infill"
    assert why == "the reading its calibration chose on validation (89.0% against 81.0% for elbo)"
    assert default_reading(checkpoint("ar", {"bayes": 0.91, "infill": 0.89}))[0] == "ar"
    assert default_reading(checkpoint("ar", {"bayes": 0.9, "infill": 0.9}))[0] == "infill", "a tie: the cheaper one"
    assert default_reading(checkpoint("diffusion", None)) is None, "no record: the classifier's own default"
    assert default_reading("tiny") is None


def test_percentile_places_read_as_english_ordinals():
    from textdiff_core.prediction import ordinal

    assert [ordinal(v) for v in (0, 1, 2, 3, 4, 11, 12, 13, 21, 22, 62, 100, 101, 111)] == [
        "0th", "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "62nd", "100th", "101st", "111th"]
    assert ordinal(62.5, 1) == "62.5th" and ordinal(62.0, 1) == "62nd" and ordinal(0.04, 1) == "0th"


# ---- The ELBO reading's shared noise, seen in the masks each class is scored with ----

PAIR = ["negative", "positive"]
SHARED_TEXT = "a warm and clever film with a fine cast and a sharp script"


@pytest.fixture(scope="module")
def elbo_checkpoints(tmp_path_factory) -> dict[str, str]:
    """A tiny class-conditional checkpoint and a tiny per-class pair, as ``train_cli.py train`` writes them."""
    import json

    from textdiff_core.models import save_model

    root = tmp_path_factory.mktemp("shared-noise")
    lm = load_model("tiny", device="cpu")
    save_model(lm.model, lm.tokenizer, root / "class", {"objective": "diffusion", "conditioning": "class",
                                                        "classes": PAIR, "class_prompt": "{label} review:"})
    for c in PAIR:
        save_model(lm.model, lm.tokenizer, root / "per-class" / c, {"objective": "diffusion", "conditioning": "none"})
    (root / "per-class" / "textdiff.json").write_text(json.dumps(
        {"objective": "diffusion", "conditioning": "per-class", "classes": PAIR, "class_dirs": {c: c for c in PAIR}}))
    return {"class": str(root / "class"), "per-class": str(root / "per-class")}


def _masks_by_class(clf: Classifier, samples: int = 4, adaptive: bool = False) -> dict[str, Counter]:
    """The masks each class's rows reach its model with, as a multiset of (position masked?) patterns per class, from
    one ``classify``: read off the token ids entering the embedding layer, whatever batches them. One model scored
    per class prompt: a row's class is the class word in it; a set of one model per class: the model it enters."""
    one_model = isinstance(clf.models, LoadedModel)
    models = {c: clf.models for c in clf.classes[:1]} if one_model else clf.models
    seen: dict[str, list] = {c: [] for c in clf.classes}
    handles = []
    for c, lm in models.items():
        words = {lm.tokenizer.convert_tokens_to_ids(name): name for name in clf.classes}

        def record(module, args, c=c, lm=lm, words=words):
            for row in args[0]:
                [name] = {words[i] for i in row.tolist() if i in words} if one_model else {c}
                seen[name].append(tuple((row == lm.tokenizer.mask_token_id).tolist()))

        handles.append(lm.model.get_input_embeddings().register_forward_pre_hook(record))
    try:
        clf.classify(SHARED_TEXT, samples, adaptive=adaptive, generator=torch.Generator().manual_seed(0))
    finally:
        for handle in handles:
            handle.remove()
    return {c: Counter(patterns) for c, patterns in seen.items()}


@pytest.mark.parametrize("kind", ["class", "per-class"])
def test_the_elbo_reading_scores_every_class_with_the_same_masks(elbo_checkpoints, kind):
    """Shared noise (common random numbers): by default the ELBO reading scores every class with the same masks, for
    one class-prompted model and for a set of one model per class alike (``Classifier._score`` restores the generator
    for each class's model), whether loaded from a checkpoint or built in code, in one draw or adaptively."""
    loaded = load_classifier(elbo_checkpoints[kind])  # no --method: the classifier's default reading
    assert isinstance(loaded.models, LoadedModel) == (kind == "class")
    built = Classifier(loaded.models, loaded.classes, loaded.prompts)  # the default of the class itself
    for clf, adaptive in ((loaded, False), (built, False), (loaded, True)):
        masks = _masks_by_class(clf, adaptive=adaptive)
        counts = [sum(m.values()) for m in masks.values()]  # the samples of each class, every one seen
        assert counts == [4, 4] if not adaptive else counts[0] == counts[1] >= 2, masks
        assert len(masks["negative"]) > 1, "masks drawn at random, not one pattern"
        assert masks["negative"] == masks["positive"], f"{kind}: the classes were scored with different masks"
    fresh = _masks_by_class(Classifier(loaded.models, loaded.classes, loaded.prompts, method="elbo-indep"))
    assert fresh["negative"] != fresh["positive"], "fresh noise per class is what the test would see"
