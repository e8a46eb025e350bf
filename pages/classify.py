"""Classify: a generative classifier's posterior, its evidence, which words carried the decision, and how the
decision holds up when the text is perturbed."""

import json
import math
import threading
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
import torch

from pages import _shared
from pages._shared import (
    DISCRIMINATIVE_ROLE,
    ROOT,
    cached_classifier,
    heatmap_html,
    inputs_note,
    marked_html,
    resolve,
    said,
    shown,
    sidebar,
    trust_remote_code,
)
from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.classify import DISCRIMINATIVE, default_reading
from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments import promises
from textdiff_core.models import kind_of
from textdiff_core.perturb import substitution_attack, typos
from textdiff_core.prediction import ordinal
from textdiff_core.records import ZERO_SHOT_REFERENCE
from textdiff_core.settings import CLASSIFIER

MAX_CHARS = 20_000  # longer pastes are refused (scoring cost grows with length)
# Each reading's score, named for what it is: Bayes readings give log P(text | c), the infill reading P(c | text)
EVIDENCE_ROW_PX = 22  # height of one n-gram's bar and label in the TF-IDF evidence chart
SCORE_NAMES = {"infill": "log P(c | text), before calibration", "combined": "log P(text | c) + w · infill",
               DISCRIMINATIVE: "the head's logit (mean over windows)"}
OCCLUSION = ("infill", DISCRIMINATIVE)  # readings whose per-token evidence is occlusion (Classifier.infill_evidence)
TITLES = {"diffusion": "Diffusion", "ar": "Left-to-right", "reference": "Zero-shot", "tfidf": "TF-IDF reference",
          "discriminative": "Discriminative head"}
CALIBRATED = ("The posterior after the class bias and temperature fitted on validation (train_cli.py calibrate): "
              "a 90% here is right about 90% of the time on validation texts.")
UNCALIBRATED = ("The posterior straight from the scores and the training prior: no calibration has been fitted for "
                "this model and reading (train_cli.py calibrate), so it may be over- or under-confident.")
# what the OOD flag was measured on (train_cli.py promises), as a sentence says it
FLAG_SETS = {"not_reviews": "texts that are not reviews", "rotten_tomatoes": "Rotten Tomatoes reviews",
             "shuffled": "IMDB reviews with their words shuffled"}
# The perturbations (textdiff_core.perturb): DeepWordBug typos in a share of the words, or the word-substitution
# attack of train_cli.py promises, with its default settings
PERTURBATIONS = {"typos 10%": 0.1, "typos 20%": 0.2, "word-substitution attack": None}
ATTACK_WORDS = 40  # only the first this many words are attacked (and read, before and after)
MAX_SUBSTITUTIONS = 5  # the attack gives up after substituting this many words
SIMILARITY = 0.85  # least cosine similarity of the sentence embeddings of the original and the attacked text
POLARITY = 0.3  # no replacement leaning toward the other class by more than this many nats (promises.Polarity)

chosen = sidebar(DISCRIMINATIVE_ROLE)
has_head = chosen["discriminative"] not in ("", _shared.NO_HEAD)  # a head picked, shipped or given by path
st.title("Classify")
st.caption(
    "A generative classifier picks argmax_c log P(text | c) + log P(c) (the Bayes reading). The diffusion "
    "model's log P(text | c) is the ELBO bound, estimated by Monte Carlo with the same masks for every class; "
    "the left-to-right model's is exact. The infill reading treats the class as one more token instead: the "
    "diffusion model fills a masked class word with the text in view, the left-to-right model predicts the "
    "class word after the text — one forward pass per window, no Monte Carlo noise. The discriminative head (the "
    "same backbone trained with a classification head) reads P(c | text) directly; TF-IDF + logistic regression is "
    "the cheap discriminative reference."
)


@st.cache_data(show_spinner=False)
def examples() -> dict[str, str]:
    try:
        test = load_data("imdb", "test", max_samples=4, seed=0)
    except TextdiffError:
        return {}
    out = {f"IMDB test review {i + 1} ({test.classes[y]})": t[:1500] for i, (t, y) in
           enumerate(zip(test.texts, test.labels, strict=True))}
    out["Not a review (out of distribution)"] = (
        "Preheat the oven to 200 degrees. Mix the flour, butter and sugar, then bake for twenty minutes.")
    return out


