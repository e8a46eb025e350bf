"""The Training page's view of the pair by epoch: a campaign directory and the shipped pair (AppTest)."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.charts import chart_layers, empty_layers, page_tables

APP = str(Path(__file__).resolve().parents[1] / "app.py")




def _open(path: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/training.py").run()
    if path:
        at.selectbox(key="run_choice").set_value("other…").run()
        at.text_input(key="run_path").set_value(path).run()
    assert not at.exception and not at.error
    return at


def _by_epoch(at: AppTest) -> list[tuple[str, int]]:
    """The layers of the "Validation by epoch" chart and the rows each draws (its own data after its own filter)."""
    [chart] = [c for c in at.get("vega_lite_chart") if '"epoch"' in c.proto.spec]
    return chart_layers(chart)


def _every_layer_draws(at: AppTest, layers=("line: accuracy", "line: perplexity", "rule: epoch")) -> None:
    """Every layer of every chart on the page draws marks (accuracy, perplexity and the shipped-epoch rules alike),
    and the by-epoch chart has ``layers``."""
    charts = at.get("vega_lite_chart")
    assert not any(empty_layers(c) for c in charts), [chart_layers(c) for c in charts]
    assert [name for name, _ in _by_epoch(at)] == list(layers), _by_epoch(at)


def _boundary(step: int, epoch: int, acc: float, infill: float, ppl: float) -> str:
    return json.dumps({"step": step, "loss": 3.0, "epoch": epoch - 0.001, "epoch_boundary": True,
                       "epochs_completed": epoch, "val_accuracy": acc, "val_accuracy_infill": infill,
                       "val_perplexity": ppl, "val_n": 4})


def test_a_campaign_directory_shows_both_twins_by_epoch_with_the_shipped_epochs(tmp_path):
    out = tmp_path / "campaign"
    for twin, base in (("diffusion", 0.6), ("ar", 0.7)):
        (out / twin).mkdir(parents=True)
        lines = [json.dumps({"step": 1, "loss": 5.0, "epoch": 0.25})]
        lines += [_boundary(4 * e, e, base + 0.05 * e, base, 60.0 / e) for e in (1, 2, 3)]
        (out / twin / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (out / "campaign.json").write_text(json.dumps({"twins": {}, "shipped": {"diffusion": 3, "ar": 2}}))
    at = _open(str(out))
    assert at.selectbox(key=f"run_twin_{out / 'diffusion'}").value == str(out / "ar"), "opens beside its twin"
    curves = next(t for t in page_tables(at) if "reading" in t and "measure" in t)
    rows = list(zip(curves["run"], curves["epoch"], curves["measure"], curves["value"], strict=True))
    assert {(r, e) for r, e, _, _ in rows} == {(r, float(e)) for r in ("diffusion", "ar") for e in (1, 2, 3)}
    assert ("ar", 2.0, "perplexity", 30.0) in rows and ("diffusion", 3.0, "accuracy", 0.6 + 0.15) in rows
    assert len({reading for reading in curves["reading"]}) == 3, "both accuracy readings and the perplexity"
    shipped = next(t for t in page_tables(at) if set(t) == {"run", "epoch"})
    assert sorted(zip(shipped["run"], shipped["epoch"], strict=True)) == [("ar", 2), ("diffusion", 3)]
    _every_layer_draws(at)
    assert dict(_by_epoch(at)) == {"line: accuracy": 12, "line: perplexity": 6, "rule: epoch": 2}, \
        "both twins' two accuracy readings and perplexity at three epochs, and the two rules"


def test_the_shipped_pair_opens_with_its_validation_by_epoch_and_the_shipped_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no runs of one's own: the page opens on the shipped pair
    root = Path(APP).parent / "checkpoints"
    record = json.loads((root / "shipped-campaign.json").read_text())  # the campaign the pair was shipped from
    at = _open()
    curves = next(t for t in page_tables(at) if "reading" in t and "measure" in t)
    assert set(curves["run"]) == {"imdb-diffusion", "imdb-ar"}
    for twin, name in record["directories"].items():  # the whole campaign, epoch by epoch, as it recorded it
        accuracy = {float(r["epochs_completed"]): r["val_accuracy"] for r in record["epochs"][twin]}
        shown = {e: v for r, e, reading, v in zip(curves["run"], curves["epoch"], curves["reading"], curves["value"],
                                                 strict=True) if r == name and reading.startswith("accuracy (Bayes")}
        assert shown == accuracy, (name, shown, accuracy)
    # the grey rules: the epoch each twin was shipped at, i.e. where its run stopped (the end of that epoch's last
    # whole batch: a few examples of each epoch are left over, so just under the whole number)
    shipped = next(t for t in page_tables(at) if set(t) == {"run", "epoch"})
    rules = dict(zip(shipped["run"], shipped["epoch"], strict=True))
    assert set(rules) == set(record["directories"].values())
    for twin, name in record["directories"].items():
        assert record["shipped"][twin] - 0.01 < rules[name] <= record["shipped"][twin], (name, rules[name])
    _every_layer_draws(at)


def test_a_pair_trained_by_steps_shows_its_validation_at_fractional_epochs(tmp_path, monkeypatch):
    """A pair from before the campaigns (no shipped-campaign.json), validated every 400 steps: each reading sits at
    its fractional epoch and the rule where the run stopped (1600 steps x 16 / 20,000 examples = 1.28 epochs)."""
    import pages._shared

    monkeypatch.setenv("HOME", str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setattr(pages._shared, "CHECKPOINTS", checkpoints)
    for name, base in (("imdb-diffusion", 0.6), ("imdb-ar", 0.7)):
        (checkpoints / name).mkdir(parents=True)
        (checkpoints / name / "textdiff.json").write_text(json.dumps(
            {"steps": 1600, "config": {"batch_size": 16}, "data": {"n": 20000}, "num_processes": 1}))
        lines = [json.dumps({"step": s, "loss": 3.0, "val_accuracy": base + s / 1e4, "val_n": 4})
                 for s in (400, 800, 1200, 1600)]  # written before records carried their epoch
        lines = [json.dumps(json.loads(line) | {"epoch": s * 16 / 20000})
                 for line, s in zip(lines, (400, 800, 1200, 1600), strict=True)]
        (checkpoints / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert not (checkpoints / "shipped-campaign.json").exists()
    at = _open()
    curves = next(t for t in page_tables(at) if "reading" in t and "measure" in t)
    assert set(curves["measure"]) == {"accuracy"}
    rows = set(zip(curves["run"], curves["epoch"], curves["value"], strict=True))
    assert rows == {(name, e, base + s / 1e4) for name, base in (("imdb-diffusion", 0.6), ("imdb-ar", 0.7))
                    for s, e in ((400, 0.32), (800, 0.64), (1200, 0.96), (1600, 1.28))}, rows
    shipped = next(t for t in page_tables(at) if set(t) == {"run", "epoch"})
    assert dict(zip(shipped["run"], shipped["epoch"], strict=True)) == {"imdb-diffusion": 1.28, "imdb-ar": 1.28}
    assert _by_epoch(at) == [("line: accuracy", 8), ("line: perplexity", 0), ("rule: epoch", 2)], \
        "the accuracy curves drawn (no perplexity was logged before the campaigns) and both rules"


def test_a_shipped_campaign_pair_shows_every_epoch_of_the_campaign_not_only_those_up_to_its_own(tmp_path,
                                                                                                 monkeypatch):
    import pages._shared

    monkeypatch.setenv("HOME", str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setattr(pages._shared, "CHECKPOINTS", checkpoints)
    epochs = {}
    for twin, name, shipped in (("diffusion", "imdb-diffusion", 2), ("ar", "imdb-ar", 1)):
        (checkpoints / name).mkdir(parents=True)
        rows = [json.loads(_boundary(4 * e, e, 0.6 + 0.05 * e, 0.7, 60.0 / e)) for e in (1, 2, 3)]
        epochs[twin] = rows
        (checkpoints / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:shipped]))
    (checkpoints / "shipped-campaign.json").write_text(json.dumps({
        "epochs": epochs, "shipped": {"diffusion": 2, "ar": 1},
        "directories": {"diffusion": "imdb-diffusion", "ar": "imdb-ar"}}))
    at = _open()
    curves = next(t for t in page_tables(at) if "reading" in t and "measure" in t)
    assert {(r, e) for r, e in zip(curves["run"], curves["epoch"], strict=True)} == {
        (r, float(e)) for r in ("imdb-diffusion", "imdb-ar") for e in (1, 2, 3)}
    _every_layer_draws(at, ("line: accuracy", "line: perplexity"))  # no run records its epoch: no rules
