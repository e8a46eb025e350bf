"""When does diffusion win? The data-constrained crossover grid: per unique-data size U, both twins' validation
curves with the crossover marked, and accuracy against U, drawn from the committed results/crossover.json (or any
grid's crossover.json, e.g. one still running)."""

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from pages._shared import ROOT, sidebar
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.grid import read_results
from textdiff_core.experiments.render import PUBLISHED_EXPONENT, crossover_answer, points_to_go

sidebar()
st.title("When does diffusion win?")
st.caption("Masked diffusion and its left-to-right twin trained from scratch on the same U reviews (nested subsets), "
           "validated at log-spaced points on the same validation reviews. Written by `train_cli.py crossover`.")

COMMITTED = ROOT / "results" / "crossover.json"
TWIN_NAMES = {"diffusion": "diffusion (ELBO bound)", "ar": "left-to-right (exact)",
              "ar_masked": "control (masked inputs)"}
READING_NAMES = {("diffusion", "bayes"): "diffusion, Bayes", ("diffusion", "infill"): "diffusion, infill",
                 ("ar", "bayes"): "left-to-right, Bayes", ("ar", "infill"): "left-to-right, infill",
                 ("ar_masked", "bayes"): "control arm, Bayes", ("ar_masked", "infill"): "control arm, infill"}

path = st.text_input("Results file (a grid's crossover.json)", str(COMMITTED), key="crossover_path",
                     help="the committed results by default; a running grid's OUT/crossover.json shows it live")
try:
    results = read_results(Path(path).expanduser())
except TextdiffError as exc:
    st.error(str(exc))
    st.stop()
if not results.get("runs"):
    st.info(f"No results in {path} yet: `python train_cli.py crossover … --out DIR` writes DIR/crossover.json after "
            "every validation point.")
    st.stop()

runs = results["runs"]
done = sum(len(r["steps"]) for r in runs)
if results.get("finished"):
    st.success(f"Finished: {done} validation points (updated {results.get('updated_at', '?')}).")
else:
    st.warning(f"In progress: {done} validation points read, {points_to_go(results)} to go (updated "
               f"{results.get('updated_at', '?')}). "
               "Run the same command again to continue; sizes without a crossover yet may still cross.")
st.markdown(crossover_answer(results))
fit = results.get("exponent")
if fit:
    st.metric("C_crit ∝ U^k", f"k = {fit['k']:.2f}", help=f"95% interval {fit['ci95'][0]:.2f} to {fit['ci95'][1]:.2f} "
              f"over {fit['n']} sizes; published {PUBLISHED_EXPONENT}")
else:
    crossing = sum(1 for r in results["runs"] if r.get("crossover_tokens"))
    st.caption(f"The exponent of C_crit ∝ U^k (published {PUBLISHED_EXPONENT}) is fitted once three sizes cross; "
               f"{crossing} of {len(results['runs'])} {'do' if results.get('finished') else 'do so far'}.")

summary = pd.DataFrame([{
    "U": r["unique_reviews"],
    "crossover": (f"{r['crossover_tokens']:,} tokens (epoch {r['crossover']['epoch']:g})" if r.get("crossover_tokens")
                  else "none within budget" if r["finished"] else "none so far"),
    "diffusion": (r.get("best") or {}).get("diffusion", {}).get("bits_per_token"),
    "diffusion epoch": (r.get("best") or {}).get("diffusion", {}).get("epoch"),
    "ar": (r.get("best") or {}).get("ar", {}).get("bits_per_token"),
    "ar epoch": (r.get("best") or {}).get("ar", {}).get("epoch"),
    "points": len(r["steps"]), "to go": points_to_go(results, r),
} for r in runs])
epoch = st.column_config.NumberColumn("at epoch", format="%.4g")
st.dataframe(summary, hide_index=True, width="stretch", column_config={
    "U": st.column_config.NumberColumn("U (reviews)"),
    "diffusion": st.column_config.NumberColumn("diffusion best", format="%.3f", help="validation bits per token"),
    "ar": st.column_config.NumberColumn("left-to-right best", format="%.3f", help="validation bits per token"),
    "diffusion epoch": epoch, "ar epoch": epoch, "points": st.column_config.NumberColumn("points read")})

st.subheader("Validation curves per U")
st.caption("Bits per token on the validation reviews against training tokens seen (log scale), 95% bands over "
           "reviews. The dashed line marks the crossover: the first point at which diffusion's best bound so far is "
           "below the twin's best loss so far. The dotted grey line is a unigram model of the same U reviews, the "
           "level of a model that uses no context.")
