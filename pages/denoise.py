"""Denoise: watch a masked-diffusion model fill in [MASK] tokens, step by step, and replay or export the run."""

import math
import tempfile
from pathlib import Path

import altair as alt
import streamlit as st

from pages._shared import (
    cached_model,
    inputs_note,
    resolve,
    revealed,
    said,
    shown,
    sidebar,
    trace_html,
    trace_progress,
    trust_remote_code,
    untrained_note,
)
from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.decoding import DecodeConfig, default_config, generate_samples
from textdiff_core.denoisers import chat_prompt
from textdiff_core.errors import TextdiffError
from textdiff_core.kv_cache import CACHE_MODES
from textdiff_core.models import MASKED
from textdiff_core.strategies.base import SCHEDULES, SETTINGS, strategies, strategy_named
from textdiff_core.trace import CONFIDENCE_MEASURES, Trace

PLAY_EVERY_S = 0.3  # seconds between frames while playing
PLAY_FRAMES = 60  # a longer run plays every n-th step, so a replay takes at most ~PLAY_FRAMES * PLAY_EVERY_S
STRATEGIES = {s.name: s for s in strategies(MASKED)}  # the registered diffusion strategies, by name
MEASURES = {"max-prob": "max probability", "margin": "margin (top-1 − top-2)", "entropy": "entropy (as exp(−H))"}
NO_LABEL = "(none)"
DEFAULT = default_config(MASKED)  # what a user meets here is what the CLI gives with no flags
CACHES = {"dual": "dual: block alone", "prefix": "prefix: block and what follows", "none": "none: whole sequence"}
state = st.session_state

chosen = sidebar()
st.title("Denoise")
st.caption(
    "A masked-diffusion model starts from a row of [MASK] tokens after your prompt and, at every step, runs once on "
    "the whole sequence and commits some of the masked positions, looking both left and right. Pick how it "
    "chooses which positions to commit, run it, then scrub or play through the steps."
)

name = chosen["diffusion"]
untrained_note(name)
try:
    meta = CheckpointMeta.read(resolve(name)) if name else CheckpointMeta()
except TextdiffError:
    meta = CheckpointMeta()
classes = [str(c) for c in meta.classes] if meta.class_prompt else []

prompt = st.text_area(
    "Prompt", value="The movie was", height=80, key="denoise_prompt",
    help="The model continues this text. Write [MASK] anywhere in it to have those tokens filled in too (infilling); "
         "with [MASK]s in the prompt, 0 new tokens is allowed.")
left, mid, right = st.columns(3)
length = left.slider("New tokens", 0, 256, 32, key="denoise_length",
                     help="How many [MASK] tokens are appended after the prompt.")
strategy = mid.selectbox(
    "Strategy", list(STRATEGIES), index=list(STRATEGIES).index(DEFAULT.strategy),
    format_func=lambda s: STRATEGIES[s].title, key="denoise_strategy",
    help="Which masked positions to commit at each step:\n\n" + "\n".join(
        f"- **{s.title}**: {s.description}" for s in STRATEGIES.values()))
picked = strategy_named(strategy)
label = NO_LABEL
if classes:
    label = right.selectbox("Class", [NO_LABEL, *classes], key="denoise_label",
                            help=f"This model is class-conditional: its prompt '{meta.class_prompt}' is put first "
                                 "and never masked.")


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def steps_widget(column) -> int | None:
    """The strategy's steps: a budget of forward passes (with its default) or a number of steps."""
    if picked.budget:
        auto = picked.default_steps(length, state.get("denoise_block", DEFAULT.block_size))  # the block size below
        budget = column.number_input(
            "Max forward passes", 0, 512, value=None, key="denoise_budget",
            placeholder=f"{auto} (¼ of the new tokens)" if auto else "no limit",
            help="Finish within this many passes: when too few positions pass the threshold, the most confident are "
                 "committed anyway to keep pace. Empty: a quarter of the new tokens (at least one pass per block); "
                 "0: no limit.")
        st.caption("Why a budget: a weak model is rarely 90% sure of any position, so a threshold alone commits only "
                   "its single best guess per pass, one token per pass like left-to-right decoding.")
        return auto if budget is None else int(budget) or None
    scheduled = "schedule" in picked.reads  # a schedule shares out one step per new token unless told otherwise
    return column.number_input(
        "Steps", 1, 512, value=None, placeholder="one per new token" if scheduled else "its own pace",
        key="denoise_steps", help=sentence(picked.notes.get("steps", SETTINGS["steps"].metadata["help"])))


