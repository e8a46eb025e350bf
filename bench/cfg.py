#!/usr/bin/env python
"""Benchmark: classifier-free guidance on a class-conditional diffusion model.

For each guidance scale, class and seed, the model generates ``length`` tokens from its class prompt alone; then
  agreement   a classifier (default: the left-to-right twin, exact) reads the generated text: the share of texts it
              assigns to the requested class, with a 95% Wilson interval;
  perplexity  generative perplexity under a reference causal LM (default SmolLM2): geometric mean over texts, with a
              95% interval from the spread of log perplexity; and distinct-1, since repetition lowers perplexity.
Scale 1 is plain conditional decoding, 0 ignores the class (the prompt masked), > 1 pushes towards it.

    python -m bench.cfg --scales 0,1,2 --seeds 10,11,12,13,14,15 --length 32 --out /tmp/cfg.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from textdiff_core.classify import load_classifier
from textdiff_core.decoding import generate
from textdiff_core.evaluate import distinct_n, generative_perplexity, wilson_interval
from textdiff_core.models import device_name, load_model
from textdiff_core.settings import CAUSAL, MASKED


def _numbers(text: str, kind=int) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="checkpoints/imdb-diffusion", help="class-conditional diffusion checkpoint")
    p.add_argument("--classifier", default="checkpoints/imdb-ar", help="classifier checkpoint that judges agreement")
    p.add_argument("--reference", default="smollm2", help="causal LM for generative perplexity")
    p.add_argument("--scales", type=lambda t: _numbers(t, float), default=[0.0, 1.0, 2.0], help="guidance scales")
    p.add_argument("--seeds", type=_numbers, default=list(range(10, 16)), help="sampling seeds (held out: not 0-4)")
    p.add_argument("--length", type=int, default=32, help="generated tokens per text")
    p.add_argument("--steps", type=int, default=8, help="forward passes per text (confidence decoding's budget)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling")
    p.add_argument("--out", default=None, help="write the results as JSON")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    lm = load_model(args.model, MASKED)
    classes = lm.checkpoint.classes
    if not lm.checkpoint.class_prompt:
        raise SystemExit(f"{args.model} is not class-conditional")
    judge = load_classifier(args.classifier)
    reference = load_model(args.reference, CAUSAL)
    rows = []
    for scale in args.scales:
        for label in classes:
            for seed in args.seeds:
                trace = generate(lm, "", args.length, label=label, strategy="confidence", steps=args.steps,
                                 temperature=args.temperature, top_p=args.top_p, seed=seed, cfg_scale=scale)
                text = trace.generated_text
                verdict = judge.classify(text, generator=torch.Generator().manual_seed(seed)) if text else None
                ppl = generative_perplexity(reference, text) if text else float("nan")
                rows.append({"scale": scale, "label": label, "seed": seed, "text": text,
                             "judged": verdict.label if verdict else None, "gen_ppl": ppl,
                             "distinct1": distinct_n(text), "forward_passes": trace.forward_passes})
                print(f"scale {scale:g} {label:>9} seed {seed}: judged {rows[-1]['judged']}, ppl {ppl:.0f} | "
                      f"{text[:70]}", flush=True)
    summary = []
    for scale in args.scales:
        group = [r for r in rows if r["scale"] == scale]
        agree = sum(r["judged"] == r["label"] for r in group)
        logs = [math.log(r["gen_ppl"]) for r in group if math.isfinite(r["gen_ppl"])]
        mean, se = statistics.mean(logs), statistics.stdev(logs) / math.sqrt(len(logs))
        summary.append({"scale": scale, "texts": len(group), "agreement": agree / len(group),
                        "agreement_ci95": list(wilson_interval(agree, len(group))), "gen_ppl": math.exp(mean),
                        "gen_ppl_ci95": [math.exp(mean - 1.96 * se), math.exp(mean + 1.96 * se)],
                        "distinct1": statistics.mean(r["distinct1"] for r in group),
                        "forward_passes": statistics.mean(r["forward_passes"] for r in group)})
    return {"settings": vars(args) | {"classifier_method": judge.method},
            "hardware": f"{device_name(lm.device)}, {torch.get_num_threads()} threads",
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "summary": summary, "runs": rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    result = run(args)
    for s in result["summary"]:
        lo, hi = s["agreement_ci95"]
        plo, phi = s["gen_ppl_ci95"]
        print(f"scale {s['scale']:g}: agreement {s['agreement']:.1%} [{lo:.1%}, {hi:.1%}] of {s['texts']}; "
              f"gen. perplexity {s['gen_ppl']:.1f} [{plo:.1f}, {phi:.1f}]; distinct-1 {s['distinct1']:.2f}; "
              f"{s['forward_passes']:.0f} passes")
    print(f"{time.time() - started:.0f} s on {result['hardware']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