@st.cache_data(show_spinner=False)
def promises_record(path: str, mtime: float) -> dict:
    """``train_cli.py promises``' record (read again when the file changes); {} when it is not one."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@st.cache_resource(show_spinner=False, max_entries=2)
def proposer(diffusion: str, candidates: int) -> tuple[promises.Proposer, threading.Lock]:
    """The attack's masked LM, proposing ``candidates`` replacements per word, with the lock that serialises it."""
    return promises.Proposer(diffusion, candidates), threading.Lock()


@st.cache_resource(show_spinner=False)
def constraints() -> tuple[promises.Similarity, promises.Polarity, frozenset[str], threading.Lock]:
    """What an attack may substitute: the sentence-similarity and polarity constraints and the stop words."""
    return promises.Similarity(SIMILARITY), promises.Polarity(POLARITY), promises.stop_words(), threading.Lock()


def log_posterior(clf, p) -> list[float]:
    """log P(c | text) from the scores and the prior, before calibration (the infill reading's own quantity)."""
    return torch.log_softmax(torch.tensor(p.log_likelihood) + torch.tensor(clf.log_prior), 0).tolist()


def trained_joint(name: str) -> bool:
    """Whether the model was trained with the class word as one more token (its infill reading is offered first)."""
    try:
        return Path(resolve(name)).is_dir() and CheckpointMeta.read(resolve(name)).conditioning == "joint"
    except TextdiffError:  # a broken textdiff.json: the Classify button reports it in one line
        return False


def readings_of(name: str, usual: list[str]) -> list[str]:
    """The readings a picked checkpoint offers: a classification head has one, the discriminative reading."""
    try:
        return [DISCRIMINATIVE] if name and kind_of(resolve(name)) == CLASSIFIER else usual
    except TextdiffError:  # a broken checkpoint: the Classify button reports it in one line
        return usual


def default_index(name: str, readings: list[str]) -> tuple[int, str | None]:
    """Where a reading's selectbox starts: the reading the checkpoint's calibration chose on validation, with why
    (``classify.default_reading``); else a joint model's infill reading; else the first."""
    try:
        chosen = default_reading(resolve(name))
    except TextdiffError:  # a broken checkpoint: the Classify button reports it in one line
        chosen = None
    if chosen and chosen[0] in readings:
        return readings.index(chosen[0]), chosen[1]
    return min(int(trained_joint(name)), len(readings) - 1), None


def measured_flag(role: str, name: str, method: str) -> dict | None:
    """The measured rates of this reading's OOD flag ({"false_positive_rate", "detected": {set: rate}}) from the
    repository's ``results/promises.json``, when that record measured this very checkpoint; else None."""
    record_file = _shared.PROMISES_RECORD
    if not record_file.is_file():
        return None
    record = promises_record(str(record_file), record_file.stat().st_mtime)
    role = "discriminative" if method == DISCRIMINATIVE else role
    key = next((r.key for r in promises.READINGS if (r.role, r.method) == (role, method)), None)
    reading = (record.get("readings") or {}).get(key) if key else None
    if not isinstance(reading, dict) or not reading.get("ood_flag"):  # infill and TF-IDF readings raise no flag
        return None
    root = record_file.parents[1]  # the repository whose checkpoints the record read (promises --root)
    measured = Path((record.get("settings") or {}).get(role) or root / "checkpoints" / f"imdb-{role}")
    measured = measured if measured.is_absolute() else root / measured
    return reading["ood_flag"] if Path(resolve(name)).resolve() == measured.resolve() else None


def flag_rates(flag: dict) -> str:
    """The measured rates of an OOD flag, as a sentence."""
    detected = [f"{flag['detected'][k]:.1%} of {words}" for k, words in FLAG_SETS.items() if k in flag["detected"]]
    return (f"This flag fires on {flag['false_positive_rate']:.1%} of IMDB test reviews and on "
            f"{', '.join(detected)} (measured: RESULTS.md).")


def evidence_of(clf, text: str):
    """Per-token evidence where the reading has it apart from its prediction: occlusion, or TF-IDF's n-grams."""
    if clf.method in OCCLUSION:  # exact, one batched pass per window
        return clf.infill_evidence(text, max_windows=2)
    return clf.evidence(text) if clf.method == "tfidf" else None


