#!/usr/bin/env python
"""Is a from-scratch diffusion twin's unigram plateau the regime or textdiff's loop? Two probes (docs/experiments.md).

  hf        train the crossover's shape from scratch with Hugging Face's own masked-LM pipeline (BertForMaskedLM,
            DataCollatorForLanguageModeling with pure [MASK], the first window of each review; no textdiff code) and
            print the unigram entropy of its tokens, then the training loss every 100 steps
  held-out  for each model directory: cross-entropy of 30% masked tokens of validation reviews (fixed masks), with
            the rest of the window visible and with every token masked; equal figures mean context is not used

    python -m bench.plateau hf --lr 2e-4 --steps 500
    python -m bench.plateau held-out ~/textdiff-runs/probe-start ~/textdiff-runs/probe-random
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from textdiff_core.data import load_data
from textdiff_core.experiments.crossover import wrap_tokenizer

TOKENIZER = "results/crossover-tokenizer.json"


def hf(args: argparse.Namespace) -> None:
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    tok = wrap_tokenizer(Tokenizer.from_file(args.tokenizer))
    data = load_data("imdb", "train", max_samples=args.reviews, min_classes=2, seed=0)
    enc = [tok(t, truncation=True, max_length=args.max_length)["input_ids"] for t in data.texts]
    counts = torch.bincount(torch.tensor([t for ids in enc for t in ids[1:-1]]), minlength=len(tok)).float()
    share = counts[counts > 0] / counts.sum()
    print(f"unigram entropy of the training tokens: {-(share * share.log()).sum():.3f} nats (the plateau's level)")
    config = BertConfig(vocab_size=len(tok), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    collate = DataCollatorForLanguageModeling(tok, mlm_probability=args.rate, mask_replace_prob=1.0,
                                              random_replace_prob=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    started = time.time()
    for step in range(1, args.steps + 1):
        batch = collate([{"input_ids": enc[i]} for i in torch.randint(len(enc), (args.batch_size,), generator=g)])
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / 100)  # 100 warm-up steps, then constant, as the grid
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            print(f"step {step}: training loss {loss.item():.3f} nats ({time.time() - started:.0f} s)", flush=True)


def held_out(args: argparse.Namespace) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    val = load_data("imdb", "validation", max_samples=args.reviews, min_classes=2, seed=0)
    for path in args.models:
        tok, model = AutoTokenizer.from_pretrained(path), AutoModelForMaskedLM.from_pretrained(path).eval()
        g = torch.Generator().manual_seed(0)
        seen = blind = n = 0.0
        for text in val.texts:
            ids = tok(text, truncation=True, max_length=args.max_length, return_tensors="pt")["input_ids"]
            body = torch.arange(1, ids.shape[1] - 1)
            pick = body[torch.rand(len(body), generator=g) < args.rate]
            if not len(pick):
                continue
            for everything, x in ((False, ids.clone()), (True, ids.clone())):
                x[0, body if everything else pick] = tok.mask_token_id
                with torch.no_grad():
                    ce = torch.nn.functional.cross_entropy(model(input_ids=x).logits[0, pick], ids[0, pick],
                                                           reduction="sum").item()
                blind, seen = (blind + ce, seen) if everything else (blind, seen + ce)
            n += len(pick)
        print(f"{path}: {seen / n:.3f} nats with context, {blind / n:.3f} with every token masked")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="probe", required=True)
    a = sub.add_parser("hf", help="Hugging Face's masked-LM pipeline from scratch")
    a.add_argument("--lr", type=float, default=2e-4)
    a.add_argument("--steps", type=int, default=500)
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--tokenizer", default=TOKENIZER)
    b = sub.add_parser("held-out", help="masked-token cross-entropy on validation, with and without context")
    b.add_argument("models", nargs="+")
    for q in (a, b):
        q.add_argument("--reviews", type=int, default=100, help="training (hf) or validation (held-out) reviews")
        q.add_argument("--rate", type=float, default=0.3, help="share of tokens masked")
        q.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    (hf if args.probe == "hf" else held_out)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
