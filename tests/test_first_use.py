"""Work done once (converting SmolLM2, fitting the TF-IDF reference, a first model load) is announced with what it
does and roughly how long it takes: a note on the CLI's stderr, a spinner in the app."""

import contextlib
import json
import random
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import textdiff_core.gguf_convert as gguf_convert
from textdiff_core.baseline import load_baseline
from textdiff_core.classify import first_use

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def reviews(tmp_path, monkeypatch) -> str:
    """A small labelled CSV (fits in a moment) and an empty textdiff cache."""
    monkeypatch.setenv("TEXTDIFF_CACHE", str(tmp_path / "cache"))
    rng = random.Random(0)
    rows = [f'"{rng.choice(["good", "great"] if i % 2 else ["bad", "dull"])} film {i}",{"pos" if i % 2 else "neg"}'
            for i in range(60)]
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return str(path)


def test_fitting_the_tfidf_reference_is_announced_once_with_its_duration(reviews, capsys):
    note = first_use(f"tfidf:{reviews}")
    assert note and "TF-IDF" in note and "once" in note and "about 15 s" in note
    load_baseline(reviews, progress=True)
    assert note in capsys.readouterr().err, "the CLI's note, on stderr"
    assert first_use(f"tfidf:{reviews}") is None, "fitted and cached: nothing to announce"


def test_converting_smollm2_is_announced_for_it_and_for_a_zero_shot_directory_built_on_it(monkeypatch):
    pending = {"now": True}
    monkeypatch.setattr(gguf_convert, "is_complete_conversion", lambda directory: not pending["now"])
    zero_shot = str(ROOT / "checkpoints" / "smollm2-zero-shot")
    for name in ("smollm2", zero_shot):
        assert first_use(name) == gguf_convert.CONVERSION_NOTE
        assert "about 20 s" in first_use(name)
    assert first_use("tiny") is None and first_use("minilm") is None
    pending["now"] = False
    assert first_use("smollm2") is None and first_use(zero_shot) is None


def test_the_app_says_what_a_first_use_does_in_its_spinner(reviews, monkeypatch):
    """The Classify page with the TF-IDF reference on an empty cache: the spinner names the fit and its duration."""
    import streamlit as st

    import textdiff_core.baseline as baseline

    said: list[str] = []
    real_spinner = st.spinner

    @contextlib.contextmanager
    def spinner(text="", *args, **kwargs):
        said.append(text)
        with real_spinner(text, *args, **kwargs):
            yield

    monkeypatch.setattr(st, "spinner", spinner)
    monkeypatch.setattr(baseline, "load_baseline", lambda data="imdb", progress=True: baseline.TfidfBaseline(
        _fitted(reviews), ["neg", "pos"], data))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/classify.py").run()
    for box in at.checkbox:
        if box.label in ("Diffusion", "Left-to-right twin"):
            box.uncheck()
        if box.label == "TF-IDF reference":
            box.check()
    at.run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any(s.startswith("Fitting the TF-IDF reference on the imdb train split once") and "about 15 s" in s
               for s in said), said


def _fitted(csv: str):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    lines = Path(csv).read_text().splitlines()[1:]
    texts = [json.loads(line.rsplit(",", 1)[0]) for line in lines]
    labels = [int(line.rsplit(",", 1)[1] == "pos") for line in lines]
    return Pipeline([("tfidf", TfidfVectorizer()), ("lr", LogisticRegression())]).fit(texts, labels)
