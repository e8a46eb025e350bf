"""Where does a class-conditional diffusion model's class evidence live? The ELBO's class difference, split by
masking rate.

The ELBO of a text under class c is an integral over the masking rate t of (1/t) E[sum over masked tokens of
-log p(x_i | x_t, c)]. This tool estimates that integrand on a grid of G rate strata (S masks per stratum, the same
masks for every class), text by text, and reports for each stratum how well the class difference alone classifies
and its signal-to-noise ratio (mean over texts of the true class's advantage, over its standard deviation). The
mean over strata is the ELBO estimate itself (G x S stratified samples), so the last rows show what the low and the
high rates each add.

    python -m bench.evidence_by_rate --checkpoint checkpoints/imdb-diffusion --split validation --limit 800
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from textdiff_core.classify import Classifier, load_classifier
from textdiff_core.errors import TextdiffError
from textdiff_core.likelihood import masked_rows_nll, text_windows
from textdiff_core.models import LoadedModel

ROOT = Path(__file__).resolve().parents[1]


def rate_terms(classifier: Classifier, text: str, grid: int, samples: int, generator: torch.Generator,
               max_windows: int | None = None) -> torch.Tensor:
    """[grid, classes]: per rate stratum, the mean over ``samples`` masks of (L/k) x the masked tokens' -log p, summed
    over the text's windows (the same masks for every class; only the first ``max_windows`` if set). Their mean over
    strata is an ELBO estimate."""
    lm = classifier.models
    if not isinstance(lm, LoadedModel):
        raise TextdiffError("evidence by rate needs one class-conditional model (class prompts), not a per-class set")
    windows, prefixes = text_windows(lm, text, classifier.prompts, classifier.max_length, max_windows)
    rows_w, rows_p, rows_m, weights = [], [], [], []
    for window in windows:
        n = len(window)
        for g in range(grid):
            for _ in range(samples):
                u = (g + torch.rand(1, generator=generator).item()) / grid  # a rate in stratum g
                k = max(1, min(n, 1 + int(u * n)))  # masked-token count, as the ELBO scorer draws it
                mask = torch.zeros(n, dtype=torch.bool)
                mask[torch.randperm(n, generator=generator)[:k]] = True
                for p in prefixes:
                    rows_w.append(window)
                    rows_p.append(p)
                    rows_m.append(mask)
                    weights.append(n / k)
    nll = masked_rows_nll(lm, rows_w, rows_p, rows_m)
    terms = torch.tensor([w * x.sum().item() for w, x in zip(weights, nll, strict=True)])
    return terms.view(len(windows), grid, samples, len(prefixes)).sum(0).mean(1)


def summarise(terms: torch.Tensor, labels: list[int]) -> dict:
    """Per stratum and for the low half, high half and all strata: accuracy of argmin NLL (two classes: the
    difference's sign; more: argmin) and, for two classes, the evidence's mean, sd and signal-to-noise ratio."""
    y = torch.tensor(labels)
    grid = terms.shape[1]

    def row(name: str, nll: torch.Tensor) -> dict:
        r = {"rates": name, "accuracy": (nll.argmin(1) == y).float().mean().item()}
        if nll.shape[1] == 2:  # evidence for the true class: NLL of the other class minus the true one's
            true = nll.gather(1, y[:, None])[:, 0]
            other = nll.gather(1, (1 - y)[:, None])[:, 0]
            e = other - true
            sd = e.std().item() if len(e) > 1 else None  # None, not NaN: the JSON stays strict
            r |= {"evidence_mean": e.mean().item(), "evidence_sd": sd, "snr": e.mean().item() / sd if sd else None}
        return r

    rows = [row(f"{g / grid:.3f}-{(g + 1) / grid:.3f}", terms[:, g]) for g in range(grid)]
    half = grid // 2
    rows += [row(f"low half (< {half / grid:.2f})", terms[:, :half].mean(1)),
             row(f"high half (>= {half / grid:.2f})", terms[:, half:].mean(1)),
             row("all (the ELBO)", terms.mean(1))]
    return {"n": len(labels), "grid": grid, "rows": rows}


def table(result: dict) -> str:
    lines = ["| masking rates | accuracy | evidence mean | evidence sd | SNR |", "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        extra = (f"{r['evidence_mean']:.2f} | {r['evidence_sd']:.2f} | {r['snr']:.3f}" if r.get("snr") is not None
                 else "– | – | –")
        lines.append(f"| {r['rates']} | {r['accuracy']:.1%} | {extra} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "imdb-diffusion"))
    parser.add_argument("--data", default="imdb")
    parser.add_argument("--split", default="validation", help="never the test split when choosing anything")
    parser.add_argument("--limit", type=int, default=800, help="texts (a seeded, class-balanced subset)")
    parser.add_argument("--grid", type=int, default=8, help="rate strata")
    parser.add_argument("--samples", type=int, default=2, help="masks per stratum")
    parser.add_argument("--max-windows", type=int, default=None,
                        help="score only each text's first N windows (1: the first 128 tokens; cheaper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON with the per-text terms and the summary")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    from tqdm.auto import tqdm

    from textdiff_core.data import load_data

    try:
        if args.grid < 1 or args.samples < 1 or (args.max_windows is not None and args.max_windows < 1):
            raise TextdiffError("--grid, --samples and --max-windows must be at least 1")
        classifier = load_classifier(args.checkpoint, "elbo")
        data = load_data(args.data, args.split, max_samples=args.limit, seed=0)
        index = {name: i for i, name in enumerate(classifier.classes)}
        if data.labels is None or not set(data.classes) <= set(index):
            raise TextdiffError(f"the data's classes {data.classes} are not the checkpoint's {classifier.classes}")
        labels = [index[data.classes[y]] for y in data.labels]
    except TextdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    generator = torch.Generator().manual_seed(args.seed)
    started = time.time()
    terms = torch.stack([rate_terms(classifier, t, args.grid, args.samples, generator, args.max_windows)
                         for t in tqdm(data.texts, desc="evidence by rate", disable=not args.progress)])
    result = summarise(terms, labels) | {"checkpoint": args.checkpoint, "data": args.data, "split": args.split,
                                         "samples_per_stratum": args.samples,
                                         "max_windows": args.max_windows, "seconds": round(time.time() - started, 1)}
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result | {"labels": labels, "terms": terms.tolist()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
