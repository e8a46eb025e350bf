"""Regenerate RESULTS.md and results.json: every figure the project shows, from the shipped checkpoints.

    python train_cli.py report                 # the full report (about 2 h on 2 CPU cores)
    python train_cli.py report --quick         # a few examples per section, for CI

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
from textdiff_core.classify import ZERO_SHOT_REFERENCE, load_classifier
from textdiff_core.data import load_data
from textdiff_core.decoding import generate
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import evaluate_classifier, paired_difference
from textdiff_core.experiments.augment import lines as augment_lines
from textdiff_core.experiments.campaign import SHIP_RECORD, best_reading, read_ship_record
from textdiff_core.experiments.crossover import measured_rates, points_to_go, read_results
from textdiff_core.experiments.decoding_bench import parse_args, run
from textdiff_core.likelihood import ar_scores, elbo_scores
from textdiff_core.models import CAUSAL, MASKED, device_name, load_model, quiet_progress
from textdiff_core.paths import relative_to_repo, write_atomic
from textdiff_core.records import cross_fitted_accuracy
from textdiff_core.settings import LEGACY_DEFAULTS
from textdiff_core.train import default_warmup_steps

ROOT = Path(__file__).resolve().parents[2]


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


def _points(share: float) -> str:
    """A difference of two accuracies in percentage points (not a relative change): -0.018 -> '-1.8 points'."""
    return f"{100 * share:+.1f} points"


def targets(result: dict) -> list[str]:
    """The project's targets beside what this report measured, each marked met or not."""
    rows = {r["method"]: r for r in result["classification"]}
    elbo = next((r for m, r in rows.items() if m.startswith("diffusion ELBO, shared noise, adaptive")), None)
    twin = next((r for m, r in rows.items() if m.startswith("left-to-right twin")), None)
    head = result.get("head_to_head")
    if head:  # the larger, paired comparison decides the accuracy targets
        elbo, twin = head["diffusion"], head["ar"]
    ratio = result["perplexity"]["ratio"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = ["| target | measured | |", "|---|---|---|"]
    n = f" (n={head['n']})" if head else ""
    if elbo:
        lines.append(f"| diffusion ELBO accuracy >= 90%{n} | {elbo['accuracy']:.1%} | "
                     f"{mark(elbo['accuracy'] >= 0.9)} |")
        lines.append(f"| diffusion ELBO median latency < 0.5 s | {elbo['median_latency_s']:.3f} s | "
                     f"{mark(elbo['median_latency_s'] < 0.5)} |")
    if head:
        d = head["paired"]
        gap = (f"{_points(d['difference'])} (95% CI {_points(d['difference_ci95'][0])} to "
               f"{_points(d['difference_ci95'][1])}, "
               f"McNemar p={d['mcnemar_p']:.2g})")
        lines.append(f"| diffusion ELBO within 1 point of the left-to-right twin ({twin['accuracy']:.1%}){n} | {gap} | "
                     f"{mark(d['difference'] >= -0.01)} |")
        lines.append(f"| diffusion ELBO accuracy >= the twin's{n} | {gap} | {mark(d['difference'] >= 0)} |")
    elif elbo and twin:
        lines.append(f"| diffusion ELBO accuracy >= left-to-right twin's ({twin['accuracy']:.1%}) | "
                     f"{elbo['accuracy']:.1%} | {mark(elbo['accuracy'] >= twin['accuracy'])} |")
    infill = (head or {}).get("readings", {}).get("diffusion_infill")
    if infill:
        twin_best = max((head["readings"][k] for k in ("ar", "ar_infill") if k in head["readings"]),
                        key=lambda r: r["accuracy"])
        pair = next(d for d in head["pairs"] if d["a"] == "diffusion_infill" and head["readings"][d["b"]] is twin_best)
        lines.append(f"| diffusion infill accuracy >= 90%{n} | {infill['accuracy']:.1%} | "
                     f"{mark(infill['accuracy'] >= 0.9)} |")
        lines.append(f"| diffusion infill median latency <= 0.1 s | {infill['median_latency_s']:.3f} s | "
                     f"{mark(infill['median_latency_s'] <= 0.1)} |")
        lines.append(f"| diffusion infill >= the better of the twin's readings ({twin_best['label']}, "
                     f"{twin_best['accuracy']:.1%}){n} | {_points(pair['difference'])} (95% CI "
                     f"{_points(pair['difference_ci95'][0])} to {_points(pair['difference_ci95'][1])}, McNemar "
                     f"p={pair['mcnemar_p']:.2g}) | {mark(pair['difference'] >= 0)} |")
    lines.append(f"| ELBO perplexity <= 1.15 x left-to-right exact | {ratio:.3f} x | {mark(ratio <= 1.15)} |")
    if result.get("campaign"):
        lines.append(f"| many epochs: ELBO perplexity <= 1.3 x left-to-right exact (MDLM's gap at equal tokens) | "
                     f"{ratio:.3f} x | {mark(ratio <= 1.3)} |")
    lines += decoding_targets(result.get("decoding") or {}, mark, result.get("decoding_checks"))
    return lines


DEFAULT_METHOD, TWIN_METHOD = "default (blocks, dual cache)", "ar (KV cache)"  # decoding_bench's method names


def decoding_targets(decoding: dict, mark, checks: dict | None = None) -> list[str]:
    """The fast-decoding targets beside what the decoding benchmark measured: the default's wall time against the
    twin's (median over seeds), its text (word entropy, distinct seeds, generative perplexity against one token per
    pass without cache), the cache's approximation (greedy agreement from ``checks``, sampled quality within the
    uncached run's intervals) and batches."""
    rows = {(r["method"], r["length"]): r for r in decoding.get("summary", [])}
    ratios = {r["length"]: r["default_over_twin"] for r in decoding.get("ratios", [])}
    lines = []
    for length, limit in ((128, 0.5), (256, 0.4)):
        if length in ratios:
            lines.append(f"| {length} tokens: default diffusion wall time <= {limit} x the twin's (KV cache), median "
                         f"of {rows[(DEFAULT_METHOD, length)]['runs']} seeds | {ratios[length]:.2f} x "
                         f"({rows[(DEFAULT_METHOD, length)]['wall_s_median']:.2f} s vs "
                         f"{rows[(TWIN_METHOD, length)]['wall_s_median']:.2f} s) | {mark(ratios[length] <= limit)} |")
    default, one = rows.get((DEFAULT_METHOD, 128)), rows.get(("one per pass, no cache", 128))
    if default:
        ok = default["word_entropy_median"] >= 3.8 and default["distinct_texts"] == default["runs"]
        lines.append(f"| 128 tokens: the default's median word entropy >= 3.8 nats per 100 words, distinct texts for "
                     f"distinct seeds | {default['word_entropy_median']:.2f}; {default['distinct_texts']} distinct of "
                     f"{default['runs']} | {mark(ok)} |")
    if default and one and one.get("gen_ppl_ci95"):
        ok = default["gen_ppl"] <= one["gen_ppl_ci95"][1] and default["tokens_per_pass"] >= 4
        lines.append(f"| 128 tokens: the default's generative perplexity no worse than one token per pass without "
                     f"cache (within its 95% interval), >= 4 tokens per pass | {default['gen_ppl']:.0f} vs "
                     f"{one['gen_ppl']:.0f} ({one['gen_ppl_ci95'][0]:.0f}–{one['gen_ppl_ci95'][1]:.0f}); "
                     f"{default['tokens_per_pass']:.1f} tokens per pass | {mark(ok)} |")
    for cache, data in ((checks or {}).get("agreement") or {}).items():
        share = data["by_position_median"]
        lines.append(f"| greedy, one token per pass: the {cache} cache commits the uncached run's token at >= 90% of "
                     f"positions (median of {len(data['by_position'])} prompts; pass by pass on the same state: "
                     f"{data['pass_by_pass']:.1%}) | {share:.1%} | {mark(share >= 0.9)} |")
    uncached = rows.get(("default, no KV cache", 128))
    if default and uncached and uncached.get("gen_ppl_ci95") and uncached.get("word_entropy_ci95"):
        (pl, ph), (el, eh) = uncached["gen_ppl_ci95"], uncached["word_entropy_ci95"]
        cached_entropy = default["word_entropy_mean"]
        ok = pl <= default["gen_ppl"] <= ph and el <= cached_entropy <= eh
        lines.append(f"| 128 tokens, default sampling: the dual cache's generative perplexity and word entropy within "
                     f"the uncached run's 95% intervals | {default['gen_ppl']:.0f} in {pl:.0f}–{ph:.0f}; "
                     f"{cached_entropy:.2f} in {el:.2f}–{eh:.2f} | {mark(ok)} |")
    for model in ("diffusion", "ar"):
        batch = {b["samples"]: b["samples_per_s"] for b in decoding.get("batch", []) if b["model"] == model}
        if 1 in batch and 8 in batch:
            lines.append(f"| {model}: 8 samples in one batch no slower per sample than 1 | {batch[8]:.2f} vs "
                         f"{batch[1]:.2f} samples/s | {mark(batch[8] >= batch[1])} |")
    return lines


def decoding_lines(d: dict) -> list[str]:
    """RESULTS.md's Decoding section from the decoding benchmark's JSON (``bench/decoding.json``)."""
    s = d["settings"]
    lines = [f"From `python -m bench.decoding` ({d['hardware']}, {d['finished_at']}): prompt \"{s['prompt']}\", "
             f"sampling at temperature {s['temperature']} and top-p {s['top_p']}, seeds {s['seeds'][0]}–"
             f"{s['seeds'][-1]}. Wall time: median over seeds; generative perplexity under `{s['reference']}`: "
             "geometric mean with a 95% interval from the seeds' spread; word entropy (nats over the first 100 words; "
             "real reviews 4.1): median; other columns are means.", "",
             "| method | new tokens | forward passes | tokens/pass | positions run | wall (s) | gen. perplexity | "
             "95% interval | word entropy | distinct-2 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["summary"]:
        low, high = r.get("gen_ppl_ci95") or (float("nan"), float("nan"))
        lines.append(f"| {r['method']} | {r['length']} | {r['forward_passes']:.1f} | {r['tokens_per_pass']:.2f} | "
                     f"{r['tokens_processed']:,.0f} | {r.get('wall_s_median', r['wall_s']):.2f} | {r['gen_ppl']:.1f} | "
                     f"{low:.0f}–{high:.0f} | {r.get('word_entropy_median', float('nan')):.2f} | "
                     f"{r.get('distinct_2', float('nan')):.2f} |")
    if d.get("ratios"):
        lines += ["", "Default diffusion wall time over the twin's (KV cache), medians: " + ", ".join(
            f"{r['length']} tokens {r['default_over_twin']:.2f} x" for r in d["ratios"]) + "."]
    if d.get("batch"):
        lines += ["", f"Samples decoded as one batch ({d['batch'][0]['length']} new tokens, the default settings):", "",
                  "| model | N | wall (s) | samples/s |", "|---|---|---|---|"]
        lines += [f"| {b['model']} | {b['samples']} | {b['wall_s']:.2f} | {b['samples_per_s']:.2f} |"
                  for b in d["batch"]]
    return lines


def head_table(head: dict) -> list[str]:
    """The whole-test-split readings and their paired differences, as markdown lines (RESULTS.md and the README)."""
    readings = head.get("readings") or {"diffusion": head["diffusion"] | {"label": "diffusion ELBO, shared noise, "
                                                                           "adaptive"},
                                        "ar": head["ar"] | {"label": "left-to-right twin (exact)"}}
    lines = ["The same reviews for every reading, so differences are judged pair by pair: their intervals are much "
             "narrower than the accuracies' intervals suggest.", "",
             "| reading | accuracy | 95% CI | ECE | median latency (s) | forward passes |", "|---|---|---|---|---|---|"]
    for r in readings.values():
        lines.append(f"| {r['label']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | {r['ece']:.3f} "
                     f"| {r['median_latency_s']:.3f} | {r['forward_passes_mean']:.1f} |")
    pairs = head.get("pairs") or [{"a": "diffusion", "b": "ar", **head["paired"]}]
    lines += ["", "| A − B | difference | 95% CI | right only by A | only by B | McNemar p |",
              "|---|---|---|---|---|---|"]
    for d in pairs:
        lines.append(f"| {readings[d['a']]['label']} − {readings[d['b']]['label']} | **{_points(d['difference'])}** | "
                     f"{_points(d['difference_ci95'][0])} to {_points(d['difference_ci95'][1])} | {d['a_only']} | "
                     f"{d['b_only']} | {d['mcnemar_p']:.2g} |")
    return lines


ZERO_SHOT_DIR = ROOT / ZERO_SHOT_REFERENCE
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def readme_table(result: dict) -> str:
    """The README's results block: every reading on the whole test split, and test perplexity (from results.json)."""
    head = result.get("head_to_head")
    lines = []
    if head:
        readings = head.get("readings") or {"diffusion": head["diffusion"] | {"label": "diffusion ELBO, shared "
                                                                              "noise, adaptive"},
                                            "ar": head["ar"] | {"label": "left-to-right twin (exact)"}}
        lines += [f"IMDB test split, {head['n']:,} reviews, the same reviews for every reading:", "",
                  "| reading | accuracy | 95% CI | median latency (s) |", "|---|---|---|---|"]
        lines += [f"| {r['label']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | "
                  f"{r['median_latency_s']:.3f} |" for r in readings.values()]
    p = result["perplexity"]
    lines += ["", f"Test perplexity ({p['texts']} reviews): diffusion ELBO bound {p['diffusion_elbo_ppl']:.1f}, "
              f"left-to-right exact {p['ar_exact_ppl']:.1f} (ratio {p['ratio']:.2f}). Hardware: {result['hardware']}."]
    lines += decoding_summary(result.get("decoding") or {})
    if result.get("crossover"):
        lines += ["", crossover_answer(result["crossover"]) + " See RESULTS.md."]
    return "\n".join(lines).strip() + "\n"


def decoding_summary(d: dict, length: int = 128) -> list[str]:
    """The README's decoding row: the default diffusion decoding against the twin's at ``length`` new tokens."""
    rows = {r["method"]: r for r in d.get("summary", []) if r["length"] == length}
    if DEFAULT_METHOD not in rows or TWIN_METHOD not in rows:
        return []
    diffusion, twin = rows[DEFAULT_METHOD], rows[TWIN_METHOD]

    def said(r: dict) -> str:
        return (f"{r['wall_s_median']:.2f} s in {r['forward_passes']:.0f} forward passes (generative perplexity "
                f"{r['gen_ppl']:.0f}, word entropy {r['word_entropy_median']:.2f})")

    return ["", f"Writing {length} new tokens at the default settings (median of {diffusion['runs']} seeds, one "
            f"machine): diffusion {said(diffusion)}, the twin with its KV cache {said(twin)}; diffusion takes "
            f"{diffusion['wall_s_median'] / twin['wall_s_median']:.2f} x the twin's time."]


def write_readme_table(readme: Path, result: dict) -> bool:
    """Replace the block between the README's results markers with ``readme_table``; False when it has none."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(text[:start + len(README_START)] + "\n" + readme_table(result) + text[end:])
    return True


def render(result: dict) -> str:
    lines = ["# Results", "", f"Regenerated by `{result['command']}` on {result['finished_at']}.",
             f"Hardware: {result['hardware']}. Total time: {result['seconds'] / 60:.1f} min"
             + (f" (measuring time, over more than one run: {result['resumed_pieces']} piece(s) came from an "
                f"interrupted one)." if result.get("resumed_pieces") else "."), ""]
    lines += ["## Classification: IMDB test split (fixed subset)", "",
              "| method | n | accuracy | 95% CI | ECE | median latency (s) | forward passes |",
              "|---|---|---|---|---|---|---|"]
    for r in result["classification"]:
        lines.append(f"| {r['method']} | {r['n']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | "
                     f"{r['ece']:.3f} | {r['median_latency_s']:.3f} | {r['forward_passes_mean']:.1f} |")
    lines += ["", "Posteriors are calibrated (temperature and per-class bias fitted on the validation split) where the "
              "checkpoint's calibration.json has the method: " + ", ".join(
                  r["method"] for r in result["classification"] if r.get("calibrated")) + "."]
    head = result.get("head_to_head")
    if head:
        scope = "the whole test split" if not result["settings"].get("n_head") else "a fixed subset of the test split"
        lines += ["", f"## Every reading of both models: {scope}, paired (n={head['n']})", ""]
        lines += head_table(head)
    lines += ["", "## Targets", ""] + targets(result)
    p = result["perplexity"]
    lines += ["", "## Perplexity on test text", "",
              f"{p['texts']} test reviews, {p['tokens']:,} tokens ({p['note']}).", "",
              "| model | perplexity |", "|---|---|",
              f"| diffusion, ELBO bound (K={p['elbo_samples']}) | {p['diffusion_elbo_ppl']:.2f} |",
              f"| left-to-right, exact | {p['ar_exact_ppl']:.2f} |",
              f"| ratio | {p['ratio']:.3f} |"]
    if result.get("campaign"):
        lines += ["", "## Many epochs: the pair by epoch", ""] + campaign_lines(result)
    if result.get("crossover"):
        lines += ["", "## When does diffusion win? The data-constrained crossover", ""]
        lines += crossover_lines(result["crossover"])
    if result.get("augment"):
        lines += ["", "## Real + synthetic reviews, data-constrained", ""] + augment_lines(result["augment"])
    if result.get("augment_finetune"):
        lines += ["", "## Real + synthetic reviews, the shipped pair fine-tuned", ""] + augment_lines(
            result["augment_finetune"])
    lines += ["", "## Decoding", ""] + decoding_lines(result["decoding"])
    lines += ["", "## Samples (uncurated: the first seeds)", ""]
    for label, texts in result["samples"].items():
        lines += [f"**{label}**", ""] + [f"{i + 1}. {t}" for i, t in enumerate(texts)] + [""]
    return "\n".join(lines) + "\n"


DECODING_FILE = ROOT / "bench" / "decoding.json"  # the shipped pair's decoding benchmark (python -m bench.decoding)
DECODING_CHECKS_FILE = ROOT / "bench" / "decoding_checks.json"  # its cache-agreement checks (bench.decoding_checks)
AUGMENT_FILE = ROOT / "results" / "augment.json"  # the real + synthetic experiment (a copy of OUT/augment.json)
AUGMENT_FINETUNE_FILE = ROOT / "results" / "augment-finetune.json"  # the same, fine-tuning the shipped pair (--start)
CROSSOVER_FILE = ROOT / "results" / "crossover.json"  # the committed grid results (a copy of OUT/crossover.json)


def augment_record(path: Path | None = None) -> dict | None:
    """A committed real + synthetic experiment (default: ``AUGMENT_FILE``), None when there is none."""
    path = path or AUGMENT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _decoding_checks() -> dict | None:
    """The cache-agreement figures of ``bench.decoding_checks`` (its other checks stay in its file)."""
    if not DECODING_CHECKS_FILE.is_file():
        return None
    checks = json.loads(DECODING_CHECKS_FILE.read_text())
    return {"agreement": checks.get("agreement"), "hardware": checks.get("hardware"),
            "source": relative_to_repo(str(DECODING_CHECKS_FILE))}


def crossover_record(path: str | Path | None = None) -> dict | None:
    """The data-constrained crossover grid's results (default: ``CROSSOVER_FILE``), without their run history; None
    when there are none."""
    path = path or CROSSOVER_FILE
    results = read_results(path) if Path(path).is_file() else {}
    if not results.get("runs"):
        return None
    return ({k: v for k, v in results.items() if k != "history"}
            | {"source": "results/crossover.json", "time": crossover_time(results.get("history") or [])})


def _ci(pair) -> str:
    if not pair:
        return "–"
    return f"{pair[0]:.3f} to {pair[1]:.3f}" if min(pair) < 0 else f"{pair[0]:.3f}–{pair[1]:.3f}"


def _crossover_cell(row: dict, finished: bool) -> str:
    c = row.get("crossover")
    if c:
        return (f"{c['tokens_seen']:,} tokens (step {c['step']}, epoch {c['epoch']:g}); diffusion − twin "
                f"{c['difference_bits_per_token']:+.3f} ({_ci(c['ci95'])})")
    return "none within budget" if finished else "none so far (in progress)"


USES_CONTEXT_BITS = 0.1  # a twin this close to the unigram level has not learned to use context


def crossover_answer(c: dict) -> str:
    """One line: where diffusion's best bound passes the twin's best loss, per U (the README's results block)."""
    parts = []
    for row in c["runs"]:
        cross = row.get("crossover")
        where = (f"crosses at epoch {cross['epoch']:g}" if cross else
                 "no crossover within budget" if row["finished"] else "no crossover so far")
        parts.append(f"U={row['unique_reviews']:,}: {where}")
    fit = c.get("exponent")
    tail = (f"; C_crit ∝ U^{fit['k']:.2f} (95% {fit['ci95'][0]:.2f}–{fit['ci95'][1]:.2f}; published "
            f"{fit['published']})" if fit else "")
    gaps = [r["best_difference"]["difference_bits_per_token"] for r in c["runs"] if r.get("best_difference")]
    if gaps:
        tail += (f"; at each twin's best, diffusion's loss minus the twin's: {min(gaps):+.2f} to {max(gaps):+.2f} "
                 "bits per token")
    levels = [r["unigram"]["diffusion_best_minus"]["difference_bits_per_token"] for r in c["runs"] if r.get("unigram")]
    if levels:
        tail += (f"; diffusion's best minus a unigram model (the word frequencies of the same reviews, which uses no "
                 f"context): {min(levels):+.3f} to {max(levels):+.3f}")
        if max(levels) > -USES_CONTEXT_BITS:
            tail += (f" — within {USES_CONTEXT_BITS} bits of it at some size, so there the diffusion twin has not "
                     "learned to use context and the grid cannot say when diffusion wins")
    sizes = len((c.get("config") or {}).get("sizes") or c["runs"])
    status = "" if c.get("finished") else f", in progress: {len(c['runs'])} of {sizes} sizes begun"
    return (f"Data-constrained crossover (both twins trained from scratch on U unique training reviews, repeated "
            f"for many epochs; validation loss in bits per token, lower is better{status}): "
            + "; ".join(parts) + tail + ".")


def crossover_time(history: list[dict]) -> dict:
    """A grid's measured cost from its turns: training hours (wall clock, and CPU where recorded) and the median
    turn's seconds per step, wall clock and CPU."""
    return {"turns": len(history), "training_hours": round(sum(h.get("seconds", 0.0) for h in history) / 3600, 2),
            "cpu_hours": round(sum(h["cpu_seconds_per_step"] * (h["to_step"] - h["from_step"]) for h in history
                                   if "cpu_seconds_per_step" in h) / 3600, 2),
            "seconds_per_step": measured_rates(history),
            "cpu_seconds_per_step": measured_rates(history, "cpu_seconds_per_step")}


def _per_twin(rates: dict | None) -> str:
    names = {"diffusion": "diffusion", "ar": "left to right"}
    return ", ".join(f"{names.get(k, k)} {v:.2f} s" for k, v in sorted((rates or {}).items()))


def _time_sentence(c: dict) -> str:
    time_ = c.get("time") or {}
    text = (f"Time (a shared 2-core machine; the latest command ran with {c.get('threads', '?')} torch thread(s)): "
            f"{time_.get('training_hours', 0):.1f} h of training, wall clock, in {time_.get('turns', 0)} turns")
    text += f" ({time_['cpu_hours']:.1f} CPU-hours where recorded)" if time_.get("cpu_hours") else ""
    text += (f"; per step at the median turn, wall clock: {_per_twin(time_['seconds_per_step'])}"
             if time_.get("seconds_per_step") else "")
    text += f"; CPU: {_per_twin(time_['cpu_seconds_per_step'])}" if time_.get("cpu_seconds_per_step") else ""
    probe = c.get("probe_seconds_per_step")
    return text + (f"; in the probe before the start: {_per_twin(probe)}." if probe else ".")


def crossover_lines(c: dict) -> list[str]:
    """RESULTS.md's crossover section: settings, per-U best points and crossover, the exponent, accuracy against U,
    and every validation point."""
    cfg, t, shape, model = c["config"], c["config"]["train"], c["config"]["shape"], c.get("model") or {}

    done = sum(len(r["steps"]) for r in c["runs"])
    status = ("Finished" if c.get("finished") else
              f"In progress: {done} validation points read, {points_to_go(c)} to go")
    lines = [f"{status} (updated {c.get('updated_at', '?')}); from `{c['source']}`, written by", "", "```bash",
             c.get("command") or "python train_cli.py crossover …", "```", "",
             f"Both twins of every U (nested subsets of the training split) share one {shape['layers']}-layer, "
             f"{shape['width']}-wide BERT ({model.get('parameters', 0):,} parameters; the left-to-right twin with "
             f"causal attention), one lower-cased WordPiece tokenizer of {model.get('vocab_size', '?')} tokens "
             f"trained on the largest subset, one random initialisation (seed {t['seed']}), AdamW (lr {t['lr']}, "
             f"weight decay {t['weight_decay']}, {t['lr_schedule']}, {t['warmup_steps']} warm-up steps), batches of "
             f"{t['batch_size']} random {t['max_length']}-token windows, {t['conditioning']} conditioning (the class "
             f"word as one more token); the diffusion loss is weighted {t['noise']['weighting']} (the bound). Only "
             f"the objective differs. Validation: the same {cfg['val_size']} reviews of the validation split for "
             f"every U and both twins (their first window, given the review's own class word): the diffusion ELBO "
             f"bound ({cfg['val_samples']} samples, the same masks at every point) and the twin's exact NLL, in bits "
             f"per token, 95% intervals over reviews. Not varied: the architecture, tokenizer, batch, learning rate "
             f"and lr schedule, seed, window length and the class-word settings. " + _time_sentence(c), "",
             "| U (reviews) | unique tokens | budget: steps (epochs) | points | diffusion best bits/token (epoch) | "
             "twin best (epoch) | diffusion − twin at the bests, 95% CI | crossover |",
             "|---|---|---|---|---|---|---|---|"]
    for row in c["runs"]:
        best, diff = row.get("best") or {}, row.get("best_difference")
        cells = [f"{row['unique_reviews']:,}", f"{row['unique_tokens']:,}" if row.get("unique_tokens") else "–",
                 f"{row['planned_steps']} ({row['planned_steps'] * t['batch_size'] / row['unique_reviews']:g})",
                 f"{len(row['steps'])}" + (f", {points_to_go(c, row)} to go" if points_to_go(c, row) else "")]
        for twin in ("diffusion", "ar"):
            b = best.get(twin)
            cells.append(f"{b['bits_per_token']:.3f} ({b['epoch']:g})" if b else "–")
        cells.append(f"{diff['difference_bits_per_token']:+.3f} ({_ci(diff['ci95'])})" if diff else "–")
        cells.append(_crossover_cell(row, row["finished"]))
        lines.append("| " + " | ".join(cells) + " |")
    fit = c.get("exponent")
    crossing = [r["unique_reviews"] for r in c["runs"] if r.get("crossover")]
    lines += ["", "Crossover: the first validation point at which diffusion's best bound so far is below the twin's "
              "best loss so far (tokens seen by the diffusion twin); its interval is that of the paired per-review "
              "difference between the two best points. " + (
                  f"Fitted over the {fit['n']} sizes that cross: C_crit ∝ U^{fit['k']:.2f} (95% interval "
                  f"{fit['ci95'][0]:.2f} to {fit['ci95'][1]:.2f}), beside the published {fit['published']} "
                  "(Prabhudesai et al. 2025)." if fit else
                  f"{len(crossing)} of {len(c['runs'])} sizes cross{'' if c.get('finished') else ' so far'}"
                  f"{' (' + ', '.join(map(str, crossing)) + ')' if crossing else ''}; the exponent of C_crit ∝ U^k "
                  "needs at least three, so it is not fitted.")]
    leveled = [row for row in c["runs"] if row.get("unigram")]
    if leveled:
        lines += ["", "### Against the no-context level", "",
                  "A unigram model of the same U training reviews (token counts plus one) read on the same validation "
                  "windows: the level of a model that uses no context at all. A best point below it (a negative "
                  "difference) uses context; one at it has learnt only which tokens are common.", "",
                  "| U | unigram bits/token (95% CI) | diffusion best − unigram, 95% CI | "
                  "twin best − unigram, 95% CI |",
                  "|---|---|---|---|"]
        for row in leveled:
            u = row["unigram"]
            cells = [f"{row['unique_reviews']:,}", f"{u['bits_per_token']:.3f} ({_ci(u['ci95'])})"]
            cells += [f"{u[f'{t}_best_minus']['difference_bits_per_token']:+.3f} ({_ci(u[f'{t}_best_minus']['ci95'])})"
                      for t in ("diffusion", "ar")]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Accuracy against U (validation reviews, at each objective's best-bound point)", "",
              "| U | diffusion Bayes | diffusion infill | twin Bayes | twin infill | TF-IDF + LR on the same U |",
              "|---|---|---|---|---|---|"]
    for row in c["runs"]:
        best = row.get("best") or {}
        cells = [f"{row['unique_reviews']:,}"]
        for twin in ("diffusion", "ar"):
            for reading in ("bayes", "infill"):
                cells.append(_percent((best.get(twin) or {}).get(f"accuracy_{reading}")))
        cells.append(_percent(row.get("tfidf_accuracy")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"One accuracy on {cfg['val_size']} reviews carries a 95% half-width of up to "
              f"{100 * 1.96 * math.sqrt(0.25 / cfg['val_size']):.1f} points. The best point is chosen by bits per "
              "token on the same reviews, not by accuracy.", "",
              "### Every validation point", "",
              "| U | step | epoch | tokens seen | diffusion bits/token (95% CI) | twin bits/token (95% CI) | "
              "diffusion bits/byte | twin bits/byte |", "|---|---|---|---|---|---|---|---|"]
    for row in c["runs"]:
        for j, step in enumerate(row["steps"]):
            lines.append(
                f"| {row['unique_reviews']:,} | {step} | {row['epochs'][j]:g} | {row['tokens_seen'][j]:,} | "
                f"{row['diffusion_bits_per_token'][j]:.3f} ({_ci(row['diffusion_bits_per_token_ci95'][j])}) | "
                f"{row['ar_bits_per_token'][j]:.3f} ({_ci(row['ar_bits_per_token_ci95'][j])}) | "
                f"{row['diffusion_bits_per_byte'][j]:.3f} | {row['ar_bits_per_byte'][j]:.3f} |")
    controlled = [row for row in c["runs"] if (row.get("best") or {}).get("ar_masked")]
    lines += ["", "Control arm (the left-to-right twin with random input-token masking, Gao et al., which tells the "
              "objective from the augmentation): " + (f"{str(c['control_arm']).removeprefix('ran: ')}." if controlled
                                                    else "did not run."),
              "", "Dated readings, and side checks of what the curves show: docs/experiments.md."]
    if controlled:
        lines += ["", "| U | control best bits/token (epoch) | twin best (epoch) | diffusion best (epoch) | "
                  "diffusion − control at the bests, 95% CI |", "|---|---|---|---|---|"]
        for row in controlled:
            b, diff = row["best"], row.get("control_difference")
            cells = [f"{row['unique_reviews']:,}"] + [f"{b[t]['bits_per_token']:.3f} ({b[t]['epoch']:g})" if b.get(t)
                                                      else "–" for t in ("ar_masked", "ar", "diffusion")]
            cells.append(f"{diff['difference_bits_per_token']:+.3f} ({_ci(diff['ci95'])})" if diff else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


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


def _percent(x) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) else "–"


def _number(x) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) else "–"


def campaign_lines(result: dict) -> list[str]:
    """RESULTS.md's many-epoch section: both twins by epoch on the validation monitor, the choice, and the shipped
    pair beside the one it replaced."""
    c = result["campaign"]
    r = c["recipe"]
    by_epoch = {twin: {row["epochs_completed"]: row for row in rows} for twin, rows in c["epochs"].items()}
    n = next((row.get("val_n") for rows in c["epochs"].values() for row in rows if row.get("val_n")), "?")
    lines = [f"Both twins trained from their base weights to {r['epochs']} epochs of the same data, seed "
             f"{r['seed']}, batch {r['batch_size']}, lr {r['lr']} ({r['lr_schedule']}), {r['conditioning']} "
             f"conditioning, {r['max_length']}-token crops ({r['steps_per_epoch']:g} steps an epoch). At each epoch's "
             f"end: accuracy of each reading (Bayes over the likelihood; the infilled class word) and perplexity "
             f"(diffusion: ELBO bound; left to right: exact) on the same {n} validation reviews. Shipped: "
             f"diffusion epoch {c['shipped']['diffusion']}, left-to-right epoch {c['shipped']['ar']} ({c['rule']}).",
             "", "| epoch | diffusion Bayes | diffusion infill | diffusion perplexity | twin Bayes | twin infill | "
                 "twin perplexity | perplexity ratio | better reading: diffusion − twin |",
             "|---|---|---|---|---|---|---|---|---|"]
    for epoch in sorted(set(by_epoch["diffusion"]) | set(by_epoch["ar"])):
        d, a = by_epoch["diffusion"].get(epoch, {}), by_epoch["ar"].get(epoch, {})
        ratio = (f"{d['val_perplexity'] / a['val_perplexity']:.3f}"
                 if d.get("val_perplexity") and a.get("val_perplexity") else "–")
        gap = (_points(best_reading(d) - best_reading(a)) if best_reading(d) is not None
               and best_reading(a) is not None else "–")
        marks = {twin: " (shipped)" if c["shipped"].get(twin) == epoch else "" for twin in ("diffusion", "ar")}
        cells = [str(epoch), _percent(d.get("val_accuracy")), _percent(d.get("val_accuracy_infill")),
                 _number(d.get("val_perplexity")) + marks["diffusion"], _percent(a.get("val_accuracy")),
                 _percent(a.get("val_accuracy_infill")), _number(a.get("val_perplexity")) + marks["ar"], ratio, gap]
        lines.append("| " + " | ".join(cells) + " |")
    crossing = c.get("crossover_epoch")
    last = [best_reading(rows[-1]) for rows in c["epochs"].values() if rows and best_reading(rows[-1]) is not None]
    noise = ""
    if isinstance(n, int) and last:  # the 95% half-width of one accuracy on the monitor, at the last epoch's level
        p = sum(last) / len(last)
        half = 1.96 * math.sqrt(p * (1 - p) / n)
        noise = (f" One accuracy on {n} reviews carries a 95% half-width of about {100 * half:.1f} points; the "
                 "whole-test-split comparison above is the paired one.")
    lines += ["", ("Crossover: from epoch " + str(crossing) + " on, the diffusion model's better reading is at least "
                   "its twin's at every epoch." if crossing else "No crossover: at the last epoch the diffusion "
                   "model's better reading is below its twin's.") + noise]
    before = c.get("replaced")
    if before:
        lines += ["", f"### Against the pair it replaced (report of {before.get('finished_at')})", "",
                  "| measure | before | now |", "|---|---|---|"]
        old_readings = ((before.get("head_to_head") or {}).get("readings")) or {}
        new_readings = ((result.get("head_to_head") or {}).get("readings")) or {}
        for key, row in new_readings.items():
            if key in old_readings:
                lines.append(f"| {row['label']} (test) | {old_readings[key]['accuracy']:.1%} | {row['accuracy']:.1%} |")
        if before.get("perplexity"):
            lines.append(f"| test perplexity ratio, ELBO / exact | {before['perplexity']['ratio']:.3f} | "
                         f"{result['perplexity']['ratio']:.3f} |")
        old_rows = {(x["method"], x["length"]): x for x in (before.get("decoding") or {}).get("summary", [])}
        for x in (result.get("decoding") or {}).get("summary", []):
            old = old_rows.get((x["method"], x["length"]))
            if old and x["method"].startswith("confidence <="):
                lines.append(f"| Denoise default ({x['method']}), {x['length']} tokens: tokens per pass; generative "
                             f"perplexity | {old['tokens_per_pass']:.2f}; {old['gen_ppl']:.0f} | "
                             f"{x['tokens_per_pass']:.2f}; {x['gen_ppl']:.0f} |")
    return lines


def _objective(checkpoint: CheckpointMeta) -> str:
    weighting = {"elbo": "the MDLM 1/t ELBO", "mean": "the mean loss over masked tokens"}.get(
        checkpoint.loss_weighting, str(checkpoint.loss_weighting))
    return f"masked diffusion, trained on {weighting}; scored with the ELBO"


def training_lines(meta: dict) -> tuple[str, str]:
    """The card's base-model and training lines, every stage of a checkpoint continued from another one."""
    checkpoint = CheckpointMeta.from_dict(meta)
    stages = checkpoint.lineage()

    def stage(m: CheckpointMeta) -> str:
        config = m.config
        warmup = config.get("warmup_steps")
        warmup = f"{default_warmup_steps(m.steps)} steps, the default" if warmup is None else f"{warmup} steps"
        return (f"{m.steps} steps x {config.get('batch_size')} sequences, lr {config.get('lr')} "
                f"({config.get('lr_schedule')}, warm-up {warmup}), seed {config.get('seed')}, "
                f"{m.tokens_seen:,} tokens, {m.train_time_s / 3600:.1f} h on {m.hardware}")

    text = stage(stages[0]) + "".join(f"; then {stage(m).replace(' steps', ' more steps', 1)}" for m in stages[1:])
    if len(stages) > 1:
        text += (f": {checkpoint.steps_in_all} steps in all, {checkpoint.tokens_in_all:,} tokens, "
                 f"{checkpoint.train_time_in_all / 3600:.1f} h")
    return f"- **Base model:** `{stages[0].base_model}`", f"- **Training:** {text}"


HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "minilm-ar": "sentence-transformers/all-MiniLM-L6-v2",
           "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "imdb": "stanfordnlp/imdb",
           "rotten_tomatoes": "cornell-movie-review-data/rotten_tomatoes"}


def card_metadata(meta: dict, role: str) -> list[str]:
    """The card's Hub-style YAML front matter: licence, base model, data sets, metrics, tags."""
    checkpoint = CheckpointMeta.from_dict(meta)
    base = checkpoint.lineage()[0].base_model
    sources = checkpoint.data_specs or ["imdb"]
    datasets = [HUB_IDS[s] for s in sources if s in HUB_IDS]
    lines = ["---", "license: apache-2.0", "language: en", "library_name: transformers"]
    if base in HUB_IDS:
        lines.append(f"base_model: {HUB_IDS[base]}")
    lines += ["datasets:", *(f"- {d}" for d in datasets), "metrics:", "- accuracy", "- perplexity",
              f"pipeline_tag: {'fill-mask' if role == 'diffusion' else 'text-generation'}",
              "tags:", "- textdiff", f"- {'masked-diffusion' if role == 'diffusion' else 'causal-lm'}",
              "- text-classification", "---", ""]
    return lines


def model_card(meta: dict, result: dict, role: str) -> str:
    """A checkpoint's README.md: how it was trained (from its textdiff.json) and what the report measured."""
    checkpoint = CheckpointMeta.from_dict(meta)
    config = checkpoint.config
    rows = [r for r in result["classification"] if r["checkpoint"] == result["settings"][role]]
    base, training = training_lines(meta)
    lines = [
        *card_metadata(meta, role),
        f"# {Path(result['settings'][role]).name}", "",
        base,
        f"- **Objective:** {checkpoint.objective} "
        f"({_objective(checkpoint) if role == 'diffusion' else 'left-to-right'})",
        f"- **Conditioning:** {checkpoint.conditioning}, classes {checkpoint.classes}, "
        f"prompt `{checkpoint.class_prompt}`",
        f"- **Data:** {checkpoint.n_examples} IMDB train-split reviews (fixed sha1 split, see the top-level "
        f"README); {config.get('crop', LEGACY_DEFAULTS['crop'])} crops of {checkpoint.max_length} tokens",
        training,
        "- **Weights:** fp16 safetensors; load with `from_pretrained`, or pass this directory as `--checkpoint`",
        "",
        "## Measured (from `python train_cli.py report`, RESULTS.md)", "",
        "| method | n | accuracy | 95% CI | ECE | median latency (s) |", "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['n']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | "
                     f"{r['ece']:.3f} | {r['median_latency_s']:.3f} |")
    head = result.get("head_to_head")
    if head:
        r = head[role]
        name = "diffusion ELBO, shared noise, adaptive" if role == "diffusion" else "left-to-right twin (exact)"
        scope = "the whole test split" if not result["settings"].get("n_head") else "test subset"
        lines.append(f"| {name}: {scope} | {head['n']} | {r['accuracy']:.1%} | "
                     f"{r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | {r['ece']:.3f} | {r['median_latency_s']:.3f} |")
    p = result["perplexity"]
    key = "diffusion_elbo_ppl" if role == "diffusion" else "ar_exact_ppl"
    lines += ["", f"Test perplexity: {p[key]:.2f} ({'ELBO bound' if role == 'diffusion' else 'exact'}; "
              f"diffusion / left-to-right = {p['ratio']:.3f}).", ""]
    if role == "diffusion":
        lines += ["## Samples (uncurated: the first seeds)", ""]
        for label, texts in result["samples"].items():
            lines += [f"**{label}**", ""] + [f"{i + 1}. {t}" for i, t in enumerate(texts)] + [""]
    lines += ["## Limitations", "",
              "Trained on CPU for a limited number of steps on movie reviews only: expect review-like text, weak "
              "long-range coherence, and unreliable behaviour on other domains (the classifier's OOD flag helps). "
              "English only; IMDB's label noise and biases are inherited."]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report's flags (``python -m textdiff_core.experiments.report`` and ``train_cli.py report``)."""
    parser.add_argument("--diffusion", default=str(ROOT / "checkpoints" / "imdb-diffusion"),
                        help="diffusion checkpoint")
    parser.add_argument("--ar", default=str(ROOT / "checkpoints" / "imdb-ar"), help="left-to-right checkpoint")
    parser.add_argument("--reference", default="smollm2", help="reference left-to-right LM (generative perplexity)")
    parser.add_argument("--zero-shot", default=None,
                        help="zero-shot classifier: a directory written by `train_cli.py zero-shot` (prompt chosen and "
                             "bias fitted on validation) or a model name (default prompt, no calibration); default: "
                             "checkpoints/smollm2-zero-shot when it exists, else the reference LM")
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
    parser.add_argument("--out-dir", default=str(ROOT), help="where RESULTS.md and results.json go")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--readme", default=None,
                        help="README whose results block to rewrite (default: README.md when --out-dir is the "
                             "repository)")
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


def run_report(args: argparse.Namespace, argv: list[str]) -> int:
    """The report of parsed ``add_arguments`` flags; ``argv`` (those flags as given) is recorded as its command."""
    if args.rerender:
        return _rerender(args)
    if args.quick:
        args.n, args.n_head, args.n_ppl, args.samples, args.lengths, args.seeds = 10, 12, 4, 4, "16", "0"
    with quiet_progress(not args.progress):
        return _report(args, argv)


def _rerender(args: argparse.Namespace) -> int:
    """RESULTS.md, results.json and the README block again from the stored results and the latest crossover grid."""
    out = Path(args.out_dir)
    path = out / "results.json"
    if not path.is_file():
        raise TextdiffError(f"no {path} to rerender; run the report first")
    result = json.loads(path.read_text())
    result["crossover"] = crossover_record()
    result["augment"] = augment_record()
    result["augment_finetune"] = augment_record(AUGMENT_FINETUNE_FILE)
    if DECODING_FILE.is_file():  # its summary; every run, with its text, stays in the benchmark's file
        result["decoding"] = {k: v for k, v in json.loads(DECODING_FILE.read_text()).items() if k != "runs"} | {
            "source": relative_to_repo(str(DECODING_FILE))}
    result["decoding_checks"] = _decoding_checks()
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "RESULTS.md").write_text(render(result))
    grid = result["crossover"]
    print(f"wrote {out / 'RESULTS.md'} and {path} (crossover grid: "
          f"{'none' if not grid else 'finished' if grid.get('finished') else 'in progress'})")
    readme = Path(args.readme) if args.readme else ROOT / "README.md" if out.resolve() == ROOT else None
    if readme and write_readme_table(readme, result):
        print(f"wrote the results block of {readme}")
    return 0


