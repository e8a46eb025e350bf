#!/usr/bin/env python
"""textdiff command line: train masked-diffusion and left-to-right models, and probe them.

    python train_cli.py train --objective diffusion --model minilm --data imdb --conditioning class --out DIR
    torchrun --nproc_per_node 2 train_cli.py train ...        # several processes (CPU: gloo)
    accelerate launch train_cli.py train ...                   # several GPUs
    python train_cli.py fill-mask --checkpoint DIR "The movie was [MASK]."
    python train_cli.py generate --checkpoint DIR --prompt "The movie was" --length 32 --strategy confidence

Errors the user can fix are printed on one line and exit with status 2; an interrupted run (Ctrl-C) saves a
checkpoint first and exits with 130, and ``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import os
import sys

from textdiff_core.errors import TextdiffError


def _model_flags(parser: argparse.ArgumentParser, top: bool) -> None:
    """Loading flags, accepted before the command name (``top``) and after it (then they do not reset the former)."""
    keep = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--trust-remote-code", action="store_true", **keep,
                        help="run modeling code shipped with a model (MDLM, LLaDA, Dream); only for models you trust")
    parser.add_argument("--allow-large-cpu", action="store_true", **keep,
                        help="load a model of over 1B parameters on CPU (slow; meant for a GPU)")
    parser.add_argument("--mask-id", type=int, default=None if top else argparse.SUPPRESS,
                        help="masked models: the mask token id (default: from the model's config or tokenizer)")
    parser.add_argument("--logit-shift", type=int, choices=[0, 1], default=None if top else argparse.SUPPRESS,
                        help="masked models: 1 if position i's logits predict token i+1 (Dream; default from config)")
    parser.add_argument("--time-input", choices=["none", "sigma"], default=None if top else argparse.SUPPRESS,
                        help="masked models: pass the noise level as timesteps (sigma: MDLM; default from config)")
    parser.add_argument("--context-length", type=int, default=None if top else argparse.SUPPRESS,
                        help="masked models: positions the model takes (default from config)")
    parser.add_argument("--model-dtype", choices=["fp32", "bf16", "fp16"], default=None if top else argparse.SUPPRESS,
                        help="dtype to load weights in (default: bf16 on GPU, fp32 on CPU)")


def load_options(args: argparse.Namespace):
    """The loading flags as the ``LoadOptions`` every command passes to ``load_model``."""
    from textdiff_core.settings import LoadOptions

    return LoadOptions(trust_remote_code=args.trust_remote_code, allow_large_cpu=args.allow_large_cpu,
                       allow_pickle=args.allow_pickle, dtype=args.model_dtype, mask_id=args.mask_id,
                       logit_shift=args.logit_shift, time_input=args.time_input, context_length=args.context_length)


def build_parser() -> argparse.ArgumentParser:
    prog = "textdiff" if os.path.basename(sys.argv[0]) == "textdiff" else "train_cli.py"  # the console script
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    _model_flags(parser, top=True)
    parser.add_argument("--allow-pickle", action="store_true",
                        help="also load pickled .bin/.pt weights (they can run code; only for files you trust)")
    commands = parser.add_subparsers(dest="command", required=True)

    from textdiff_core.settings import add_train_flags

    t = commands.add_parser("train", help="train a masked-diffusion or left-to-right model")
    add_train_flags(t)  # one flag per TrainConfig field: textdiff_core/settings.py
    t.add_argument("--quick-test", action="store_true",
                   help="smoke run: 5 steps on 64 examples, batch 4, 48 tokens (overrides those flags)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--overwrite", action="store_true",
                   help="write into an --out that already holds a checkpoint (refused otherwise, unless --resume "
                        "continues it)")
    _campaign_parser(commands, t)
    _crossover_parser(commands, t)
    sh = commands.add_parser("campaign-ship", help="make a campaign's best epochs (chosen on validation) the shipped "
                                                   "pair, and keep its curves for the report")
    sh.add_argument("campaign", help="the campaign directory (campaign --out)")
    sh.add_argument("--dest", default="checkpoints", help="where the shipped pair lives (default: checkpoints)")
    sh.add_argument("--diffusion-epoch", type=int, default=None, help="ship this epoch instead of choosing one")
    sh.add_argument("--ar-epoch", type=int, default=None, help="ship this epoch instead of choosing one")
    sh.add_argument("--partial", action="store_true", help="ship from an unfinished campaign's epochs so far")
    sh.add_argument("--replaced", default="results.json",
                    help="results.json of the pair being replaced, kept for a before/after comparison")
    f = commands.add_parser("fill-mask", help="top-k predictions for each [MASK] in a text (masked models)")
    f.add_argument("text", help='text with [MASK] tokens, e.g. "The movie was [MASK]."')
    f.add_argument("--checkpoint", default="minilm", help="trained directory, offline name or hub id")
    f.add_argument("--prefix", action="append", default=None,
                   help="never-masked prefix, e.g. 'positive review:'; repeat to compare several; for a "
                        "class-conditional checkpoint the default is every class prompt")
    f.add_argument("--top-k", type=int, default=5, help="predictions per mask")
    for name, helptext in (("classify", "classify one text with a generative classifier"),
                           ("evaluate", "classify a labelled split and write a JSON report"),
                           ("calibrate", "fit the prior bias, temperature and OOD reference on validation")):
        c = commands.add_parser(name, help=helptext)
        c.add_argument("--checkpoint", required=True,
                       help="class-conditional or per-class checkpoint dir, or any LM (offline name, dir, hub id) "
                            "for zero-shot prompting")
        c.add_argument("--method", choices=["elbo", "elbo-indep", "pll", "mlm-loss", "ar", "infill", "combined",
                                            "seed"],
                       default=None,
                       help="elbo: diffusion bound, same noise for every class (default for masked models); "
                            "elbo-indep: fresh noise per class; pll: pseudo-log-likelihood; mlm-loss: mean loss of a "
                            "15%% mask x5 (the RoBERTa variable-masking recipe; seed is its old name); ar: exact "
                            "left-to-right (default for causal models); infill: P(class | text) read off the "
                            "class-word slot, one pass per window (masked or left-to-right); combined: Bayes + a "
                            "weight x infill, the weight fitted by calibrate --method combined")
        c.add_argument("--samples", type=int, default=8, help="Monte Carlo samples per class (the cap if adaptive)")
        c.add_argument("--adaptive", action="store_true",
                       help="draw samples in rounds until the leader leads by --z standard errors")
        c.add_argument("--z", type=float, default=2.0, help="margin in standard errors that stops adaptive sampling")
        c.add_argument("--classes", default=None,
                       help="comma-separated class names for zero-shot models (default: negative,positive)")
        c.add_argument("--prompt-template", default=None,
                       help='zero-shot prompt per class, {label} = class name (default: "A {label} movie review:")')
        c.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo noise")
        c.add_argument("--max-length", type=int, default=None,
                       help="window size in tokens; longer texts are scored in windows (default: the trained length)")
        if name == "classify":
            c.add_argument("text", help="the text to classify")
        else:
            c.add_argument("--data", default="imdb", help="dataset name or CSV/JSONL file")
            c.add_argument("--split", default=None,
                           help="train, validation, test or all (default: all for a CSV/JSONL file, the user's own "
                                f"data; the fixed {'test' if name == 'evaluate' else 'validation'} split for "
                                "imdb, rotten_tomatoes and hub datasets)")
            c.add_argument("--text-col", default="text", help="text column in CSV/JSONL files")
            c.add_argument("--label-col", default="label", help="label column (names or integer indices)")
            c.add_argument("--limit", type=int, default=None, help="at most N examples (class-balanced, fixed)")
            c.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "evaluate":
            c.add_argument("--out", default=None, help="write the JSON report here")

    g = commands.add_parser("generate", help="generate text by diffusion decoding (masked models) or left to right")
    g.add_argument("--checkpoint", default=None,
                   help="trained directory, offline name or hub id (default: minilm, or minilm-ar for --strategy ar)")
    g.add_argument("--prompt", default="", help="never-masked text to continue; [MASK] inside it is filled too")
    g.add_argument("--length", type=int, default=32, help="new tokens after the prompt (0: only fill its masks)")
    g.add_argument("--strategy", default=None,
                   choices=["confidence", "topk", "schedule-random", "schedule-confidence", "entropy-bound", "ar"],
                   help="confidence: commit every position above --threshold; topk: --k per step; schedule-*: "
                        "--steps by --schedule, positions chosen at random or by confidence; entropy-bound: the most "
                        "certain positions while their entropies sum to --entropy-bound; ar: left to right "
                        "(default: confidence for a masked model, ar for a left-to-right one)")
    g.add_argument("--steps", type=int, default=None,
                   help="schedule strategies: steps (default: one per token); confidence: at most this many forward "
                        "passes (default: a quarter of --length, rounded up; 0: no limit, the threshold alone); "
                        "entropy-bound: at least this many (--steps LENGTH commits one token per pass)")
    g.add_argument("--schedule", choices=["linear", "cosine", "exp"], default=None,
                   help="schedule strategies: how many positions each step commits")
    g.add_argument("--threshold", type=float, default=None,
                   help="confidence strategy: commit at or above, in (0, 1] (default 0.9)")
    g.add_argument("--k", type=int, default=None, help="topk strategy: positions committed per step (default 4)")
    g.add_argument("--entropy-bound", type=float, default=None,
                   help="entropy-bound strategy: commit positions while their entropies sum to at most this many "
                        "nats (default 32)")
    g.add_argument("--confidence", choices=["max-prob", "margin", "entropy"], default=None,
                   help="confidence measure (entropy is compared as exp(-entropy))")
    g.add_argument("--temperature", type=float, default=None,
                   help="0: greedy; > 0: sample (default 1.0)")
    g.add_argument("--top-k", type=int, default=None, help="sample among the K most likely tokens")
    g.add_argument("--top-p", type=float, default=None,
                   help="sample from the nucleus of probability P (default 0.9, unless --top-k or --temperature 0 "
                        "is given)")
    g.add_argument("--seed", type=int, default=0, help="seed of sampling and random positions")
    g.add_argument("--block-size", type=int, default=None,
                   help="diffusion: decode in left-to-right blocks of B (default 32; 0: the whole length at once)")
    g.add_argument("--spacing", type=int, default=None,
                   help="topk / confidence beyond the threshold: prefer positions at least this far apart in a pass "
                        "(default: 3; 1: no preference)")
    g.add_argument("--label", default=None, help="class-conditional checkpoints: put this class's prompt first")
    g.add_argument("--num-samples", type=int, default=1,
                   help="decode N samples (seeds SEED, SEED+1, ...) as one batch; --json records all of them")
    g.add_argument("--cache", choices=["none", "prefix", "dual"], default=None,
                   help="diffusion: approximate block KV cache; prefix: cache what precedes the block, dual: also "
                        "the masked suffix (default dual; BERT-like models, others fall back to full passes)")
    g.add_argument("--cache-refresh", type=int, default=None,
                   help="diffusion with --cache: also refresh the cache every N passes inside a block")
    g.add_argument("--stop-at-end", choices=["auto", "on", "off"], default="auto",
                   help="end the text where the model writes its end-of-text token (auto: for models that learned "
                        "to, i.e. published diffusion LMs and general LMs, not textdiff's own)")
    g.add_argument("--no-cache", action="store_true",
                   help="no cache of any kind: ar recomputes the whole prefix every step; diffusion runs the whole "
                        "sequence every pass and recomputes unchanged predictions")
    g.add_argument("--cfg-scale", type=float, default=1.0,
                   help="diffusion: classifier-free guidance on the --label (else the prompt): logits = uncond + "
                        "S * (cond - uncond); 1 = off, 0 = unconditional, > 1 = stronger")
    g.add_argument("--chat", choices=["auto", "on", "off"], default="auto",
                   help="wrap the prompt in the model's chat template (auto: for published models that have one)")
    g.add_argument("--json", default=None, help="write the trace (every frame) as JSON")
    g.add_argument("--gif", default=None, help="write an animated GIF of the frames")
    g.add_argument("--html", default=None, help="write a self-contained HTML player of the frames")
    e = commands.add_parser("export", help="copy a trained run into a shippable fp16 checkpoint directory")
    e.add_argument("run", help="the run directory (train --out)")
    e.add_argument("dest", help="destination, e.g. checkpoints/imdb-diffusion")
    e.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16", help="dtype of the exported weights")
    e.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint already in dest (refused otherwise), e.g. a shipped model")
    pr = commands.add_parser("paired", help="compare two evaluate reports on the same texts, review by review")
    pr.add_argument("a", help="evaluate --out JSON (A)")
    pr.add_argument("b", help="evaluate --out JSON (B), on the same --data, --split and --limit")
    pp = commands.add_parser("perplexity", help="per-text NLL and corpus perplexity with a 95%% interval (JSON)")
    pp.add_argument("--checkpoint", required=True, help="trained directory, offline name or hub id")
    pp.add_argument("--data", required=True, help="dataset name or CSV/JSONL file")
    pp.add_argument("--split", default="test", help="train, validation, test (or all: every row, for files)")
    pp.add_argument("--text-col", default="text", help="text column in CSV/JSONL files")
    pp.add_argument("--label-col", default="label",
                    help="label column; class-conditional models score each text given its class prompt")
    pp.add_argument("--limit", type=int, default=None, help="at most N texts (class-balanced, fixed)")
    pp.add_argument("--samples", type=int, default=8, help="masked models: Monte Carlo samples of the ELBO per text")
    pp.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo noise")
    pp.add_argument("--max-length", type=int, default=None,
                    help="window size in tokens; longer texts are scored in windows (default: the trained length)")
    pp.add_argument("--out", required=True, help="write the JSON report here (written whole or not at all)")
    pp.add_argument("--no-progress", action="store_true", help="no progress bar")
    zs = commands.add_parser("zero-shot", help="choose a pretrained LM's class prompt on validation and fit its "
                                               "calibration; writes a directory that --checkpoint takes")
    zs.add_argument("--model", default="smollm2", help="the pretrained LM: offline name, directory or hub id")
    zs.add_argument("--classes", default="negative,positive", help="comma-separated class names")
    zs.add_argument("--template", action="append", default=None,
                    help="a candidate prompt, {label} = class name; repeat for several (default: four movie-review "
                         "prompts)")
    zs.add_argument("--data", default="imdb", help="labelled validation data: dataset name or CSV/JSONL file")
    zs.add_argument("--split", default="validation", help="split to choose and fit on (never test)")
    zs.add_argument("--text-col", default="text", help="text column in CSV/JSONL files")
    zs.add_argument("--label-col", default="label", help="label column (names or integer indices)")
    zs.add_argument("--limit", type=int, default=300, help="at most N texts (class-balanced, fixed)")
    zs.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo noise (masked LMs)")
    zs.add_argument("--out", required=True, help="directory to write (textdiff.json and calibration.json)")
    zs.add_argument("--no-progress", action="store_true", help="no progress bar")
    sy = commands.add_parser("synthesize", help="generate reviews per class, keep those a calibrated judge reads as "
                                                "intended, drop duplicates and leaks (CSV with provenance)")
    sy.add_argument("--checkpoint", required=True,
                    help="generator: a class-conditional checkpoint, or a causal LM with --generator instruct")
    sy.add_argument("--out", required=True,
                    help="CSV to write (rerun to continue an interrupted run); its record: OUT.json")
    sy.add_argument("--per-class", type=int, default=4, help="reviews generated per class, before judging")
    sy.add_argument("--generator", choices=["checkpoint", "instruct"], default="checkpoint",
                    help="checkpoint: the class prompt leads; instruct: ask a causal LM per class (its chat template)")
    sy.add_argument("--classes", default=None, help="instruct generators: classes, comma separated")
    sy.add_argument("--length", type=int, default=96, help="new tokens per review")
    sy.add_argument("--batch-size", type=int, default=8, help="samples decoded as one batch")
    sy.add_argument("--seed", type=int, default=0, help="row i of class c is seeded SEED + 100000 c + i")
    sy.add_argument("--cfg-scale", type=float, default=1.0, help="checkpoint generators: classifier-free guidance")
    sy.add_argument("--judge", default=None,
                    help="classifier that judges (default: the checkpoint itself; tfidf for instruct generators)")
    sy.add_argument("--judge-method", default=None,
                    help="the judge's reading (default: the one its calibration found best on validation)")
    sy.add_argument("--threshold", type=float, default=0.9, help="keep when P(intended class) >= this (calibrated)")
    sy.add_argument("--ngram", type=int, default=3, help="word n-grams compared for duplicates and leaks")
    sy.add_argument("--duplicate-jaccard", type=float, default=0.5,
                    help="drop a row this similar to a kept row or a real training review")
    sy.add_argument("--leak-jaccard", type=float, default=0.3,
                    help="drop a row this similar to a validation or test review")
    sy.add_argument("--data", default="imdb", help="the real data compared against (train, validation, test)")
    sy.add_argument("--no-progress", action="store_true", help="no progress bars")
    commands.add_parser("report", help="regenerate RESULTS.md and results.json from the shipped checkpoints "
                                       "(options: python train_cli.py report --help)", add_help=False)
    for name, sub in commands.choices.items():  # the loading flags also after the command name
        if name != "report":
            _model_flags(sub, top=False)
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    import torch

    from textdiff_core.models import load_model, save_model
    from textdiff_core.train import DTYPES, lineage_metrics, refuse_overwrite, with_epochs

    run, dest = Path(args.run), Path(args.dest)
    refuse_overwrite(dest, args.overwrite)
    lm = load_model(str(run), device="cpu", dtype=torch.float32, options=args.load)
    if not lm.meta:
        raise TextdiffError(f"{run} has no textdiff.json: export ships finished training runs")
    meta = with_epochs(lm.meta) | {"exported_from": str(run), "weights_dtype": args.dtype}  # epochs: older runs too
    save_model(lm.model, lm.tokenizer, dest, meta, dtype=DTYPES[args.dtype])
    if (run / "calibration.json").is_file():
        shutil.copy2(run / "calibration.json", dest / "calibration.json")
    if (run / "metrics.jsonl").is_file():  # a continued run's curve starts where its parent's ended
        lines, missing = lineage_metrics(lm.meta, (run / "metrics.jsonl").read_text().splitlines())
        (dest / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        if missing:
            print(f"note: {missing}")
    size = sum(f.stat().st_size for f in dest.glob("*.safetensors")) / 2**20
    print(f"exported {run} -> {dest} ({args.dtype}, {size:.1f} MB of weights)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from textdiff_core.report import main as report

    try:
        return report(args.args)
    except TextdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _classifier(args: argparse.Namespace):
    from textdiff_core.classify import load_classifier

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if args.samples < 1:
        raise TextdiffError(f"--samples must be at least 1, got {args.samples}")
    if not args.z >= 0 or args.z == float("inf"):  # NaN fails the first test
        raise TextdiffError(f"--z must be a finite number of standard errors >= 0, got {args.z}")
    return load_classifier(args.checkpoint, args.method, classes, args.prompt_template, max_length=args.max_length,
                           options=args.load)


def cmd_classify(args: argparse.Namespace) -> int:
    import torch

    clf = _classifier(args)
    if not args.text.strip():
        raise TextdiffError("the text is empty")
    p = clf.classify(args.text, args.samples, adaptive=args.adaptive, z=args.z,
                     generator=torch.Generator().manual_seed(args.seed))
    passes = f"{p.forward_passes} forward pass" + ("" if p.forward_passes == 1 else "es")
    print(f"class: {p.label}  (confidence {p.confidence:.3f}, method {clf.method}, {passes}, {p.seconds:.2f} s)")
    for name, post, ll, se in zip(p.classes, p.posterior, p.log_likelihood, p.log_likelihood_se, strict=True):
        if clf.method == "tfidf":  # a discriminative model: it has no likelihood to show
            print(f"  {name:>16}  P(c|x) = {post:.3f}")
        elif clf.method == "infill":  # sum_w log P(c|x_w) - W log P(c): log P(x|c) up to a constant
            print(f"  {name:>16}  P(c|x) = {post:.3f}   log P(x|c) + const = {ll:7.3f}")
        else:
            print(f"  {name:>16}  P(c|x) = {post:.3f}   log P(x|c) = {ll:9.2f} ± {se:.2f}")
    windows = p.scores[0].windows
    if windows > 1:
        print(f"  scored in {windows} windows of the model's length (the text is longer than one window)")
    if clf.method in ("infill", "combined", "tfidf"):
        print("  OOD: not available (this reading gives the class posterior, not how typical the text is)")
    elif p.ood is None:
        print("  OOD: unknown (no calibration for this checkpoint; run train_cli.py calibrate)")
    else:
        print(f"  OOD: {'FLAGGED' if p.ood else 'no'} (evidence per token at the {p.ood_percentile:.1f}th percentile "
              "of validation texts)")
    return 0


def _labelled(args: argparse.Namespace, classes: list[str]):
    """The labelled rows of --data/--split (the split resolved in place: files default to all of their rows), as
    (dataset, class indices of the checkpoint); says how many rows of which split it took."""
    from textdiff_core.data import is_file_spec, load_data

    data = load_data(args.data, args.split, text_col=args.text_col, label_col=args.label_col, min_classes=1,
                     max_samples=args.limit, seed=0)
    limited = f" (--limit {args.limit})" if args.limit else ""
    print(f"using {len(data)} rows of {args.data}, split {args.split}{limited}"
          + (": every row of the file" if args.split == "all" and is_file_spec(args.data) else ""))
    unknown = sorted(set(data.classes) - set(classes))
    if unknown:
        raise TextdiffError(f"labels {unknown} in {args.data} are not classes of the checkpoint ({classes})")
    index = {name: i for i, name in enumerate(classes)}
    return data, [index[data.classes[y]] for y in data.labels]


def _default_split(args: argparse.Namespace, fixed: str) -> None:
    """--split when not given: every row of the user's own file, else the dataset's fixed split ``fixed``; and
    ``fixed`` for a file the checkpoint was trained on too (its other rows are training rows)."""
    from pathlib import Path

    from textdiff_core.checkpoint import CheckpointMeta
    from textdiff_core.data import is_file_spec

    if args.split is not None:
        return
    args.split = fixed
    if is_file_spec(args.data):
        meta = CheckpointMeta.read(args.checkpoint) if Path(args.checkpoint).is_dir() else CheckpointMeta()
        trained = {Path(spec).expanduser().resolve() for spec in meta.data_specs}
        if Path(args.data).expanduser().resolve() in trained:
            print(f"note: {args.checkpoint} was trained on {args.data}, so only its {fixed} split is used")
        else:
            args.split = "all"


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    import platform
    from datetime import UTC, datetime

    import torch

    from textdiff_core.evaluate import evaluate_classifier

    _default_split(args, "test")
    clf = _classifier(args)
    data, labels = _labelled(args, clf.classes)
    report = evaluate_classifier(clf, data.texts, labels, args.samples, args.adaptive, args.z, args.seed,
                                 progress=not args.no_progress)
    report |= {"checkpoint": args.checkpoint, "data": args.data, "split": args.split, "limit": args.limit,
               "seed": args.seed, "hardware": f"{platform.machine()} CPU x{torch.get_num_threads()} threads"
               if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
               "created": datetime.now(UTC).isoformat(timespec="seconds")}
    low, high = report["accuracy_ci95"]
    print(f"{clf.method} on {args.data}/{args.split}: accuracy {report['accuracy']:.3f} "
          f"[{low:.3f}, {high:.3f}] (n={report['n']}), ECE {report['ece']:.3f}, "
          f"median latency {report['latency_s']['median']:.3f} s, {report['examples_per_s']:.2f} texts/s, "
          f"{report['forward_passes_mean']:.1f} forward passes/text")
    for name, m in report["per_class"].items():
        print(f"  {name:>16}  precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}")
    if args.out:
        _write(args.out, lambda path: path.write_text(json.dumps(report, indent=2) + "\n"))
        print(f"wrote {args.out}")
    return 0


def cmd_paired(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from textdiff_core.evaluate import paired_reports

    reports = []
    for path in (args.a, args.b):
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise TextdiffError(f"cannot read the report {path}: {exc}") from exc
    d = paired_reports(*reports)
    low, high = d["difference_ci95"]
    for name, r in zip("AB", reports, strict=True):
        print(f"{name}: {r.get('checkpoint')} ({r.get('method')}): accuracy {r['accuracy']:.1%} (n={r['n']})")
    print(f"A - B: {100 * d['difference']:+.1f} points (95% CI {100 * low:+.1f} to {100 * high:+.1f}); right only "
          f"by A: {d['a_only']}, only by B: {d['b_only']}; exact McNemar p = {d['mcnemar_p']:.2g}")
    return 0


def _class_name(label: str, classes: list[str]) -> str:
    """A data label as a checkpoint class: its name, or an integer label read as the index of one."""
    if label not in classes and label.isdigit() and int(label) < len(classes):
        return classes[int(label)]
    return label


def cmd_perplexity(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from textdiff_core.data import load_data
    from textdiff_core.evaluate import corpus_perplexity
    from textdiff_core.models import load_model
    from textdiff_core.settings import CLASS_PROMPTED

    if args.samples < 1:
        raise TextdiffError(f"--samples must be at least 1, got {args.samples}")
    lm = load_model(args.checkpoint, options=args.load)
    checkpoint = lm.checkpoint
    conditional = checkpoint.conditioning in CLASS_PROMPTED and checkpoint.class_prompted
    data = load_data(args.data, args.split, text_col=args.text_col, label_col=args.label_col if conditional else None,
                     max_samples=args.limit, seed=0)
    prompts: list[str | None] = [None] * len(data)
    if conditional:
        classes, by_class = checkpoint.classes, dict(zip(checkpoint.classes, checkpoint.class_prompts(), strict=True))
        names = [_class_name(name, classes) for name in data.classes]
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise TextdiffError(f"labels {unknown} in {args.data} are not classes of the checkpoint ({classes}); "
                                "give class names or indices 0-" + str(len(classes) - 1))
        data.classes = names
        prompts = [by_class[names[y]] for y in data.labels]
    report = corpus_perplexity(lm, data.texts, prompts, args.samples, args.seed,
                               args.max_length or checkpoint.max_length, progress=not args.no_progress)
    for record in report["texts"]:
        if data.labels is not None:
            record["label"] = data.classes[data.labels[record["index"]]]
    report |= {"checkpoint": args.checkpoint, "data": args.data, "split": args.split, "limit": args.limit,
               "conditioned_on_class": bool(conditional)}
    out = Path(args.out)
    _write(out, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))  # the old file or the whole new one
    low, high = report["perplexity_ci95"]
    given = " given each text's class prompt" if conditional else ""
    print(f"{report['bound']} perplexity {report['perplexity']:.3f} [{low:.3f}, {high:.3f}] over {report['n']} texts, "
          f"{report['tokens']} tokens{given}")
    print(f"wrote {out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from textdiff_core.classify import Calibration, fit_calibration, score_matrix
    from textdiff_core.records import CALIBRATION_FILE, write_calibration

    _default_split(args, "validation")
    if args.split == "test":
        raise TextdiffError("calibration is fitted on validation data, never on the test split")
    from textdiff_core.data import is_file_spec

    if args.split == "all" and not is_file_spec(args.data):
        raise TextdiffError(f"--split all of {args.data} includes its test split; calibrate on --split validation")
    path = Path(args.checkpoint)
    if not path.is_dir():
        raise TextdiffError(f"calibrate writes {CALIBRATION_FILE} into a checkpoint directory; {path} is not one")
    clf = _classifier(args)
    data, labels = _labelled(args, clf.classes)
    if clf.method == "combined":
        return _calibrate_combined(args, path, data, labels)
    predictions = score_matrix(clf, data.texts, args.samples, args.seed, not args.no_progress, args.adaptive, args.z)
    fitted = fit_calibration(predictions, labels, clf.log_prior)
    file = write_calibration(path, clf.method, asdict(fitted) | {
        "fitted_on": f"{args.data}/{args.split}", "n": len(labels), "samples": args.samples,
        "adaptive": args.adaptive})

    def accuracy(calibration: Calibration) -> float:  # the classifier's own decision rule under a calibration
        clf.calibration = calibration
        decided = [max(enumerate(clf.posterior(p.log_likelihood)), key=lambda kv: kv[1])[0] for p in predictions]
        return sum(d == y for d, y in zip(decided, labels, strict=True)) / len(labels)

    before, after = accuracy(Calibration(bias=[0.0] * len(clf.classes))), accuracy(fitted)
    print(f"{clf.method}: temperature {fitted.temperature:.3f}, bias {[round(b, 3) for b in fitted.bias]}, "
          f"OOD reference from {len(fitted.ood_reference)} texts -> {file}")
    print(f"{args.split} accuracy ({len(labels)} texts): {before:.1%} before, "
          f"{after:.1%} with the fitted bias (fitted on these texts: not a held-out figure)")
    if args.split == "all":
        print(f"note: fitted on every row of {args.data}; evaluate on texts outside it")
    return 0


def _calibrate_combined(args: argparse.Namespace, path, data, labels: list[int]) -> int:
    """The combined reading's weight, bias and temperature, with two-fold accuracies of all three readings."""
    from dataclasses import asdict

    from textdiff_core.classify import calibrate_combined
    from textdiff_core.records import write_calibration

    fitted, accuracy = calibrate_combined(args.checkpoint, data.texts, labels, args.samples, args.seed,
                                          not args.no_progress, args.load)
    file = write_calibration(path, "combined", asdict(fitted) | {
        "fitted_on": f"{args.data}/{args.split}", "n": len(labels), "samples": args.samples,
        "cross_fitted_accuracy": accuracy})
    print(f"combined: Bayes + {fitted.weight:.3f} x infill, temperature {fitted.temperature:.3f}, bias "
          f"{[round(b, 3) for b in fitted.bias]} -> {file}")
    print(f"{args.split}, two folds (fitted on one half, read on the other, {len(labels)} texts): Bayes "
          f"{accuracy['bayes']:.1%}, infill {accuracy['infill']:.1%}, combined {accuracy['combined']:.1%}")
    if accuracy["combined"] <= max(accuracy["bayes"], accuracy["infill"]):
        print("note: the combined reading is no better than the better single reading here; the report leaves it out")
    return 0


