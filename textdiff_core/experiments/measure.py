"""The report's measuring: every figure the project shows, from the shipped checkpoints, into ``results.json``
(``render`` turns that record into RESULTS.md, the README block and the model cards).

    python train_cli.py report                 # the full report (about 2 h on 2 CPU cores)
    python train_cli.py report --quick         # a few examples per section, for CI
    python train_cli.py report --rerender      # measure nothing: rewrite the markdown from results.json

The repository the report reads and writes is ``--root`` (default: the current directory): its checkpoints, its
committed records (results/, bench/) and its README.

An interrupted report loses at most the piece it was measuring: each finished piece (a classification method, a
reading of the paired comparison, perplexity, decoding, samples) is kept in ``results.partial.json`` beside the
outputs, and running the same command again reuses them while the checkpoints and settings are unchanged
(``--fresh`` measures everything anew). The file is removed once the report is written.

Sections: classification on a fixed subset of the IMDB test split (accuracy with 95% CI, ECE, median latency) for
every method; the diffusion ELBO classifier against its left-to-right twin on the whole test split, paired (the
difference with its 95% interval and McNemar's test: a subset of 200 cannot tell a 1-point gap); perplexity on test
text (diffusion ELBO bound vs exact left-to-right); decoding speed and generative perplexity per strategy;
uncurated samples. Each section records the hardware and how long it took.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.classify import DISCRIMINATIVE, load_classifier
from textdiff_core.data import load_data
from textdiff_core.decoding import generate
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import evaluate_classifier, paired_difference
from textdiff_core.experiments.campaign import SHIP_RECORD, read_ship_record
from textdiff_core.experiments.crossover import measured_rates
from textdiff_core.experiments.decoding_bench import parse_args, run
from textdiff_core.experiments.grid import read_results
from textdiff_core.experiments.render import model_card, results_markdown, write_readme_table
from textdiff_core.likelihood import ar_scores, elbo_scores
from textdiff_core.models import device_name, load_model
from textdiff_core.paths import relative_to_root, write_atomic
from textdiff_core.progress import quiet_progress
from textdiff_core.records import ZERO_SHOT_REFERENCE, cross_fitted_accuracy
from textdiff_core.settings import CAUSAL, MASKED


@dataclass
class Method:
    name: str  # as shown in the table
    checkpoint: str  # "diffusion", "ar" or a model name
    method: str  # classify method
    samples: int = 0  # Monte Carlo samples (cap when adaptive)
    adaptive: bool = False
    limit_share: float = 1.0  # fraction of the classification subset (for expensive methods)


def methods(samples: int, reference: str) -> list[Method]:
    return [
        Method("diffusion ELBO, shared noise, adaptive", "diffusion", "elbo", samples, adaptive=True),
        Method(f"diffusion ELBO, shared noise, K={samples // 2}", "diffusion", "elbo", samples // 2),
        Method(f"diffusion ELBO, independent noise, K={samples // 2}", "diffusion", "elbo-indep", samples // 2),
        Method("diffusion pseudo-log-likelihood", "diffusion", "pll", limit_share=0.1),
        Method("MLM loss of a 15% mask (x5, fresh noise; RoBERTa recipe)", "diffusion", "mlm-loss", 5),
        Method("diffusion infill (class word masked, text visible)", "diffusion", "infill"),
        Method("left-to-right twin (exact)", "ar", "ar"),
        Method("left-to-right infill (class word after the text)", "ar", "infill"),
        Method(f"{Path(reference).name} zero-shot (exact)", "zero_shot", "ar"),
        Method("TF-IDF + logistic regression (discriminative reference)", "tfidf", "tfidf"),
    ]


# The readings compared on the whole test split: (key, label, checkpoint role, method, adaptive)
READINGS = [
    ("diffusion", "diffusion ELBO, shared noise, adaptive", "diffusion", "elbo", True),
    ("diffusion_infill", "diffusion infill", "diffusion", "infill", False),
    ("ar", "left-to-right twin (exact)", "ar", "ar", False),
    ("ar_infill", "left-to-right infill", "ar", "infill", False),
    ("tfidf", "TF-IDF + logistic regression", "tfidf", "tfidf", False),
]


DISCRIMINATIVE_READING = ("discriminative", "discriminative head", "discriminative", DISCRIMINATIVE, False)
DISCRIMINATIVE_PAIRS = [("diffusion", "discriminative"), ("diffusion_infill", "discriminative"),
                        ("ar", "discriminative")]
PAIRS = [("diffusion", "ar"), ("diffusion_infill", "ar"), ("diffusion_infill", "ar_infill"),
         ("diffusion", "ar_infill"), ("diffusion_infill", "diffusion"), ("diffusion_infill", "tfidf")]


def hardware() -> str:
    name = device_name()
    return name if torch.cuda.is_available() else f"{name}, {torch.get_num_threads()} threads"


PARTIAL = "results.partial.json"


def fingerprint(model: str) -> str:
    """What a model argument stands for: the content of a checkpoint directory (every file but the model card, which
    the report itself rewrites; calibration included, since the readings use it), else the name as given."""
    path = Path(model)
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(f for f in path.rglob("*") if f.is_file() and f.name != "README.md"):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class Pieces:
    """The report's finished pieces, kept in ``results.partial.json`` so that a run killed half-way resumes where it
    stood. A piece is reused only under the same key: the settings, the hardware and the content of every
    checkpoint; otherwise the file is ignored and rewritten."""

    def __init__(self, file: Path, key: dict, fresh: bool = False):
        self.file, self.key, self.done, self.reused = file, key, {}, 0
        if fresh or not file.exists():
            return
        try:
            saved = json.loads(file.read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, dict) and saved.get("key") == key and isinstance(saved.get("done"), dict):
            self.done = saved["done"]
            print(f"resuming: {len(self.done)} piece(s) already measured, from {file}", flush=True)

    def get(self, name: str, measure):
        """The piece called ``name``: reused when a previous run finished it, else measured and saved at once."""
        if name in self.done:
            self.reused += 1
            return self.done[name]["value"]
        started = time.time()
        value = measure()
        self.done[name] = {"value": value, "seconds": round(time.time() - started, 1)}
        payload = json.dumps({"key": self.key, "done": self.done}, default=str)
        write_atomic(self.file, lambda tmp: tmp.write_text(payload))
        return value

    @property
    def seconds(self) -> float:
        """Measuring time of every piece, this run's and the resumed ones' alike."""
        return round(sum(piece["seconds"] for piece in self.done.values()), 1)

    def finish(self) -> None:
        self.file.unlink(missing_ok=True)


def classification(args: argparse.Namespace, models: dict[str, str], pieces: Pieces) -> list[dict]:
    rows = []
    data = load_data("imdb", "test", max_samples=args.n, seed=0)
    plan = methods(args.samples, models["zero_shot"])
    if "discriminative" in models:  # the same backbone with a classification head, where one is shipped
        plan.append(Method("discriminative head (same backbone, classification head)", "discriminative",
                           DISCRIMINATIVE))
    for role in ("diffusion", "ar"):  # the combined reading only where it measured better on validation
        if combined_earns_its_place(models[role]):
            name = "diffusion" if role == "diffusion" else "left-to-right"
            plan.append(Method(f"{name} combined (Bayes + fitted weight x infill)", role, "combined", args.samples,
                               adaptive=role == "diffusion"))
    for m in plan:
        def measure(m=m):
            n = max(2, int(len(data) * m.limit_share))
            subset = data.subset(range(n)) if n < len(data) else data
            clf = load_classifier(models[m.checkpoint], m.method)
            started = time.time()
            report = evaluate_classifier(clf, subset.texts, subset.labels, m.samples or 1, m.adaptive, seed=0,
                                         progress=args.progress)
            return {
                "method": m.name, "checkpoint": models[m.checkpoint], "n": report["n"],
                "accuracy": report["accuracy"], "ci95": list(report["accuracy_ci95"]), "ece": report["ece"],
                "median_latency_s": report["latency_s"]["median"],
                "forward_passes_mean": report["forward_passes_mean"], "calibrated": report["calibrated"],
                "seconds": round(time.time() - started, 1),
            }

        row = pieces.get(f"classification: {m.name}", measure)
        rows.append(row)
        low, high = row["ci95"]
        print(f"  {m.name}: {row['accuracy']:.3f} [{low:.3f}, {high:.3f}] n={row['n']}", flush=True)
    return rows


def head_to_head(args: argparse.Namespace, models: dict[str, str], pieces: Pieces) -> dict:
    """The research question, on the whole test split (or ``--n-head`` reviews): every reading of the diffusion model
    against every reading of its left-to-right twin (and the discriminative reference), on the same reviews,
    compared pair by pair."""
    data = load_data("imdb", "test", max_samples=args.n_head or None, seed=0)
    result, correct = {"n": len(data), "readings": {}}, {}
    readings, pairs = list(READINGS), list(PAIRS)
    if "discriminative" in models:
        readings.append(DISCRIMINATIVE_READING)
        pairs += DISCRIMINATIVE_PAIRS
    for key, label, role, method, adaptive in readings:
        def measure(label=label, role=role, method=method, adaptive=adaptive):
            started = time.time()
            samples = args.samples if method == "elbo" else 1
            report = evaluate_classifier(load_classifier(models[role], method), data.texts, data.labels, samples,
                                         adaptive, seed=0, progress=args.progress)
            reading = {"label": label, "checkpoint": models[role], "method": method, "adaptive": adaptive,
                       "accuracy": report["accuracy"], "ci95": list(report["accuracy_ci95"]), "ece": report["ece"],
                       "median_latency_s": report["latency_s"]["median"],
                       "forward_passes_mean": report["forward_passes_mean"], "calibrated": report["calibrated"],
                       "seconds": round(time.time() - started, 1)}
            return {"reading": reading,
                    "correct": [p == y for p, y in zip(report["predictions"], data.labels, strict=True)]}

        piece = pieces.get(f"paired: {key}", measure)
        correct[key], result["readings"][key] = piece["correct"], piece["reading"]
        print(f"  {label}: {piece['reading']['accuracy']:.3f} on {len(data)}", flush=True)
    result["diffusion"], result["ar"] = result["readings"]["diffusion"], result["readings"]["ar"]
    result["pairs"] = [{"a": a, "b": b, **paired_difference(correct[a], correct[b])} for a, b in pairs]
    result["paired"] = result["pairs"][0] | {}
    d = result["paired"]
    print(f"  diffusion {result['diffusion']['accuracy']:.3f} vs twin {result['ar']['accuracy']:.3f} on "
          f"{len(data)}: difference {d['difference']:+.3f} [{d['difference_ci95'][0]:+.3f}, "
          f"{d['difference_ci95'][1]:+.3f}], McNemar p={d['mcnemar_p']:.3g}", flush=True)
    return result


def combined_earns_its_place(checkpoint: str) -> bool:
    """True when ``calibrate --method combined`` found the combined reading better than both single readings on
    validation (two folds: fitted on one half, read on the other)."""
    accuracy = cross_fitted_accuracy(checkpoint)
    try:
        return accuracy["combined"] > max(accuracy["bayes"], accuracy["infill"])
    except (KeyError, TypeError):
        return False


def perplexity(args: argparse.Namespace, models: dict[str, str]) -> dict:
    """Per-token perplexity of the same test text: exp(ELBO bound / tokens) vs exp(exact NLL / tokens)."""
    started = time.time()
    data = load_data("imdb", "test", max_samples=args.n_ppl, seed=0)
    diff, ar = load_model(models["diffusion"], MASKED), load_model(models["ar"], CAUSAL)
    prompts_d = _prompt(diff.checkpoint, data.classes)
    prompts_a = _prompt(ar.checkpoint, data.classes)
    generator = torch.Generator().manual_seed(0)
    nll_d = nll_a = tokens = 0.0
    for text, label in zip(data.texts, data.labels, strict=True):
        d = elbo_scores(diff, text, [prompts_d[label]], args.samples, generator,
                        max_length=diff.checkpoint.max_length)[0]
        a = ar_scores(ar, text, [prompts_a[label]], max_length=ar.checkpoint.max_length)[0]
        nll_d, nll_a, tokens = nll_d + d.nll, nll_a + a.nll, tokens + a.n_tokens
    ppl_d, ppl_a = math.exp(nll_d / tokens), math.exp(nll_a / tokens)
    return {"texts": len(data), "tokens": int(tokens), "diffusion_elbo_ppl": ppl_d, "ar_exact_ppl": ppl_a,
            "ratio": ppl_d / ppl_a, "elbo_samples": args.samples, "seconds": round(time.time() - started, 1),
            "note": "both conditioned on the review's true class prompt, scored in the models' trained window length"}


def _prompt(checkpoint: CheckpointMeta, classes: list[str]) -> list[str | None]:
    return [checkpoint.prompt_for(c) if checkpoint.class_prompt else None for c in classes]


def decoding(args: argparse.Namespace, models: dict[str, str]) -> dict:
    bench_args = parse_args(["--diffusion-model", models["diffusion"], "--ar-model", models["ar"], "--reference",
                             models["reference"], "--lengths", args.lengths, "--seeds", args.seeds])
    return run(bench_args)


def samples(models: dict[str, str], per_class: int) -> dict[str, list[str]]:
    lm = load_model(models["diffusion"], MASKED)
    out = {}
    for label in lm.checkpoint.classes or [None]:
        out[label or "(unconditional)"] = [
            generate(lm, "", 48, strategy="confidence", threshold=0.9, temperature=1.0, top_p=0.9, seed=seed,
                     label=label).generated_text for seed in range(per_class)]
    return out


# The committed records a report gathers, as paths inside the repository it reads (``--root``)
DECODING_FILE = Path("bench") / "decoding.json"  # the shipped pair's decoding benchmark (python -m bench.decoding)
DECODING_CHECKS_FILE = Path("bench") / "decoding_checks.json"  # its cache-agreement checks (bench.decoding_checks)
AUGMENT_FILE = Path("results") / "augment.json"  # the real + synthetic experiment (a copy of OUT/augment.json)
AUGMENT_FINETUNE_FILE = Path("results") / "augment-finetune.json"  # the same, fine-tuning the shipped pair (--start)
CROSSOVER_FILE = Path("results") / "crossover.json"  # the committed grid results (a copy of OUT/crossover.json)
PROMISES_FILE = Path("results") / "promises.json"  # what the classifiers promise (a copy of OUT/promises.json)


def augment_record(path: Path) -> dict | None:
    """A committed real + synthetic experiment, None when there is none."""
    return json.loads(path.read_text()) if path.is_file() else None


def decoding_checks_record(root: Path) -> dict | None:
    """The cache-agreement figures of ``bench.decoding_checks`` (its other checks stay in its file)."""
    path = root / DECODING_CHECKS_FILE
    if not path.is_file():
        return None
    checks = json.loads(path.read_text())
    return {"agreement": checks.get("agreement"), "hardware": checks.get("hardware"),
            "source": str(DECODING_CHECKS_FILE)}


def crossover_record(path: str | Path) -> dict | None:
    """The data-constrained crossover grid's results, without their run history; None when there are none."""
    results = read_results(path) if Path(path).is_file() else {}
    if not results.get("runs"):
        return None
    return ({k: v for k, v in results.items() if k != "history"}
            | {"source": str(CROSSOVER_FILE), "time": crossover_time(results.get("history") or [])})


