"""What a generative classifier promises, measured: the metrics pinned on cases computed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import area_under_risk_coverage, bootstrap_interval, ood_detection, risk_coverage


def test_auroc_and_fpr_of_two_known_score_lists():
    # pairs (in, out) with out above in: (0.1, 0.35), (0.1, 0.8), (0.4, 0.8) of 4 -> 0.75
    d = ood_detection([0.1, 0.4], [0.35, 0.8])
    assert d["auroc"] == pytest.approx(0.75)
    # the threshold keeping 95% of the 2 in-distribution texts is 0.4; it lets through 0.35, one OOD text of two
    assert (d["threshold"], d["fpr_at_95_tpr"]) == (0.4, 0.5)
    assert ood_detection([0.5], [0.5])["auroc"] == pytest.approx(0.5), "a tie counts half"
    assert ood_detection([1.0, 2.0], [3.0, 4.0])["auroc"] == 1.0
    assert ood_detection([3.0, 4.0], [1.0, 2.0]) == pytest.approx(
        {"auroc": 0.0, "fpr_at_95_tpr": 1.0, "threshold": 4.0, "n_in": 2, "n_out": 2})
    with pytest.raises(TextdiffError):
        ood_detection([], [1.0])


def test_fpr_keeps_95_percent_of_twenty_in_distribution_texts():
    in_scores = [float(i) for i in range(20)]  # 19 of 20 kept: threshold 18
    out_scores = [17.5, 18.0, 18.5, 30.0]
    d = ood_detection(in_scores, out_scores)
    assert d["threshold"] == 18.0 and d["fpr_at_95_tpr"] == 0.5


def test_risk_coverage_by_hand():
    rows = risk_coverage([0.9, 0.8, 0.7, 0.6], [True, False, True, True])
    assert [(r["coverage"], round(r["accuracy"], 4)) for r in rows] == [(0.25, 1.0), (0.5, 0.5), (0.75, 0.6667),
                                                                       (1.0, 0.75)]
    assert area_under_risk_coverage([0.9, 0.8, 0.7, 0.6], [True, False, True, True]) == pytest.approx(
        (0 + 0.5 + 1 / 3 + 0.25) / 4)
    # tied confidences are one point: kept or dropped together
    assert [r["coverage"] for r in risk_coverage([0.5, 0.5, 0.9], [True, False, True])] == [1 / 3, 1.0]
    # errors ranked last beat errors ranked first
    last = area_under_risk_coverage([0.9, 0.8, 0.7, 0.1], [True, True, True, False])
    first = area_under_risk_coverage([0.1, 0.8, 0.7, 0.9], [True, True, True, False])
    assert last == pytest.approx(0.25 / 4) and first == pytest.approx((1 + 0.5 + 1 / 3 + 0.25) / 4)


def test_bootstrap_interval_brackets_the_statistic_and_repeats_under_its_seed():
    scores_in, scores_out = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.35, 0.55, 0.7, 0.8, 0.9, 1.0]

    def auroc(a, b):
        return ood_detection(a, b)["auroc"]

    low, high = bootstrap_interval(auroc, scores_in, scores_out, resamples=200)
    assert low <= auroc(scores_in, scores_out) <= high and 0 <= low < high <= 1
    assert bootstrap_interval(auroc, scores_in, scores_out, resamples=200) == (low, high)


def _damerau_one(a: str, b: str) -> bool:
    """True when b is a with one swap of neighbours, deletion, insertion or substitution."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return len(long_) == len(short) + 1 and any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def test_typos_edit_the_given_share_of_words_once_each_and_repeat_under_a_seed():
    from textdiff_core.perturb import typos

    text = "This film wasn't a truly wonderful surprise , and I would watch it again tomorrow with friends ."
    words = text.split(" ")
    eligible = [w for w in words if sum(c.isalpha() for c in w) >= 2]
    for rate in (0.1, 0.2, 0.5):
        new, changed = typos(text, rate, seed=3)
        assert len(changed) == round(rate * len(eligible)) and typos(text, rate, seed=3) == (new, changed)
        after = new.split(" ")
        assert len(after) == len(words)
        for i, (a, b) in enumerate(zip(words, after, strict=True)):
            assert (a != b) == (i in changed), (a, b)
            if i in changed:
                assert _damerau_one(a, b), (a, b)
    assert typos(text, 0.2, seed=4) != typos(text, 0.2, seed=3)
    assert typos(text, 0.0) == (text, [])
    with pytest.raises(TextdiffError):
        typos(text, 1.5)


