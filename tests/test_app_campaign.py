"""The Training page's view of the pair by epoch: a campaign directory and the shipped pair (AppTest)."""

import json
from pathlib import Path

import pyarrow as pa
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _tables(at: AppTest) -> list[dict]:
    """Every dataset of every chart on the page, as column -> values."""
    tables = []
    for chart in at.get("vega_lite_chart"):
        for dataset in chart.proto.datasets:
            tables.append(pa.ipc.open_stream(dataset.data.data).read_all().to_pydict())
    return tables


def _open(path: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/training.py").run()
    if path:
        at.selectbox(key="run_choice").set_value("other…").run()
        at.text_input(key="run_path").set_value(path).run()
    assert not at.exception and not at.error
    return at


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
    curves = next(t for t in _tables(at) if "reading" in t and "measure" in t)
    rows = list(zip(curves["run"], curves["epoch"], curves["measure"], curves["value"], strict=True))
    assert {(r, e) for r, e, _, _ in rows} == {(r, float(e)) for r in ("diffusion", "ar") for e in (1, 2, 3)}
    assert ("ar", 2.0, "perplexity", 30.0) in rows and ("diffusion", 3.0, "accuracy", 0.6 + 0.15) in rows
    assert len({reading for reading in curves["reading"]}) == 3, "both accuracy readings and the perplexity"
    shipped = next(t for t in _tables(at) if set(t) == {"run", "epoch"})
    assert sorted(zip(shipped["run"], shipped["epoch"], strict=True)) == [("ar", 2), ("diffusion", 3)]


def test_the_shipped_pair_opens_with_its_validation_by_epoch_and_the_shipped_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no runs of one's own: the page opens on the shipped pair
    at = _open()
    curves = next(t for t in _tables(at) if "reading" in t and "measure" in t)
    root = Path(APP).parent / "checkpoints"
    assert set(curves["run"]) == {"imdb-diffusion", "imdb-ar"}
    if not (root / "shipped-campaign.json").is_file():  # a pair trained by steps, validated every 400
        assert set(curves["measure"]) == {"accuracy"}
        assert all(0 < e < 2 for e in curves["epoch"]), "validated by step, placed at its fractional epoch"
    shipped = next(t for t in _tables(at) if set(t) == {"run", "epoch"})
    for name, epoch in zip(shipped["run"], shipped["epoch"], strict=True):
        meta = json.loads((root / name / "textdiff.json").read_text())
        expected = meta.get("total_epochs", meta.get("epochs")) or meta["steps"] * meta["config"]["batch_size"] / \
            meta["data"]["n"]
        assert abs(epoch - expected) < 1e-3, (name, epoch, expected)


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
    curves = next(t for t in _tables(at) if "reading" in t and "measure" in t)
    assert {(r, e) for r, e in zip(curves["run"], curves["epoch"], strict=True)} == {
        (r, float(e)) for r in ("imdb-diffusion", "imdb-ar") for e in (1, 2, 3)}
