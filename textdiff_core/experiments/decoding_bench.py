#!/usr/bin/env python
"""Benchmark: diffusion decoding strategies against left-to-right decoding (with and without a KV cache).

For each length and seed, every method continues the same prompt by ``length`` tokens on the same device in one run,
and reports forward passes, positions run through the model, wall time, and generative perplexity: the generated
text, re-tokenised by a reference causal model, scored exactly given the prompt (``evaluate.generative_perplexity``).
Low perplexity alone can mean repetition, so the share of distinct tokens (distinct-1 over the generating model's
tokens, ``evaluate.distinct_n``), distinct-2 and the word entropy of the text (``evaluate.word_entropy``) are reported
beside it. The methods: the product's default (``decoding.default_config``) with the dual, prefix and no KV cache;
each parallel strategy as a user who picks it gets it (the default's blocks, cache and sampling: ``confidence`` is
its threshold alone, without the default's pass budget); one token per pass with no cache of any kind; the twin with
and without its KV cache; and samples per second for N samples decoded as one batch (``--batch-sizes``). The
summary gives, per length, the median wall time of the default over the twin's (``ratios``).

    python -m bench.decoding --lengths 64,128,256 --seeds 0,1,2,3,4,5,6,7,8,9 --out bench/decoding.json
    python -m bench.decoding --diffusion-model DIR --ar-model DIR --lengths 64 --seeds 0,1,2
    python -m bench.decoding --diffusion-model tiny --ar-model tiny-ar --reference tiny-ar --lengths 8,16  # smoke

The committed ``bench/decoding.json`` is the Decoding section of RESULTS.md (``train_cli.py report``).
Each model is warmed up with one short generation first, so one-off start-up costs are not timed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from textdiff_core.decoding import DIFFUSION_STRATEGIES, DecodeConfig, default_config, generate, generate_samples
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import distinct_n, generative_perplexity, word_entropy
from textdiff_core.models import LoadedModel, device_name, load_model
from textdiff_core.settings import CAUSAL, MASKED
from textdiff_core.tokens import tokenize_texts
from textdiff_core.trace import Trace


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--diffusion-model", default="checkpoints/imdb-diffusion",
                   help="diffusion model: offline name, trained dir or hub id")
    p.add_argument("--ar-model", default="checkpoints/imdb-ar",
                   help="left-to-right model: offline name, trained dir or hub id")
    p.add_argument("--reference", default="smollm2", help="left-to-right model that scores the texts (perplexity)")
    p.add_argument("--lengths", type=_ints, default=[64, 128], help="new tokens per generation, comma separated")
    p.add_argument("--seeds", type=_ints, default=[0], help="seeds, comma separated (results are averaged)")
    p.add_argument("--prompt", default="The movie was", help="prompt every method continues")
    p.add_argument("--strategies", default=",".join(PARALLEL_STRATEGIES),
                   help=f"diffusion strategies to run besides the default, among {', '.join(DIFFUSION_STRATEGIES)}")
    p.add_argument("--steps", type=int, default=None, help="schedule strategies: steps (default: the length)")
    p.add_argument("--schedule", default="linear", help="schedule strategies: linear, cosine or exp")
    p.add_argument("--threshold", type=float, default=0.9, help="confidence strategy threshold")
    p.add_argument("--k", type=int, default=4, help="topk strategy: positions per step")
    p.add_argument("--spacing", type=int, default=3,
                   help="topk and confidence beyond its threshold: prefer positions this far apart within a pass")
    p.add_argument("--confidence", default="max-prob", help="max-prob, margin or entropy")
    p.add_argument("--temperature", type=float, default=1.0, help="0 greedy; 1 samples the model (the default)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the K most likely tokens")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling (0.9: the product's default)")
    p.add_argument("--batch-sizes", type=_ints, default=[1, 4, 8],
                   help="also time N samples in one batch at the default settings (both kinds), at the last length")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="write every run and the summary as JSON")
    return p.parse_args(argv)


def perplexity(reference: LoadedModel, trace: Trace, prompt: str) -> tuple[float, int]:
    """(generative perplexity of the generation given the prompt, reference token count); (nan, 0) when nothing is
    left after re-tokenising."""
    try:
        ppl = generative_perplexity(reference, trace.generated_text, prompt or None)
    except TextdiffError:
        return float("nan"), 0
    return ppl, len(tokenize_texts(reference.tokenizer, [trace.generated_text])[0])


PARALLEL_STRATEGIES = ("confidence", "entropy-bound", "topk")  # those that commit more than one token per pass


def methods(args: argparse.Namespace, length: int) -> list[tuple[str, str, DecodeConfig]]:
    """(method name, which model, config) for every method at this length."""
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    default = replace(default_config(MASKED, length=length), **sampling)
    out = [("default (blocks, dual cache)", "diffusion", default),
           ("default, prefix cache", "diffusion", replace(default, cache="prefix")),
           ("default, no KV cache", "diffusion", replace(default, cache="none"))]
    for s in (s for s in args.strategies.split(",") if s):
        picked = replace(default_config(MASKED, s, length), **sampling, threshold=args.threshold, k=args.k,
                         confidence=args.confidence, schedule=args.schedule)
        if s.startswith("schedule"):
            picked = replace(picked, steps=args.steps or length)
        elif s == "confidence":
            picked = replace(picked, steps=None)  # the threshold alone decides the pace
        out.append((s, "diffusion", picked))
    base = DecodeConfig(**sampling)
    out.append(("one per pass, no cache", "diffusion", replace(base, strategy="confidence", steps=length,
                                                               threshold=1.0, spacing=1, reuse=False,
                                                               cache="none")))
    out.append(("ar (KV cache)", "ar", replace(default_config(CAUSAL), **sampling)))
    out.append(("ar (no cache)", "ar", replace(default_config(CAUSAL), **sampling, use_cache=False)))
    return out


def batch_throughput(models: dict[str, LoadedModel], args: argparse.Namespace, length: int) -> list[dict]:
    """Samples per second when N samples decode as one batch (``generate_samples``) at the default settings."""
    rows = []
    for which, kind in (("diffusion", MASKED), ("ar", CAUSAL)):
        config = replace(default_config(kind, length=length), temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p)
        for n in args.batch_sizes:
            started = time.perf_counter()
            generate_samples(models[which], args.prompt, length, config, samples=n)
            wall = time.perf_counter() - started
            rows.append({"model": which, "length": length, "samples": n, "wall_s": round(wall, 4),
                         "samples_per_s": round(n / wall, 3)})
            print(f"  batch {which:<9} N={n}: {n / wall:.2f} samples/s", file=sys.stderr)
    return rows


def _mean_ci(values: list[float]) -> list[float] | None:
    """The mean's 95% interval (normal approximation); None for fewer than two values."""
    if len(values) < 2:
        return None
    mean, se = statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))
    return [round(mean - 1.96 * se, 3), round(mean + 1.96 * se, 3)]


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {"diffusion": load_model(args.diffusion_model, MASKED), "ar": load_model(args.ar_model, CAUSAL)}
    reference = load_model(args.reference, CAUSAL)
    generate(models["diffusion"], args.prompt, 4)  # warm-up, untimed
    generate(models["ar"], args.prompt, 4, strategy="ar")
    rows = []
    for length in args.lengths:
        for seed in args.seeds:
            for name, which, config in methods(args, length):
                trace = generate(models[which], args.prompt, length, config, seed=seed)
                ppl, ref_tokens = perplexity(reference, trace, args.prompt)
                generated = [t for t, d in zip(trace.frames[-1].ids, trace.decoded, strict=True) if d]
                rows.append({
                    "method": name, "model": trace.model, "length": length, "seed": seed,
                    "forward_passes": trace.forward_passes,
                    "tokens_processed": trace.frames[-1].tokens_processed,
                    "wall_s": round(trace.elapsed_s, 4),
                    "tokens_per_pass": round(trace.tokens_per_pass, 3),
                    "gen_ppl": ppl, "reference_tokens": ref_tokens,
                    "distinct": round(distinct_n(generated, 1), 3),
                    "distinct_2": round(distinct_n(trace.generated_text, 2), 3),
                    "word_entropy": round(word_entropy(trace.generated_text), 3),
                    "text": trace.generated_text, "settings": trace.settings,
                })
                print(f"  {name:<20} len {length:>4} seed {seed}: {trace.forward_passes:>4} passes "
                      f"{trace.elapsed_s:7.2f} s  ppl {ppl:8.1f}", file=sys.stderr)
    summary = []
    for length in args.lengths:
        for name, _, _ in methods(args, length):
            group = [r for r in rows if r["method"] == name and r["length"] == length]
            logs = [math.log(r["gen_ppl"]) for r in group if math.isfinite(r["gen_ppl"]) and r["gen_ppl"] > 0]
            mean_log = statistics.mean(logs) if logs else float("nan")
            se_log = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("nan")
            summary.append({
                "method": name, "length": length, "runs": len(group),
                **{key: statistics.mean(r[key] for r in group)
                   for key in ("forward_passes", "tokens_processed", "wall_s", "tokens_per_pass", "distinct",
                               "distinct_2")},
                "wall_s_median": statistics.median(r["wall_s"] for r in group),
                "word_entropy_median": statistics.median(r["word_entropy"] for r in group),
                "word_entropy_mean": statistics.mean(r["word_entropy"] for r in group),
                "word_entropy_ci95": _mean_ci([r["word_entropy"] for r in group]),
                "distinct_texts": len({r["text"] for r in group}),  # distinct seeds should write distinct texts
                # geometric mean over seeds, with a 95% interval from the spread of log perplexity
                "gen_ppl": math.exp(mean_log),
                "gen_ppl_ci95": [math.exp(mean_log - 1.96 * se_log), math.exp(mean_log + 1.96 * se_log)]
                if len(logs) > 1 else None,  # one seed: no interval (and no NaN in the JSON)
            })
    medians = {(r["method"], r["length"]): r["wall_s_median"] for r in summary}
    ratios = [{"length": length, "default_over_twin": round(medians[("default (blocks, dual cache)", length)]
                                                            / medians[("ar (KV cache)", length)], 3)}
              for length in args.lengths]
    device = models["diffusion"].device
    hardware = device_name(device)
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "hardware": f"{hardware}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "summary": summary,
        "ratios": ratios,
        "batch": batch_throughput(models, args, args.lengths[-1]) if args.batch_sizes else [],
        "runs": rows,
    }


def print_table(result: dict) -> None:
    print(f"{result['hardware']}; perplexity under {result['settings']['reference']}; "
          f"means over seeds {result['settings']['seeds']} (perplexity: geometric mean, 95% interval)")
    header = f"{'method':<26}{'len':>5}{'passes':>9}{'tok/pass':>9}{'positions':>11}{'wall s':>9}{'gen ppl':>10}" \
             f"{'95% interval':>18}{'distinct':>10}"
    print(header)
    print("-" * len(header))
    for r in result["summary"]:
        low, high = r["gen_ppl_ci95"] or (float("nan"), float("nan"))
        print(f"{r['method']:<26}{r['length']:>5}{r['forward_passes']:>9.1f}{r['tokens_per_pass']:>9.2f}"
              f"{r['tokens_processed']:>11.0f}{r['wall_s']:>9.2f}{r['gen_ppl']:>10.1f}{f'{low:.0f}-{high:.0f}':>18}"
              f"{r['distinct']:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except TextdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