def render_occlusion(clf, p, evidence) -> None:
    """The infill (or discriminative) reading's per-token evidence: how the log-odds of the decision move when
    each token is hidden."""
    ids, delta = evidence
    order = sorted(range(len(p.classes)), key=lambda c: p.posterior[c], reverse=True)
    a, b = (order[1], order[0]) if len(order) > 2 else (0, 1)
    values = (delta[:, b] - delta[:, a]).tolist()  # > 0: the token pushes towards b
    words = clf.models.tokenizer.convert_ids_to_tokens(ids)
    st.markdown(f"**Per-token evidence (occlusion)**: how much hiding the token lowers log P({p.classes[b]} | text) − "
                f"log P({p.classes[a]} | text); exact, no Monte Carlo error")
    st.html(heatmap_html(words, values, None, labels=(p.classes[a], p.classes[b])))
    windows = p.scores[0].windows
    if windows > 1:
        how = "their logits averaged" if clf.method == DISCRIMINATIVE else "combined as a product of experts"
        st.caption(f"Read in {windows} windows, {how}; evidence shown for the first {min(windows, 2)}.")


def render_tfidf_evidence(evidence: list[tuple[str, float]], classes: list[str]) -> None:
    """The linear model's exact decomposition: each n-gram's TF-IDF value times its weight."""
    top = evidence[:12]
    if not top:
        st.caption("No word of this text is in the baseline's vocabulary.")
        return
    frame = pd.DataFrame({"n-gram": [t for t, _ in top], "log-odds": [v for _, v in top]})
    frame["towards"] = [classes[-1] if v > 0 else classes[0] for v in frame["log-odds"]]
    st.markdown(f"**Evidence**: each word or bigram's contribution to the log-odds of {classes[-1]} over {classes[0]}")
    # a height in pixels, a row per bar, and every label drawn: with a discrete height Streamlit drops its fit and
    # Vega hid every other n-gram's label
    st.altair_chart(alt.Chart(frame).mark_bar().encode(
        x=alt.X("log-odds:Q"), color="towards:N",
        y=alt.Y("n-gram:N", sort=None, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=240)),
        tooltip=["n-gram", alt.Tooltip("log-odds:Q", format=".3f")]).properties(height=EVIDENCE_ROW_PX * len(frame)),
        width="stretch")


def render_likelihood_evidence(clf, p) -> None:
    """A Bayes reading's per-token evidence: log p(x_i | b) − log p(x_i | a), with its Monte Carlo error."""
    order = sorted(range(len(p.classes)), key=lambda c: p.posterior[c], reverse=True)
    a, b = (order[1], order[0]) if len(order) > 2 else (0, 1)
    sa, sb = p.scores[a], p.scores[b]
    values = [x - y for x, y in zip(sa.token_nll, sb.token_nll, strict=True)]  # log p(x_i|b) - log p(x_i|a)
    if sa.contributions is not None and sb.contributions is not None and sa.contributions.shape[0] > 1:
        diff = sa.contributions - sb.contributions
        errors = (diff.std(0) / math.sqrt(diff.shape[0])).tolist()
    else:
        errors = None
    model = clf.models if not isinstance(clf.models, dict) else next(iter(clf.models.values()))
    words = model.tokenizer.convert_ids_to_tokens(sa.token_ids)
    st.markdown(f"**Per-token evidence** log p(x_i | {p.classes[b]}) − log p(x_i | {p.classes[a]})")
    st.html(heatmap_html(words, values, errors, labels=(p.classes[a], p.classes[b])))
    if sa.windows > 1:
        st.caption(f"The text is longer than the model's window: scored in {sa.windows} windows and summed.")


def render_evidence(clf, p, evidence) -> None:
    """Which words carried the decision, as the reading itself can say it."""
    if clf.method == "tfidf":
        render_tfidf_evidence(evidence, p.classes)
    elif clf.method in OCCLUSION:
        render_occlusion(clf, p, evidence)
    else:
        render_likelihood_evidence(clf, p)


def render_ood(p, flag: dict | None) -> None:
    """The out-of-distribution check, with the flag's measured rates where the record has them."""
    head = p.energy is not None  # the discriminative reading: judged by its energy, not a likelihood
    what = "minus the head's energy" if head else "evidence per token"
    scores = f" Energy {p.energy:.2f}, max softmax {p.max_softmax:.2f}." if head else ""
    rates = f" {flag_rates(flag)}" if flag else ""
    if p.ood is None:
        st.caption("Out-of-distribution check: not calibrated (run `train_cli.py calibrate`)." + scores)
    elif p.ood:
        st.warning(f"Out of distribution: {what} at the {ordinal(p.ood_percentile, 1)} percentile of validation "
                   "texts. Treat the decision with suspicion." + scores + rates)
    else:
        st.caption(f"In distribution ({what} at the {ordinal(p.ood_percentile)} percentile)." + scores + rates)


