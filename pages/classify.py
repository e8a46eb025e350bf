"""Classify: a generative classifier's posterior, its evidence, and which words carried the decision."""

import math
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
import torch

from pages._shared import (
    ROOT,
    cached_classifier,
    heatmap_html,
    inputs_note,
    resolve,
    said,
    shown,
    sidebar,
    trust_remote_code,
)
from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.classify import default_reading
from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.prediction import ordinal
from textdiff_core.records import ZERO_SHOT_REFERENCE

MAX_CHARS = 20_000  # longer pastes are refused (scoring cost grows with length)
# Each reading's score, named for what it is: Bayes readings give log P(text | c), the infill reading P(c | text)
EVIDENCE_ROW_PX = 22  # height of one n-gram's bar and label in the TF-IDF evidence chart
SCORE_NAMES = {"infill": "log P(c | text), before calibration", "combined": "log P(text | c) + w · infill"}
CALIBRATED = ("The posterior after the class bias and temperature fitted on validation (train_cli.py calibrate): "
              "a 90% here is right about 90% of the time on validation texts.")
UNCALIBRATED = ("The posterior straight from the scores and the training prior: no calibration has been fitted for "
                "this model and reading (train_cli.py calibrate), so it may be over- or under-confident.")

chosen = sidebar()
st.title("Classify")
st.caption(
    "A generative classifier picks argmax_c log P(text | c) + log P(c) (the Bayes reading). The diffusion "
    "model's log P(text | c) is the ELBO bound, estimated by Monte Carlo with the same masks for every class; "
    "the left-to-right model's is exact. The infill reading treats the class as one more token instead: the "
    "diffusion model fills a masked class word with the text in view, the left-to-right model predicts the "
    "class word after the text — one forward pass per window, no Monte Carlo noise. TF-IDF + logistic "
    "regression is the discriminative reference."
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


def log_posterior(clf, p) -> list[float]:
    """log P(c | text) from the scores and the prior, before calibration (the infill reading's own quantity)."""
    return torch.log_softmax(torch.tensor(p.log_likelihood) + torch.tensor(clf.log_prior), 0).tolist()


def trained_joint(name: str) -> bool:
    """Whether the model was trained with the class word as one more token (its infill reading is offered first)."""
    try:
        return Path(resolve(name)).is_dir() and CheckpointMeta.read(resolve(name)).conditioning == "joint"
    except TextdiffError:  # a broken textdiff.json: the Classify button reports it in one line
        return False


def default_index(name: str, readings: list[str]) -> tuple[int, str | None]:
    """Where a reading's selectbox starts: the reading the checkpoint's calibration chose on validation, with why
    (``classify.default_reading``); else a joint model's infill reading; else the first."""
    try:
        chosen = default_reading(resolve(name))
    except TextdiffError:  # a broken checkpoint: the Classify button reports it in one line
        chosen = None
    if chosen and chosen[0] in readings:
        return readings.index(chosen[0]), chosen[1]
    return int(trained_joint(name)), None


def render_occlusion(clf, p, evidence) -> None:
    """The infill reading's per-token evidence: how the log-odds of the decision move when each token is hidden."""
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
        st.caption(f"Read in {windows} windows, combined as a product of experts; evidence shown for the first "
                   f"{min(windows, 2)}.")


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


ex = examples()
OWN = "(type your own)"
pick = st.selectbox("Example", [*ex, OWN])  # an example first: the first press of Classify shows a decision
text = st.text_area("Text", value="" if pick == OWN else ex[pick], height=150,
                    placeholder="Paste a movie review…")
columns = st.columns(4)
use = {
    "diffusion": columns[0].checkbox("Diffusion", value=True),
    "ar": columns[1].checkbox("Left-to-right twin", value=True),
    "reference": columns[2].checkbox("Zero-shot reference LM", value=False),
    "tfidf": columns[3].checkbox("TF-IDF reference", value=False,
                                 help="TF-IDF (word 1-2-grams) + logistic regression trained on the IMDB train split: "
                                      "what a cheap discriminative classifier gets on the same text"),
}
with st.expander("Scoring settings"):
    readings = ["elbo", "infill", "elbo-indep", "pll", "mlm-loss"]
    start, why = default_index(chosen["diffusion"], readings)
    method = st.selectbox("Diffusion reading", readings, index=start,
                          help="elbo: Bayes over the ELBO, shared noise across classes; infill: the masked class word "
                               "read with the text in view; elbo-indep: fresh noise per class; pll: one token masked "
                               "at a time; mlm-loss: mean loss of a 15% mask (the RoBERTa variable-masking recipe)")
    ar_start, ar_why = default_index(chosen["ar"], ["ar", "infill"])
    ar_method = st.selectbox("Left-to-right reading", ["ar", "infill"], index=ar_start,
                             help="ar: Bayes over the exact log P(text | class), the class prompt before the text; "
                                  "infill: the class word predicted after the text")
    samples = st.slider("Monte Carlo samples per class (maximum)", 2, 64, 16, step=2)
    adaptive = st.checkbox("Adaptive: stop once the decision is 2 standard errors clear", value=True)
    seed = st.number_input("Seed", 0, 10_000, 0)

defaults = []  # the readings left at the checkpoint's own choice, said where the results appear
if use["diffusion"] and why and method == readings[start]:
    defaults.append(f"diffusion `{method}`, {why}")
if use["ar"] and ar_why and ar_method == ["ar", "infill"][ar_start]:
    defaults.append(f"left-to-right `{ar_method}`, {ar_why}")
if defaults:
    st.caption("Default readings (change them under Scoring settings): " + "; ".join(defaults) + ".")
METHOD_OF = {"diffusion": method, "ar": ar_method, "reference": None, "tfidf": None}
# SmolLM2 with its prompt chosen and bias fitted on validation, when shipped
calibrated = chosen["reference"] == "smollm2" and (ROOT / ZERO_SHOT_REFERENCE).is_dir()
NAME_OF = chosen | {"reference": ZERO_SHOT_REFERENCE if calibrated else chosen["reference"], "tfidf": "tfidf"}
inputs = {"text": text, **{f"{role} model": NAME_OF[role] for role, on in use.items() if on}, "method": method,
          "left-to-right reading": ar_method, "samples": samples, "adaptive": adaptive, "seed": seed}

if st.button("Classify", type="primary"):
    st.session_state.pop("classify_results", None)  # a refused text never shows the previous text's decision
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
            try:
                clf, lock = cached_classifier(name, METHOD_OF[role], trust_remote_code())
                with lock, st.spinner(f"Scoring with {name}…"):
                    prediction = clf.classify(text, samples, adaptive=adaptive,
                                              generator=torch.Generator().manual_seed(int(seed)))
                    evidence = None
                    if clf.method == "infill":  # exact occlusion evidence, one batched pass per window
                        evidence = clf.infill_evidence(text, max_windows=2)
                    elif clf.method == "tfidf":
                        evidence = clf.evidence(text)
                    results[role] = (name, clf, prediction, evidence)
            except TextdiffError as exc:
                st.error(f"{shown(name)}: {said(exc)}")
        st.session_state["classify_results"] = results
        st.session_state["classify_inputs"] = inputs

results = st.session_state.get("classify_results", {})
if results:
    inputs_note(st.session_state.get("classify_inputs", inputs), inputs)
    columns = st.columns(len(results))
    for column, (role, (name, clf, p, evidence)) in zip(columns, results.items(), strict=True):
        with column:
            st.subheader({"diffusion": "Diffusion", "ar": "Left-to-right", "reference": "Zero-shot",
                          "tfidf": "TF-IDF reference"}[role])
            passes = f"{p.forward_passes} forward pass" + ("" if p.forward_passes == 1 else "es")
            st.caption(f"`{shown(name)}` · method `{clf.method}` · {passes} · {p.seconds:.2f} s"
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
            if clf.method == "tfidf":
                render_tfidf_evidence(evidence, p.classes)
                continue
            table = pd.DataFrame({"class": p.classes, SCORE_NAMES.get(clf.method, "log P(text | c)"): [
                round(v, 2) for v in (log_posterior(clf, p) if clf.method == "infill" else p.log_likelihood)]})
            if any(se > 0 for se in p.log_likelihood_se):  # Monte Carlo error; exact readings have none
                table["± s.e."] = [round(v, 2) for v in p.log_likelihood_se]
            st.dataframe(table, hide_index=True)
            if clf.method == "infill":
                render_occlusion(clf, p, evidence)
                continue
            if p.ood is None:
                st.caption("Out-of-distribution check: not calibrated (run `train_cli.py calibrate`).")
            elif p.ood:
                st.warning(f"Out of distribution: evidence per token at the {ordinal(p.ood_percentile, 1)} "
                           "percentile of validation texts. Treat the decision with suspicion.")
            else:
                st.caption(f"In distribution (evidence per token at the {ordinal(p.ood_percentile)} percentile).")
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