def test_comprehensiveness_and_sufficiency_of_a_toy_classifier():
    import math

    from textdiff_core.perturb import faithfulness

    def p_positive(text: str) -> float:  # P(positive) = sigmoid(#good - #bad)
        words = text.split(" ")
        return 1 / (1 + math.exp(-(words.count("good") - words.count("bad"))))

    def sig(x):
        return 1 / (1 + math.exp(-x))

    f = faithfulness(p_positive, "good good bad movie", [1.0, 1.0, -1.0, 0.0], fractions=(0.2, 0.5))
    assert f["p_full"] == pytest.approx(sig(1))
    assert f["20"]["words"] == 1 and f["50"]["words"] == 2
    assert f["20"]["evidence_comprehensiveness"] == pytest.approx(sig(1) - sig(0))  # "good bad movie"
    assert f["20"]["evidence_sufficiency"] == pytest.approx(0.0)  # "good"
    assert f["50"]["evidence_comprehensiveness"] == pytest.approx(sig(1) - sig(-1))  # "bad movie"
    assert f["50"]["evidence_sufficiency"] == pytest.approx(sig(1) - sig(2))  # "good good"
    # evidence with the sign flipped points at the wrong words: removing them raises the probability
    flipped = faithfulness(p_positive, "good good bad movie", [-1.0, -1.0, 1.0, 0.0], fractions=(0.2,))
    assert flipped["20"]["evidence_comprehensiveness"] == pytest.approx(sig(1) - sig(2))
    assert flipped["20"]["evidence_comprehensiveness"] < 0
    again = faithfulness(p_positive, "good good bad movie", [1.0, 1.0, -1.0, 0.0], fractions=(0.2, 0.5))
    assert again == f, "the random words repeat under the seed"


def test_token_evidence_is_summed_into_words():
    from textdiff_core.perturb import word_evidence

    text = "a well-made film"
    # tokens: a | well | - | made | film
    spans = [(0, 1), (2, 6), (6, 7), (7, 11), (12, 16)]
    assert word_evidence(text, spans, [0.5, 1.0, 0.25, 2.0, -1.0]) == [0.5, 3.25, -1.0]


def _toy_probabilities(texts):
    """[P(negative), P(positive)] with P(positive) = sigmoid(2 #good + 2 #great - 3 #bad)."""
    import math

    out = []
    for t in texts:
        w = t.split(" ")
        z = 2 * (w.count("good") + w.count("great")) - 3 * w.count("bad")
        p = 1 / (1 + math.exp(-z))
        out.append([1 - p, p])
    return out


def test_the_attack_substitutes_the_most_important_word_first_and_stops_at_the_flip():
    from textdiff_core.perturb import substitution_attack

    text = "a good film with great cast"
    attack = substitution_attack(_toy_probabilities, text, 1, lambda words, i: ["bad", "nice"],
                                 lambda a, b: True, skip={"a", "with"})
    # deleting "good" or "great" costs most (tie: the first); "bad" there flips the decision at once
    assert attack.success and attack.changed == [1] and attack.adversarial == "a bad film with great cast"
    assert attack.queries == 1 + 4 + 2  # the original, four deletions, two candidates
    assert attack.p_after == pytest.approx(_toy_probabilities([attack.adversarial])[0][1])
    assert attack.p_after < 0.5