def promises_record(path: Path) -> tuple[dict | None, dict | None]:
    """(per reading, what the record says of itself) of a committed ``promises`` run; (None, None) without one."""
    if not path.is_file():
        return None, None
    record = json.loads(path.read_text())
    return record["readings"], {k: v for k, v in record.items() if k != "readings"} | {"source": str(PROMISES_FILE)}


def committed_records(root: Path) -> dict:
    """The experiments' committed records in repository ``root`` that the report shows beside what it measures."""
    promises, about = promises_record(root / PROMISES_FILE)
    return {"crossover": crossover_record(root / CROSSOVER_FILE), "augment": augment_record(root / AUGMENT_FILE),
            "augment_finetune": augment_record(root / AUGMENT_FINETUNE_FILE),
            "decoding_checks": decoding_checks_record(root), "promises": promises, "promises_about": about}


def crossover_time(history: list[dict]) -> dict:
    """A grid's measured cost from its turns: training hours (wall clock, and CPU where recorded) and the median
    turn's seconds per step, wall clock and CPU."""
    return {"turns": len(history), "training_hours": round(sum(h.get("seconds", 0.0) for h in history) / 3600, 2),
            "cpu_hours": round(sum(h["cpu_seconds_per_step"] * (h["to_step"] - h["from_step"]) for h in history
                                   if "cpu_seconds_per_step" in h) / 3600, 2),
            "seconds_per_step": measured_rates(history),
            "cpu_seconds_per_step": measured_rates(history, "cpu_seconds_per_step")}