def cmd_fill_mask(args: argparse.Namespace) -> int:
    from textdiff_core.decoding import fill_mask
    from textdiff_core.models import load_model

    lm = load_model(args.checkpoint, "masked", options=args.load)
    prefixes = args.prefix
    if prefixes is None and lm.checkpoint.class_prompted:
        prefixes = lm.checkpoint.class_prompts()
    for prefix in prefixes or [None]:
        predictions = fill_mask(lm, args.text, prefix, args.top_k)
        shown = " | ".join(", ".join(f"{tok} {p:.2f}" for tok, p in mask) for mask in predictions)
        print(f"{(prefix or '(no prefix)'):>24}  {shown}")
    return 0




def cmd_zero_shot(args: argparse.Namespace) -> int:
    """Prompt chosen and bias fitted on validation, so the zero-shot LM is measured like the trained models."""
    from dataclasses import asdict
    from pathlib import Path

    from textdiff_core.classify import choose_zero_shot, load_classifier
    from textdiff_core.records import ZERO_SHOT, ZERO_SHOT_TEMPLATES, write_zero_shot

    if args.split in ("test", "all"):
        raise TextdiffError("the prompt is chosen and the calibration fitted on validation data, never on test")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    templates = args.template or ZERO_SHOT_TEMPLATES
    bad = [t for t in templates if "{label}" not in t]
    if bad:
        raise TextdiffError(f"every --template must contain {{label}}, got {bad[0]!r}")
    method = load_classifier(args.model, None, classes, templates[0], options=args.load).method
    data, labels = _labelled(args, classes)
    template, fitted, readings = choose_zero_shot(args.model, classes, templates, data.texts, labels, args.seed,
                                                  not args.no_progress, args.load)
    for t, (before, after) in readings.items():
        print(f"  {t!r}: {before:.1%} as is, {after:.1%} with a fitted bias" + ("  <- chosen" if t == template else ""))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    candidates = {t: {"accuracy": before, "accuracy_with_bias": after} for t, (before, after) in readings.items()}
    meta = {"conditioning": ZERO_SHOT, "base_model": args.model, "classes": classes, "class_prompt": template,
            "chosen_on": {"data": args.data, "split": args.split, "n": len(labels), "candidates": candidates}}
    calibration = {method: asdict(fitted) | {"fitted_on": f"{args.data}/{args.split}", "n": len(labels)}}
    write_zero_shot(out, meta, calibration)
    print(f"wrote {out} ({args.model}, prompt {template!r}; fitted on these texts: evaluate on others)")
    return 0