def test_the_similarity_constraint_and_the_word_budget_bound_the_attack():
    from textdiff_core.perturb import substitution_attack

    text = "a good film with great cast"
    no_bad = substitution_attack(_toy_probabilities, text, 1, lambda words, i: ["bad", "nice"],
                                 lambda a, b: "bad" not in b.split(" "), skip={"a", "with"})
    # without "bad": "nice" for good, then for great, reaching a tie at 0.5, which is no success
    assert not no_bad.success and no_bad.changed == [1, 4] and no_bad.adversarial == "a nice film with nice cast"
    assert no_bad.p_after == pytest.approx(0.5)
    one = substitution_attack(_toy_probabilities, text, 1, lambda words, i: ["nice"], lambda a, b: True,
                              max_words=1, skip={"a", "with"})
    assert one.changed == [1] and not one.success
    none = substitution_attack(_toy_probabilities, text, 1, lambda words, i: ["good"], lambda a, b: True,
                               skip={"a", "with"})
    assert none.changed == [] and none.adversarial == text, "a substitution that helps the label is not made"


def test_the_not_review_texts_are_real_files_read_as_they_are():
    from textdiff_core.experiments.promises import LICENCES, STDLIB, not_review_texts

    texts = not_review_texts(50)
    assert len(texts) == 50 and not_review_texts(50) == texts
    assert len({t["text"] for t in texts}) == 50 and all(len(t["text"].split(" ")) >= 30 for t in texts)
    for t in texts[:10]:  # each passage is in the file it names, word for word
        source = t["source"]
        if " stdlib " in source:
            raw = (STDLIB / source.split(" stdlib ")[1]).read_text(errors="replace")
        else:
            assert source.startswith(str(LICENCES))
            raw = open(source, errors="replace").read()
        assert " ".join(t["text"].split()[:12]) in " ".join(raw.split())


def test_shuffled_texts_keep_their_words():
    from textdiff_core.experiments.promises import shuffled

    texts = ["the film was a joy from start to end", "dull and long"]
    out = shuffled(texts, seed=1)
    assert [sorted(a.split()) for a in out] == [sorted(a.split()) for a in texts] and out[0] != texts[0]
    assert shuffled(texts, seed=1) == out


@pytest.fixture(scope="module")
def tiny_trio(tmp_path_factory):
    from textdiff_core.cli import main

    root = tmp_path_factory.mktemp("trio")
    for objective, model, conditioning in (("diffusion", "tiny", "class"), ("ar", "tiny-ar", "class"),
                                           ("discriminative", "tiny", "none")):
        assert main(["train", "--objective", objective, "--model", model, "--data", "imdb", "--conditioning",
                     conditioning, "--quick-test", "--no-progress", "--out", str(root / objective)]) == 0
    return root


def _promises_args(trio, out, *extra):
    return ["promises", "--diffusion", str(trio / "diffusion"), "--ar", str(trio / "ar"), "--discriminative",
            str(trio / "discriminative"), "--baseline", "tfidf:rotten_tomatoes", "--n", "6", "--samples", "1",
            "--n-attack", "2", "--attack-words", "10", "--max-words", "2", "--candidates", "3", "--n-faith", "2",
            "--faith-words", "10", "--out", str(out), *extra]