def _report(args: argparse.Namespace, argv: list[str]) -> int:
    zero_shot = args.zero_shot or (str(ZERO_SHOT_DIR) if ZERO_SHOT_DIR.is_dir() else args.reference)
    models = {"diffusion": args.diffusion, "ar": args.ar, "reference": args.reference, "tfidf": args.baseline,
              "zero_shot": zero_shot}
    settings = {k: v for k, v in vars(args).items() if k not in ("progress", "fresh")}
    result = {"command": shlex.join(["python", "train_cli.py", "report", *argv]), "hardware": hardware(),
              "settings": settings}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = {"settings": {k: v for k, v in settings.items() if k not in ("readme", "cards")},
           "hardware": result["hardware"], "models": {role: fingerprint(m) for role, m in models.items()}}
    pieces = Pieces(out / PARTIAL, key, fresh=args.fresh)
    print("classification…", flush=True)
    result["classification"] = classification(args, models, pieces)
    print("diffusion against the twin, paired…", flush=True)
    result["head_to_head"] = head_to_head(args, models, pieces)
    print("perplexity…", flush=True)
    result["perplexity"] = pieces.get("perplexity", lambda: perplexity(args, models))
    print("decoding…", flush=True)
    result["decoding"] = pieces.get("decoding", lambda: decoding(args, models))
    result["decoding_checks"] = _decoding_checks()
    if out.resolve() == ROOT:  # the report's decoding figures are the committed benchmark's
        text = json.dumps(result["decoding"], indent=2) + "\n"
        write_atomic(DECODING_FILE, lambda tmp: tmp.write_text(text))
    result["samples"] = pieces.get("samples", lambda: samples(models, 2 if args.quick else 5))
    result["campaign"] = campaign_record(models["diffusion"])
    result["crossover"] = crossover_record()
    result["augment"] = augment_record()
    result["augment_finetune"] = augment_record(AUGMENT_FINETUNE_FILE)
    result["seconds"] = pieces.seconds
    if pieces.reused:
        result["resumed_pieces"] = pieces.reused
    result["finished_at"] = time.strftime("%Y-%m-%d %H:%M")
    result = relative_to_repo(result)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "RESULTS.md").write_text(render(result))
    print(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'} in {result['seconds'] / 60:.1f} min")
    readme = Path(args.readme) if args.readme else ROOT / "README.md" if out.resolve() == ROOT else None
    if readme and write_readme_table(readme, result):
        print(f"wrote the results block of {readme}")
    if args.cards:
        for role in ("diffusion", "ar"):
            meta = load_model(models[role]).meta
            (Path(models[role]) / "README.md").write_text(model_card(meta, result, role))
            print(f"wrote {Path(models[role]) / 'README.md'}")
    pieces.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