def attack_text(clf, lock: threading.Lock, text: str, samples: int, diffusion: str, candidates: int) -> dict:
    """The word-substitution attack of ``train_cli.py promises`` on ``text``, against the verdict the reading
    gives it; the text before and after read as the attack's own queries read it (seeded, not adaptive)."""
    propose_words, proposer_lock = proposer(diffusion, candidates)
    similar, polarity, skip, tools_lock = constraints()
    with lock, proposer_lock, tools_lock:
        before = clf.classify(text, samples, generator=torch.Generator().manual_seed(0))
        label = before.classes.index(before.label)

        def propose(words: list[str], i: int) -> list[str]:  # no replacement that changes what the review says
            return [c for c in propose_words(words, i) if len(before.classes) != 2 or polarity.allowed(c, label)]

        attack = substitution_attack(promises.probabilities(clf, samples), text, label, propose, similar,
                                     MAX_SUBSTITUTIONS, skip)
        after = clf.classify(attack.adversarial, samples, generator=torch.Generator().manual_seed(0))
        return {"text": attack.adversarial, "changed": attack.changed, "before": before, "after": after,
                "attack": attack, "evidence": evidence_of(clf, attack.adversarial)}


def render_perturbed(run: dict) -> None:
    """A perturbed text, its changed words marked, the verdict before and after, and the evidence after."""
    before, after, label = run["before"], run["after"], run["before"].label
    st.html(marked_html(run["text"], run["changed"]))
    left, right = st.columns(2)
    for column, title, p in ((left, "Before", before), (right, "After", after)):
        column.metric(title, p.label, f"P({label}) {p.posterior[p.classes.index(label)]:.1%}", delta_color="off",
                      delta_arrow="off")
    attack = run.get("attack")
    if attack is not None and attack.success:
        st.warning(f"The attack flipped the verdict from {label} to {after.label} by substituting "
                   f"{len(attack.changed)} word{'s' if len(attack.changed) != 1 else ''} (marked), "
                   f"in {attack.queries} queries of the classifier.")
    elif attack is not None:
        tried = f"; the {len(attack.changed)} marked lowered P({label}) most" if attack.changed else ""
        st.info(f"No substitution within {MAX_SUBSTITUTIONS} words flipped the verdict ({attack.queries} queries of "
                f"the classifier{tried}).")
    render_evidence(run["clf"], after, run["evidence"])


ex = examples()
OWN = "(type your own)"
pick = st.selectbox("Example", [*ex, OWN])  # an example first: the first press of Classify shows a decision
text = st.text_area("Text", value="" if pick == OWN else ex[pick], height=150,
                    placeholder="Paste a movie review…")
columns = st.columns(5)
use = {
    "diffusion": columns[0].checkbox("Diffusion", value=True),
    "ar": columns[1].checkbox("Left-to-right twin", value=True),
    "reference": columns[2].checkbox("Zero-shot reference LM", value=False),
    "tfidf": columns[3].checkbox("TF-IDF reference", value=False,
                                 help="TF-IDF (word 1-2-grams) + logistic regression trained on the IMDB train split: "
                                      "what a cheap discriminative classifier gets on the same text"),
    "discriminative": columns[4].checkbox("Discriminative head", value=False, disabled=not has_head,
                                          help="The same backbone trained with a classification head (train_cli.py "
                                               "train --objective discriminative), picked in the sidebar" + (
                                              "" if has_head else "; none picked: the sidebar says where "
                                                                  "one can come from")),
}
with st.expander("Scoring settings"):
    readings = readings_of(chosen["diffusion"], ["elbo", "infill", "elbo-indep", "pll", "mlm-loss"])
    start, why = default_index(chosen["diffusion"], readings)
    method = st.selectbox("Diffusion reading", readings, index=start,
                          help="elbo: Bayes over the ELBO, shared noise across classes; infill: the masked class word "
                               "read with the text in view; elbo-indep: fresh noise per class; pll: one token masked "
                               "at a time; mlm-loss: mean loss of a 15% mask (the RoBERTa variable-masking recipe)")
    ar_readings = readings_of(chosen["ar"], ["ar", "infill"])
    ar_start, ar_why = default_index(chosen["ar"], ar_readings)
    ar_method = st.selectbox("Left-to-right reading", ar_readings, index=ar_start,
                             help="ar: Bayes over the exact log P(text | class), the class prompt before the text; "
                                  "infill: the class word predicted after the text")
    st.caption(f"Discriminative head: its one reading, `{DISCRIMINATIVE}` (the softmax of the head's logits, the mean "
               "over the text's windows; its OOD score is the energy).")
    samples = st.slider("Monte Carlo samples per class (maximum)", 2, 64, 16, step=2)
    adaptive = st.checkbox("Adaptive: stop once the decision is 2 standard errors clear", value=True)
    seed = st.number_input("Seed", 0, 10_000, 0)

