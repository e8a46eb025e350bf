"""Traces: exact JSON round trip, a GIF with one image per frame, a self-contained HTML player, readable views."""

import json
import math
import re

import pytest
from PIL import Image

from textdiff_core.decoding import generate
from textdiff_core.models import load_model
from textdiff_core.trace import Trace, colour_of, confidence_score


@pytest.fixture(scope="module")
def traces():
    masked, causal = load_model("tiny", device="cpu"), load_model("tiny-ar", device="cpu")
    return {
        "diffusion": generate(masked, "The movie was", 12, strategy="schedule-confidence", steps=6,
                              confidence="entropy", temperature=0.8, top_p=0.95, seed=5),
        "infill": generate(masked, "The [MASK] was great, isn't it", 2, strategy="topk", k=2),
        "ar": generate(causal, "The movie was", 5, strategy="ar"),
    }


@pytest.mark.parametrize("name", ["diffusion", "infill", "ar"])
def test_json_round_trip_is_exact(traces, tmp_path, name):
    trace = traces[name]
    text = trace.to_json(tmp_path / "t.json")
    again = Trace.from_json(text)
    assert again == trace and again.to_json() == text
    assert Trace.from_json(tmp_path / "t.json") == trace and Trace.from_json(str(tmp_path / "t.json")) == trace
    data = json.loads(text)
    assert data["strategy"] == trace.strategy and data["settings"]["seed"] == trace.seed
    assert len(data["frames"]) == len(trace.frames) and data["frames"][-1]["forward_passes"] == trace.forward_passes
    assert again.final_text == trace.final_text and again.elapsed_s == trace.elapsed_s > 0


def test_metadata_records_every_setting(traces):
    trace = traces["diffusion"]
    assert trace.model == "tiny" and trace.prompt == "The movie was" and trace.seed == 5
    assert trace.settings["steps"] == 6 and trace.settings["strategy"] == "schedule-confidence"
    assert trace.settings["top_p"] == 0.95 and trace.settings["confidence"] == "entropy"
    assert trace.settings["length"] == 12 and trace.n_prompt_tokens == 3 and trace.n_decoded == 12
    frame = trace.frames[-1]
    assert all(c <= 0 for c, d in zip(frame.confidence, trace.decoded, strict=True) if d), "negative entropy"
    assert [f.step for f in trace.frames] == list(range(len(trace.frames)))
    assert trace.frames[0].forward_passes == 0 and all(trace.frames[0].masked[3:])


@pytest.mark.parametrize("name", ["diffusion", "ar"])
def test_gif_has_one_image_per_frame(traces, tmp_path, name):
    trace = traces[name]
    path = trace.to_gif(tmp_path / "t.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == len(trace.frames)
        assert gif.size[0] == 760 and gif.size[1] > 60


def test_html_player_is_self_contained_and_embeds_the_frames(traces, tmp_path):
    trace = traces["diffusion"]
    page = trace.to_html(tmp_path / "t.html").read_text()
    assert not re.search(r"https?://", page), "no network resources"
    assert "<link" not in page and "src=" not in page
    embedded = re.search(r'<script id="trace-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    payload = json.loads(embedded)
    assert Trace.from_dict(payload["trace"]) == trace
    assert len(payload["views"]) == len(trace.frames) == len(payload["captions"])
    for key in ('" "', "ArrowLeft", "ArrowRight", "Home", "End", 'type="range"', "Play"):
        assert key in page


def test_html_escapes_text_that_could_close_the_script(traces, tmp_path):
    trace = Trace.from_dict(traces["ar"].to_dict() | {"final_text": "</script><b>x</b>"})
    page = trace.to_html(tmp_path / "t.html").read_text()
    assert "</script><b>" not in page and page.count("</script>") == 2


def test_views_join_wordpieces_and_mark_states(traces):
    trace = traces["infill"]
    first, last = trace.view(0), trace.view(len(trace.frames) - 1)
    assert [v["state"] for v in first][:2] == ["prompt", "masked"]
    assert {v["state"] for v in last} <= {"prompt", "new", "done"}
    text = "".join((" " if v["space"] else "") + v["text"] for v in last if v["state"] == "prompt")
    assert "was great, isn't it" in text
    new = [v for v in last if v["state"] == "new"]
    assert new and all(v["colour"].startswith("#") and v["tip"] for v in new)
    ar_first = traces["ar"].view(0)
    assert [v["state"] for v in ar_first] == ["prompt"] * 3 + ["masked"] * 5, "not generated yet = masked"


def test_confidence_scores_and_colours():
    assert confidence_score(0.7, "max-prob") == 0.7 and confidence_score(0.2, "margin") == 0.2
    assert confidence_score(0.0, "entropy") == 1.0 and math.isclose(confidence_score(-math.log(4), "entropy"), 0.25)
    assert colour_of(0.0) == (244, 166, 166) and colour_of(1.0) == (168, 219, 168)
    with pytest.raises(ValueError):
        confidence_score(0.5, "vibes")
