"""Home: what text diffusion is, and where to go."""

import streamlit as st

st.title("textdiff")
st.markdown(
    """
**Discrete text diffusion, measured honestly against left-to-right language models.**

A left-to-right model (GPT-2 style) writes one token per forward pass, each conditioned on the ones before it.
A *masked-diffusion* model starts from a sequence of `[MASK]` tokens and, over a number of steps, fills in the
positions it is most sure of, looking both left and right. Its training objective (the MDLM bound) is a
likelihood, so the same model can also *score* text, which makes it a generative classifier.

This app is built over the `textdiff_core` library; everything it shows can be reproduced with `train_cli.py`.
"""
)
st.page_link("pages/models.py", label="Models: the offline defaults, trained checkpoints, and a fill-mask probe",
             icon=":material/model_training:")