defaults = []  # the readings left at the checkpoint's own choice, said where the results appear
if use["diffusion"] and why and method == readings[start]:
    defaults.append(f"diffusion `{method}`, {why}")
if use["ar"] and ar_why and ar_method == ar_readings[ar_start]:
    defaults.append(f"left-to-right `{ar_method}`, {ar_why}")
if defaults:
    st.caption("Default readings (change them under Scoring settings): " + "; ".join(defaults) + ".")
METHOD_OF = {"diffusion": method, "ar": ar_method, "reference": None, "tfidf": None, "discriminative": DISCRIMINATIVE}
# SmolLM2 with its prompt chosen and bias fitted on validation, when shipped
calibrated = chosen["reference"] == "smollm2" and (ROOT / ZERO_SHOT_REFERENCE).is_dir()
NAME_OF = chosen | {"reference": ZERO_SHOT_REFERENCE if calibrated else chosen["reference"], "tfidf": "tfidf"}
inputs = {"text": text, **{f"{role} model": NAME_OF[role] for role, on in use.items() if on}, "method": method,
          "left-to-right reading": ar_method, "samples": samples, "adaptive": adaptive, "seed": seed}

if st.button("Classify", type="primary"):
    st.session_state.pop("classify_results", None)  # a refused text never shows the previous text's decision
    st.session_state.pop("classify_perturbed", None)
    if not text.strip():
        st.error("Paste some text first.")
    elif len(text) > MAX_CHARS:
        st.error(f"The text has {len(text):,} characters; the limit here is {MAX_CHARS:,}.")
    else:
        results = {}
        for role, on in use.items():
            if not on:
                continue
            name = NAME_OF[role]
            if not name:
                st.error(f"{TITLES[role]}: pick a model in the sidebar.")
                continue
            try:
                clf, lock = cached_classifier(name, METHOD_OF[role], trust_remote_code())
                with lock, st.spinner(f"Scoring with {name}…"):
                    prediction = clf.classify(text, samples, adaptive=adaptive,
                                              generator=torch.Generator().manual_seed(int(seed)))
                    results[role] = {"name": name, "clf": clf, "lock": lock, "p": prediction,
                                     "evidence": evidence_of(clf, text)}
            except TextdiffError as exc:
                st.error(f"{shown(name)}: {said(exc)}")
        st.session_state["classify_results"] = results
        st.session_state["classify_inputs"] = inputs

