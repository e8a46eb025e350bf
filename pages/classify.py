"""Classify: a generative classifier's posterior, its evidence, and which words carried the decision."""

import math

import altair as alt
import pandas as pd
import streamlit as st
import torch

from pages._shared import cached_classifier, heatmap_html, inputs_note, sidebar
from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError

MAX_CHARS = 20_000  # longer pastes are refused (scoring cost grows with length)

chosen = sidebar()
st.title("Classify")
st.caption(
    "A generative classifier picks argmax_c log P(text | c) + log P(c). The diffusion model's log P(text | c) is "
    "the ELBO bound, estimated by Monte Carlo with the same masks for every class; the left-to-right model's is exact."
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


ex = examples()
pick = st.selectbox("Example", ["(type your own)", *ex])
text = st.text_area("Text", value="" if pick == "(type your own)" else ex[pick], height=150,
                    placeholder="Paste a movie review…")
left, mid, right = st.columns(3)
use = {
    "diffusion": left.checkbox("Diffusion", value=True),
    "ar": mid.checkbox("Left-to-right twin", value=True),
    "reference": right.checkbox("Zero-shot reference LM", value=False),
}
with st.expander("Diffusion scoring settings"):
    method = st.selectbox("Method", ["elbo", "elbo-indep", "pll", "seed"],
                          help="elbo: shared noise across classes; elbo-indep: fresh noise per class; "
                               "pll: one token masked at a time; seed: the seed project's 15%-mask score")
    samples = st.slider("Monte Carlo samples per class (maximum)", 2, 64, 16, step=2)
    adaptive = st.checkbox("Adaptive: stop once the decision is 2 standard errors clear", value=True)
    seed = st.number_input("Seed", 0, 10_000, 0)

inputs = {"text": text, **{f"{role} model": chosen[role] for role, on in use.items() if on}, "method": method,
          "samples": samples, "adaptive": adaptive, "seed": seed}

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
            name = chosen[role]
            try:
                clf, lock = cached_classifier(name, method if role == "diffusion" else None)
                with lock, st.spinner(f"Scoring with {name}…"):
                    results[role] = (name, clf, clf.classify(text, samples, adaptive=adaptive,
                                                              generator=torch.Generator().manual_seed(int(seed))))
            except TextdiffError as exc:
                st.error(f"{name}: {exc}")
        st.session_state["classify_results"] = results
        st.session_state["classify_inputs"] = inputs

results = st.session_state.get("classify_results", {})
if results:
    inputs_note(st.session_state.get("classify_inputs", inputs), inputs)
    columns = st.columns(len(results))
    for column, (role, (name, clf, p)) in zip(columns, results.items(), strict=True):
        with column:
            st.subheader({"diffusion": "Diffusion", "ar": "Left-to-right", "reference": "Zero-shot"}[role])
            st.caption(f"`{name}` · method `{clf.method}` · {p.forward_passes} forward passes · {p.seconds:.2f} s"
                       + (f" · {p.samples} samples/class" if p.samples else ""))
            ranked = sorted(p.posterior, reverse=True)
            if len(ranked) > 1 and ranked[0] - ranked[1] < 5e-3:  # within half a point: no decision to show
                st.metric("Decision", "tie", f"top two within {ranked[0] - ranked[1]:.1%}", delta_color="off",
                          delta_arrow="off")
            else:
                st.metric("Decision", p.label, f"confidence {p.confidence:.1%}", delta_color="off")
            frame = pd.DataFrame({"class": p.classes, "posterior": p.posterior})
            st.altair_chart(
                alt.Chart(frame).mark_bar().encode(
                    x=alt.X("posterior:Q", scale=alt.Scale(domain=[0, 1]), title="P(class | text)"),
                    y=alt.Y("class:N", title=None),
                    tooltip=["class", alt.Tooltip("posterior:Q", format=".3f")],
                ).properties(height=alt.Step(28)),  # a fixed total height squashes the bars and labels
                width="stretch",
            )
            st.dataframe(pd.DataFrame({
                "class": p.classes,
                "log P(text|c)": [round(v, 2) for v in p.log_likelihood],
                "± s.e.": [round(v, 2) for v in p.log_likelihood_se],
            }), hide_index=True)
            if p.ood is None:
                st.caption("Out-of-distribution check: not calibrated (run `train_cli.py calibrate`).")
            elif p.ood:
                st.warning(f"Out of distribution: evidence per token at the {p.ood_percentile:.1f}th percentile of "
                           "validation texts. Treat the decision with suspicion.")
            else:
                st.caption(f"In distribution (evidence per token at the {p.ood_percentile:.0f}th percentile).")
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
