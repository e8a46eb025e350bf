"""What every page shares: the sidebar model picker, cached model loading, and small renderers.

Models are loaded once per process with ``st.cache_resource`` and shared read-only by every session; a lock per
model serialises inference, so concurrent sessions never interleave forward passes on one module.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.classify import Classifier, first_use, load_classifier
from textdiff_core.models import LoadedModel, load_model, pick_device
from textdiff_core.settings import CAUSAL, CLASSIFIER, MASKED, OBJECTIVES, LoadOptions
from textdiff_core.trace import MASK_BG, NEW_OUTLINE, PROMPT_BG, Trace, colour_of

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
CUSTOM = "other: a directory or hub id…"

UNTRAINED = ("minilm", "minilm-ar", "tiny", "tiny-ar")  # offline base models whose language-model head is new

# role -> (kind, label, shipped default, offline fallback)
ROLES = {
    "diffusion": (MASKED, "Diffusion model", "imdb-diffusion", "minilm"),
    "ar": (CAUSAL, "Left-to-right model", "imdb-ar", "minilm-ar"),
    "reference": (CAUSAL, "Reference LM (perplexity, zero-shot)", None, "smollm2"),
}
# a role only the Classify page picks: the same backbone with a classification head (train --objective
# discriminative); no offline fallback, since a base model has no trained head
DISCRIMINATIVE_ROLE = {"discriminative": (CLASSIFIER, "Discriminative model", "imdb-discriminative", None)}
NO_HEAD = "none found (train_cli.py train --objective discriminative)"  # the picker's first choice without a head
PROMISES_RECORD = ROOT / "results" / "promises.json"  # train_cli.py promises' record: the OOD flag's measured rates


RUNS = Path.home() / "textdiff-runs"  # where the README's training commands write runs


def trained(kind: str, folder: Path, relative: bool) -> list[str]:
    """Finished model directories of one kind under ``folder`` (a textdiff.json marks a completed save)."""
    found = []
    for path in sorted(folder.glob("*/textdiff.json")) if folder.is_dir() else []:
        objective = CheckpointMeta.read(path.parent).objective  # None: not a model (e.g. a zero-shot directory)
        if objective is not None and OBJECTIVES.get(objective) == kind:
            found.append(str(path.parent.relative_to(ROOT)) if relative else str(path.parent))
    return found


def shown(path: str | Path) -> str:
    """A path as the app shows it: relative to the repository when inside it (``checkpoints/imdb-ar``), else as is."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT)) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def said(exc: Exception) -> str:
    """An error's one line as the app shows it: paths inside the repository relative to it, like everywhere else."""
    return str(exc).replace(f"{ROOT}/", "")


def new_run_dir(runs: Path, name: str) -> Path:
    """A directory under ``runs`` that does not exist yet, named after ``name`` (``name-2``, ``name-3``, … once
    taken): where a command the app prints may write without overwriting anything."""
    candidate, n = runs / name, 1
    while candidate.exists():
        n += 1
        candidate = runs / f"{name}-{n}"
    return candidate


def shipped(kind: str) -> list[str]:
    """Shipped checkpoint directories of one kind, as paths relative to the app."""
    return trained(kind, CHECKPOINTS, relative=True)


def options(role: str) -> list[str]:
    """The default first: the shipped checkpoint for the models under study, but SmolLM2 for the reference, which
    judges the others' text and so must not be one of them (the report scores with it too). Then the other shipped
    checkpoints and offline bases, then the user's finished runs in ~/textdiff-runs."""
    kind, _, default, fallback = (ROLES | DISCRIMINATIVE_ROLE)[role]
    others = {MASKED: ["minilm", "tiny"], CAUSAL: ["minilm-ar", "smollm2", "tiny-ar"]}.get(kind, [])
    ours = shipped(kind)
    first = [fallback] if default is None else ours + ([fallback] if fallback else [])
    rest = ours if default is None else []
    rest += [o for o in others if o != fallback]
    found = first + rest + trained(kind, RUNS, False)
    if kind == CLASSIFIER and not found:  # say so, rather than open on an empty custom box
        return [NO_HEAD, CUSTOM]
    return found + [CUSTOM]