results = st.session_state.get("classify_results", {})
if results:
    computed = st.session_state.get("classify_inputs", inputs)
    inputs_note(computed, inputs)
    columns = st.columns(len(results))
    for column, (role, r) in zip(columns, results.items(), strict=True):
        clf, p = r["clf"], r["p"]
        with column:
            st.subheader(TITLES["discriminative" if clf.method == DISCRIMINATIVE else role])
            passes = f"{p.forward_passes} forward pass" + ("" if p.forward_passes == 1 else "es")
            st.caption(f"`{shown(r['name'])}` · method `{clf.method}` · {passes} · {p.seconds:.2f} s"
                       + (f" · {p.samples} samples/class" if p.samples else ""))
            ranked = sorted(p.posterior, reverse=True)
            if len(ranked) > 1 and ranked[0] - ranked[1] < 5e-3:  # within half a point: no decision to show
                st.metric("Decision", "tie", f"top two within {ranked[0] - ranked[1]:.1%}", delta_color="off",
                          delta_arrow="off")
            else:
                st.metric("Decision", p.label, f"confidence {p.confidence:.1%}, "
                          f"{'calibrated' if p.calibrated else 'uncalibrated'}", delta_color="off",
                          delta_arrow="off", help=CALIBRATED if p.calibrated else UNCALIBRATED)
            note = p.calibration_note()
            if note and p.raw_label != p.label:
                st.warning(note)
            elif note:
                st.caption(note)
            frame = pd.DataFrame({"class": p.classes, "posterior": p.posterior})
            st.altair_chart(
                alt.Chart(frame).mark_bar().encode(
                    x=alt.X("posterior:Q", scale=alt.Scale(domain=[0, 1]), title="P(class | text)"),
                    y=alt.Y("class:N", title=None),
                    tooltip=["class", alt.Tooltip("posterior:Q", format=".3f")],
                ).properties(height=alt.Step(28)),  # a fixed total height squashes the bars and labels
                width="stretch",
            )
            if clf.method != "tfidf":
                table = pd.DataFrame({"class": p.classes, SCORE_NAMES.get(clf.method, "log P(text | c)"): [
                    round(v, 2) for v in (log_posterior(clf, p) if clf.method == "infill" else p.log_likelihood)]})
                if any(se > 0 for se in p.log_likelihood_se):  # Monte Carlo error; exact readings have none
                    table["± s.e."] = [round(v, 2) for v in p.log_likelihood_se]
                st.dataframe(table, hide_index=True)
            if clf.method not in ("tfidf", "infill"):  # the readings with an OOD score the checkpoint calibrates
                render_ood(p, measured_flag(role, r["name"], clf.method))
            render_evidence(clf, p, r["evidence"])

    st.markdown("#### Perturb")  # a heading, not a subheader: the subheaders name the readings
    st.caption("Apply a perturbation to the classified text and read it again: typos in a share of its words "
               "(one character edit each), or a word-substitution attack that swaps words for a masked LM's "
               f"replacements until the verdict flips (at most {MAX_SUBSTITUTIONS} words, each keeping the sentence "
               f"embedding within cosine {SIMILARITY}).")
    left, middle, right = st.columns(3)
    target = left.selectbox("Reading", list(results), format_func=TITLES.get, key="perturb_reading")
    how = middle.selectbox("Perturbation", list(PERTURBATIONS), key="perturb_how")
    candidates = right.number_input("Replacements tried per word (attack)", 2, 50, 20, key="perturb_candidates",
                                    disabled=PERTURBATIONS[how] is not None,
                                    help="The masked LM's top replacements tried for each word: more find more, "
                                         "and cost a query of the classifier each")
    if st.button("Perturb", key="perturb_run"):
        st.session_state.pop("classify_perturbed", None)
        r, original = results[target], computed["text"]
        clf, lock = r["clf"], r["lock"]
        try:
            if PERTURBATIONS[how] is not None:
                new, changed = typos(original, PERTURBATIONS[how], seed=int(computed["seed"]))
                with lock, st.spinner(f"Scoring the text with typos with {r['name']}…"):
                    after = clf.classify(new, computed["samples"], adaptive=computed["adaptive"],
                                         generator=torch.Generator().manual_seed(int(computed["seed"])))
                    run = {"text": new, "changed": changed, "before": r["p"], "after": after,
                           "evidence": evidence_of(clf, new)}
            elif not chosen["diffusion"]:
                raise TextdiffError("pick a diffusion model in the sidebar: it proposes the attack's replacements")
            else:
                with st.spinner(f"Attacking the first {ATTACK_WORDS} words (loading the attack's models once, then "
                                "a query of the classifier per candidate)…"):
                    run = attack_text(clf, lock, " ".join(original.split()[:ATTACK_WORDS]), computed["samples"],
                                      resolve(chosen["diffusion"]), int(candidates))
            st.session_state["classify_perturbed"] = run | {"clf": clf, "reading": target, "how": how,
                                                            "words": len(original.split())}
        except TextdiffError as exc:
            st.error(f"{TITLES[target]}, {how}: {said(exc)}")

    run = st.session_state.get("classify_perturbed")
    if run:
        if run["how"] == "word-substitution attack":
            cut = (f" (of its {run['words']}; the rest is left out, before and after)"
                   if run["words"] > ATTACK_WORDS else "")
            st.markdown(f"**{TITLES[run['reading']]}, word-substitution attack** on the first {ATTACK_WORDS} words of "
                        f"the text{cut}, against the verdict the reading gives them; substituted words marked:")
        else:
            st.markdown(f"**{TITLES[run['reading']]}, {run['how']}**: {len(run['changed'])} of the text's words "
                        "with a typo, marked:")
        render_perturbed(run)
