"""The Crossover page: curves per U with the crossover marked, and accuracy against U, from a grid's crossover.json
(AppTest, hand-built results)."""

import json
import math
from pathlib import Path

from streamlit.testing.v1 import AppTest

import textdiff_core.experiments.crossover as xo
from tests.charts import chart_layers, chart_tables, empty_layers, page_tables
from textdiff_core.train import TrainConfig

APP = str(Path(__file__).resolve().parents[1] / "app.py")




def _point(step: int, bits: float, size: int) -> dict:
    return {"nll": [10 * bits * 0.693 * f for f in (0.9, 1.1)], "tokens": [10, 10], "bytes": [40, 40],
            "bayes": [1, 0], "infill": [1, 1], "epoch": step * 16 / size, "tokens_seen": step * 2000}


def _results(tmp_path: Path) -> Path:
    steps = [10, 20, 40]
    crossing = xo.analyse_size(100, {"steps": 40, "points": steps}, {
        "diffusion": {s: _point(s, b, 100) for s, b in zip(steps, [6.0, 5.0, 4.0], strict=True)},
        "ar": {s: _point(s, b, 100) for s, b in zip(steps, [5.5, 4.5, 4.6], strict=True)},
        "ar_masked": {s: _point(s, b, 100) for s, b in zip(steps[:2], [5.7, 4.4], strict=True)}}, {"accuracy": 0.61,
                                                                                           "ci95": [0.5, 0.7]}, 9000,
        {"nll": [10 * 5.2 * 0.693 * f for f in (0.9, 1.1)], "tokens": [10, 10]})
    partial = xo.analyse_size(400, {"steps": 40, "points": steps}, {
        "diffusion": {10: _point(10, 6.0, 400)}, "ar": {10: _point(10, 5.0, 400)}}, None, 36000)
    config = xo.CrossoverConfig(out="x", sizes=[100, 400], steps=[40, 40], first_point=10,
                                train=TrainConfig(out="", conditioning="joint"))
    path = tmp_path / "crossover.json"
    path.write_text(json.dumps({"runs": [crossing, partial], "finished": False, "exponent": None,
                                "config": config.to_dict(),
                                "plan": [{"unique_reviews": u, "points": steps} for u in (100, 400)],
                                "updated_at": "2026-12-05T18:00:00+00:00", "command": "python train_cli.py crossover"}))
    return path


def test_the_crossover_page_draws_each_size_marks_the_crossover_and_says_it_is_in_progress(tmp_path):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/crossover.py").run()
    at.text_input(key="crossover_path").set_value(str(_results(tmp_path))).run()
    assert not at.exception and not at.error
    assert "In progress: 4 validation points read, 2 to go" in at.warning[0].value
    tables = page_tables(at)
    charts = at.get("vega_lite_chart")  # each layer draws: the bands, the curves, the level and the crossover rule
    assert not any(empty_layers(c) for c in charts), [chart_layers(c) for c in charts]
    assert any(t.get("label") == ["crossover"] and t["tokens seen"] == [80000] for t in tables), "the crossover rule"
    summary = at.dataframe[0].value
    assert list(summary["crossover"]) == ["80,000 tokens (epoch 6.4)", "none so far"]
    assert list(summary["to go"]) == [0, 2]
    assert "1 of 2 do so far" in " ".join(c.value for c in at.caption)
    levels = [t["unigram bits per token"] for t in tables if "unigram bits per token" in t]
    assert len(levels) == 1 and abs(levels[0][0] - 5.2 * 0.693 / math.log(2)) < 1e-3, "the no-context level, U=100"
    curves = [t for t in tables if "bits per token" in t]
    assert [sorted(set(t["step"])) for t in curves] == [[10, 20, 40], [10]]
    control = [s for s, o in zip(curves[0]["step"], curves[0]["objective"], strict=True) if "control" in o]
    assert control == [10, 20], "the control arm where it has reached a point"
    accuracy = next(t for t in tables if "reading" in t and "accuracy" in t)
    assert "TF-IDF + logistic regression" in accuracy["reading"] and 400 in accuracy["U (reviews)"]
    [against_u] = [c for c in at.get("vega_lite_chart") if "reading" in chart_tables(c)[0]]
    x = json.loads(against_u.proto.spec)["encoding"]["x"]
    sizes = sorted(set(accuracy["U (reviews)"]))
    assert x["axis"]["values"] == sizes and x["scale"]["nice"] is False, "ticked at each U, ending where U does"
    assert sizes[0] / 1.5 < x["scale"]["domain"][0] < sizes[0] < sizes[-1] < x["scale"]["domain"][1] < sizes[-1] * 1.5
    assert "U=100: crosses at epoch 6.4" in " ".join(m.value for m in at.markdown)

    at.text_input(key="crossover_path").set_value(str(tmp_path / "missing.json")).run()
    assert not at.exception and "No results" in at.info[0].value
    (tmp_path / "broken.json").write_text("{")
    at.text_input(key="crossover_path").set_value(str(tmp_path / "broken.json")).run()
    assert not at.exception and "cannot be read" in at.error[0].value
