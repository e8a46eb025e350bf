"""Tests for textdiff_core.data: offline datasets, files, mixes, sampling and every user-facing error."""

import hashlib
import json
import time
from pathlib import Path

import pytest

from textdiff_core.data import (
    OFFLINE_DATASETS,
    SPLIT_FRACTIONS,
    SPLITS,
    TextDataset,
    clean_text,
    load_data,
    split_of,
)
from textdiff_core.errors import DataError, TextdiffError


def _texts_in(split: str, n: int, prefix: str = "row") -> list[str]:
    """``n`` distinct texts that split_of puts into ``split`` (so file tests know what each split holds)."""
    out, i = [], 0
    while len(out) < n:
        text = f"{prefix} number {i}"
        if split_of(text) == split:
            out.append(text)
        i += 1
    return out


def _write_csv(path: Path, rows: list[tuple[str, object]], header: str = "text,label") -> Path:
    lines = [header] + [f'"{t}",{label}' for t, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ text and splits


def test_constants() -> None:
    assert OFFLINE_DATASETS == ("imdb", "rotten_tomatoes")
    assert SPLITS == ("train", "validation", "test")
    assert SPLIT_FRACTIONS == {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_clean_text() -> None:
    assert clean_text("a<br />b<BR/>c<br>d  \n\t e ") == "a b c d e"
    assert clean_text("  <br /><br />  ") == ""


def test_split_of_bucket_rule_and_stability() -> None:
    # the rule, recomputed independently
    for text in ["hello world", "example 3", "example 1"]:
        bucket = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 100
        expected = "train" if bucket < 80 else "validation" if bucket < 90 else "test"
        assert split_of(text) == expected
    # hard-coded: these must never change (buckets 37, 81, 90)
    assert split_of("hello world") == "train"
    assert split_of("example 1") == "validation"
    assert split_of("example 3") == "test"
    # decided on the cleaned text
    assert split_of("  example<br />1 ") == split_of("example 1")


# ---------------------------------------------------------------------------------------------------- offline data


def test_imdb_splits() -> None:
    parts = {s: load_data("imdb", s) for s in SPLITS}
    assert sum(len(d) for d in parts.values()) == 25_000
    sets = {s: set(d.texts) for s, d in parts.items()}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    for s, d in parts.items():
        assert abs(100 * len(d) / 25_000 - 100 * SPLIT_FRACTIONS[s]) < 1.5, (s, len(d))
        assert d.classes == ["negative", "positive"]
        assert all(n > 0 for n in d.class_counts().values())
        assert d.split == s
        assert set(d.sources) == {"imdb"}
        assert not any("<br" in t.lower() for t in d.texts)


def test_rotten_tomatoes() -> None:
    d = load_data("rotten_tomatoes", min_classes=2)
    assert d.classes == ["negative", "positive"]
    assert 0.75 * 8530 < len(d) < 0.85 * 8530
    assert set(d.class_counts()) == {"negative", "positive"}


def test_offline_unlabelled_and_all() -> None:
    d = load_data("rotten_tomatoes", "all", label_col=None)
    assert len(d) == 8530
    assert d.labels is None and d.classes == [] and d.class_counts() == {}


# ----------------------------------------------------------------------------------------------------------- files


def test_csv_name_labels(tmp_path: Path) -> None:
    rows = [(t, "positive") for t in _texts_in("train", 4, "good")] + [(t, "negative") for t in _texts_in("train", 3)]
    rows += [(t, "neutral") for t in _texts_in("test", 2)]
    path = _write_csv(tmp_path / "reviews.csv", rows)
    d = load_data(str(path))
    assert d.classes == ["negative", "positive"]
    assert d.class_counts() == {"negative": 3, "positive": 4}
    assert d.texts == [t for t, _ in rows[:7]]  # original order kept
    test = load_data(str(path), "test")
    assert test.classes == ["neutral"] and len(test) == 2
    everything = load_data(str(path), "all")
    assert everything.classes == ["negative", "neutral", "positive"] and len(everything) == 9


def test_csv_int_labels(tmp_path: Path) -> None:
    texts = _texts_in("train", 6)
    path = _write_csv(tmp_path / "ints.csv", [(t, [2, 0, 5][i % 3]) for i, t in enumerate(texts)])
    d = load_data(path.as_posix())
    assert d.classes == ["0", "2", "5"]
    assert d.labels == [1, 0, 2, 1, 0, 2]


def test_jsonl_and_json(tmp_path: Path) -> None:
    texts = _texts_in("train", 4)
    records = [{"body": t, "y": "1" if i % 2 else "0", "extra": i} for i, t in enumerate(texts)]
    records.append({"body": None, "y": "1"})  # dropped: no text
    records.append({"body": " <br /> ", "y": "0"})  # dropped: empty after cleaning
    for name in ("d.jsonl", "d.json"):
        path = _write_jsonl(tmp_path / name, records)
        d = load_data([str(path)], text_col="body", label_col="y")
        assert d.texts == texts
        assert d.classes == ["0", "1"] and d.labels == [0, 1, 0, 1]
        assert load_data(str(path), text_col="body", label_col=None).labels is None


def test_mix_unifies_classes_and_describe(tmp_path: Path) -> None:
    rows = [(t, "neutral") for t in _texts_in("train", 3)] + [(t, "positive") for t in _texts_in("train", 2, "x")]
    path = _write_csv(tmp_path / "synthetic.csv", rows)
    d = load_data(f"imdb, {path}")
    assert d.classes == ["negative", "positive", "neutral"]
    info = json.loads(json.dumps(d.describe()))
    assert info["split"] == "train" and info["n"] == len(d)
    assert [s["spec"] for s in info["sources"]] == ["imdb", str(path)]
    imdb_n = info["sources"][0]["n"]
    assert info["sources"][1] == {
        "spec": str(path),
        "n": 5,
        "class_counts": {"negative": 0, "positive": 2, "neutral": 3},
    }
    assert imdb_n + 5 == len(d) and info["class_counts"]["neutral"] == 3
    assert d.labels is not None and d.labels[-5:] == [2, 2, 2, 1, 1]
    # integer labels index into the classes of earlier sources
    int_path = _write_csv(tmp_path / "ints.csv", [(t, 1) for t in _texts_in("train", 2, "y")])
    mixed = load_data(["rotten_tomatoes", str(int_path)])
    assert mixed.classes == ["negative", "positive"] and mixed.labels is not None and mixed.labels[-2:] == [1, 1]


def test_subset() -> None:
    d = TextDataset(texts=["a", "b", "c"], labels=[0, 1, 1], classes=["n", "p"], sources=["s"] * 3, split="test")
    sub = d.subset([2, 0])
    assert sub.texts == ["c", "a"] and sub.labels == [1, 0] and sub.split == "test" and len(sub) == 2
    assert sub.class_counts() == {"n": 1, "p": 1}


# --------------------------------------------------------------------------------------------------------- sampling


def test_max_samples_balanced_and_deterministic(tmp_path: Path) -> None:
    rows = [(t, "a") for t in _texts_in("train", 30, "a")] + [(t, "b") for t in _texts_in("train", 4, "b")]
    rows += [(t, "c") for t in _texts_in("train", 30, "c")]
    path = _write_csv(tmp_path / "skewed.csv", rows)
    d1 = load_data(str(path), max_samples=12, seed=1)
    assert len(d1) == 12 and d1.class_counts() == {"a": 4, "b": 4, "c": 4}
    d2 = load_data(str(path), max_samples=20, seed=1)
    assert d2.class_counts() == {"a": 8, "b": 4, "c": 8}  # b is exhausted, the rest stay balanced
    assert load_data(str(path), max_samples=12, seed=1).texts == d1.texts
    assert load_data(str(path), max_samples=12, seed=2).texts != d1.texts
    assert load_data(str(path), max_samples=1000).texts == load_data(str(path)).texts
    big = load_data("imdb", max_samples=50, seed=0)
    assert big.class_counts() == {"negative": 25, "positive": 25}
    unl = load_data(str(path), label_col=None, max_samples=7, seed=3)
    assert len(unl) == 7 and unl.texts == load_data(str(path), label_col=None, max_samples=7, seed=3).texts


def test_min_classes(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "x.csv", [(t, "positive") for t in _texts_in("train", 3)])
    assert len(load_data(str(path))) == 3
    with pytest.raises(DataError, match=r"has 1 class \('positive'\).*at least 2"):
        load_data(str(path), min_classes=2)
    with pytest.raises(DataError, match="unlabelled"):
        load_data(str(path), label_col=None, min_classes=2)


# ----------------------------------------------------------------------------------------------------------- errors


def test_error_is_textdiff_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A data problem reaches the commands as the error they report in one line (exit 2), not as a traceback."""
    from train_cli import main

    path = tmp_path / "no-label.csv"
    path.write_text("text,stars\nfine,1\n", encoding="utf-8")
    with pytest.raises(TextdiffError, match="no label column"):
        load_data(str(path))
    assert main(["train", "--model", "tiny", "--data", str(path), "--conditioning", "class", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no label column" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data file not found"):
        load_data(str(tmp_path / "nope.csv"))


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("text,label\nhello,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"unsupported data file type '\.txt'"):
        load_data(str(path))


def test_missing_text_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "cols.csv", [("hello", 1)], header="review,label")
    with pytest.raises(DataError, match="no text column 'text'; available columns: review, label"):
        load_data(str(path))


def test_missing_label_column(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "cols.jsonl", [{"text": "hello", "sentiment": 1}])
    with pytest.raises(DataError, match="no label column 'label'; available columns: text, sentiment"):
        load_data(str(path))


@pytest.mark.parametrize("content", ["", "  \n", "text,label\n", 'text,label\n"",1\n" <br /> ",0\n'])
def test_empty_file_or_no_rows(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="empty|no rows"):
        load_data(str(path), "all")


def test_no_rows_in_split(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "tiny.csv", [(t, 0) for t in _texts_in("train", 2)])
    with pytest.raises(DataError, match="no rows in the 'test' split"):
        load_data(str(path), "test")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as info:
        load_data(str(path), "all")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_invalid_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": 1}\n{"text": "broken", \n', encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON Lines"):
        load_data(str(path), "all")


def test_nan_labels(tmp_path: Path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("text,label\na,1\nb,\nc,\nd,0\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 rows with text have no label"):
        load_data(str(path), "all")


def test_int_label_out_of_range(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "ints.csv", [(t, 2) for t in _texts_in("train", 2)])
    with pytest.raises(DataError, match="integer label 2 is out of range"):
        load_data(f"rotten_tomatoes,{path}")


def test_unknown_split() -> None:
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_data("imdb", "dev")


def test_mixed_labelled_and_unlabelled(monkeypatch: pytest.MonkeyPatch) -> None:
    from textdiff_core import data

    def fake_hub(spec: str, name: str, split: str, text_col: str, label_col: str | None) -> data._Part:
        return data._Part(spec=spec, texts=["plain text"], raw_labels=None)

    monkeypatch.setattr(data, "_load_hub", fake_hub)
    with pytest.raises(DataError, match="cannot mix labelled and unlabelled"):
        load_data("rotten_tomatoes,some/corpus")


def test_bad_specs_and_max_samples() -> None:
    with pytest.raises(DataError, match="no data given"):
        load_data(" , ")
    with pytest.raises(DataError, match="max_samples"):
        load_data("imdb", max_samples=0)


def test_hub_offline_is_fast_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.monotonic()
    for spec in ("ag_news", "hf:imdb"):
        with pytest.raises(DataError, match="could not load dataset .* from the Hugging Face hub"):
            load_data(spec)
    assert time.monotonic() - start < 15


def test_hub_splits_and_class_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets  # a dependency (requirements.txt): never skipped
    train_texts = _texts_in("train", 6) + _texts_in("validation", 3) + _texts_in("test", 2)
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["bad", "ok"])}
    )
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": train_texts, "label": [i % 2 for i in range(len(train_texts))]}, features=features
            ),
            "test": datasets.Dataset.from_dict(
                {"sentence": ["t1<br />x", "t2", "t3"], "label": [1, -1, 0]}, features=features
            ),
        }
    )
    calls: list[str] = []

    def fake_load_dataset(name: str, **kwargs: object) -> object:
        calls.append(name)
        return hub

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    train = load_data("some/dataset", text_col="sentence", label_col="target")  # falls back to "label"
    assert train.classes == ["bad", "ok"]
    assert train.texts == train_texts[:6] + train_texts[9:]  # validation carved out, test kept (hub has its own)
    validation = load_data("hf:some/dataset", "validation", text_col="sentence")
    assert validation.texts == train_texts[6:9]
    test = load_data("some/dataset", "test", text_col="sentence")
    assert test.texts == ["t1 x", "t3"] and test.labels == [1, 0]  # -1 (hidden label) dropped
    assert calls == ["some/dataset"] * 3
    with pytest.raises(DataError, match="no text column 'text'; available columns: sentence, label"):
        load_data("some/dataset")


def test_a_file_with_a_split_column_says_each_rows_split_itself(tmp_path):
    import json as json_

    from textdiff_core.data import split_of

    rows = [{"text": f"review number {i} about a film", "label": ["neg", "pos"][i % 2], "split": "train"}
            for i in range(8)]
    rows[0]["split"] = "test"
    path = tmp_path / "arm.jsonl"
    path.write_text("".join(json_.dumps(r) + "\n" for r in rows))
    assert sorted(load_data(str(path), "train").texts) == sorted(r["text"] for r in rows[1:])
    assert load_data(str(path), "test").texts == [rows[0]["text"]]
    assert any(split_of(r["text"]) != "train" for r in rows[1:]), "the hash alone would have split them otherwise"
    rows[1]["split"] = "dev"
    path.write_text("".join(json_.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="'dev'"):
        load_data(str(path), "train")
