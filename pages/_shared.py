"""What every page shares: the sidebar model picker, cached model loading, and small renderers.

Models are loaded once per process with ``st.cache_resource`` and shared read-only by every session; a lock per
model serialises inference, so concurrent sessions never interleave forward passes on one module.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

import streamlit as st
import torch

from textdiff_core.classify import Classifier, load_classifier
from textdiff_core.models import CAUSAL, MASKED, LoadedModel, load_model, pick_device, read_sidecar

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
CUSTOM = "other: a directory or hub id…"

# role -> (kind, label, shipped default, offline fallback)
ROLES = {
    "diffusion": (MASKED, "Diffusion (masked) model", "imdb-diffusion", "minilm"),
    "ar": (CAUSAL, "Left-to-right model", "imdb-ar", "minilm-ar"),
    "reference": (CAUSAL, "Reference LM (perplexity, zero-shot)", None, "smollm2"),
}


def shipped(kind: str) -> list[str]:
    """Shipped checkpoint directories of one kind, as paths relative to the app."""
    found = []
    for path in sorted(CHECKPOINTS.glob("*/textdiff.json")):
        meta = read_sidecar(path.parent)
        if (meta.get("objective") == "diffusion") == (kind == MASKED):
            found.append(str(path.parent.relative_to(ROOT)))
    return found


def options(role: str) -> list[str]:
    kind, _, _, fallback = ROLES[role]
    others = ["minilm", "tiny"] if kind == MASKED else ["minilm-ar", "smollm2", "tiny-ar"]
    return shipped(kind) + [fallback] + [o for o in others if o != fallback] + [CUSTOM]


def device_label() -> str:
    device = pick_device()
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def sidebar() -> dict[str, str]:
    """The model picker: one choice per role, remembered per session; returns {role: model name or path}."""
    chosen = {}
    with st.sidebar:
        st.subheader("Models")
        for role, (_, label, _, _) in ROLES.items():
            pick = st.selectbox(label, options(role), key=f"pick_{role}")
            if pick == CUSTOM:
                pick = st.text_input(f"{label}: directory or hub id", key=f"custom_{role}").strip()
            chosen[role] = pick
        st.caption(f"Device: **{device_label()}**")
    return chosen


@st.cache_resource(show_spinner="Loading model (once per server)…", max_entries=8)
def cached_model(name: str, kind: str) -> tuple[LoadedModel, threading.Lock]:
    return load_model(name, kind), threading.Lock()


@st.cache_resource(show_spinner="Loading classifier (once per server)…", max_entries=8)
def cached_classifier(name: str, method: str | None) -> tuple[Classifier, threading.Lock]:
    return load_classifier(name, method), threading.Lock()


def join_wordpieces(tokens: list[str]) -> list[str]:
    """Display strings for WordPiece/BPE tokens: '##ing' joins its predecessor, 'Ġword' / '▁word' start a word."""
    out = []
    for t in tokens:
        if t.startswith("##"):
            out.append(t[2:])
        elif t.startswith(("Ġ", "▁")):
            out.append(" " + t[1:])
        else:
            out.append(" " + t)
    if out:
        out[0] = out[0].lstrip()
    return out


def heatmap_html(tokens: list[str], values: list[float], errors: list[float] | None, scale: float | None = None,
                 labels: tuple[str, str] = ("against", "for")) -> str:
    """Tokens coloured by a signed value (blue < 0 < red), with value ± standard error on hover."""
    scale = scale or max(1e-6, max((abs(v) for v in values), default=1.0))
    spans = []
    for i, (tok, v) in enumerate(zip(join_wordpieces(tokens), values, strict=True)):
        a = min(1.0, abs(v) / scale)
        colour = f"rgba(214,39,40,{a:.2f})" if v > 0 else f"rgba(31,119,180,{a:.2f})"
        se = f" ± {errors[i]:.2f}" if errors and errors[i] == errors[i] and errors[i] > 0 else ""
        spans.append(f'<span title="{html.escape(tok.strip())}: {v:+.2f}{se} nats" '
                     f'style="background:{colour};border-radius:3px;padding:1px 0">{html.escape(tok)}</span>')
    legend = (f'<div style="font-size:0.8em;margin-top:6px"><span style="background:rgba(31,119,180,0.7);'
              f'padding:0 6px">&nbsp;</span> evidence {labels[0]} &nbsp; <span style="background:rgba(214,39,40,0.7);'
              f'padding:0 6px">&nbsp;</span> evidence {labels[1]} &nbsp; (hover a token for its value ± s.e.)</div>')
    return f'<div style="line-height:1.9;font-size:0.95em">{"".join(spans)}</div>{legend}'
