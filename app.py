"""textdiff: watch, compare, classify and train discrete text diffusion models.

    streamlit run app.py
"""

from pathlib import Path

import streamlit as st

# A local image, served by the app itself: a Material or emoji page icon makes the browser fetch it from
# fonts.gstatic.com, which fails offline (and calls out when online).
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(page_title="textdiff", page_icon=str(ICON), layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/denoise.py", title="Denoise", icon=":material/auto_fix_high:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/classify.py", title="Classify", icon=":material/label:"),
    st.Page("pages/training.py", title="Training", icon=":material/monitoring:"),
    st.Page("pages/crossover.py", title="Crossover", icon=":material/timeline:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
]
st.navigation(pages).run()