WIDGETS = {  # a setting a strategy reads -> its widget here, in a column
    "entropy_bound": lambda column: column.slider(
        "Entropy bound (nats)", 0.0, 64.0, DEFAULT.entropy_bound, 0.5, key="denoise_entropy_bound",
        help="Each pass commits the most certain positions while their entropies add up to at most this: a sure "
             "model commits many at once, an unsure one few. 0: one per pass."),
    "threshold": lambda column: column.slider(
        "Threshold", 0.05, 1.0, 0.9, 0.05, key="denoise_threshold",
        help="Commit every masked position whose confidence is at least this."),
    "k": lambda column: column.number_input("k (positions per step)", 1, 256, 4, key="denoise_k"),
    "steps": steps_widget,
    "schedule": lambda column: column.selectbox(
        "Schedule", SCHEDULES, key="denoise_schedule",
        help="linear: the same number every step; cosine: few early, many late; exp: many early, few late."),
    "confidence": lambda column: column.selectbox(
        "Confidence measure", CONFIDENCE_MEASURES, format_func=MEASURES.get, key="denoise_measure",
        help="How sure the model is of a position: picks what to commit, and colours the tokens below."),
}
settings = {"threshold": DEFAULT.threshold, "k": DEFAULT.k, "steps": None, "schedule": DEFAULT.schedule,
            "confidence": DEFAULT.confidence, "entropy_bound": DEFAULT.entropy_bound}
offered = [setting for setting in picked.reads if setting in WIDGETS]  # in the strategy's order, left to right
for setting, column in zip(offered, st.columns(max(3, len(offered))), strict=False):
    settings[setting] = WIDGETS[setting](column)

with st.expander("Sampling and semi-autoregressive blocks"):
    s1, s2, s3, s4 = st.columns(4)
    temperature = s1.slider("Temperature", 0.0, 2.0, DEFAULT.temperature, 0.05, key="denoise_temperature",
                            help="0: greedy (always the most likely token), which tends to loop.")
    sampling = temperature > 0
    top_k = s2.number_input("Top-k", 1, 100_000, value=None, placeholder="off", disabled=not sampling,
                            key="denoise_top_k", help="Sample among the k most likely tokens (temperature > 0 only).")
    top_p = s3.number_input("Top-p", 0.01, 1.0, value=DEFAULT.top_p, step=0.05, placeholder="off",
                            disabled=not sampling,
                            key="denoise_top_p",
                            help="Sample from the smallest set of tokens with this much probability (temperature > 0 "
                                 "only).")
    seed = s4.number_input("Seed", 0, 2**31 - 1, 0, key="denoise_seed",
                           help="The same seed and settings reproduce a run exactly.")
    block_size = s1.number_input(
        "Block size", 1, 256, value=DEFAULT.block_size, placeholder="off: one block", key="denoise_block",
        help="Decode the masked positions in left-to-right blocks of this many (semi-autoregressive).")
    cache = s4.selectbox(
        "KV cache", list(CACHE_MODES)[::-1], format_func=CACHES.get, key="denoise_kv_cache",
        help="Approximate block KV cache: a full pass opens each block and keeps every layer's keys and values; the "
             "steps inside the block then run only the block (dual) or the block and what follows (prefix) against "
             "them. Faster, approximate; models whose code cannot take one run full passes.")
    samples = s4.number_input("Samples", 1, 16, 1, key="denoise_samples",
                              help="Decode this many samples (seeds seed, seed + 1, …) in one batch; the first is "
                                   "animated, the others' texts are listed below it.")
    spacing = s2.number_input(
        "Spacing", 1, 64, DEFAULT.spacing, key="denoise_spacing", disabled="spacing" not in picked.reads,
        help=sentence(SETTINGS["spacing"].metadata["help"]) + " Read by: " + ", ".join(
            s.title for s in STRATEGIES.values() if "spacing" in s.reads) + ".")
    cfg_scale = s3.number_input(
        "Guidance scale", 0.0, 20.0, 1.0, 0.5, key="denoise_cfg",
        help="Classifier-free guidance on the class (else on the prompt): each pass also runs a copy with the "
             "condition masked, and uses uncond + s x (cond - uncond). 1: off; 0: ignore the condition; > 1: "
             "follow it more strongly (twice the forward passes).")


