"""textdiff_core: masked-diffusion and left-to-right language models, their training, decoding and likelihoods.

The Streamlit app and the command line are thin layers over this package; nothing here imports Streamlit.
"""

__version__ = "0.1.0"