def _write(path: str | os.PathLike, write) -> None:
    """Write an output file whole or not at all (``write`` gets a temporary path, renamed into place when done)."""
    from textdiff_core.paths import write_file

    write_file(path, write)


def _decode_config(args: argparse.Namespace, kind: str):
    """The decoding settings of ``generate``: the defaults for this kind of model (``decoding.default_config``),
    then every flag the user gave."""
    from dataclasses import replace

    from textdiff_core.decoding import default_config, default_pass_budget

    config = default_config(kind, args.strategy, args.length)
    given = {"schedule": args.schedule, "threshold": args.threshold, "k": args.k, "confidence": args.confidence,
             "entropy_bound": args.entropy_bound, "spacing": args.spacing, "cfg_scale": args.cfg_scale,
             "cache_refresh": args.cache_refresh, "seed": args.seed}
    config = replace(config, **{k: v for k, v in given.items() if v is not None})
    if args.temperature is not None:
        config.temperature = args.temperature
    if args.top_k is not None or args.top_p is not None or config.temperature == 0:
        config.top_k, config.top_p = args.top_k, args.top_p  # the nucleus default gives way to what was asked
    if args.block_size is not None:
        config.block_size = args.block_size or None
    if args.no_cache and args.cache not in (None, "none"):
        raise TextdiffError(f"--no-cache and --cache {args.cache} contradict each other; give one")
    if args.no_cache:
        config.cache, config.reuse, config.use_cache = "none", False, False
    elif args.cache is not None:
        config.cache = args.cache
    config.stop_at_end = {"auto": None, "on": True, "off": False}[args.stop_at_end]
    if args.steps is not None:  # 0 lifts the budget of the strategies that have one
        config.steps = None if args.steps == 0 and config.strategy in ("confidence", "entropy-bound") else args.steps
    elif config.strategy == "confidence":  # no flag: the default pass budget, at least one pass per block
        config.steps = default_pass_budget(args.length, config.block_size)
    config.validate()
    return config


