"""The Classify page and what a generative classifier promises: the discriminative head's reading with its
occlusion evidence, the OOD flag's measured rates from ``results/promises.json``, and the perturb control (typos and
the word-substitution attack), headless (AppTest) with tiny models."""

import html
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import tests.test_e2e_browser as e2e
from textdiff_core.classify import load_classifier
from textdiff_core.cli import main
from textdiff_core.experiments import promises
from textdiff_core.perturb import substitution_attack
from textdiff_core.settings import CLASSIFIER

APP = str(Path(__file__).resolve().parents[1] / "app.py")
REVIEW = "A tender, funny and beautifully acted film, though the plot drags in the middle and the ending is weak."
# 45 words: the attack reads the first 40
LONG = ("the movie was a dull mess with loud music and no story at all , yet the two leads try hard and a few "
        "scenes near the end are almost moving before the plot falls apart again in a long and tired final act "
        "that")
FLAG = {"false_positive_rate": 0.012, "detected": {"rotten_tomatoes": 0.2, "not_reviews": 0.64, "shuffled": 0.5}}
RATES = "This flag fires on 1.2% of IMDB test reviews and on 64.0% of texts that are not reviews"

@pytest.fixture(scope="module")
def discriminative(tmp_path_factory) -> Path:
    """A tiny checkpoint with a classification head, trained by the CLI as the README says."""
    out = tmp_path_factory.mktemp("disc") / "run"
    assert main(["train", "--objective", "discriminative", "--model", "tiny", "--data", "imdb", "--quick-test",
                 "--no-progress", "--out", str(out)]) == 0
    return out