@pytest.mark.slow
def test_promises_writes_the_contract_for_every_reading_and_resumes(tiny_trio, tmp_path, monkeypatch):
    import json

    from textdiff_core.cli import main
    from textdiff_core.experiments import promises

    out = tmp_path / "out"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(promises, "faithful", killed)  # dies at the first reading's faithfulness
    with pytest.raises(KeyboardInterrupt):
        main(_promises_args(tiny_trio, out))
    partial = json.loads((out / "promises.partial.json").read_text())["done"]
    assert "diffusion: read imdb" in partial and "diffusion: attack" in partial
    monkeypatch.undo()
    reads = []
    real = promises.read
    monkeypatch.setattr(promises, "read", lambda *a, **k: reads.append(1) or real(*a, **k))
    assert main(_promises_args(tiny_trio, out)) == 0
    # the first reading's four sets and two typo rates are not read again; the five others' are
    assert len(reads) == (4 + 2) * 5
    record = json.loads((out / "promises.json").read_text())
    assert set(record["readings"]) == {"diffusion", "diffusion_infill", "ar", "ar_infill", "discriminative", "tfidf"}
    for key, r in record["readings"].items():
        assert set(r["ood_auroc"]) == {"rotten_tomatoes", "not_reviews", "shuffled"}, key
        assert all(0 <= v <= 1 for v in r["ood_auroc"].values())
        assert 0 <= r["accuracy_under_attack"] <= r["attack"]["accuracy_clean"] <= 1
        assert r["attack_success_rate"] is None or 0 <= r["attack_success_rate"] <= 1
        assert 0 <= r["ece_rotten_tomatoes"] <= 1
        assert r["comprehensiveness_10"] is not None or r["faithfulness"]["skipped"] == r["faithfulness"]["n"] + \
            r["faithfulness"]["skipped"], key
        assert set(r["attack"]["transfer_from"]) == set(record["readings"]) - {key}
    assert record["readings"]["diffusion"]["ood_score"] == "log_p_per_token"
    assert record["readings"]["discriminative"]["ood_score"] == "energy"
    assert not (out / "promises.partial.json").exists()
    assert main(["promises", "--n", "3"]) == 2, "no --out"


def test_the_polarity_constraint_bars_words_of_the_other_class(tmp_path):
    from textdiff_core.experiments.promises import Polarity

    data = tmp_path / "d.csv"
    rows = [("a great great film", "positive")] * 6 + [("a dull film", "negative")] * 6 + [("a film", "positive")]
    data.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in rows) + "\n")
    p = Polarity(limit=0.3, data=str(data))
    # classes sort as negative (0), positive (1); "great" is in 6 of 7 positive rows and no negative one
    assert p.ratio["great"] > 0.3 and p.ratio["dull"] < -0.3 and abs(p.ratio["film"]) < 0.3
    assert not p.allowed("great", 0) and p.allowed("great", 1) and not p.allowed("Dull,", 1)
    assert p.allowed("film", 0) and p.allowed("film", 1) and p.allowed("unseen", 0)


@pytest.mark.slow
def test_the_report_carries_the_committed_promises_into_results_json_and_results_md(tiny_trio, tmp_path):
    """The contract: results.json gains a top-level ``promises`` with, per reading, ood_auroc (set -> AUROC),
    accuracy_under_attack, attack_success_rate, comprehensiveness_10, ece_rotten_tomatoes."""
    import json
    import shutil

    from textdiff_core.cli import main

    out = tmp_path / "p"
    assert main(_promises_args(tiny_trio, out, "--readings", "diffusion_infill,tfidf")) == 0
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    shutil.copy(out / "promises.json", root / "results" / "promises.json")
    shutil.copy(Path(__file__).resolve().parents[1] / "results.json", root / "results.json")
    (root / "README.md").write_text("x\n<!-- results:start -->\nold\n<!-- results:end -->\n")
    assert main(["report", "--rerender", "--root", str(root)]) == 0
    result = json.loads((root / "results.json").read_text())
    assert set(result["promises"]) == {"diffusion_infill", "tfidf"}
    for reading in result["promises"].values():
        assert {"ood_auroc", "accuracy_under_attack", "attack_success_rate", "comprehensiveness_10",
                "ece_rotten_tomatoes"} <= set(reading)
        assert set(reading["ood_auroc"]) == {"rotten_tomatoes", "not_reviews", "shuffled"}
    text = (root / "RESULTS.md").read_text()
    for section in ("## Uncertainty, in and out of domain", "## Out-of-distribution detection", "## Robustness",
                    "## Faithful evidence", "### Successful attacks (uncurated: the first ones found)"):
        assert section in text, section
    assert "diffusion infill" in text and "What the classifiers promise" in (root / "README.md").read_text()