def cmd_generate(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from textdiff_core.checkpoint import CheckpointMeta
    from textdiff_core.decoding import generate_samples
    from textdiff_core.models import CAUSAL, MASKED, kind_of, load_model

    if args.length < 0:
        raise TextdiffError(f"length must be >= 0, got {args.length}")
    if args.num_samples < 1:
        raise TextdiffError(f"--num-samples must be at least 1, got {args.num_samples}")
    checkpoint, label = args.checkpoint or ("minilm-ar" if args.strategy == "ar" else "minilm"), args.label
    class_dirs = CheckpointMeta.read(checkpoint).class_dirs if Path(checkpoint).is_dir() else None
    if class_dirs:  # one model per class: the label picks the model, which has no class prompt
        if label not in class_dirs:
            raise TextdiffError(f"{checkpoint} holds one model per class; give --label, one of {', '.join(class_dirs)}")
        checkpoint, label = str(Path(checkpoint) / class_dirs[label]), None
    known = kind_of(checkpoint)
    if args.strategy is None:  # the model says what it is
        needed = known or MASKED
    else:
        needed = CAUSAL if args.strategy == "ar" else MASKED
        if known is not None and known != needed:
            hint = "use --strategy ar" if known == CAUSAL else "choose a diffusion strategy"
            raise TextdiffError(f"strategy {args.strategy!r} needs a {needed} model; {checkpoint!r} is {known} "
                                f"({hint})")
    config = _decode_config(args, needed)
    lm = load_model(checkpoint, needed, options=args.load)
    prompt = args.prompt
    if prompt and (args.chat == "on" or args.chat == "auto" and lm.denoiser is not None and lm.denoiser.chat_template):
        from textdiff_core.denoisers import chat_prompt

        prompt = chat_prompt(lm.tokenizer, prompt)
    started = time.perf_counter()
    traces = generate_samples(lm, prompt, args.length, config, label, args.num_samples)
    wall = time.perf_counter() - started
    for trace in traces:
        print(trace.final_text)
        print(f"{trace.forward_passes} forward passes, {trace.elapsed_s:.2f} s, {trace.n_decoded} tokens "
              f"({trace.tokens_per_pass:.2f} per pass), strategy {trace.strategy}, seed {trace.seed}")
    if len(traces) > 1:
        print(f"{len(traces)} samples in one batch: {wall:.2f} s, {len(traces) / wall:.2f} samples/s")
    trace = traces[0]
    if trace.settings.get("cache_fallback"):
        print(f"note: {trace.settings['cache_fallback']}", file=sys.stderr)
    if args.json and len(traces) > 1:  # the first sample's trace, and every sample's outcome beside it
        keep = ("seed", "final_text", "generated_text", "ended_at")
        record = trace.to_dict() | {"samples": [{k: getattr(t, k) for k in keep} | {
            "forward_passes": t.forward_passes, "elapsed_s": t.elapsed_s,
            "tokens_processed": t.frames[-1].tokens_processed} for t in traces], "batch_wall_s": wall}
        _write(args.json, lambda path: Path(path).write_text(json.dumps(record, ensure_ascii=False) + "\n"))
        print(f"wrote {args.json}")
    for path, write in ((None if len(traces) > 1 else args.json, trace.to_json), (args.gif, trace.to_gif),
                        (args.html, trace.to_html)):
        if path:
            _write(path, write)
            print(f"wrote {path}")
    return 0


def _campaign_parser(commands, train_parser: argparse.ArgumentParser) -> None:
    """``campaign``: the train flags both twins share, plus the campaign's own."""
    c = commands.add_parser("campaign", help="train a diffusion model and its left-to-right twin to N epochs in "
                                             "alternating resumable chunks (run it again to continue)")
    per_twin = {"--objective", "--model", "--steps", "--epochs", "--resume", "--out", "--overwrite", "--quick-test",
                "--stop-after", "--conditioning", "-h"}
    for action in train_parser._actions:  # the same flag objects, so train and campaign cannot drift apart
        if action.option_strings and not set(action.option_strings) & per_twin:
            c._add_action(action)
    c.add_argument("--out", required=True, help="campaign directory: diffusion/, ar/, campaign.json")
    c.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds a checkpoint but no campaign (refused otherwise)")
    c.add_argument("--epochs", type=int, required=True, help="whole epochs over the training data, per twin")
    c.add_argument("--chunk-epochs", type=int, default=1, help="epochs one twin trains before the other's turn")
    c.add_argument("--conditioning", choices=["none", "class", "joint"], default="joint",
                   help="as for train; joint (the class word is one more token) by default")
    c.add_argument("--diffusion-model", default="minilm", help="where the diffusion twin starts (name or directory)")
    c.add_argument("--ar-model", default="minilm-ar", help="where the left-to-right twin starts (name or directory)")
    c.add_argument("--until-epoch", type=int, default=None,
                   help="stop once both twins stand at this epoch (default: --epochs); run again to go on")
    c.add_argument("--snapshot-dtype", choices=["fp32", "fp16", "bf16"], default="fp16",
                   help="dtype of the per-epoch exports in OUT/<twin>/epochs/")
    c.add_argument("--max-shard-size", default=None,
                   help="split the exports' weights into files of at most this size, e.g. 15MB")


def cmd_campaign(args: argparse.Namespace) -> int:
    from pathlib import Path

    from textdiff_core.campaign import STATUS, CampaignConfig, run_campaign
    from textdiff_core.train import refuse_overwrite

    # its own directory (campaign.json) is how a campaign continues: run again, it resumes
    refuse_overwrite(args.out, args.overwrite, resumable=(Path(args.out) / STATUS).is_file(),
                     how="it is not a campaign's directory (no campaign.json); ")

    args.objective, args.model, args.steps, args.resume, args.quick_test = "diffusion", None, None, False, False
    campaign_epochs, args.epochs, args.stop_after = args.epochs, None, None
    config = CampaignConfig(out=args.out, epochs=campaign_epochs, train=_train_config(args),
                            chunk_epochs=args.chunk_epochs, diffusion_model=args.diffusion_model,
                            ar_model=args.ar_model, snapshot_dtype=args.snapshot_dtype,
                            max_shard_size=args.max_shard_size)
    try:
        status = run_campaign(config, until_epoch=args.until_epoch, progress=not args.no_progress,
                              options=args.load)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to continue the campaign in {args.out}", file=sys.stderr)
        return 130
    for twin, where in status["twins"].items():
        print(f"{twin}: step {where['step']} of {status['plan']['total_steps']}, epoch {where['epochs_completed']} "
              f"of {config.epochs}" + (f", {where['seconds_per_step']} s/step" if "seconds_per_step" in where else ""))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 250,1000, got {text!r}") from None


def _crossover_parser(commands, train_parser: argparse.ArgumentParser) -> None:
    """``crossover``: the train flags every run of the grid shares, plus the grid's own."""
    from textdiff_core.crossover import CrossoverConfig, ModelShape

    c = commands.add_parser("crossover", help="train diffusion and left-to-right twins from scratch on nested subsets "
                                              "of U reviews to find where diffusion wins (run it again to continue)",
                            epilog="The diffusion twin trains with --loss-weighting elbo unless told otherwise.")
    per_run = {"--objective", "--model", "--steps", "--epochs", "--resume", "--out", "--quick-test", "--stop-after",
               "--conditioning", "--max-samples", "--eval-every", "--eval-epochs", "--eval-size", "--eval-samples",
               "-h", "--weight-decay", "--lr-schedule", "--warmup-steps", "--input-mask-prob"}
    for action in train_parser._actions:  # the same flag objects, so train and crossover cannot drift apart
        if action.option_strings and not set(action.option_strings) & per_run:
            c._add_action(action)
    grid, shape = CrossoverConfig.__dataclass_fields__, ModelShape()
    c.add_argument("--out", required=True, help="grid directory: init/, u-NNNNN/, crossover.json")
    c.add_argument("--sizes", type=_int_list, required=True,
                   help="unique training reviews per grid point, ascending, e.g. 250,1000,4000 (nested subsets)")
    c.add_argument("--steps", type=_int_list, required=True,
                   help="optimizer steps per size, the same for both twins, e.g. 3000,4000,6000; under a constant "
                        "schedule with a fixed warm-up a running grid's budgets may be raised (its runs continue)")
    c.add_argument("--points", type=int, default=grid["points"].default,
                   help=f"validation points per size, log-spaced in steps (default: {grid['points'].default})")
    c.add_argument("--first-point", type=int, default=grid["first_point"].default,
                   help=f"step of the first validation point (default: {grid['first_point'].default})")
    c.add_argument("--val-size", type=int, default=grid["val_size"].default,
                   help="validation reviews, the same for every size and twin (default: "
                        f"{grid['val_size'].default})")
    c.add_argument("--val-samples", type=int, default=grid["val_samples"].default,
                   help=f"ELBO Monte Carlo samples per validation text (default: {grid['val_samples'].default})")
    c.add_argument("--layers", type=int, default=shape.layers, help=f"transformer layers (default: {shape.layers})")
    c.add_argument("--width", type=int, default=shape.width, help=f"hidden size (default: {shape.width})")
    c.add_argument("--heads", type=int, default=shape.heads, help=f"attention heads (default: {shape.heads})")
    c.add_argument("--vocab-size", type=int, default=shape.vocab_size,
                   help=f"WordPiece vocabulary trained on the largest subset (default: {shape.vocab_size})")
    c.add_argument("--tokenizer", default=None,
                   help="a tokenizer.json to use (e.g. an earlier grid's OUT/init/tokenizer.json), so that the grid is "
                        "repeated exactly (default: train a WordPiece tokenizer on the largest subset)")
    c.add_argument("--control-mask", type=float, default=0.0,
                   help="the control arm: also train the left-to-right twin with its text inputs masked at this rate "
                        "(Gao et al.), to tell the objective from the augmentation; may be added to a running grid "
                        "(default: 0, none)")
    c.add_argument("--control-sizes", type=_int_list, default=[],
                   help="the sizes that get the control arm, e.g. 100,200 (default: every size)")
    c.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (default: 0.1, as published)")
    c.add_argument("--lr-schedule", default="constant_with_warmup",
                   help="transformers scheduler name (default: constant_with_warmup)")
    c.add_argument("--warmup-steps", type=int, default=100, help="warm-up steps of every run (default: 100)")
    c.add_argument("--until-size", type=int, default=None, help="stop after this size (run again to go on)")
    c.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is several times faster on a machine "
                        "whose cores other jobs keep busy (not a setting of the grid: results are read the same way)")
    c.add_argument("--probe-steps", type=int, default=6,
                   help="steps of the s/step measurement printed with the plan before training (0: none)")


