"""Compare: diffusion and left-to-right decoding of the same prompt, side by side, scrubbed together."""

import math
import statistics
import time
from bisect import bisect_right

import altair as alt
import pandas as pd
import streamlit as st

from pages._shared import (
    cached_model,
    inputs_note,
    revealed,
    said,
    shown,
    sidebar,
    trace_html,
    trace_progress,
    trust_remote_code,
    untrained_note,
)
from textdiff_core.decoding import DecodeConfig, default_config, generate, generate_samples
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import distinct_n, generative_perplexity
from textdiff_core.models import CAUSAL, MASKED
from textdiff_core.strategies.base import SCHEDULES, strategies, strategy_named
from textdiff_core.trace import Trace

SIDES = {"diffusion": "Diffusion", "ar": "Left-to-right"}
COLOURS = {"Diffusion": "#1f77b4", "Left-to-right": "#ff7f0e"}
STRATEGIES = {s.name: s.title for s in strategies(MASKED)}  # the registered diffusion strategies, as on Denoise
BY = {"forward passes": "forward passes", "time": "seconds"}
DEFAULT = default_config(MASKED)  # the CLI's defaults with no flags; the left-to-right side samples alike
state = st.session_state


def _compact(value: float) -> str:
    """A perplexity in at most five characters (metrics truncate longer values in narrow columns)."""
    return f"{value / 1000:.0f}k" if value >= 10_000 else f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.1f}"


chosen = sidebar()
st.title("Compare")
st.caption(
    "One prompt, the same number of new tokens, two decoders. Left-to-right writes one token per forward pass; "
    "diffusion can commit several per pass, in any order. Scrub both together by forward passes (model calls) or by "
    "wall-clock time, and judge the outputs by generative perplexity and diversity."
)

untrained_note(chosen["diffusion"], chosen["ar"])
prompt = st.text_area("Prompt", value="The movie was", height=68, key="compare_prompt",
                      help="Both models continue this text (no [MASK]: left-to-right models cannot infill).")
top1, top2, top3, top4, top5 = st.columns(5)
length = top1.slider("New tokens", 1, 256, 32, key="compare_length")
temperature = top2.slider("Temperature", 0.0, 2.0, DEFAULT.temperature, 0.05, key="compare_temperature",
                          help="0: greedy (which loops); the same for both decoders.")
top_p = top3.number_input("Top-p", 0.01, 1.0, value=DEFAULT.top_p, step=0.05, placeholder="off",
                          disabled=temperature == 0, key="compare_top_p",
                          help="Sample from the smallest set of tokens with this much probability; both decoders.")
seed = top4.number_input("Seed", 0, 2**31 - 1, 0, key="compare_seed")
samples = int(top5.number_input("Samples per side", 1, 16, 1, key="compare_samples",
                                help="Decode this many samples per side (seeds seed, seed + 1, …), each side in one "
                                     "batch; the statistics are then means with 95% intervals."))