def device_label() -> str:
    device = pick_device()
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def _leave_legacy_pages_mode() -> None:
    """Streamlit treats a ``pages/`` folder beside app.py as a v1 multipage app until some session has run
    ``st.navigation``; so on a fresh server, a first visit straight to /classify would run pages/classify.py
    alone (no app navigation, no wide layout). Switch the server to app.py's navigation and rerun: app.py then
    resolves the same page from the URL."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the v1 relic
        return
    # Once per session: the flag is process-wide and stays False after this, except under AppTest, which sets it
    # afresh on every run (a rerun there would swallow the run's button click).
    if getattr(PagesManager, "uses_pages_directory", False) and not st.session_state.get("_app_navigation"):
        st.session_state["_app_navigation"] = True
        PagesManager.uses_pages_directory = False
        st.rerun()


def _keep(key: str) -> None:
    """Widgets are created by each page's script, so Streamlit would drop their values on a page switch; writing
    the value back to session state keeps the user's choice across pages."""
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]


def sidebar(extra: dict | None = None) -> dict[str, str]:
    """The model picker: one choice per role (``ROLES``, and the page's ``extra`` roles such as
    ``DISCRIMINATIVE_ROLE``), remembered per session; returns {role: model name or path}."""
    _leave_legacy_pages_mode()
    chosen = {}
    with st.sidebar:
        st.subheader("Models")
        for role, (_, label, _, _) in (ROLES | (extra or {})).items():
            _keep(f"pick_{role}")
            _keep(f"custom_{role}")
            pick = st.selectbox(label, options(role), key=f"pick_{role}")
            if pick == CUSTOM:
                pick = st.text_input(f"{label}: directory or hub id", key=f"custom_{role}").strip()
            chosen[role] = pick
        _keep("trust_remote_code")
        st.checkbox("Trust remote code", key="trust_remote_code",
                    help="Let models that ship their own modeling code (MDLM, LLaDA, Dream) run it. Only for models "
                         "you trust: the code runs on this machine.")
        st.caption(f"Device: **{device_label()}**")
    return chosen


def untrained_note(*names: str) -> None:
    """Say so when a model that generates is an offline base model with an untrained head (its text is noise)."""
    found = [f"`{n}`" for n in dict.fromkeys(names) if n in UNTRAINED]
    if found:
        st.info(f"{', '.join(found)}: offline base model{'s' if len(found) > 1 else ''} with an untrained language-"
                "model head, so expect word salad. Train one with `train_cli.py train` (see the README) and pick its "
                "directory in the sidebar.", icon=":material/info:")


def resolve(name: str) -> str:
    """Shipped checkpoints are listed relative to the app (``checkpoints/imdb-diffusion``); make such a name work
    whatever directory the server was started from."""
    return str(ROOT / name) if not Path(name).is_absolute() and (ROOT / name).is_dir() else name


def loading_note(name: str) -> str:
    """A spinner's words for loading ``name``: the one-off work it does first with roughly how long it takes
    (converting SmolLM2, fitting the TF-IDF reference), else a first load's."""
    note = first_use(resolve(name))
    return f"{note[0].upper()}{note[1:]}…" if note else f"Loading `{name}` (once per server, a few seconds)…"


@st.cache_resource(show_spinner=False, max_entries=8)
def _model(name: str, kind: str, trust: bool) -> tuple[LoadedModel, threading.Lock]:
    return load_model(resolve(name), kind, options=LoadOptions(trust_remote_code=trust)), threading.Lock()


def loading_notes(models: list[LoadedModel]) -> None:
    """What loading had to do to a model (e.g. compatibility shims for published modeling code), one line each."""
    for line in dict.fromkeys(line for lm in models for line in lm.notes):
        st.info(line, icon=":material/build:")


def cached_model(name: str, kind: str, trust: bool = False) -> tuple[LoadedModel, threading.Lock]:
    """A model loaded once per server and shared by every session, with the lock that serialises its use. A spinner
    says what the first load does (Streamlit shows it only when the call takes over half a second); what loading
    had to do to the model is shown where it is used."""
    with st.spinner(loading_note(name)):
        lm, lock = _model(name, kind, trust)
    loading_notes([lm])
    return lm, lock


def trust_remote_code() -> bool:
    """The sidebar's consent to run modeling code shipped with a model."""
    return bool(st.session_state.get("trust_remote_code", False))


@st.cache_resource(show_spinner=False, max_entries=8)
def _classifier(name: str, method: str | None, trust: bool) -> tuple[Classifier, threading.Lock]:
    return load_classifier(resolve(name), method, options=LoadOptions(trust_remote_code=trust)), threading.Lock()