inputs = {"model": name, "prompt": prompt, "new tokens": length, "strategy": strategy, "class": label,
          "temperature": temperature, "top-k": top_k, "top-p": top_p, "seed": seed, "block size": block_size,
          "spacing": spacing, "guidance": cfg_scale, "cache": cache, "samples": samples, **settings}


def run() -> None:
    state.pop("denoise_trace", None)  # a run that fails leaves no earlier result behind it
    if not name:
        st.error("Choose a diffusion model in the sidebar first.")
        return
    config = DecodeConfig(
        strategy=strategy, steps=settings["steps"], schedule=settings["schedule"], threshold=settings["threshold"],
        k=int(settings["k"]), confidence=settings["confidence"], temperature=temperature,
        top_k=int(top_k) if sampling and top_k else None, top_p=float(top_p) if sampling and top_p else None,
        seed=int(seed), block_size=int(block_size) if block_size else None, spacing=int(spacing),
        cfg_scale=float(cfg_scale), cache=cache, entropy_bound=float(settings["entropy_bound"]),
    )
    try:
        config.validate()
        lm, lock = cached_model(name, MASKED, trust_remote_code())
        text = prompt.replace("[MASK]", lm.tokenizer.mask_token) if lm.tokenizer.mask_token else prompt
        if text and lm.denoiser is not None and lm.denoiser.chat_template:  # instruct models: the user's turn
            text = chat_prompt(lm.tokenizer, text)
        with lock, st.spinner(f"Denoising with {name}…"):
            traces = generate_samples(lm, text, length, config, None if label == NO_LABEL else label, int(samples))
    except TextdiffError as exc:
        st.error(said(exc))
        return
    trace = traces[0]
    state["denoise_trace"] = trace
    state["denoise_sample_traces"] = traces
    state["denoise_inputs"] = inputs
    state["denoise_frame"] = len(trace.frames) - 1  # show the result; Play replays it from the start
    state["denoise_playing"] = False


if st.button("Denoise", type="primary", key="denoise_run"):
    run()

trace: Trace | None = state.get("denoise_trace")
if trace is None:
    st.stop()

last = len(trace.frames) - 1
stride = max(1, math.ceil(last / PLAY_FRAMES))
state.setdefault("denoise_playing", False)
st.divider()
m1, m2, m3, m4 = st.columns(4)
cached_passes = sum(f.cached for f in trace.frames)
m1.metric("Forward passes", trace.forward_passes,
          help="Model calls. Steps that commit nothing reuse the last prediction instead of calling the model. "
               f"{cached_passes} of them ran only part of the sequence against cached keys and values.")
m2.metric("Wall time", f"{trace.elapsed_s:.2f} s")
m3.metric("Tokens / s", f"{trace.n_decoded / trace.elapsed_s:.1f}" if trace.elapsed_s else "–")
m4.metric("Tokens per pass", f"{trace.tokens_per_pass:.2f}", help="Left-to-right decoding always makes 1.")
label_note = f" · class `{trace.label}`" if trace.label else ""
strategy_name = STRATEGIES[trace.strategy].title if trace.strategy in STRATEGIES else trace.strategy
cache_note = f" · {cached_passes} cached passes ({trace.settings['cache']} cache)" if cached_passes else ""
st.caption(f"`{shown(trace.model)}` · {strategy_name} · {trace.n_decoded} positions decoded in {last} steps · "
           f"seed {trace.seed}{label_note}{cache_note}")
if trace.settings.get("cache_fallback"):
    st.info(f"No KV cache for this model: {trace.settings['cache_fallback']}.", icon=":material/info:")
inputs_note(state.get("denoise_inputs", inputs), inputs)


def toggle_play() -> None:
    """Play from the slider's step (from the start when at the end), or pause on the step shown."""
    if state["denoise_playing"]:
        state["denoise_playing"] = False
        state["denoise_frame"] = state.get("denoise_shown", last)
    else:
        state["denoise_playing"] = True
        frame = state.get("denoise_frame", last)
        state["denoise_next"] = frame if frame < last else 0