def crossover_config(args: argparse.Namespace):
    """The CrossoverConfig of ``crossover``'s flags."""
    from textdiff_core.crossover import CrossoverConfig, ModelShape

    sizes, steps = args.sizes, args.steps
    if not hasattr(args, "noise__weighting"):  # the published recipe: the 1/t weighting, so the loss is the bound
        args.noise__weighting = "elbo"  # (not set_defaults: the flag's action is shared with train's parser)
    args.objective, args.model, args.resume, args.quick_test = "diffusion", None, False, False
    args.steps, args.epochs, args.stop_after, args.conditioning = None, None, None, "joint"
    config = CrossoverConfig(out=args.out, sizes=sizes, steps=steps, train=_train_config(args), points=args.points,
                             first_point=args.first_point, val_size=args.val_size, val_samples=args.val_samples,
                             shape=ModelShape(args.layers, args.width, args.heads, args.vocab_size),
                             tokenizer=args.tokenizer, control_mask=args.control_mask,
                             control_sizes=args.control_sizes)
    return config


def cmd_crossover(args: argparse.Namespace) -> int:
    from textdiff_core.crossover import run_crossover

    config = crossover_config(args)
    if args.threads is not None:
        if args.threads < 1:
            raise TextdiffError(f"threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        results = run_crossover(config, until_size=args.until_size, probe_steps=args.probe_steps,
                                progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to continue the grid in {args.out}", file=sys.stderr)
        return 130
    for row in results["runs"]:
        crossing = row["crossover_tokens"]
        print(f"U={row['unique_reviews']}: {len(row['steps'])} of {len(row['validation_steps'])} points; crossover "
              + (f"at {crossing:,} tokens" if crossing else "none within budget so far"))
    if results.get("exponent"):
        e = results["exponent"]
        print(f"C_crit ~ U^{e['k']:.2f} (95% {e['ci95'][0]:.2f} to {e['ci95'][1]:.2f}; published {e['published']})")
    print(f"wrote {os.path.join(args.out, 'crossover.json')}" + ("" if results["finished"] else
                                                                 " (in progress: run again to continue)"))
    return 0


def cmd_campaign_ship(args: argparse.Namespace) -> int:
    from textdiff_core.campaign import best_reading, ship

    given = {twin: e for twin, e in (("diffusion", args.diffusion_epoch), ("ar", args.ar_epoch)) if e is not None}
    if any(e < 1 for e in given.values()):
        raise TextdiffError(f"epochs count from 1, got {given}")
    record = ship(args.campaign, args.dest, given or None, partial=args.partial, replaced=args.replaced)
    if "replaced" not in record:
        print(f"note: no {args.replaced}: the report will not compare the new pair with the one it replaced")
    for twin, epoch in record["shipped"].items():
        r = next((r for r in record["epochs"][twin] if r["epochs_completed"] == epoch), {})
        where = os.path.join(args.dest, record["directories"][twin])
        seen = (f"best reading {best_reading(r):.3f}, perplexity {r['val_perplexity']:.1f}"
                if best_reading(r) is not None and "val_perplexity" in r else "no record")
        print(f"{twin}: epoch {epoch} of {len(record['epochs'][twin])} -> {where} (validation: {seen})")
    crossing = record["crossover_epoch"]
    print("diffusion's better reading " + (f"at or above the twin's from epoch {crossing} on" if crossing else
                                           "not at or above the twin's at the last epoch"))
    print("next: calibrate both (checkpoints/README.md), then python train_cli.py report")
    return 0


def _train_config(args: argparse.Namespace):
    """The TrainConfig of ``train``'s flags (``--quick-test`` overriding a few)."""
    from textdiff_core.settings import train_config

    quick = {}
    if getattr(args, "quick_test", False):
        quick = {"steps": getattr(args, "steps", None) or 5, "max_samples": 64, "batch_size": 4, "max_length": 48,
                 "log_every": 1, "save_every": 2}
    return train_config(args, **quick)


def cmd_synthesize(args: argparse.Namespace) -> int:
    from textdiff_core.synthesize import SynthConfig, synthesize

    config = SynthConfig(
        checkpoint=args.checkpoint, out=args.out, per_class=args.per_class, generator=args.generator,
        classes=args.classes.split(",") if args.classes else None, length=args.length, batch_size=args.batch_size,
        seed=args.seed, cfg_scale=args.cfg_scale, judge=args.judge, judge_method=args.judge_method,
        threshold=args.threshold, ngram=args.ngram, duplicate_jaccard=args.duplicate_jaccard,
        leak_jaccard=args.leak_jaccard, data=args.data, trust_remote_code=bool(args.trust_remote_code),
    )
    report = synthesize(config, progress=not args.no_progress, options=args.load)
    judge = report.judge
    worth = (f"{judge['validation_accuracy']:.1%} on {judge['validation_n']} real validation reviews "
             f"({judge['how']})" if "validation_accuracy" in judge else "accuracy on real reviews not on record")
    print(f"judge: {judge['judge']} ({judge['method']}, {'calibrated' if judge['calibrated'] else 'uncalibrated'}); "
          f"{worth}")
    print(f"generated {report.generated}; dropped by the judge {report.judged_other}, as duplicates "
          f"{report.duplicates}, as leaks {report.leaks}; kept {report.kept} ({report.seconds:.0f} s)")
    print(f"wrote {args.out} and {args.out}.json")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from textdiff_core.checkpoint import exists as checkpoint_exists
    from textdiff_core.train import can_resume, refuse_overwrite, train

    config = _train_config(args)
    refuse_overwrite(config.out, args.overwrite, resumable=config.resume and can_resume(config.out),
                     how="it has no resumable checkpoint (checkpoints/step-N) to --resume from; " if config.resume
                     else "pass --resume to continue it, ")
    try:
        out = train(config, progress=not args.no_progress, options=args.load)
    except KeyboardInterrupt:
        print(f"interrupted: the last checkpoint is in {args.out}/checkpoints; continue with --resume", file=sys.stderr)
        return 130
    if config.stop_after is not None and not checkpoint_exists(out):
        print(f"stopped at step {config.stop_after}: the checkpoint is in {out}/checkpoints; continue with --resume")
        return 0
    print(f"saved {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:  # its options belong to textdiff_core/report.py
        return cmd_report(argparse.Namespace(args=argv[1:]))
    args = build_parser().parse_args(argv)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    commands = {"train": cmd_train, "fill-mask": cmd_fill_mask, "classify": cmd_classify,
                "evaluate": cmd_evaluate, "calibrate": cmd_calibrate, "generate": cmd_generate,
                "export": cmd_export, "paired": cmd_paired, "report": cmd_report, "zero-shot": cmd_zero_shot,
                "perplexity": cmd_perplexity, "campaign": cmd_campaign, "campaign-ship": cmd_campaign_ship,
                "synthesize": cmd_synthesize, "crossover": cmd_crossover}
    from textdiff_core.models import quiet_progress

    try:
        args.load = load_options(args)  # every command's model-loading options, checked before any work
        with quiet_progress(getattr(args, "no_progress", False)):
            return commands[args.command](args)
    except TextdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