def cached_classifier(name: str, method: str | None, trust: bool = False) -> tuple[Classifier, threading.Lock]:
    """A classifier loaded once per server (see ``cached_model``)."""
    with st.spinner(loading_note(name)):
        clf, lock = _classifier(name, method, trust)
    models = getattr(clf, "models", None) or {}  # the TF-IDF reference has no language model
    loading_notes(list(models.values()) if isinstance(models, dict) else [models])
    return clf, lock


def _brief(value: object, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inputs_note(computed: dict, current: dict) -> None:
    """Under a result: when the widgets have changed since it was computed, name the inputs it belongs to, so a
    result is never read as the answer to inputs it was not computed from."""
    changed = [k for k in {**current, **computed} if computed.get(k) != current.get(k)]
    if changed:
        shown = "; ".join(f"{k} {_brief(computed.get(k))}" for k in changed)
        st.info(f"This result was computed from earlier inputs: {shown}. Run again for the current ones.",
                icon=":material/history:")


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


def marked_html(text: str, changed: list[int]) -> str:
    """``text`` with the words at indices ``changed`` (of ``text.split(" ")``) marked, line breaks kept."""
    marked = set(changed)
    words = [f"<mark>{html.escape(w)}</mark>" if i in marked else html.escape(w) for i, w in enumerate(text.split(" "))]
    return (f'<div style="white-space:pre-wrap;line-height:1.7;padding:8px 10px;border:1px solid #ddd;'
            f'border-radius:6px">{" ".join(words)}</div>')


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def trace_html(trace: Trace, index: int) -> str:
    """Frame ``index`` of a decoding trace: prompt on blue, masked positions as grey blocks, committed tokens
    coloured by their confidence at commit time, the ones committed at this step outlined; a legend below."""
    spans = []
    for item in trace.view(index):
        space = " " if item["space"] else ""
        tip = f' title="{html.escape(item["tip"])}"' if item["tip"] else ""
        if item["state"] == "masked":
            spans.append(f'{space}<span title="masked" style="display:inline-block;width:1.6em;height:1em;'
                         f'vertical-align:-0.1em;background:{_hex(MASK_BG)};border-radius:3px"></span>')
            continue
        style = "border-radius:3px;padding:1px 2px;"
        if item["state"] == "prompt":
            style += f"background:{_hex(PROMPT_BG)};"
        elif item["colour"]:
            style += f"background:{item['colour']};"
        if item["state"] == "new":
            style += f"outline:2px solid {_hex(NEW_OUTLINE)};font-weight:600;"
        spans.append(f'{space}<span{tip} style="{style}">{html.escape(item["text"])}</span>')
    measure = html.escape(str(trace.settings.get("confidence", "max-prob")))
    gradient = ", ".join(_hex(colour_of(x / 4)) for x in range(5))
    swatch = "display:inline-block;width:14px;height:14px;vertical-align:-2px;margin-right:4px;border-radius:2px;"
    legend = (
        f'<div style="font-size:0.8em;color:#555;margin:6px 0 14px;display:flex;gap:2px 16px;flex-wrap:wrap;'
        f'line-height:1.5">'
        f'<span><span style="{swatch}background:{_hex(PROMPT_BG)}"></span>prompt</span>'
        f'<span><span style="{swatch}background:{_hex(MASK_BG)}"></span>masked (not decided yet)</span>'
        f'<span><span style="{swatch}outline:2px solid {_hex(NEW_OUTLINE)};outline-offset:-2px"></span>'
        f'committed at this step</span>'
        f'<span>{measure} when committed (hover a token): low <span style="{swatch}width:70px;'
        f'background:linear-gradient(to right, {gradient})"></span> high</span></div>'
    )
    return (f'<div style="line-height:2.1;font-size:1.05em;padding:10px 12px;border:1px solid #ddd;'
            f'border-radius:6px;overflow-wrap:anywhere">{"".join(spans)}</div>{legend}')


def revealed(trace: Trace, index: int) -> float:
    """Share of the positions the run decodes that are committed in frame ``index`` (0 to 1)."""
    frame = trace.frames[index]
    still = sum(m and d for m, d in zip(frame.masked, trace.decoded, strict=True))
    return 1 - still / trace.n_decoded if trace.n_decoded else 1.0


def trace_progress(trace: Trace) -> pd.DataFrame:
    """One row per frame: step, cumulative forward passes, elapsed seconds and % of the decoded positions revealed."""
    return pd.DataFrame({
        "step": [f.step for f in trace.frames],
        "forward passes": [f.forward_passes for f in trace.frames],
        "seconds": [f.elapsed_s for f in trace.frames],
        "% revealed": [100 * revealed(trace, i) for i in range(len(trace.frames))],
    })
