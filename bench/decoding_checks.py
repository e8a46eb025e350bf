#!/usr/bin/env python
"""The first-look checks of fast decoding on the shipped pair, each printed and written to one JSON:

  timing     median wall time over seeds of the default, the default without the KV cache, the same in one block,
             and the left-to-right twin (KV cache), at one length; and samples/s for batches of N
  sampling   the default sampled (temperature 1, top-p 0.9) against greedy, with and without blocks and cache
  agreement  greedy one-token-per-pass decoding with each cache against the uncached run: the share of positions
             that commit the same token (the issue's reading) and, pass by pass on the same sequence state, the
             share of open positions whose most likely token the cached pass gets right

    python -m bench.decoding_checks --threads 1 --out bench/decoding_checks.json
    python -m bench.decoding_checks --diffusion-model tiny --ar-model tiny-ar --length 16 --seeds 0 --prompts "The"
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from textdiff_core import kv_cache
from textdiff_core.decoding import default_config, generate, generate_samples
from textdiff_core.denoisers import denoise_logits
from textdiff_core.models import device_name, load_model
from textdiff_core.settings import CAUSAL, MASKED

PROMPTS = "This movie|I went to see this film|The acting was|What a|My wife and I"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--diffusion-model", default="checkpoints/imdb-diffusion", help="masked model")
    p.add_argument("--ar-model", default="checkpoints/imdb-ar", help="its left-to-right twin")
    p.add_argument("--length", type=int, default=128, help="new tokens")
    p.add_argument("--seeds", default="0,1,2,3,4", help="seeds of the timing and sampling checks, comma separated")
    p.add_argument("--batch-sizes", default="1,4,8", help="samples per batch in the timing check")
    p.add_argument("--prompts", default=PROMPTS, help="prompts of the agreement check, separated by '|'")
    p.add_argument("--block-size", type=int, default=32, help="blocks of the agreement check")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="write the figures as JSON")
    return p.parse_args(argv)


def _timed(lm, prompt: str, length: int, config) -> tuple[float, object]:
    started = time.perf_counter()
    trace = generate(lm, prompt, length, config)
    return time.perf_counter() - started, trace


def timing(diffusion, ar, args, seeds: list[int]) -> dict:
    default = default_config(MASKED, length=args.length)
    variants = {"default (blocks, dual cache)": (diffusion, default),
                "default, no KV cache": (diffusion, replace(default, cache="none")),
                "default, one block, no cache": (diffusion, replace(default, cache="none", block_size=None)),
                "left-to-right twin, KV cache": (ar, default_config(CAUSAL))}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in seeds:  # interleaved, so a change in the machine's load touches every variant alike
        for name, (lm, config) in variants.items():
            wall, trace = _timed(lm, "This movie", args.length, replace(config, seed=seed))
            runs[name].append({"wall_s": wall, "forward_passes": trace.forward_passes,
                               "tokens_processed": trace.frames[-1].tokens_processed})
    summary = {name: {"median_wall_s": statistics.median(r["wall_s"] for r in rs),
                      "forward_passes": rs[0]["forward_passes"], "tokens_processed": rs[0]["tokens_processed"]}
               for name, rs in runs.items()}
    ratio = summary["default (blocks, dual cache)"]["median_wall_s"] / \
        summary["left-to-right twin, KV cache"]["median_wall_s"]
    batches = []
    for which, lm, kind in (("diffusion", diffusion, MASKED), ("ar", ar, CAUSAL)):
        for n in [int(x) for x in args.batch_sizes.split(",") if x]:
            started = time.perf_counter()
            generate_samples(lm, "This movie", args.length, default_config(kind, length=args.length), samples=n)
            batches.append({"model": which, "samples": n, "samples_per_s": n / (time.perf_counter() - started)})
    return {"summary": summary, "diffusion_over_twin": ratio, "batches": batches, "runs": runs}


def sampling(diffusion, args, seeds: list[int]) -> dict:
    default = default_config(MASKED, length=args.length)
    greedy = {"temperature": 0.0, "top_p": None}
    variants = {"sampled": default, "greedy": replace(default, **greedy),
                "sampled, one block, no cache": replace(default, block_size=None, cache="none"),
                "greedy, one block, no cache": replace(default, block_size=None, cache="none", **greedy)}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    for seed in seeds:
        for name, config in variants.items():
            walls[name].append(_timed(diffusion, "This movie", args.length, replace(config, seed=seed))[0])
    return {name: statistics.median(values) for name, values in walls.items()}


def agreement(diffusion, args) -> dict:
    one_per_pass = dict(strategy="confidence", threshold=1.0, steps=args.length, spacing=1,
                        block_size=args.block_size, temperature=0.0)
    per_pass: list[float] = []
    real = kv_cache.BlockCache.partial

    def partial(cache, ids, queries, where, rows=None):  # the cached pass, and the exact one on the same state
        logits = real(cache, ids, queries, where, rows)
        exact = denoise_logits(diffusion, ids, torch.ones_like(ids), where)
        per_pass.append(float((logits.argmax(-1) == exact.argmax(-1)).float().mean()))
        return logits

    out = {}
    kv_cache.BlockCache.partial = partial
    try:
        for cache in ("prefix", "dual"):
            per_pass.clear()
            positions = []
            for prompt in args.prompts.split("|"):
                base = generate(diffusion, prompt, args.length, **one_per_pass)
                trace = generate(diffusion, prompt, args.length, cache=cache, **one_per_pass)
                decoded = [i for i, d in enumerate(trace.decoded) if d]
                same = sum(trace.frames[-1].ids[i] == base.frames[-1].ids[i] for i in decoded)
                positions.append(same / len(decoded))
            out[cache] = {"by_position": positions, "by_position_median": statistics.median(positions),
                          "pass_by_pass": statistics.mean(per_pass) if per_pass else None,
                          "cached_passes": len(per_pass)}
    finally:
        kv_cache.BlockCache.partial = real
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    diffusion, ar = load_model(args.diffusion_model, MASKED), load_model(args.ar_model, CAUSAL)
    generate(diffusion, "The", 4)  # warm-up, untimed
    generate(ar, "The", 4, strategy="ar")
    result = {"hardware": f"{device_name(diffusion.device)}, {torch.get_num_threads()} threads",
              "settings": vars(args), "timing": timing(diffusion, ar, args, seeds),
              "sampling": sampling(diffusion, args, seeds), "agreement": agreement(diffusion, args)}
    for name, row in result["timing"]["summary"].items():
        print(f"{name:34s} median {row['median_wall_s']:6.2f} s  {row['forward_passes']:4d} passes  "
              f"{row['tokens_processed']:6d} positions")
    print(f"diffusion default / twin: {result['timing']['diffusion_over_twin']:.2f}x")
    for row in result["timing"]["batches"]:
        print(f"batch {row['model']:9s} N={row['samples']}: {row['samples_per_s']:.2f} samples/s")
    for name, wall in result["sampling"].items():
        print(f"{name:34s} median {wall:6.2f} s")
    for cache, row in result["agreement"].items():
        print(f"{cache} cache: same token at {row['by_position_median']:.0%} of positions (median over prompts); "
              f"pass by pass {row['pass_by_pass'] or 0:.1%} over {row['cached_passes']} cached passes")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