playing = state["denoise_playing"]
st.button(":material/pause: Pause" if playing else ":material/play_arrow: Play", key="denoise_play",
          on_click=toggle_play,
          help="Replay the run" + (f", every {stride}th step" if stride > 1 else "") + "; pause to scrub.")


@st.fragment(run_every=PLAY_EVERY_S if playing else None)
def player(trace: Trace, timer_on: bool) -> None:
    """The step slider, the frame and the progress chart; while playing, reruns on a timer and steps forward.

    While playing, the step shown is kept here, not read from the slider (it is disabled): a timer tick can arrive
    with the browser's slider one step behind, and must not move playback back or stop it.
    """
    playing = state["denoise_playing"]
    if timer_on and not playing:  # stopped by another run of the page: rerun it so the timer goes
        st.rerun()
    if playing:
        state["denoise_frame"] = index = min(state.get("denoise_next", 0), last)
        st.slider("Step", 0, last, key="denoise_frame", disabled=True)
    else:
        if "denoise_goto" in state:  # playback just ended on this step
            state["denoise_frame"] = state.pop("denoise_goto")
        elif "denoise_frame" not in state:  # back from another page: widget state is gone, show the result again
            state["denoise_frame"] = last
        index = st.slider("Step", 0, last, key="denoise_frame")
    state["denoise_shown"] = index
    frame = trace.frames[index]
    st.caption(f"Step {frame.step} of {last} · {frame.forward_passes} forward passes · {frame.elapsed_s:.2f} s · "
               f"{100 * revealed(trace, index):.0f}% revealed" + (" · prediction reused" if frame.reused else "")
               + (" · cached keys and values" if frame.cached else ""))
    st.html(trace_html(trace, index))

    progress = trace_progress(trace)
    tooltip = ["step", "forward passes", alt.Tooltip("seconds:Q", format=".3f", title="elapsed s"),
               alt.Tooltip("% revealed:Q", format=".1f")]
    line = alt.Chart(progress).mark_line(point=True, interpolate="step-after").encode(
        x=alt.X("forward passes:Q", title="forward passes (model calls)",
                axis=alt.Axis(format="d", tickMinStep=1),  # whole passes: no half-pass ticks
                scale=alt.Scale(domain=[0, max(1, int(progress["forward passes"].max()))], nice=False)),
        y=alt.Y("% revealed:Q", scale=alt.Scale(domain=[0, 100]), title="% of positions revealed"),
        tooltip=tooltip,
    )
    here = alt.Chart(progress.iloc[[index]]).mark_point(size=160, filled=True, color="#d62728").encode(
        x="forward passes:Q", y="% revealed:Q", tooltip=tooltip)
    st.markdown("**Progress** · hover a point for its elapsed time")
    st.altair_chart((line + here).properties(height=220), width="stretch")

    if playing:
        if index >= last:  # finished: rerun the page to stop the timer (the browser's slider may lag a step)
            state["denoise_playing"] = False
            state["denoise_goto"] = last
            st.rerun()
        state["denoise_next"] = index + stride


player(trace, playing)

with st.expander("Final text"):
    st.code(trace.final_text, language=None, wrap_lines=True)
others = state.get("denoise_sample_traces") or [trace]
if len(others) > 1:
    with st.expander(f"All {len(others)} samples", expanded=True):
        for sample in others:
            st.markdown(f"**seed {sample.seed}** · {sample.forward_passes} passes · {sample.tokens_per_pass:.2f} "
                        "tokens per pass")
            st.code(sample.final_text, language=None, wrap_lines=True)


def export(kind: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"trace.{kind}"
        if kind == "gif":
            trace.to_gif(path)
        else:
            trace.to_html(path, title=f"textdiff: {trace.model}, {trace.strategy}")
        return path.read_bytes()


d1, d2, d3 = st.columns(3)
d1.download_button("Animated GIF", lambda: export("gif"), "denoise.gif", "image/gif", on_click="ignore",
                   icon=":material/gif_box:", width="stretch")
d2.download_button("HTML player", lambda: export("html"), "denoise.html", "text/html", on_click="ignore",
                   icon=":material/play_circle:", width="stretch",
                   help="One self-contained file: open it in any browser, no network needed.")
d3.download_button("Trace (JSON)", trace.to_json(), "denoise.json", "application/json", on_click="ignore",
                   icon=":material/data_object:", width="stretch", help="Every frame and setting.")