def _page(**picks: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/classify.py").run()
    from pages._shared import CUSTOM  # importable once AppTest has run the app (its directory on the path)

    for role, name in picks.items():
        if role == "discriminative":
            at.sidebar.selectbox(key="pick_discriminative").set_value(CUSTOM).run()
            at.sidebar.text_input(key="custom_discriminative").set_value(name).run()
        else:
            at.sidebar.selectbox(key=f"pick_{role}").set_value(name).run()
    return at


def _readings(at: AppTest, *on: str) -> None:
    """Tick exactly the readings ``on`` (checkbox labels)."""
    for box in at.checkbox:
        if box.label in ("Diffusion", "Left-to-right twin", "Zero-shot reference LM", "TF-IDF reference",
                         "Discriminative head"):
            if box.disabled and box.label not in on:  # no head picked: the box is off and cannot be ticked
                continue
            box.set_value(box.label in on)
    at.run()


def _classify(at: AppTest, text: str) -> None:
    at.text_area[0].set_value(text).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _heatmap_values(body: str) -> list[float]:
    return [float(v) for v in re.findall(r'title="[^"]*: ([+-]\d+\.\d+)(?: ± [\d.]+)? nats"', body)]


def _marked(body: str) -> tuple[list[str], set[int]]:
    """The words of a marked text as the page shows it, and the indices of those marked."""
    inner = re.fullmatch(r"<div[^>]*>(.*)</div>", body, re.S).group(1)
    pieces = inner.split(" ")
    return ([html.unescape(re.sub(r"</?mark>", "", p)) for p in pieces],
            {i for i, p in enumerate(pieces) if p.startswith("<mark>")})


@pytest.mark.slow  # AppTest runs of the page: seconds
def test_the_discriminative_head_classifies_with_its_occlusion_evidence(discriminative):
    at = _page(discriminative=str(discriminative))
    _readings(at, "Discriminative head")
    _classify(at, REVIEW)
    assert [s.value for s in at.main.subheader] == ["Discriminative head"]
    assert [m.label for m in at.metric] == ["Decision"]
    assert any("method `discriminative` · 1 forward pass" in c.value for c in at.caption)
    (table,) = (t.value for t in at.dataframe)
    assert list(table.columns) == ["class", "the head's logit (mean over windows)"], "its logits, no likelihood"
    logits = table["the head's logit (mean over windows)"].tolist()
    (ood,) = [c.value for c in at.caption if c.value.startswith("Out-of-distribution check")]
    energy = float(re.search(r"Energy (-?\d+\.\d+)", ood).group(1))
    assert "not calibrated" in ood and abs(energy + math.log(sum(math.exp(v) for v in logits))) < 0.02, (ood, logits)
    # the occlusion heatmap is the head's own: the change in its log-odds when each token is hidden, token by token
    assert any("occlusion" in m.value for m in at.markdown)
    (body,) = [h.proto.body for h in at.get("html")]
    ids, delta = load_classifier(str(discriminative)).infill_evidence(REVIEW, max_windows=2)
    expected = (delta[:, 1] - delta[:, 0]).tolist()
    shown = _heatmap_values(body)
    assert len(shown) == len(ids) and all(abs(a - b) < 0.006 for a, b in zip(shown, expected, strict=True))


def test_a_discriminative_run_is_offered_as_the_discriminative_model_only(tmp_path, monkeypatch):
    AppTest.from_file(APP)  # puts the app's directory on the path
    from pages import _shared

    for name, objective in (("head", "discriminative"), ("twin", "ar")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "textdiff.json").write_text(json.dumps({"objective": objective}))
    monkeypatch.setattr(_shared, "RUNS", tmp_path)
    head, twin = str(tmp_path / "head"), str(tmp_path / "twin")
    assert _shared.options("discriminative")[-2:] == [head, _shared.CUSTOM] and twin not in _shared.options(
        "discriminative")
    assert all(head not in _shared.options(role) for role in _shared.ROLES), "not a left-to-right model"
    assert twin in _shared.options("ar")


def _repository(tmp_path: Path, discriminative: Path, settings: dict | None) -> Path:
    """A repository root holding the discriminative checkpoint where promises reads it by default, calibrated so
    that its OOD flag fires on every text, and (unless ``settings`` is None) a promises record measured with
    ``settings``."""
    checkpoint = Path(shutil.copytree(discriminative, tmp_path / "checkpoints" / "imdb-discriminative"))
    (checkpoint / "calibration.json").write_text(json.dumps({"discriminative": {
        "temperature": 1.0, "bias": [0.0, 0.0], "ood_reference": [1e6] * 10}}))  # every text below them all
    (tmp_path / "results").mkdir()
    if settings is not None:
        (tmp_path / "results" / "promises.json").write_text(json.dumps({"settings": settings, "readings": {
            "discriminative": {"label": "discriminative head", "ood_flag": FLAG, "ood_score": "energy",
                               "ood_auroc": {"rotten_tomatoes": 0.6, "not_reviews": 0.9, "shuffled": 0.7}}}}))
    return checkpoint


@pytest.mark.slow  # AppTest runs of the page: seconds
@pytest.mark.parametrize("settings,shows", [
    ({"discriminative": None, "baseline": "tfidf"}, True),  # measured on ROOT/checkpoints/imdb-discriminative
    ({"discriminative": "checkpoints/imdb-discriminative"}, True),  # the same, named relative to the root
    ({"discriminative": "checkpoints/another-head"}, False),  # measured on another checkpoint
    (None, False),  # no record
], ids=["default path", "relative path", "another checkpoint", "no record"])
def test_the_ood_flag_states_its_measured_rates_only_for_the_checkpoint_they_were_measured_on(
        discriminative, tmp_path, monkeypatch, settings, shows):
    checkpoint = _repository(tmp_path, discriminative, settings)
    AppTest.from_file(APP).run()  # puts the app's directory on the path
    from pages import _shared

    monkeypatch.setattr(_shared, "PROMISES_RECORD", tmp_path / "results" / "promises.json")
    at = _page(discriminative=str(checkpoint))
    _readings(at, "Discriminative head")
    _classify(at, REVIEW)
    (warning,) = [w.value for w in at.warning if w.value.startswith("Out of distribution")]
    assert "minus the head's energy at the 0th percentile" in warning
    assert (RATES in warning) == shows, warning
    assert ("20.0% of Rotten Tomatoes reviews" in warning and "50.0% of IMDB reviews with their words shuffled"
            in warning) == shows
    assert not any("This flag fires" in e.value for e in [*at.caption, *at.markdown, *at.info]), "said once"


@pytest.mark.slow  # AppTest runs of the page: seconds
def test_typos_mark_exactly_the_words_they_changed_and_show_both_verdicts():
    at = _page(ar="tiny-ar")
    _readings(at, "Left-to-right twin")
    _classify(at, REVIEW)
    (before,) = at.metric
    at.selectbox(key="perturb_how").set_value("typos 20%").run()
    at.button(key="perturb_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 3, "the evidence before, the marked text, the evidence after"
    words, marked = _marked(bodies[1])
    original = REVIEW.split(" ")
    assert len(words) == len(original)
    assert {i for i, (a, b) in enumerate(zip(original, words, strict=True)) if a != b} == marked
    assert len(marked) == 4, "one word in five of the 18 with two letters or more (all but \"A\"), rounded"
    perturbed = " ".join(words)
    assert f"{len(marked)} of the text's words with a typo" in " ".join(m.value for m in at.markdown)
    # both verdicts: before, the page's own decision; after, the reading of the text shown
    labels = [m.label for m in at.metric]
    assert labels == ["Decision", "Before", "After"], labels
    clf = load_classifier("tiny-ar", "ar")
    after = clf.classify(perturbed, 16, generator=torch.Generator().manual_seed(0))
    shown_before, shown_after = at.metric[1], at.metric[2]
    label = shown_before.value
    assert before.value in ("tie", label)
    assert shown_after.value == after.label
    assert shown_after.proto.delta == f"P({label}) {after.posterior[after.classes.index(label)]:.1%}"
    assert len(_heatmap_values(bodies[2])) == len(after.scores[0].token_ids), "the evidence of the text after"


class ToyProposer:
    """Replacements from a fixed list, whatever the word (the masked LM's part, without loading one)."""

    WORDS = ["dreadful", "wonderful", "boring", "superb", "awful", "great", "terrible", "brilliant", "bad", "good"]

    def __init__(self, checkpoint: str, k: int = 20) -> None:
        self.k = k

    def __call__(self, words: list[str], i: int) -> list[str]:
        return self.WORDS[: self.k]


class ToySimilarity:
    def __init__(self, threshold: float) -> None:
        pass

    def __call__(self, a: str, b: str) -> bool:
        return True


class ToyPolarity:
    """Bars one word, so that the test can see the constraint applied."""

    def __init__(self, limit: float = 0.3) -> None:
        pass

    def allowed(self, word: str, label: int) -> bool:
        return word != "superb"


STOP = frozenset({"the", "a", "and", "was", "with"})


@pytest.fixture()
def toy_tools(monkeypatch):
    """The attack's heavy tools replaced by toys; the page's cached tools dropped before and after."""
    for name, toy in (("Proposer", ToyProposer), ("Similarity", ToySimilarity), ("Polarity", ToyPolarity),
                      ("stop_words", lambda: STOP)):
        monkeypatch.setattr(promises, name, toy)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def _attack(at: AppTest, reading: str, candidates: int) -> None:
    at.selectbox(key="perturb_reading").set_value(reading).run()
    at.selectbox(key="perturb_how").set_value("word-substitution attack").run()
    at.number_input(key="perturb_candidates").set_value(candidates).run()
    at.button(key="perturb_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.mark.slow  # AppTest runs of the page: seconds
@pytest.mark.parametrize("role,name,method,success", [("ar", "tiny-ar", "ar", True),
                                                      ("diffusion", "tiny", "infill", False)])
def test_the_attack_reports_what_the_attack_on_the_first_40_words_found(toy_tools, role, name, method, success):
    """The page's attack against the verdict on the text's first 40 words, computed again here with the same
    tools: the untrained left-to-right twin sits on a near tie that a substitution tips; the tiny diffusion model's
    infill reading does not move enough in five."""
    at = _page(**{role: name})
    _readings(at, {"ar": "Left-to-right twin", "diffusion": "Diffusion"}[role])
    if role == "diffusion":
        at.selectbox[1].set_value(method).run()  # the diffusion reading
    _classify(at, LONG)
    _attack(at, role, 8)

    words = LONG.split()[:40]
    clf = load_classifier(name, method)
    before = clf.classify(" ".join(words), 16, generator=torch.Generator().manual_seed(0))
    label = before.classes.index(before.label)
    expected = substitution_attack(promises.probabilities(clf, 16), " ".join(words), label,
                                   lambda w, i: [c for c in ToyProposer.WORDS[:8] if c != "superb"],
                                   lambda a, b: True, 5, STOP)
    assert expected.success == success, "the case this test exists for"
    bodies = [h.proto.body for h in at.get("html")]
    shown, marked = _marked(bodies[-2])
    assert shown == expected.adversarial.split(" ") and marked == set(expected.changed)
    assert marked == {i for i, (a, b) in enumerate(zip(words, shown, strict=True)) if a != b}, "exactly the marked"
    assert not any(words[i] in STOP for i in marked) and "superb" not in shown, "stop words kept, barred word unused"
    assert "first 40 words of the text (of its 45" in " ".join(m.value for m in at.markdown)
    metrics = {m.label: m for m in at.metric}
    assert metrics["Before"].value == before.label
    if success:
        (said,) = [w.value for w in at.warning if "flipped the verdict" in w.value]
        assert metrics["After"].value != before.label and f"substituting {len(expected.changed)} word" in said
    else:
        (said,) = [i.value for i in at.info if i.value.startswith("No substitution within 5 words")]
        assert said.startswith("No substitution within 5 words flipped the verdict")
        assert metrics["After"].value == before.label
    assert f"{expected.queries} queries" in said


@pytest.mark.slow  # AppTest runs of the page: seconds
def test_the_attack_runs_with_its_real_tools_on_a_tiny_pair():
    """The real wiring once: the tiny diffusion model proposes, all-MiniLM-L6-v2 judges similarity, the IMDB
    training split's word polarity constrains; either outcome is said plainly."""
    at = _page(diffusion="tiny", ar="tiny-ar")
    _readings(at, "Left-to-right twin")
    _classify(at, REVIEW)
    _attack(at, "ar", 3)
    flipped = [w.value for w in at.warning if "flipped the verdict" in w.value]
    failed = [i.value for i in at.info if i.value.startswith("No substitution within 5 words flipped the verdict")]
    assert len(flipped) + len(failed) == 1, (flipped, failed)
    words, marked = _marked([h.proto.body for h in at.get("html")][-2])
    original = REVIEW.split(" ")
    assert marked == {i for i, (a, b) in enumerate(zip(original, words, strict=True)) if a != b}
    assert bool(marked) or failed, "a success substitutes at least one word"
    assert [m.label for m in at.metric] == ["Decision", "Before", "After"]


# ---- in a real browser (the fixtures and helpers of tests/test_e2e_browser.py) ----

page = e2e.page  # a fresh session per test; no Python exception, script error or outside request after it
_screenshots_to = e2e._screenshots_to  # snap writes where the run says, never into docs/screenshots unasked


@pytest.mark.browser
def test_the_perturb_control_draws_the_marked_typos_and_both_verdicts_in_the_browser(page):
    e2e.open_page(page, "/classify", "Classify")
    e2e.tiny_models(page, "diffusion", "ar")
    text = page.get_by_role("textbox", name="Text", exact=True)
    text.fill(REVIEW)
    text.press("Control+Enter")  # apply the text before the click
    page.get_by_role("button", name="Classify", exact=True).click()
    e2e.expect(page.get_by_test_id("stMetric")).to_have_count(2)
    e2e.choose(page, "Reading", "Left-to-right")
    e2e.choose(page, "Perturbation", "typos 20%")
    page.get_by_role("button", name="Perturb", exact=True).click()

    e2e.expect(page.get_by_test_id("stMetric")).to_have_count(4)
    assert [label for label, _ in e2e.metrics(page)] == ["Decision", "Decision", "Before", "After"]
    blocks = page.get_by_test_id("stHtml")
    e2e.expect(blocks).to_have_count(4)  # two heatmaps, the marked text, the heatmap after
    marks = blocks.nth(2).locator("mark")
    e2e.expect(marks).to_have_count(4)  # one word in five of the 18 eligible
    for i in range(4):  # drawn highlighted, on the line, not hidden
        box = marks.nth(i).bounding_box()
        colour = marks.nth(i).evaluate("m => getComputedStyle(m).backgroundColor")
        assert box and box["width"] > 4 and box["height"] > 8 and colour not in ("rgba(0, 0, 0, 0)", "transparent")
    words = blocks.nth(2).inner_text().split(" ")
    assert len(words) == len(REVIEW.split(" "))
    assert sum(a != b for a, b in zip(words, REVIEW.split(" "), strict=True)) == 4, "the marked words, no other"
    assert blocks.nth(3).locator("span[title*='nats']").count() >= len(REVIEW.split()), "the evidence after"
    e2e.drawn_charts(page, 2)  # the posteriors
    e2e.snap(page, "classify-perturb")


def test_without_a_head_the_picker_says_so_and_the_box_is_off(tmp_path, monkeypatch):
    from pages import _shared

    monkeypatch.setattr(_shared, "RUNS", tmp_path)  # no runs of the user's
    if _shared.shipped(CLASSIFIER):
        pytest.skip("a discriminative checkpoint is shipped")
    assert _shared.options("discriminative") == [_shared.NO_HEAD, _shared.CUSTOM]
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/classify.py").run()
    assert at.sidebar.selectbox(key="pick_discriminative").value == _shared.NO_HEAD
    [box] = [b for b in at.checkbox if b.label == "Discriminative head"]
    assert box.disabled and not box.value and not at.exception
