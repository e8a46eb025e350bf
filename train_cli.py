#!/usr/bin/env python
"""textdiff command line: train masked-diffusion and left-to-right models, and probe them.

    python train_cli.py train --objective diffusion --model minilm --data imdb --conditioning class --out DIR
    torchrun --nproc_per_node 2 train_cli.py train ...        # several processes (CPU: gloo)
    accelerate launch train_cli.py train ...                   # several GPUs
    python train_cli.py fill-mask --checkpoint DIR "The movie was [MASK]."

Errors the user can fix are printed on one line and exit with status 2; an interrupted run (Ctrl-C) saves a
checkpoint first and exits with 130, and ``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import sys

from textdiff_core.errors import TextdiffError


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates like 0.1,0.5,1.0, got {text!r}") from None


def _data(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train_cli.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="train a masked-diffusion or left-to-right model")
    t.add_argument("--objective", choices=["diffusion", "ar"], default="diffusion",
                   help="diffusion: masked, 1/t-weighted MDLM ELBO; ar: left-to-right next-token loss")
    t.add_argument("--model", default=None,
                   help="start from: offline name (minilm, minilm-ar, smollm2, tiny, tiny-ar), a directory or a hub id "
                        "(default: minilm for diffusion, minilm-ar for ar)")
    t.add_argument("--data", type=_data, action="extend", default=None,
                   help="dataset(s): imdb, rotten_tomatoes, a .csv/.jsonl file, or a hub dataset id; several (comma "
                        "separated or repeated) are mixed, and the mix is recorded with the checkpoint (default: imdb)")
    t.add_argument("--text-col", default="text", help="text column in CSV/JSONL files")
    t.add_argument("--label-col", default="label", help="label column in CSV/JSONL files (names or integers)")
    t.add_argument("--conditioning", choices=["none", "class", "per-class"], default="none",
                   help="none: unconditional; class: one model with a never-masked class prompt; "
                        "per-class: one model per class")
    t.add_argument("--class-prompt", default="{label} review:",
                   help="class prompt for --conditioning class; {label} is replaced by the class name")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default: one epoch)")
    t.add_argument("--epochs", type=float, default=None, help="epochs over the training data, instead of --steps")
    t.add_argument("--batch-size", type=int, default=16, help="sequences per micro-batch per process")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    t.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate")
    t.add_argument("--lr-schedule", default="linear", help="transformers scheduler: linear, cosine, constant, ...")
    t.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: 5%% of steps)")
    t.add_argument("--max-length", type=int, default=128, help="tokens per sequence, prompt and specials included")
    t.add_argument("--crop", choices=["start", "random"], default="start",
                   help="texts longer than --max-length: train on their start, or on a random window each time")
    t.add_argument("--max-samples", type=int, default=None, help="use at most N training examples, class-balanced")
    t.add_argument("--seed", type=int, default=0, help="seed of data order, masks and dropout")
    t.add_argument("--out", required=True, help="output directory (keep runs outside the git checkout)")
    t.add_argument("--save-every", type=int, default=100, help="resumable checkpoint every N steps (0: never)")
    t.add_argument("--keep-checkpoints", type=int, default=2, help="how many resumable checkpoints to keep")
    t.add_argument("--log-every", type=int, default=10, help="metrics.jsonl line every N steps")
    t.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in --out")
    t.add_argument("--save-dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="dtype of the final weights (fp16 for shipped checkpoints)")
    t.add_argument("--noise-schedule", choices=["continuous", "levels"], default="continuous",
                   help="continuous: t ~ U(eps,1) per sequence; levels: one rate per batch from --levels (seed recipe)")
    t.add_argument("--t-sampling", choices=["iid", "antithetic", "stratified"], default="stratified",
                   help="how the batch's t values are drawn (continuous schedule)")
    t.add_argument("--levels", type=_levels, default=None, help="rates for --noise-schedule levels (default 0.1..1.0)")
    t.add_argument("--loss-weighting", choices=["elbo", "mean"], default="elbo",
                   help="elbo: 1/t weight (MDLM bound, a likelihood); mean: unweighted mean over masked tokens (seed)")
    t.add_argument("--eps", type=float, default=1e-3, help="smallest t of the continuous schedule")
    t.add_argument("--eval-every", type=int, default=0,
                   help="classify a fixed validation subset every N steps and log its accuracy (class conditioning)")
    t.add_argument("--eval-size", type=int, default=200, help="validation texts for --eval-every (class-balanced)")
    t.add_argument("--eval-samples", type=int, default=4, help="ELBO samples per text for --eval-every (diffusion)")
    t.add_argument("--quick-test", action="store_true",
                   help="smoke run: 5 steps on 64 examples, batch 4, 48 tokens (overrides those flags)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    f = commands.add_parser("fill-mask", help="top-k predictions for each [MASK] in a text (masked models)")
    f.add_argument("text", help='text with [MASK] tokens, e.g. "The movie was [MASK]."')
    f.add_argument("--checkpoint", default="minilm", help="trained directory, offline name or hub id")
    f.add_argument("--prefix", action="append", default=None,
                   help="never-masked prefix, e.g. 'positive review:'; repeat to compare several; for a "
                        "class-conditional checkpoint the default is every class prompt")
    f.add_argument("--top-k", type=int, default=5, help="predictions per mask")
    return parser


def cmd_fill_mask(args: argparse.Namespace) -> int:
    from textdiff_core.decoding import fill_mask
    from textdiff_core.models import load_model

    lm = load_model(args.checkpoint, "masked")
    prefixes = args.prefix
    if prefixes is None and lm.meta.get("class_prompt"):
        prefixes = [lm.meta["class_prompt"].format(label=name) for name in lm.meta["classes"]]
    for prefix in prefixes or [None]:
        predictions = fill_mask(lm, args.text, prefix, args.top_k)
        shown = " | ".join(", ".join(f"{tok} {p:.2f}" for tok, p in mask) for mask in predictions)
        print(f"{(prefix or '(no prefix)'):>24}  {shown}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from textdiff_core.noise import DEFAULT_LEVELS, NoiseConfig
    from textdiff_core.train import TrainConfig, train

    if args.quick_test:
        args.steps, args.max_samples, args.batch_size, args.max_length = args.steps or 5, 64, 4, 48
        args.log_every, args.save_every = 1, 2
    noise = NoiseConfig(
        schedule=args.noise_schedule,
        t_sampling=args.t_sampling,
        levels=args.levels or DEFAULT_LEVELS,
        eps=args.eps,
        weighting=args.loss_weighting,
    )
    config = TrainConfig(
        out=args.out,
        objective=args.objective,
        model=args.model or ("minilm" if args.objective == "diffusion" else "minilm-ar"),
        data=args.data or ["imdb"],
        text_col=args.text_col,
        label_col=args.label_col,
        conditioning=args.conditioning,
        class_prompt=args.class_prompt,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
        max_length=args.max_length,
        crop=args.crop,
        max_samples=args.max_samples,
        seed=args.seed,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        log_every=args.log_every,
        resume=args.resume,
        save_dtype=args.save_dtype,
        eval_every=args.eval_every,
        eval_size=args.eval_size,
        eval_samples=args.eval_samples,
        noise=noise,
    )
    try:
        out = train(config, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: the last checkpoint is in {args.out}/checkpoints; continue with --resume", file=sys.stderr)
        return 130
    print(f"saved {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train, "fill-mask": cmd_fill_mask}[args.command](args)
    except TextdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
