"""Home: what text diffusion is, a live miniature of it, and where to go."""

import streamlit as st

from pages._shared import cached_model, said, sidebar, trace_html, untrained_note
from textdiff_core.decoding import default_config, generate
from textdiff_core.errors import TextdiffError
from textdiff_core.settings import MASKED

FRAME_EVERY_S = 0.6  # seconds per frame of the miniature
MINIATURE_TOKENS = 16  # new tokens the miniature writes

chosen = sidebar()
st.title("textdiff")
st.markdown(
    """
**Discrete text diffusion, measured honestly against left-to-right language models.**

A left-to-right model (GPT-2 style) writes one token per forward pass, each conditioned on the ones before it.
A *masked-diffusion* model starts from a row of `[MASK]` tokens and, over a number of steps, fills in the
positions it is most sure of, looking both left and right, so it can commit several tokens per forward pass and
fill gaps anywhere. Its training objective (the MDLM bound) is a likelihood, so the same model can also *score*
text, which makes it a generative classifier.
"""
)


@st.cache_resource(show_spinner="Decoding a miniature…", max_entries=4)
def miniature(name: str, label: str | None):
    lm, lock = cached_model(name, MASKED)
    with lock:
        # the settings a user gets by default (several tokens per forward pass, as the pitch above says)
        return generate(lm, "The movie was", MINIATURE_TOKENS, default_config(MASKED, length=MINIATURE_TOKENS),
                        seed=1, label=label)


st.subheader("A miniature, decoded live by the selected diffusion model")
untrained_note(chosen["diffusion"])
try:
    lm, _ = cached_model(chosen["diffusion"], MASKED)
    classes = lm.checkpoint.classes if lm.checkpoint.class_prompt else None
    trace = miniature(chosen["diffusion"], classes[-1] if classes else None)
except TextdiffError as exc:
    st.error(said(exc))
    trace = None

if trace is not None:

    @st.fragment(run_every=FRAME_EVERY_S)
    def animate() -> None:
        index = st.session_state.get("home_frame", 0) % (len(trace.frames) + 3)  # hold the last frame a moment
        shown = min(index, len(trace.frames) - 1)
        st.html(trace_html(trace, shown))
        st.caption(f"{trace.caption(shown)} · model `{trace.model}`"
                   + (f" · class prompt `{trace.label}`" if trace.label else ""))
        st.session_state["home_frame"] = index + 1

    animate()

st.subheader("Where to go")
left, right = st.columns(2)
with left:
    st.page_link("pages/denoise.py", label="Denoise: watch text emerge from masks, step by step",
                 icon=":material/auto_fix_high:")
    st.page_link("pages/compare.py", label="Compare: diffusion vs left-to-right on one prompt",
                 icon=":material/compare:")
    st.page_link("pages/classify.py", label="Classify: a generative classifier and the words that decided it",
                 icon=":material/label:")
with right:
    st.page_link("pages/training.py", label="Training: loss curves and evaluation of any run",
                 icon=":material/monitoring:")
    st.page_link("pages/crossover.py", label="Crossover: when diffusion wins, as unique data shrinks",
                 icon=":material/timeline:")
    st.page_link("pages/models.py", label="Models: what is available offline, and a fill-mask probe",
                 icon=":material/model_training:")
st.caption("Everything shown here can be reproduced from the command line with `train_cli.py` (see the README).")