for row in runs:
    if not row["steps"]:
        st.caption(f"U = {row['unique_reviews']:,}: no validation point yet.")
        continue
    points = pd.DataFrame([
        {"tokens seen": row["tokens_seen"][j], "epoch": row["epochs"][j], "step": step,
         "objective": TWIN_NAMES[twin], "bits per token": row[f"{twin}_bits_per_token"][j],
         "low": row[f"{twin}_bits_per_token_ci95"][j][0], "high": row[f"{twin}_bits_per_token_ci95"][j][1]}
        for j, step in enumerate(row["steps"]) for twin in TWIN_NAMES
        if (row.get(f"{twin}_bits_per_token") or [None] * len(row["steps"]))[j] is not None])
    seen = points["tokens seen"]  # the axis spans the points read, not the nearest powers of ten
    x = alt.X("tokens seen:Q", scale=alt.Scale(type="log", nice=False, domain=[seen.min() / 1.2, seen.max() * 1.2]))
    hues = alt.Scale(domain=list(TWIN_NAMES.values()), scheme="dark2")  # three hues, not two blues and a red
    colour = alt.Color("objective:N", sort=list(TWIN_NAMES.values()), scale=hues)
    tooltip = ["objective", "step", "epoch", "tokens seen", alt.Tooltip("bits per token:Q", format=".3f")]
    base = alt.Chart(points).encode(x=x)
    y = alt.Y("bits per token:Q", scale=alt.Scale(zero=False), title="bits per token (validation)")
    chart = (base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q", title="bits per token (validation)"), y2="high:Q",
                                                color=alt.Color("objective:N", legend=None, scale=hues,
                                                                sort=list(TWIN_NAMES.values())))
             + base.mark_line(point=True).encode(y=y, color=colour, tooltip=tooltip)).resolve_legend(
                 color="independent")  # the bands' pale colours stay out of the legend
    if row.get("unigram"):  # the level of a model that uses no context
        level = pd.DataFrame([{"unigram bits per token": row["unigram"]["bits_per_token"],
                               "label": "unigram of the same U reviews (no context)"}])
        chart += alt.Chart(level).mark_rule(strokeDash=[2, 3], color="grey").encode(
            y=alt.Y("unigram bits per token:Q", title="bits per token (validation)"),
            tooltip=["label", alt.Tooltip("unigram bits per token:Q", format=".3f")])
    if row.get("crossover_tokens"):
        marker = pd.DataFrame([{"tokens seen": row["crossover_tokens"], "label": "crossover"}])
        chart += alt.Chart(marker).mark_rule(strokeDash=[6, 4], color="black").encode(x=x, tooltip=["label"])
    status = ("finished" if row["finished"] else "in progress")
    st.markdown(f"**U = {row['unique_reviews']:,} reviews** ({status}; {len(row['steps'])} of "
                f"{len(row['steps']) + points_to_go(results, row)} points)")
    st.altair_chart(chart.properties(height=260), width="stretch")

st.subheader("Accuracy against U")
st.caption("Validation accuracy of both readings of both twins at each twin's best-bound point, and TF-IDF + "
           "logistic regression trained on the same U labelled reviews.")
accuracy = []
for row in runs:
    for (twin, reading), name in READING_NAMES.items():
        value = ((row.get("best") or {}).get(twin) or {}).get(f"accuracy_{reading}")
        if value is not None:
            accuracy.append({"U (reviews)": row["unique_reviews"], "reading": name, "accuracy": value})
    if row.get("tfidf_accuracy") is not None:
        accuracy.append({"U (reviews)": row["unique_reviews"], "reading": "TF-IDF + logistic regression",
                         "accuracy": row["tfidf_accuracy"]})
if accuracy:
    frame = pd.DataFrame(accuracy)
    sizes = sorted(frame["U (reviews)"].unique().tolist())  # the axis spans the sizes read, ticked at each
    chart = alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=70, filled=True)).encode(
        x=alt.X("U (reviews):Q", axis=alt.Axis(values=sizes, format=","),
                scale=alt.Scale(type="log", nice=False, domain=[sizes[0] / 1.2, sizes[-1] * 1.2])),
        y=alt.Y("accuracy:Q", axis=alt.Axis(format="%")), color="reading:N",
        tooltip=["reading", "U (reviews)", alt.Tooltip("accuracy:Q", format=".1%")])
    st.altair_chart(chart.properties(height=300), width="stretch")
st.caption(f"Settings: `{results.get('command', '')}`")
