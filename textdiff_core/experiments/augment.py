"""Real only against real + synthetic reviews, everything else equal: the data-constrained arm of the synthetic-data
question.

For each real size U (the crossover's nested subsets of the training split) there are arms: the U real reviews
alone, and for each synthetic set (a ``synthesize`` CSV) the same U reviews plus round(ratio x U) of the rows its
judge kept (class-balanced, in the CSV's order). Every arm trains both twins from scratch as a crossover grid of one
size (``crossover.run_crossover``): one architecture, one tokenizer and one initialisation for every arm, the same
step budget, optimiser, seed and validation points. Only the training rows differ. Validation and test reviews are
real (``val_data``) and never in any arm's training rows.

Each twin's point is chosen on validation: the lowest bits per token for likelihood; for classification, the
highest validation accuracy of either reading (Bayes or infill). That point is read once on the test reviews, where
each synthetic arm is compared with the real-only arm review by review: the paired difference in bits per token
and in accuracy, with 95% intervals and McNemar's p.

    OUT/u-NNNNN/<arm>.jsonl   an arm's training rows (a split column: every row trains)
    OUT/u-NNNNN/<arm>/        its grid (crossover.json; u-*/validation.json holds validation and test scores)
    OUT/augment.json          the analysis, rewritten after every arm (run the command again to continue)

With ``start`` checkpoints (the grid's ``start``: a trained pair, e.g. the shipped one) every arm fine-tunes that pair
instead of training from scratch, and the pair itself, not fine-tuned, is scored once on the same validation and test
reviews (``OUT/u-NNNNN/reference.json``) as the reference both arms set out from.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from textdiff_core.checkpoint import format_prompt
from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import paired_difference as paired_accuracy
from textdiff_core.evaluate import wilson_interval
from textdiff_core.experiments.crossover import CrossoverConfig, command_line, run_crossover
from textdiff_core.experiments.grid import (
    TWINS,
    init_dir,
    paired_difference,
    read_results,
    score_point,
    size_dir,
    subset,
    summarise,
    validation_set,
)
from textdiff_core.experiments.render import AUGMENT_SAMPLES
from textdiff_core.experiments.synthesize import provenance
from textdiff_core.paths import write_atomic, write_file

REAL = "real"
RESULTS = "augment.json"
READINGS = ("bayes", "infill")


@dataclass
class AugmentConfig:
    """The experiment: a crossover grid's settings (its ``sizes`` are the real sizes U, its ``out`` the experiment's
    directory), the synthetic sets, and how many synthetic rows each real one gets."""

    grid: CrossoverConfig
    synthetic: list[str] = field(default_factory=list)  # synthesize CSVs: each one arm, real + its kept rows
    ratio: float = 1.0  # synthetic rows per real review in a synthetic arm

    def __post_init__(self) -> None:
        if not self.synthetic:
            raise TextdiffError("give at least one --synthetic CSV (written by train_cli.py synthesize)")
        missing = [s for s in self.synthetic if not Path(s).expanduser().is_file()]
        if missing:
            raise TextdiffError(f"synthetic set not found: {missing[0]}")
        names = [arm_name(s) for s in self.synthetic]
        if len(set(names)) != len(names):
            raise TextdiffError(f"two synthetic sets share a file name ({', '.join(names)}); rename one")
        if not 0 < self.ratio <= 100:
            raise TextdiffError(f"--ratio must be in (0, 100], got {self.ratio}")
        if self.grid.test_size < 2:
            raise TextdiffError("the experiment reports on test reviews: give --test-size (at least 2)")

    def arms(self) -> list[str]:
        return [REAL] + [arm_name(s) for s in self.synthetic]


def arm_name(path: str) -> str:
    return f"{REAL}+{Path(path).stem}"


def synthetic_rows(path: str, classes: list[str], count: int) -> tuple[list[str], list[str]]:
    """``count`` rows the judge kept (texts, class names), class-balanced over ``classes``, each class's first in the
    CSV's order (its seed order)."""
    data = load_data(str(Path(path).expanduser()), "all", min_classes=1)
    by_class: dict[str, list[str]] = {c: [] for c in classes}
    for text, label in zip(data.texts, data.labels, strict=True):
        name = str(data.classes[label])
        if name in by_class:
            by_class[name].append(text)
    share = [count // len(classes) + (1 if i < count % len(classes) else 0) for i in range(len(classes))]
    short = [f"{c} ({len(by_class[c])} of {n})" for c, n in zip(classes, share, strict=True) if len(by_class[c]) < n]
    if short:
        raise TextdiffError(f"{path} keeps too few rows for ratio x U = {count}: {', '.join(short)}")
    texts, labels = [], []
    for c, n in zip(classes, share, strict=True):
        texts += by_class[c][:n]
        labels += [c] * n
    return texts, labels


def write_arm(path: Path, texts: list[str], labels: list[str]) -> None:
    """An arm's training rows as JSON Lines, every row in the train split."""
    body = "".join(json.dumps({"text": t, "label": lab, "split": "train"}) + "\n" for t, lab in zip(texts, labels,
                                                                                                  strict=True))
    write_file(path, lambda tmp: tmp.write_text(body))


def arm_grid(config: AugmentConfig, size: int, steps: int, arm: str, rows: Path, n_rows: int,
             tokenizer: str | None) -> CrossoverConfig:
    """The one-size crossover grid that trains an arm's twins."""
    g = config.grid
    return replace(g, out=str(size_dir(Path(g.out), size) / arm), sizes=[n_rows], steps=[steps],
                   train=replace(g.train, data=[str(rows)]), val_data=g.val_data or list(g.train.data),
                   tokenizer=tokenizer, control_mask=0.0, control_sizes=[])


def run_augment(config: AugmentConfig, progress: bool = True, say=print) -> dict:
    """Build every arm's rows (all of them first, so a set with too few kept rows stops the run before any training),
    train what is missing (resuming), and write the analysis."""
    out = Path(config.grid.out)
    out.mkdir(parents=True, exist_ok=True)
    arms: list[tuple[int, int, str, Path, int]] = []
    for size, steps in zip(config.grid.sizes, config.grid.steps, strict=True):
        real = subset(config.grid, size)
        classes = [str(c) for c in real.classes]
        real_texts, real_labels = list(real.texts), [classes[i] for i in real.labels]
        for arm in config.arms():
            texts, labels = real_texts, real_labels
            if arm != REAL:
                path = config.synthetic[[arm_name(s) for s in config.synthetic].index(arm)]
                extra, extra_labels = synthetic_rows(path, classes, round(config.ratio * size))
                texts, labels = texts + extra, labels + extra_labels
            rows = size_dir(out, size) / f"{arm}.jsonl"
            write_arm(rows, texts, labels)
            arms.append((size, steps, arm, rows, len(texts)))
    tokenizer = config.grid.tokenizer
    for size, steps, arm, rows, n_rows in arms:
        grid = arm_grid(config, size, steps, arm, rows, n_rows, tokenizer)
        say(f"U={size} {arm}: {n_rows} training reviews ({n_rows - size} synthetic), {steps} steps")
        run_crossover(grid, probe_steps=0, progress=progress, say=say)
        if config.grid.start:
            score_reference(config, size, say)
        if tokenizer is None and not config.grid.start:  # later arms share the real arm's tokenizer and initialisation
            tokenizer = str(Path(grid.out) / "init" / "tokenizer.json")
        _write(out / RESULTS, analyse(config))
    return analyse(config)


REFERENCE = "reference.json"


def score_reference(config: AugmentConfig, size: int, say=print) -> None:
    """The ``start`` pair itself, not fine-tuned, on the grid's validation and test reviews (once per size; the same
    scoring and noise seeds as every fine-tuned point): ``OUT/u-NNNNN/reference.json``."""
    path = size_dir(Path(config.grid.out), size) / REFERENCE
    if path.is_file():
        return
    g = config.grid
    grid = replace(g, val_data=g.val_data or list(g.train.data))
    validation, test = validation_set(grid), validation_set(grid, "test")
    prompts = [format_prompt(g.train.class_prompt, c) for c in validation.classes]
    scores = {}
    for twin in TWINS:
        per_text = score_point(g, init_dir(g, twin), validation, test, prompts)
        scores[twin] = {"0": per_text | {"epoch": 0.0}}
        say(f"U={size} reference {twin} ({init_dir(g, twin)}, not fine-tuned): "
            f"{summarise(per_text)['bits_per_token']:.3f} bits/token on validation")
    _write(path, {"start": list(g.start)} | scores)


def _reference(config: AugmentConfig, size: int) -> dict:
    """The ``start`` pair's chosen readings on test, per twin ({} without start checkpoints or before scoring)."""
    path = size_dir(Path(config.grid.out), size) / REFERENCE
    if not config.grid.start or not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    return {twin: choose({0: stored[twin]["0"]}) for twin in TWINS if twin in stored}


def _first_per_class(rows: list[dict]) -> list[dict]:
    """The first ``AUGMENT_SAMPLES`` rows of each class, in the CSV's (seed) order."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    return [r for label in labels for r in [r for r in rows if r["label"] == label][:AUGMENT_SAMPLES]]


def _write(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _points(config: AugmentConfig, size: int, arm: str) -> dict[str, dict[int, dict]]:
    """The validated points of an arm's twins: {twin: {step: per-text validation values (and "test")}}."""
    grid_dir = size_dir(Path(config.grid.out), size) / arm
    stores = sorted(grid_dir.glob("u-*/validation.json"))
    if not stores:
        return {}
    points = json.loads(stores[0].read_text())
    return {t: {int(s): p for s, p in points.get(t, {}).items()} for t in TWINS}


def choose(points: dict[int, dict]) -> dict | None:
    """A twin's points chosen on validation and read on test: the likelihood point (lowest validation bits per
    token) and the classification point and reading (highest validation accuracy; the earlier point on a tie)."""
    scored = {s: p for s, p in points.items() if "test" in p}
    if not scored:
        return None
    val = {s: summarise(p) for s, p in scored.items()}
    lik = min(val, key=lambda s: (val[s]["bits_per_token"], s))
    cls, reading = max(((s, r) for s in val for r in READINGS), key=lambda sr: (val[sr[0]][f"accuracy_{sr[1]}"],
                                                                             -sr[0], sr[1] == "infill"))
    test_lik, test_cls = summarise(scored[lik]["test"]), scored[cls]["test"][reading]
    right = sum(test_cls)
    return {"likelihood_step": lik, "validation_bits_per_token": val[lik]["bits_per_token"],
            "test_bits_per_token": test_lik["bits_per_token"], "test_bits_per_token_ci95": test_lik[
                "bits_per_token_ci95"], "test_bits_per_byte": test_lik["bits_per_byte"],
            "classification_step": cls, "reading": reading,
            "validation_accuracy": val[cls][f"accuracy_{reading}"], "test_accuracy": right / len(test_cls),
            "test_accuracy_ci95": list(wilson_interval(right, len(test_cls))), "test_n": len(test_cls),
            "epoch": scored[lik].get("epoch")}


def analyse(config: AugmentConfig) -> dict:
    """Per U, arm and twin: the chosen points read on test, and every synthetic arm against the real-only arm."""
    rows = []
    for size in config.grid.sizes:
        arms: dict[str, dict] = {}
        points = {arm: _points(config, size, arm) for arm in config.arms()}
        for arm in config.arms():
            arms[arm] = {twin: choose(points[arm].get(twin, {})) for twin in TWINS}
            for twin in TWINS:
                base, mine = arms[REAL][twin], arms[arm][twin]
                if arm == REAL or not base or not mine:
                    continue
                real_points, arm_points = points[REAL][twin], points[arm][twin]
                bits = paired_difference(arm_points[mine["likelihood_step"]]["test"],
                                         real_points[base["likelihood_step"]]["test"])
                accuracy = paired_accuracy(arm_points[mine["classification_step"]]["test"][mine["reading"]],
                                           real_points[base["classification_step"]]["test"][base["reading"]])
                mine["against_real"] = {"bits_per_token": bits, "accuracy": accuracy}
        rows.append({"unique_reviews": size, "arms": arms} | ({"reference": ref} if (ref := _reference(config, size))
                                                              else {}))
    synthetic = {}
    for path in config.synthetic:
        sidecar = Path(path).expanduser().with_name(Path(path).name + ".json")
        record = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        seen = provenance(path, samples=None) or {}
        synthetic[arm_name(path)] = {"path": path, "report": record.get("report"),
                                     "generator": (record.get("config") or {}).get("checkpoint"),
                                     "kept_by_class": dict(Counter(r["label"] for r in seen.get("kept", []))),
                                     "kept_samples": _first_per_class(seen.get("kept", [])),
                                     "dropped_samples": _first_per_class(seen.get("dropped", []))}
    done = all(read_results(size_dir(Path(config.grid.out), size) / arm).get("finished", False)
               for size in config.grid.sizes for arm in config.arms())
    if config.grid.start:
        done = done and all((size_dir(Path(config.grid.out), size) / REFERENCE).is_file() for size in config.grid.sizes)
    return {"command": command(config),
            "config": {"grid": config.grid.to_dict(), "synthetic": config.synthetic, "ratio": config.ratio},
            "synthetic": synthetic, "sizes": rows, "finished": done,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}


def command(config: AugmentConfig) -> str:
    """The ``augment`` command that repeats this experiment, every setting spelled out."""
    grid = shlex.split(command_line(config.grid))
    at = grid.index("crossover")
    return shlex.join([*grid[:at], "augment", *grid[at + 1:], "--synthetic", ",".join(config.synthetic),
                       "--ratio", f"{config.ratio:g}"])
