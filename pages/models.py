"""Models: what is available offline, and a fill-mask probe of any diffusion model."""

import pandas as pd
import streamlit as st

from pages._shared import CHECKPOINTS, cached_model, said, shown, sidebar
from textdiff_core.decoding import fill_mask
from textdiff_core.errors import TextdiffError
from textdiff_core.models import catalogue
from textdiff_core.settings import MASKED

chosen = sidebar()
st.title("Models")

st.caption("The offline base models, then the shipped checkpoints (pick any of them in the sidebar). Classes and "
           "epochs belong to trained checkpoints; a zero-shot classifier is a base model prompted per class.")
table = pd.DataFrame([row | {"name": shown(row["name"])} for row in catalogue(CHECKPOINTS)])
st.table(table, hide_index=True, border="horizontal")  # a static table: every cell wraps and is read whole

st.subheader("Fill-mask probe")
st.caption("What a diffusion model predicts for each [MASK], under one or more never-masked prefixes.")
name = st.text_input("Diffusion model (offline name, trained directory or hub id)", value=chosen["diffusion"])
text = st.text_input("Text", value="The movie was [MASK].")
prefixes = st.text_input("Prefixes, separated by |", value="positive review: | negative review:")
if st.button("Predict", type="primary"):
    try:
        lm, lock = cached_model(name.strip(), MASKED)
        table = {}
        for prefix in [p.strip() for p in prefixes.split("|")] or [""]:
            with lock:
                predictions = fill_mask(lm, text, prefix or None, top_k=5)
            table[prefix or "(none)"] = [", ".join(f"{t} ({p:.2f})" for t, p in mask) for mask in predictions]
        st.dataframe(pd.DataFrame(table, index=[f"mask {i + 1}" for i in range(len(next(iter(table.values()))))]))
    except TextdiffError as exc:
        st.error(said(exc))