VALIDATION_KEYS = ("step", "epochs_completed", "val_n", "val_accuracy", "val_accuracy_infill", "val_perplexity")


def campaign_record(diffusion: str) -> dict | None:
    """The many-epoch campaign the shipped pair came from (``train_cli.py campaign-ship`` writes it beside them):
    its per-epoch validation curves, the epochs chosen and the figures of the pair it replaced; None without one."""
    record = read_ship_record(Path(diffusion).parent)
    if record is None:
        return None
    epochs = {twin: [{k: r[k] for k in VALIDATION_KEYS if k in r} for r in rows]
              for twin, rows in record["epochs"].items()}
    t = record["config"]["train"]
    source = Path(diffusion).parent / SHIP_RECORD
    return {"source": str(source), "epochs": epochs, "shipped": record["shipped"], "rule": record["rule"],
            "crossover_epoch": record.get("crossover_epoch"), "replaced": record.get("replaced"),
            "recipe": {"epochs": record["config"]["epochs"], "steps_per_epoch": record["plan"]["steps_per_epoch"],
                       "conditioning": t["conditioning"], "batch_size": t["batch_size"], "lr": t["lr"],
                       "lr_schedule": t["lr_schedule"], "seed": t["seed"], "max_length": t["max_length"]}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report's flags (``python -m textdiff_core.experiments.measure`` and ``train_cli.py report``)."""
    parser.add_argument("--root", default=".",
                        help="the repository the report reads and writes: its checkpoints/, results/, bench/ and "
                             "README.md (default: the current directory)")
    parser.add_argument("--diffusion", default=None,
                        help="diffusion checkpoint (default: ROOT/checkpoints/imdb-diffusion)")
    parser.add_argument("--ar", default=None, help="left-to-right checkpoint (default: ROOT/checkpoints/imdb-ar)")
    parser.add_argument("--discriminative", default=None,
                        help="discriminative checkpoint, the same backbone with a classification head (default: "
                             "ROOT/checkpoints/imdb-discriminative, read where it exists)")
    parser.add_argument("--reference", default="smollm2", help="reference left-to-right LM (generative perplexity)")
    parser.add_argument("--zero-shot", default=None,
                        help="zero-shot classifier: a directory written by `train_cli.py zero-shot` (prompt chosen and "
                             "bias fitted on validation) or a model name (default prompt, no calibration); default: "
                             f"ROOT/{ZERO_SHOT_REFERENCE} when it exists, else the reference LM")
    parser.add_argument("--baseline", default="tfidf",
                        help="discriminative reference: tfidf (trained on the IMDB train split) or tfidf:DATA")
    parser.add_argument("--n", type=int, default=200, help="test reviews for classification (class-balanced)")
    parser.add_argument("--n-head", type=int, default=0,
                        help="test reviews for the paired diffusion-vs-twin comparison (0: the whole test split)")
    parser.add_argument("--n-ppl", type=int, default=100, help="test reviews for perplexity")
    parser.add_argument("--samples", type=int, default=8, help="ELBO Monte Carlo samples (cap when adaptive)")
    parser.add_argument("--lengths", default="64,128,256", help="decoding lengths")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="decoding seeds")
    parser.add_argument("--quick", action="store_true", help="a few examples per section (CI)")
    parser.add_argument("--out-dir", default=None, help="where RESULTS.md and results.json go (default: ROOT)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--readme", default=None,
                        help="README whose results block to rewrite (default: ROOT/README.md when --out-dir is ROOT)")
    parser.add_argument("--fresh", action="store_true",
                        help=f"measure every piece anew, ignoring a {PARTIAL} left by an interrupted run")
    parser.add_argument("--no-cards", dest="cards", action="store_false",
                        help="do not (re)write the checkpoints' model cards (README.md)")
    parser.add_argument("--rerender", action="store_true",
                        help="measure nothing: rewrite RESULTS.md, results.json and the README block from the "
                             "results.json in --out-dir with the latest results/crossover.json (seconds)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_report(parser.parse_args(argv), argv)


@dataclass
class Places:
    """Where a report reads and writes, resolved from its flags against the repository root."""

    root: Path
    out: Path
    readme: Path | None  # None: no README block to rewrite

    @classmethod
    def of(cls, args: argparse.Namespace) -> Places:
        root = Path(args.root).resolve()
        out = Path(args.out_dir) if args.out_dir else root
        readme = Path(args.readme) if args.readme else root / "README.md" if out.resolve() == root else None
        return cls(root, out, readme)

    @property
    def in_repository(self) -> bool:
        """The report writes the repository's own RESULTS.md (and so its committed decoding benchmark)."""
        return self.out.resolve() == self.root


def run_report(args: argparse.Namespace, argv: list[str]) -> int:
    """The report of parsed ``add_arguments`` flags; ``argv`` (those flags as given) is recorded as its command."""
    places = Places.of(args)
    args.diffusion = args.diffusion or str(places.root / "checkpoints" / "imdb-diffusion")
    args.ar = args.ar or str(places.root / "checkpoints" / "imdb-ar")
    if args.rerender:
        return _rerender(places)
    if args.quick:
        args.n, args.n_head, args.n_ppl, args.samples, args.lengths, args.seeds = 10, 12, 4, 4, "16", "0"
    with quiet_progress(not args.progress):
        return _report(args, argv, places)


def _write(places: Places, result: dict) -> None:
    """results.json, RESULTS.md and the README block from ``result``."""
    (places.out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (places.out / "RESULTS.md").write_text(results_markdown(result))
    print(f"wrote {places.out / 'RESULTS.md'} and {places.out / 'results.json'}")
    if places.readme and write_readme_table(places.readme, result):
        print(f"wrote the results block of {places.readme}")


def _rerender(places: Places) -> int:
    """RESULTS.md, results.json and the README block again from the stored results and the latest records."""
    path = places.out / "results.json"
    if not path.is_file():
        raise TextdiffError(f"no {path} to rerender; run the report first")
    result = json.loads(path.read_text()) | committed_records(places.root)
    decoding = places.root / DECODING_FILE
    if decoding.is_file():  # its summary; every run, with its text, stays in the benchmark's file
        result["decoding"] = {k: v for k, v in json.loads(decoding.read_text()).items() if k != "runs"} | {
            "source": str(DECODING_FILE)}
    grid = result["crossover"]
    print(f"crossover grid: {'none' if not grid else 'finished' if grid.get('finished') else 'in progress'}")
    _write(places, result)
    return 0


def _measure(args: argparse.Namespace, models: dict[str, str], pieces: Pieces, places: Places) -> dict:
    """Every measured section, each a resumable piece."""
    result = {}
    print("classification…", flush=True)
    result["classification"] = classification(args, models, pieces)
    print("diffusion against the twin, paired…", flush=True)
    result["head_to_head"] = head_to_head(args, models, pieces)
    print("perplexity…", flush=True)
    result["perplexity"] = pieces.get("perplexity", lambda: perplexity(args, models))
    print("decoding…", flush=True)
    result["decoding"] = pieces.get("decoding", lambda: decoding(args, models))
    if places.in_repository:  # the report's decoding figures are the committed benchmark's
        text = json.dumps(result["decoding"], indent=2) + "\n"
        write_atomic(places.root / DECODING_FILE, lambda tmp: tmp.write_text(text))
    result["samples"] = pieces.get("samples", lambda: samples(models, 2 if args.quick else 5))
    return result


def _report(args: argparse.Namespace, argv: list[str], places: Places) -> int:
    zero_shot_dir = places.root / ZERO_SHOT_REFERENCE
    zero_shot = args.zero_shot or (str(zero_shot_dir) if zero_shot_dir.is_dir() else args.reference)
    models = {"diffusion": args.diffusion, "ar": args.ar, "reference": args.reference, "tfidf": args.baseline,
              "zero_shot": zero_shot}
    discriminative = Path(args.discriminative or places.root / "checkpoints" / "imdb-discriminative")
    if discriminative.is_dir():  # the discriminative reference, once shipped
        models["discriminative"] = str(discriminative)
    elif args.discriminative:
        raise TextdiffError(f"no discriminative checkpoint at {discriminative}")
    settings = {k: v for k, v in vars(args).items() if k not in ("progress", "fresh", "root")}
    result = {"command": shlex.join(["python", "train_cli.py", "report", *argv]), "hardware": hardware(),
              "settings": settings}
    places.out.mkdir(parents=True, exist_ok=True)
    key = {"settings": {k: v for k, v in settings.items() if k not in ("readme", "cards")},
           "hardware": result["hardware"], "models": {role: fingerprint(m) for role, m in models.items()}}
    pieces = Pieces(places.out / PARTIAL, key, fresh=args.fresh)
    result |= _measure(args, models, pieces, places)
    result["campaign"] = campaign_record(models["diffusion"])
    result |= committed_records(places.root)
    result["seconds"] = pieces.seconds
    if pieces.reused:
        result["resumed_pieces"] = pieces.reused
    result["finished_at"] = time.strftime("%Y-%m-%d %H:%M")
    result = relative_to_root(result, places.root)
    _write(places, result)
    print(f"measured in {result['seconds'] / 60:.1f} min")
    if args.cards:
        for role in ("diffusion", "ar"):
            meta = load_model(models[role]).meta
            (Path(models[role]) / "README.md").write_text(model_card(meta, result, role))
            print(f"wrote {Path(models[role]) / 'README.md'}")
    pieces.finish()
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