left, right = st.columns(2)
with left.container(border=True):
    st.markdown(f"**Diffusion** · `{chosen['diffusion'] or '?'}`")
    strategy = st.selectbox("Strategy", list(STRATEGIES), index=list(STRATEGIES).index(DEFAULT.strategy),
                            format_func=STRATEGIES.get, key="compare_strategy")
    picked = strategy_named(strategy)

    def steps_widget(column) -> int | None:
        """The strategy's steps: a budget of forward passes (with its default) or a number of steps."""
        if picked.budget:
            auto = picked.default_steps(length, state.get("compare_block", DEFAULT.block_size))  # the block size below
            budget = column.number_input(
                "Max forward passes", 0, 512, value=None, key="compare_budget",
                placeholder=f"{auto} (¼ of the new tokens)",
                help="When too few positions pass the threshold, commit the most confident anyway to finish in time. "
                     "Empty: a quarter of the new tokens (at least one pass per block); 0: no limit.")
            return auto if budget is None else int(budget) or None
        scheduled = "schedule" in picked.reads  # a schedule shares out one step per new token unless told otherwise
        return column.number_input("Steps", 1, 512, value=None, key="compare_steps",
                                   placeholder="one per new token" if scheduled else "its own pace")

    widgets = {  # a setting a strategy reads -> its widget here, in a column
        "entropy_bound": lambda column: column.slider(
            "Entropy bound (nats)", 0.0, 64.0, DEFAULT.entropy_bound, 0.5, key="compare_entropy_bound",
            help="Each pass commits the most certain positions while their entropies add up to at most this."),
        "threshold": lambda column: column.slider(
            "Threshold", 0.05, 1.0, 0.9, 0.05, key="compare_threshold",
            help="Commit every masked position at least this sure (max probability)."),
        "k": lambda column: int(column.number_input("k (positions per step)", 1, 256, 4, key="compare_k")),
        "steps": steps_widget,
        "schedule": lambda column: column.selectbox("Schedule", SCHEDULES, key="compare_schedule"),
    }
    offered = [name for name in picked.reads if name in widgets]  # in the strategy's order, left to right
    columns = st.columns(len(offered)) if len(offered) > 1 else [st] * len(offered)
    settings = {name: widgets[name](column) for name, column in zip(offered, columns, strict=True)}
    if "spacing" in picked.reads:  # no widget here: the defaults'
        settings["spacing"] = DEFAULT.spacing
    b1, b2 = st.columns(2)
    block = b1.number_input("Block size", 1, 256, value=DEFAULT.block_size, placeholder="off: one block",
                            key="compare_block", help="Semi-autoregressive blocks, left to right.")
    settings["block_size"] = int(block) if block else None
    settings["cache"] = b2.selectbox(
        "KV cache", ["dual", "prefix", "none"], key="compare_kv_cache",
        help="Approximate block KV cache: steps inside a block run only the block (dual) or the block and what "
             "follows (prefix) against the keys and values kept from the pass that opened it.")
with right.container(border=True):
    st.markdown(f"**Left-to-right** · `{chosen['ar'] or '?'}`")
    use_cache = st.checkbox("KV cache", value=True, key="compare_cache",
                            help="Keep the prefix's attention keys and values, so each pass runs only the new token; "
                                 "off, every pass reruns the whole prefix.")
    st.caption("One token per forward pass, always.")
score = st.checkbox(f"Generative perplexity under the reference model (`{chosen['reference'] or '?'}`)", value=True,
                    key="compare_score",
                    help="exp(mean negative log-likelihood per token) of each generation given the prompt, under "
                         "the sidebar's reference model, re-tokenised by it: one yardstick for both.")


@st.cache_resource(show_spinner="Warming up (once per model)…", max_entries=8)
def warmed_up(name: str, kind: str) -> bool:
    """Run a model once on a short input, so that one-off start-up costs are not timed (as the decoding benchmark)."""
    lm, lock = cached_model(name, kind, trust_remote_code())
    with lock:
        generate(lm, "The", 2, strategy="ar" if kind == CAUSAL else "confidence")
    return True


def decode(role: str) -> dict:
    """One side's run: {"trace": Trace} or {"error": message}."""
    name = chosen[role]
    config = DecodeConfig(strategy=strategy if role == "diffusion" else "ar", temperature=temperature,
                          top_p=float(top_p) if temperature > 0 and top_p else None, seed=int(seed),
                          use_cache=use_cache, **settings)
    if not name:
        return {"error": f"choose a {SIDES[role].lower()} model in the sidebar"}
    try:
        kind = MASKED if role == "diffusion" else CAUSAL
        warmed_up(name, kind)
        lm, lock = cached_model(name, kind, trust_remote_code())
        with lock, st.spinner(f"{SIDES[role]}: generating with {name}…"):
            started = time.perf_counter()
            traces = generate_samples(lm, prompt, length, config, samples=samples)
            return {"trace": traces[0], "traces": traces, "batch_s": time.perf_counter() - started}
    except TextdiffError as exc:
        return {"error": f"{shown(name)}: {said(exc)}"}


