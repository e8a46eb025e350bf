#!/usr/bin/env python
"""The benchmark suite: one command, JSON out, measured on whatever machine runs it.

    python -m bench.run --out bench/results.json          # shipped checkpoints (else the offline bases), ~5 min CPU
    python -m bench.run --quick --out /tmp/bench.json     # tiny models, seconds: a smoke run (the tests use it)

Sections:
- ``matmul``: the machine's measured matmul peak (the best of several large ``torch.matmul`` runs, in GFLOP/s);
- ``scoring``: batched ELBO scoring (many masked copies of one IMDB review per forward pass, the kernel of the
  diffusion classifier): FLOPs counted by ``torch.utils.flop_counter``, the achieved GFLOP/s and that as a
  fraction of the matmul peak (re-measured before each timed pass: a shared machine's speed drifts);
- ``classification``: latency per review (median, p95), reviews/s and accuracy on a fixed class-balanced subset of
  the IMDB test split, for every method (ELBO fixed and adaptive, the 15%-mask MLM loss, pseudo-log-likelihood on fewer
  reviews, exact left-to-right, zero-shot with the reference LM);
- ``decoding``: forward passes and wall time per diffusion strategy vs left-to-right with and without a KV cache
  (``python -m bench.decoding``);
- ``training``: tokens/s of a short training run of each objective.

Nothing else should run on the machine meanwhile: every figure is a wall-clock measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from textdiff_core import checkpoint
from textdiff_core.classify import load_classifier, score_matrix
from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments import decoding_bench
from textdiff_core.likelihood import draw_noise, masked_token_nll, text_windows
from textdiff_core.models import device_name, load_model, pick_device
from textdiff_core.paths import relative_to_root
from textdiff_core.settings import MASKED
from textdiff_core.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

CHECKPOINTS = ROOT / "checkpoints"


def _default(shipped: str, fallback: str) -> str:
    path = CHECKPOINTS / shipped
    return str(path) if checkpoint.exists(path) else fallback


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--diffusion-model", default=None, help="masked model (default: checkpoints/imdb-diffusion, else "
                                                            "minilm)")
    p.add_argument("--ar-model", default=None, help="causal model (default: checkpoints/imdb-ar, else minilm-ar)")
    p.add_argument("--reference", default=None, help="reference causal LM: zero-shot and perplexity (smollm2)")
    p.add_argument("--reviews", type=int, default=20, help="IMDB test reviews per classification method")
    p.add_argument("--pll-reviews", type=int, default=2, help="reviews for pseudo-log-likelihood (one pass per token)")
    p.add_argument("--samples", type=int, default=8, help="ELBO samples per class (the cap when adaptive)")
    p.add_argument("--matmul-size", type=int, default=2048, help="side of the square matrices of the peak test")
    p.add_argument("--train-steps", type=int, default=12, help="optimizer steps per training measurement")
    p.add_argument("--sections", default="matmul,scoring,classification,decoding,training",
                   help="comma-separated subset of the sections")
    p.add_argument("--quick", action="store_true", help="tiny models and a few examples: a smoke run in seconds")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # recorded with the results
    if args.quick:
        args.diffusion_model = args.diffusion_model or "tiny"
        args.ar_model = args.ar_model or "tiny-ar"
        args.reference = args.reference or "tiny-ar"
        args.reviews, args.pll_reviews, args.samples = 4, 1, 2
        args.matmul_size, args.train_steps = 256, 3
    args.diffusion_model = args.diffusion_model or _default("imdb-diffusion", "minilm")
    args.ar_model = args.ar_model or _default("imdb-ar", "minilm-ar")
    args.reference = args.reference or "smollm2"
    return args


def hardware() -> dict:
    device = pick_device()
    return {"device": device.type, "name": device_name(device), "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(size: int, repeats: int = 5) -> dict:
    """The best of ``repeats`` timed ``a @ b`` of two size x size matrices (fp32 on CPU, bf16 on GPU)."""
    device = pick_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return {"size": size, "dtype": str(dtype).replace("torch.", ""), "best_s": best,
            "gflops": 2 * size**3 / best / 1e9}


def test_reviews(n: int) -> tuple[list[str], list[int], list[str]]:
    """A fixed, class-balanced subset of the IMDB test split (the same on every run)."""
    data = load_data("imdb", "test", max_samples=n, seed=0)
    return data.texts, data.labels, data.classes


def scoring(args: argparse.Namespace, text: str, peak: float | None, rounds: int = 5) -> dict:
    """Batched ELBO scoring of one review: ``batch`` masked copies per forward pass, logits only where masked.

    The speed of a shared machine drifts (the matmul peak of one run can be 1.5x another's), so the matmul peak is
    re-measured right before each timed scoring pass and the fraction of peak is the median of the per-round ratios.
    """
    lm = load_model(args.diffusion_model, MASKED)
    windows, prefixes = text_windows(lm, text, ["positive review:"], None, 1)
    window, batch = windows[0], 32
    noise = draw_noise(len(window), batch, torch.Generator().manual_seed(0))
    tokens = batch * (len(window) + len(prefixes[0]) + 2)  # all copies in one forward pass
    masked_token_nll(lm, window, prefixes[0], noise.masks, tokens)  # warm-up
    with FlopCounterMode(display=False) as counter:
        masked_token_nll(lm, window, prefixes[0], noise.masks, tokens)
    flops = counter.get_total_flops()
    times, ratios = [], []
    for _ in range(rounds):
        round_peak = matmul_peak(args.matmul_size, repeats=3)["gflops"] if peak else None
        _sync(lm.device)
        start = time.perf_counter()
        masked_token_nll(lm, window, prefixes[0], noise.masks, tokens)
        _sync(lm.device)
        times.append(time.perf_counter() - start)
        if round_peak:
            ratios.append(flops / times[-1] / 1e9 / round_peak)
    best = min(times)
    out = {"model": lm.name, "tokens_per_copy": len(window) + len(prefixes[0]), "copies_per_pass": batch,
           "gflop_per_pass": flops / 1e9, "best_s": best, "median_s": statistics.median(times),
           "gflops": flops / statistics.median(times) / 1e9, "sequences_per_s": batch / statistics.median(times)}
    if ratios:
        out["fraction_of_matmul_peak"] = statistics.median(ratios)
        out["fraction_per_round"] = ratios
    print(f"  scoring: {out['gflops']:.1f} GFLOP/s" + (f" = {out['fraction_of_matmul_peak']:.0%} of peak (median of "
                                                      f"{rounds} interleaved rounds)" if ratios else ""),
          file=sys.stderr)
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def classification(args: argparse.Namespace) -> list[dict]:
    texts, labels, classes = test_reviews(args.reviews)
    # (method, model, scorer, samples, adaptive, reviews)
    plans = [
        ("elbo", args.diffusion_model, "elbo", args.samples, False, args.reviews),
        ("elbo (adaptive, z=2)", args.diffusion_model, "elbo", args.samples, True, args.reviews),
        ("mlm-loss (15% mask x5)", args.diffusion_model, "mlm-loss", 5, False, args.reviews),
        ("pll", args.diffusion_model, "pll", 1, False, args.pll_reviews),
        ("infill (class word masked)", args.diffusion_model, "infill", 1, False, args.reviews),
        ("ar (exact)", args.ar_model, "ar", 1, False, args.reviews),
        ("ar infill (class word after the text)", args.ar_model, "infill", 1, False, args.reviews),
        ("zero-shot", args.reference, "ar", 1, False, args.reviews),
    ]
    rows = []
    for name, model, method, samples, adaptive, n in plans:
        n = min(n, len(texts))
        if not n:
            continue
        clf = load_classifier(model, method, classes=None if name != "zero-shot" else classes)
        clf.classify(texts[0][:200], samples)  # warm-up, untimed
        start = time.perf_counter()
        predictions = score_matrix(clf, texts[:n], samples, seed=0, progress=False, adaptive=adaptive)
        total = time.perf_counter() - start
        latency = [p.seconds for p in predictions]
        correct = [clf.classes.index(p.label) == y for p, y in zip(predictions, labels[:n], strict=True)]
        rows.append({
            "method": name, "model": model, "scorer": method, "reviews": n, "samples": samples, "adaptive": adaptive,
            "latency_median_s": statistics.median(latency), "latency_p95_s": _percentile(latency, 0.95),
            "reviews_per_s": n / total, "forward_passes_mean": statistics.mean(p.forward_passes for p in predictions),
            "accuracy": sum(correct) / n,
        })
        r = rows[-1]
        print(f"  {name:<22} {n:>3} reviews: median {r['latency_median_s']:.3f} s, p95 {r['latency_p95_s']:.3f} s, "
              f"{r['reviews_per_s']:.2f}/s, accuracy {r['accuracy']:.2f}", file=sys.stderr)
    return rows


def decoding(args: argparse.Namespace) -> dict:
    lengths = "8" if args.quick else "64"
    result = decoding_bench.run(decoding_bench.parse_args([
        "--diffusion-model", args.diffusion_model, "--ar-model", args.ar_model, "--reference", args.reference,
        "--lengths", lengths, "--seeds", "0"]))
    return {"settings": result["settings"], "summary": result["summary"]}


def training(args: argparse.Namespace) -> list[dict]:
    rows = []
    plans = [("diffusion", "tiny" if args.quick else "minilm"), ("ar", "tiny-ar" if args.quick else "minilm-ar")]
    for objective, model in plans:
        with tempfile.TemporaryDirectory() as tmp:
            batch, length = (4, 48) if args.quick else (16, 128)
            config = TrainConfig(out=tmp, objective=objective, model=model, data=["imdb"], conditioning="class",
                                 steps=args.train_steps, batch_size=batch, max_length=length,
                                 max_samples=args.train_steps * batch, save_every=0, log_every=1)
            train(config, progress=False)
            lines = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
            steady = [x["tokens_per_s"] for x in lines if "tokens_per_s" in x][2:] or [lines[-1]["tokens_per_s"]]
            rows.append({"objective": objective, "model": model, "batch_size": batch, "max_length": length,
                         "steps": args.train_steps, "tokens_per_s": statistics.median(steady)})
            print(f"  training {objective}: {rows[-1]['tokens_per_s']:.0f} tokens/s", file=sys.stderr)
    return rows


def run(args: argparse.Namespace) -> dict:
    sections = set(args.sections.split(","))
    started = time.time()
    result: dict = {"command": shlex.join(["python", "-m", "bench.run", *args.argv]), "hardware": hardware(),
                    "models": {"diffusion": args.diffusion_model, "ar": args.ar_model, "reference": args.reference}}
    peak = None
    if "matmul" in sections:
        result["matmul"] = matmul_peak(args.matmul_size)
        peak = result["matmul"]["gflops"]
        print(f"  matmul peak: {peak:.1f} GFLOP/s", file=sys.stderr)
    if "scoring" in sections:
        result["scoring"] = scoring(args, test_reviews(2)[0][0], peak)
    if "classification" in sections:
        result["classification"] = classification(args)
    if "decoding" in sections:
        result["decoding"] = decoding(args)
    if "training" in sections:
        result["training"] = training(args)
    result["seconds"] = time.time() - started
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return result


def table(result: dict) -> str:
    """The results as Markdown tables (what the README quotes)."""
    hw = result["hardware"]
    lines = [f"Hardware: {hw['name']} ({hw['device']}, {hw['cpu_cores']} cores, {hw['torch_threads']} torch threads, "
             f"torch {hw['torch']}); `{result['command']}`, {result['seconds'] / 60:.1f} min.", ""]
    if "matmul" in result:
        m = result["matmul"]
        lines.append(f"Matmul peak: **{m['gflops']:.1f} GFLOP/s** ({m['size']}x{m['size']} {m['dtype']}).")
    if "scoring" in result:
        s = result["scoring"]
        fraction = s.get("fraction_of_matmul_peak")
        share = f" = **{fraction:.0%} of the matmul peak**" if fraction is not None else ""
        lines.append(f"Batched ELBO scoring ({s['copies_per_pass']} masked copies of {s['tokens_per_copy']} tokens per "
                     f"pass): {s['gflops']:.1f} GFLOP/s (median){share} (median of the ratios to a peak re-measured "
                     f"before each timed pass), {s['sequences_per_s']:.1f} sequences/s.")
    if "classification" in result:
        lines += ["", "| method | model | reviews | median s | p95 s | reviews/s | passes | accuracy |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["classification"]:
            lines.append(f"| {r['method']} | `{Path(r['model']).name}` | {r['reviews']} | "
                         f"{r['latency_median_s']:.3f} | {r['latency_p95_s']:.3f} | {r['reviews_per_s']:.2f} | "
                         f"{r['forward_passes_mean']:.0f} | {r['accuracy']:.2f} |")
    if "decoding" in result:
        lines += ["", "| decoder | new tokens | forward passes | wall s | tokens/pass | gen. perplexity |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["decoding"]["summary"]:
            lines.append(f"| {r['method']} | {r['length']} | {r['forward_passes']:.0f} | {r['wall_s']:.2f} | "
                         f"{r['tokens_per_pass']:.2f} | {r['gen_ppl']:.1f} |")
    if "training" in result:
        lines += ["", "| training | model | batch x tokens | tokens/s |", "| --- | --- | --- | ---: |"]
        for r in result["training"]:
            lines.append(f"| {r['objective']} | `{r['model']}` | {r['batch_size']} x {r['max_length']} | "
                         f"{r['tokens_per_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except TextdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    if args.out:
        record = relative_to_root(result, Path(__file__).resolve().parents[1])  # bench/ sits in the repository
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
