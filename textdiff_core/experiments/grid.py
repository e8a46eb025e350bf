"""A crossover grid's shared pieces, for the experiments that run grids (``crossover``; ``augment``, whose arms are
grids of one size): where a grid lies on disk (``size_dir``, ``init_dir``, its record ``RESULTS``: ``read_results``,
``write_json``), the reviews it trains and validates on (``subset``, ``validation_set``), and how one validation
point is scored (``validate``, ``score_point``) and summarised (``summarise``, ``paired_difference``,
``ratio_interval``). The settings these read are those of a ``crossover.CrossoverConfig`` (``GridSettings`` names
them); nothing here trains.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Protocol

import torch

from textdiff_core.classify import class_scores
from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import wilson_interval
from textdiff_core.likelihood import infill_scores
from textdiff_core.models import load_model
from textdiff_core.settings import TrainConfig
from textdiff_core.tokens import class_slot

TWINS = ("diffusion", "ar")
RESULTS = "crossover.json"  # a grid's record, in its directory
BITS = 1.0 / math.log(2.0)  # nats -> bits


class GridSettings(Protocol):
    """What the pieces here read of a grid's settings (``crossover.CrossoverConfig`` has them all)."""

    out: str  # grid directory
    train: TrainConfig  # the shared training settings (data, columns, seed, max_length)
    val_data: list[str] | None  # where the validation and test reviews come from (None: the training data)
    val_size: int  # validation reviews
    val_samples: int  # ELBO Monte Carlo samples per text and class
    test_size: int  # test reviews (0: none)
    start: list[str] | None  # trained checkpoints (diffusion, left to right) the twins continue from


# ----------------------------------------------------------------------------------------------- on disk, data


def size_dir(out: Path, size: int) -> Path:
    """A size's directory in the grid: ``OUT/u-NNNNN``."""
    return out / f"u-{size:05d}"


def init_dir(config: GridSettings, objective: str) -> Path:
    """Where a twin of the grid starts: ``OUT/init/<objective>``, or its ``start`` checkpoint."""
    if config.start:
        return Path(config.start[TWINS.index(objective)]).expanduser()
    return Path(config.out) / "init" / objective


def subset(config: GridSettings, size: int):
    """The U training reviews of a grid point: the first ``size`` of the seeded class-balanced order (nested)."""
    t = config.train
    return load_data(t.data, "train", text_col=t.text_col, label_col=t.label_col, min_classes=2, max_samples=size,
                     seed=t.seed)


def validation_set(config: GridSettings, split: str = "validation"):
    """The fixed validation reviews (the validation split of ``val_data``, else of the training data;
    class-balanced, seed 0): the same for every U and twin. ``split="test"``: the test reviews, ``test_size`` of
    them."""
    t = config.train
    return load_data(config.val_data or t.data, split, text_col=t.text_col, label_col=t.label_col, min_classes=2,
                     max_samples=config.val_size if split == "validation" else config.test_size, seed=0)


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, written whole (a temporary file renamed over it)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_results(out: str | Path) -> dict:
    """crossover.json of a grid directory (or the file itself), {} when there is none; one-line error when broken."""
    path = Path(out)
    path = path / RESULTS if path.is_dir() else path
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise TextdiffError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("runs", []), list):
        raise TextdiffError(f"{path} is not a crossover grid's results (a JSON object with its runs)")
    return data


# -------------------------------------------------------------------------------------------------- validation


def ratio_interval(num: list[float], den: list[float], z: float = 1.96) -> tuple[float, list[float]]:
    """sum num / sum den over texts and its 95% interval (delta method for a ratio, texts as a random sample)."""
    n, total_num, total_den = len(num), sum(num), sum(den)
    rate = total_num / total_den
    if n < 2:
        return rate, [rate, rate]
    mean_den = total_den / n
    residual = sum((a - rate * b) ** 2 for a, b in zip(num, den, strict=True)) / (n - 1)
    half = z * math.sqrt(residual / n) / mean_den
    return rate, [rate - half, rate + half]


def validate(lm, texts: list[str], labels: list[int], prompts: list[str], samples: int, seed: int,
             max_length: int) -> dict:
    """Score a model on the validation reviews, first window of each: per text the NLL (nats) of the text given its
    own class word (the ELBO bound for a masked model with ``samples`` draws, exact for a causal one), its tokens and
    bytes, and whether each classifier reading is right (Bayes: the class whose prompt gives the lower NLL; infill:
    the class word's distribution with the whole window shown). Text i's noise is seeded by (seed, i), so every
    model and every point sees the same masks."""
    slot = class_slot(lm.tokenizer, prompts)
    nll, tokens, n_bytes, bayes, infill = [], [], [], [], []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        scores = class_scores(lm, text, prompts, samples, generator, max_length, max_windows=1)
        nll.append(scores[label].nll)
        tokens.append(scores[label].n_tokens)
        n_bytes.append(_window_bytes(lm.tokenizer, text, scores[label].n_tokens))
        bayes.append(int(min(range(len(scores)), key=lambda c: scores[c].nll) == label))
        read = infill_scores(lm, text, slot, max_length, max_windows=1)
        infill.append(int(read.log_posteriors[0].argmax().item() == label))
    return {"nll": nll, "tokens": tokens, "bytes": n_bytes, "bayes": bayes, "infill": infill}


def score_point(config: GridSettings, source: str | Path, validation, test, prompts: list[str]) -> dict:
    """The model at ``source`` scored on the validation reviews (``validate``), and on the test reviews too when
    there are any (under "test": scored at every point, read only at the point validation chooses)."""
    lm = load_model(str(source), device="cpu" if not torch.cuda.is_available() else None, dtype=torch.float32)
    per_text = validate(lm, validation.texts, validation.labels, prompts, config.val_samples, config.train.seed,
                        config.train.max_length)
    if test is not None:
        per_text["test"] = validate(lm, test.texts, test.labels, prompts, config.val_samples, config.train.seed,
                                    config.train.max_length)
    return per_text


def summarise(per_text: dict) -> dict:
    """Bits per token and per byte with intervals, and both readings' accuracy with Wilson intervals."""
    bits = [x * BITS for x in per_text["nll"]]
    bpt, bpt_ci = ratio_interval(bits, per_text["tokens"])
    bpb, bpb_ci = ratio_interval(bits, per_text["bytes"])
    n = len(bits)
    out = {"bits_per_token": bpt, "bits_per_token_ci95": bpt_ci, "bits_per_byte": bpb, "bits_per_byte_ci95": bpb_ci,
           "n": n, "tokens": sum(per_text["tokens"])}
    for reading in ("bayes", "infill"):
        right = sum(per_text[reading])
        out[f"accuracy_{reading}"] = right / n
        out[f"accuracy_{reading}_ci95"] = list(wilson_interval(right, n))
    return out


def _window_bytes(tokenizer, text: str, n_tokens: int) -> int:
    """UTF-8 bytes of the part of ``text`` that its first ``n_tokens`` tokens cover (offsets, lower-casing aside)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return len(text[: offsets[min(n_tokens, len(offsets)) - 1][1]].encode())


def paired_difference(a: dict, b: dict) -> dict:
    """Bits per token of A minus B on the same texts (the same windows, so the same token counts), with the
    interval of the paired per-text differences."""
    if a["tokens"] != b["tokens"]:
        raise TextdiffError("the two readings are not on the same validation windows")
    diff = [(x - y) * BITS for x, y in zip(a["nll"], b["nll"], strict=True)]
    rate, ci = ratio_interval(diff, a["tokens"])
    return {"difference_bits_per_token": rate, "ci95": ci}