def quality(result: dict) -> None:
    """Add each sample's distinct-1/2 and (when asked) generative perplexity to a side's result."""
    texts = [t.generated_text for t in result["traces"]]
    result["distinct"] = [(distinct_n(text, 1), distinct_n(text, 2)) for text in texts]
    if not score:
        return
    name = chosen["reference"]
    try:
        reference, lock = cached_model(name, CAUSAL, trust_remote_code())
        with lock, st.spinner(f"Scoring with {name}…"):
            result["ppl"] = [generative_perplexity(reference, text, prompt or None) for text in texts]
    except TextdiffError as exc:
        result["ppl_error"] = f"{shown(name)}: {said(exc)}"


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% interval (normal approximation; None for one value)."""
    mean = statistics.fmean(values)
    return mean, (1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None)


def stat(values: list[float], fmt: str, geometric: bool = False) -> str:
    """``values`` as "mean ± half-width" (a geometric mean and factor for perplexities)."""
    if geometric:
        mean, half = mean_ci([math.log(v) for v in values])
        return _compact(math.exp(mean)) + (f" ×÷{math.exp(half):.2f}" if half is not None else "")
    mean, half = mean_ci(values)
    return format(mean, fmt) + (f" ± {format(half, fmt)}" if half is not None else "")


inputs = {"diffusion model": chosen["diffusion"], "left-to-right model": chosen["ar"], "prompt": prompt,
          "new tokens": length, "temperature": temperature, "top-p": top_p, "seed": seed, "samples": samples,
          "strategy": strategy, **settings,
          "KV cache": use_cache, "reference": chosen["reference"] if score else None}

if st.button("Generate both", type="primary", key="compare_run"):
    state.pop("compare", None)  # nothing of an earlier run survives a failure of this one
    results = {role: decode(role) for role in SIDES}  # one after the other, so neither slows the other down
    for result in results.values():
        if "trace" in result:
            quality(result)
    state["compare"] = {"sides": results, "reference": chosen["reference"] if score else None, "inputs": inputs}
    state.pop("compare_passes", None)  # the sliders start at the end of the new runs
    state.pop("compare_seconds", None)

run = state.get("compare")
if not run:
    st.stop()
results, reference = run["sides"], run["reference"]

st.divider()
inputs_note(run.get("inputs", inputs), inputs)
traces: dict[str, Trace] = {role: r["trace"] for role, r in results.items() if "trace" in r}


columns = dict(zip(SIDES, st.columns(2), strict=True))
for role, result in results.items():
    with columns[role]:
        st.subheader(SIDES[role])
        if "error" in result:
            st.error(result["error"])
            continue
        trace, group = result["trace"], result.get("traces") or [result["trace"]]
        how = (STRATEGIES.get(trace.strategy, trace.strategy) if role == "diffusion" else
               f"KV cache {'on' if trace.settings.get('use_cache') else 'off'}")
        seeds = (f"seed {trace.seed}" if len(group) == 1 else
                 f"{len(group)} samples, seeds {trace.seed}–{group[-1].seed}")
        st.caption(f"`{shown(trace.model)}` · {how} · {trace.n_decoded} tokens · {seeds}")
        if trace.settings.get("cache_fallback"):
            st.caption(f"No KV cache: {trace.settings['cache_fallback']}.")
        a, b, c = st.columns(3)
        a.metric("Forward passes", stat([t.forward_passes for t in group], ".1f" if len(group) > 1 else ".0f"))
        b.metric("Wall time", stat([t.elapsed_s for t in group], ".2f") + " s",
                 help="Per sample, as each sample's own clock saw it (the samples of a side ran as one batch).")
        c.metric("Tokens / s", stat([t.n_decoded / t.elapsed_s for t in group if t.elapsed_s], ".1f")
                 if trace.elapsed_s else "–")
        a, b, c = st.columns(3)
        a.metric("Perplexity", stat(result["ppl"], "", geometric=True) if "ppl" in result else "–",
                 help=result.get("ppl_error") or f"Generative perplexity under `{reference}`, exact: lower "
                                                  "is more fluent. Check distinct-n too: repetitive text also scores "
                                                  "low. Several samples: geometric mean ×÷ its 95% factor.")
        b.metric("Distinct-1", stat([d[0] for d in result["distinct"]], ".2f"),
                 help="Share of different words (1 = no repeats).")
        c.metric("Distinct-2", stat([d[1] for d in result["distinct"]], ".2f"), help="Share of different word pairs.")
        if len(group) > 1:
            with st.expander(f"All {len(group)} samples"):
                for sample in group:
                    st.markdown(f"**seed {sample.seed}**: {sample.generated_text}")
        if "ppl_error" in result:
            st.warning(f"Perplexity not computed: {result['ppl_error']}")
if not traces:
    st.stop()
if len(traces) == 2:
    walls = {role: statistics.fmean(t.elapsed_s for t in results[role].get("traces") or [traces[role]])
             for role in SIDES}
    if walls["ar"]:
        ratio = walls["diffusion"] / walls["ar"]
        st.metric("Diffusion time / left-to-right time", f"{ratio:.2f}×",
                  help="Mean wall time per sample of the diffusion side over the left-to-right side's, this run, "
                       "this machine: below 1, diffusion wrote the same number of tokens faster.")

by = st.radio("Scrub both by", list(BY), horizontal=True, key="compare_by",
              help="Forward passes: the same number of model calls on both sides. Time: the same wall-clock moment.")
if by == "forward passes":
    top = max(t.forward_passes for t in traces.values())
    position = st.slider("Forward passes so far", 0, top, top, key="compare_passes")
else:
    top = math.ceil(max(t.elapsed_s for t in traces.values()) * 1000) / 1000
    position = st.slider("Seconds since start", 0.0, top, top, step=0.001, format="%.3f s", key="compare_seconds")


def frame_at(trace: Trace, x: float) -> int:
    """The last frame reached within ``x`` forward passes / seconds."""
    values = [f.forward_passes if by == "forward passes" else f.elapsed_s for f in trace.frames]
    return max(0, bisect_right(values, x) - 1)


columns = dict(zip(SIDES, st.columns(2), strict=True))
for role, trace in traces.items():
    index = frame_at(trace, position)
    frame = trace.frames[index]
    with columns[role]:
        passes = f"{frame.forward_passes} forward pass" + ("" if frame.forward_passes == 1 else "es")
        done = " · done" if index == len(trace.frames) - 1 else ""
        st.markdown(f"**{SIDES[role]}** after {passes}, {frame.elapsed_s:.3f} s: "
                    f"{100 * revealed(trace, index):.0f}% revealed{done}")
        st.html(trace_html(trace, index))

x = BY[by]
progress = pd.concat([trace_progress(t).assign(decoder=SIDES[role]) for role, t in traces.items()])
tooltip = ["decoder", "step", "forward passes", alt.Tooltip("seconds:Q", format=".3f"),
           alt.Tooltip("% revealed:Q", format=".1f")]
domain = list(COLOURS)
lines = alt.Chart(progress).mark_line(point=True, interpolate="step-after").encode(
    x=alt.X(f"{x}:Q", title="forward passes (model calls)" if by == "forward passes" else "seconds since start",
            axis=alt.Axis(format="d", tickMinStep=1) if by == "forward passes" else alt.Axis()),
    y=alt.Y("% revealed:Q", scale=alt.Scale(domain=[0, 100]), title="% of new tokens revealed"),
    # one legend: the three encodings share a field, its type and a (lack of) title, so Vega-Lite merges them; ordinal,
    # in the domain's order, because a width (a size) of an unordered field is what Vega-Lite warns about
    color=alt.Color("decoder:O", scale=alt.Scale(domain=domain, range=list(COLOURS.values())), sort=domain,
                    title=None),
    strokeDash=alt.StrokeDash("decoder:O", scale=alt.Scale(domain=domain, range=[[1, 0], [5, 3]]), sort=domain,
                              title=None),
    strokeWidth=alt.StrokeWidth("decoder:O", scale=alt.Scale(domain=domain, range=[5, 2]), sort=domain, title=None),
    tooltip=tooltip,
)
rule = alt.Chart(pd.DataFrame({x: [position]})).mark_rule(color="#888", strokeDash=[4, 3]).encode(x=f"{x}:Q")
st.markdown(f"**% revealed vs {by}**")
st.altair_chart((lines + rule).properties(height=260), width="stretch")
st.caption("The steeper curve needs fewer model calls (or seconds) for the same text. Left-to-right climbs one token "
           "per pass; diffusion climbs faster when it commits several positions at once. Where the curves coincide, "
           "the diffusion model committed one token per pass too (an untrained model rarely reaches a threshold).")
