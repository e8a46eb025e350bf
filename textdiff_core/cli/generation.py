"""Commands that write text: generate, fill-mask, synthesize."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.decoding import default_config, fill_mask, generate_samples
from textdiff_core.denoisers import chat_prompt
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.synthesize import SynthConfig, synthesize
from textdiff_core.kv_cache import CACHE_MODES
from textdiff_core.models import CAUSAL, KIND_NAMES, MASKED, kind_of, load_model
from textdiff_core.paths import write_file
from textdiff_core.settings import check_writable
from textdiff_core.strategies.base import SCHEDULES, SETTINGS, Strategy, strategies, strategy_named, strategy_names
from textdiff_core.trace import CONFIDENCE_MEASURES

DEFAULT_CHECKPOINTS = {MASKED: "minilm", CAUSAL: "minilm-ar"}  # what --checkpoint is, for a strategy of each kind
STOP_AT_END = {"auto": None, "on": True, "off": False}  # --stop-at-end -> DecodeConfig.stop_at_end


def add_fill_mask(commands) -> None:
    """``fill-mask``: top-k predictions for each [MASK]."""
    f = commands.add_parser("fill-mask", help="top-k predictions for each [MASK] in a text (diffusion models)")
    f.add_argument("text", help='text with [MASK] tokens, e.g. "The movie was [MASK]."')
    f.add_argument("--checkpoint", default="minilm", help="trained directory, offline name or hub id")
    f.add_argument("--prefix", action="append", default=None,
                   help="never-masked prefix, e.g. 'positive review:'; repeat to compare several; for a "
                        "class-conditional checkpoint the default is every class prompt")
    f.add_argument("--top-k", type=int, default=5, help="predictions per mask")


def _strategy_help() -> str:
    """``--strategy``'s help: every registered strategy, the flags it reads and what it does."""
    def reads(strategy: Strategy) -> str:
        return f" [{' '.join(_flag(name) for name in strategy.reads)}]" if strategy.reads else ""

    listed = "; ".join(f"{s.name}{reads(s)}: {s.description}" for s in strategies())
    return (f"{listed} (default: {default_config(MASKED).strategy} for a diffusion model, "
            f"{default_config(CAUSAL).strategy} for a left-to-right one)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


CLI_NOTES = {  # what a decoding flag means here, beyond its DecodeConfig field's help
    "steps": "0: none, for {optional} (their own pace)",
    "block_size": "0: the whole length at once",
    "stop_at_end": "auto (the default) is None",
}
DEFAULT_NOTES = {"top_p": "unless --top-k or --temperature 0 is given"}  # when the default gives way


def _setting_help(name: str) -> str:
    """A decoding flag's help, from the DecodeConfig field ``name``: its help (the field's metadata), what it means
    to each strategy that has a note of its own on it, this command's note, which strategies read it and its default
    (``default_config``'s for a diffusion model)."""
    readers = [s for s in strategies() if name in s.reads]
    by_note: dict[str, list[str]] = {}
    for s in readers:
        if name in s.notes:
            by_note.setdefault(s.notes[name], []).append(s.name)
    parts = [SETTINGS[name].metadata["help"], *(f"{', '.join(names)}: {note}" for note, names in by_note.items())]
    if name in CLI_NOTES:
        parts.append(CLI_NOTES[name].format(optional=", ".join(s.name for s in readers if s.optional_steps)))
    tail = [f"read by {', '.join(s.name for s in readers)}"] if readers else []
    default = getattr(default_config(MASKED), name)
    if default is not None:
        tail.append(", ".join([f"default: {default}", *([DEFAULT_NOTES[name]] if name in DEFAULT_NOTES else [])]))
    return ("; ".join(parts) + (f" ({'; '.join(tail)})" if tail else "")).replace("%", "%%")


def add_generate(commands) -> None:
    """``generate``: diffusion decoding or left to right, every decoding setting a flag (its help from DecodeConfig
    and the strategies that read it)."""
    g = commands.add_parser("generate", help="generate text: diffusion decoding or left to right, as the model is")
    g.add_argument("--checkpoint", default=None,
                   help="trained directory, offline name or hub id (default: minilm, or minilm-ar for a left-to-right "
                        "strategy)")
    g.add_argument("--prompt", default="", help="never-masked text to continue; [MASK] inside it is filled too")
    g.add_argument("--length", type=int, default=32, help="new tokens after the prompt (0: only fill its masks)")
    g.add_argument("--strategy", default=None, choices=strategy_names(), help=_strategy_help())
    g.add_argument("--steps", type=int, default=None, help=_setting_help("steps"))
    g.add_argument("--schedule", choices=SCHEDULES, default=None, help=_setting_help("schedule"))
    g.add_argument("--threshold", type=float, default=None, help=_setting_help("threshold"))
    g.add_argument("--k", type=int, default=None, help=_setting_help("k"))
    g.add_argument("--entropy-bound", type=float, default=None, help=_setting_help("entropy_bound"))
    g.add_argument("--confidence", choices=CONFIDENCE_MEASURES, default=None, help=_setting_help("confidence"))
    g.add_argument("--temperature", type=float, default=None, help=_setting_help("temperature"))
    g.add_argument("--top-k", type=int, default=None, help=_setting_help("top_k"))
    g.add_argument("--top-p", type=float, default=None, help=_setting_help("top_p"))
    g.add_argument("--seed", type=int, default=0, help=_setting_help("seed"))
    g.add_argument("--block-size", type=int, default=None, help=_setting_help("block_size"))
    g.add_argument("--spacing", type=int, default=None, help=_setting_help("spacing"))
    g.add_argument("--label", default=None, help="class-conditional checkpoints: put this class's prompt first")
    g.add_argument("--num-samples", type=int, default=1,
                   help="decode N samples (seeds SEED, SEED+1, ...) as one batch; --json records all of them")
    g.add_argument("--cache", choices=CACHE_MODES, default=None, help=_setting_help("cache"))
    g.add_argument("--cache-refresh", type=int, default=None, help=_setting_help("cache_refresh"))
    g.add_argument("--stop-at-end", choices=list(STOP_AT_END), default="auto", help=_setting_help("stop_at_end"))
    g.add_argument("--no-cache", action="store_true",
                   help="no cache of any kind: ar recomputes the whole prefix every step; diffusion runs the whole "
                        "sequence every pass and recomputes unchanged predictions")
    g.add_argument("--cfg-scale", type=float, default=1.0, help=_setting_help("cfg_scale"))
    g.add_argument("--chat", choices=["auto", "on", "off"], default="auto",
                   help="wrap the prompt in the model's chat template (auto: for published models that have one)")
    g.add_argument("--json", default=None, help="write the trace (every frame) as JSON")
    g.add_argument("--gif", default=None, help="write an animated GIF of the frames")
    g.add_argument("--html", default=None, help="write a self-contained HTML player of the frames")


def add_synthesize(commands) -> None:
    """``synthesize``: judged synthetic reviews per class."""
    sy = commands.add_parser("synthesize", help="generate reviews per class, keep those a calibrated judge reads as "
                                                "intended, drop duplicates and leaks (CSV with provenance)")
    sy.add_argument("--checkpoint", required=True,
                    help="generator: a class-conditional checkpoint, or a left-to-right LM with --generator instruct")
    sy.add_argument("--out", required=True,
                    help="CSV to write (rerun to continue an interrupted run); its record: OUT.json")
    sy.add_argument("--per-class", type=int, default=4, help="reviews generated per class, before judging")
    sy.add_argument("--generator", choices=["checkpoint", "instruct"], default="checkpoint",
                    help="checkpoint: the class prompt leads; instruct: ask a left-to-right LM per class (its chat "
                         "template)")
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
    sy.add_argument("--judge-check", type=int, default=300,
                    help="real validation reviews a judge with no record of its accuracy is measured on (default: 300)")
    sy.add_argument("--leak-jaccard", type=float, default=0.3,
                    help="drop a row this similar to a validation or test review")
    sy.add_argument("--data", default="imdb", help="the real data compared against (train, validation, test)")
    sy.add_argument("--no-progress", action="store_true", help="no progress bars")


def _decode_config(args: argparse.Namespace, kind: str):
    """The decoding settings of ``generate``: the defaults for this kind of model (``decoding.default_config``),
    then every flag the user gave."""
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
    config.stop_at_end = STOP_AT_END[args.stop_at_end]
    strategy = strategy_named(config.strategy)
    if args.steps is not None:  # 0 lifts the steps of the strategies that can go without
        config.steps = None if args.steps == 0 and strategy.optional_steps else args.steps
    elif strategy.budget:  # no flag: the strategy's default pass budget, for these blocks
        config.steps = strategy.default_steps(args.length, config.block_size)
    config.validate()
    return config


def cmd_generate(args: argparse.Namespace) -> int:
    if args.length < 0:
        raise TextdiffError(f"length must be >= 0, got {args.length}")
    if args.num_samples < 1:
        raise TextdiffError(f"--num-samples must be at least 1, got {args.num_samples}")
    for flag, path in (("--json", args.json), ("--gif", args.gif), ("--html", args.html)):
        if path:
            check_writable(path, flag)
    picked = strategy_named(args.strategy) if args.strategy is not None else None
    checkpoint, label = args.checkpoint or DEFAULT_CHECKPOINTS[picked.kind if picked else MASKED], args.label
    class_dirs = CheckpointMeta.read(checkpoint).class_dirs if Path(checkpoint).is_dir() else None
    if class_dirs:  # one model per class: the label picks the model, which has no class prompt
        if label not in class_dirs:
            raise TextdiffError(f"{checkpoint} holds one model per class; give --label, one of {', '.join(class_dirs)}")
        checkpoint, label = str(Path(checkpoint) / class_dirs[label]), None
    known = kind_of(checkpoint)
    if picked is None:  # the model says what it is
        needed = known or MASKED
    else:
        needed = picked.kind
        if known is not None and known != needed:
            hint = (f"use --strategy {' or '.join(strategy_names(CAUSAL))}" if known == CAUSAL else
                    "choose a diffusion strategy")
            raise TextdiffError(f"strategy {args.strategy!r} needs a {KIND_NAMES[needed]} model; {checkpoint!r} is a "
                                f"{KIND_NAMES[known]} one ({hint})")
    config = _decode_config(args, needed)
    lm = load_model(checkpoint, needed, options=args.load)
    prompt = args.prompt
    if prompt and (args.chat == "on" or args.chat == "auto" and lm.denoiser is not None and lm.denoiser.chat_template):
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
        write_file(args.json, lambda path: Path(path).write_text(json.dumps(record, ensure_ascii=False) + "\n"))
        print(f"wrote {args.json}")
    for path, write in ((None if len(traces) > 1 else args.json, trace.to_json), (args.gif, trace.to_gif),
                        (args.html, trace.to_html)):
        if path:
            write_file(path, write)
            print(f"wrote {path}")
    return 0


def cmd_fill_mask(args: argparse.Namespace) -> int:
    lm = load_model(args.checkpoint, MASKED, options=args.load)
    prefixes = args.prefix
    if prefixes is None and lm.checkpoint.class_prompted:
        prefixes = lm.checkpoint.class_prompts()
    for prefix in prefixes or [None]:
        predictions = fill_mask(lm, args.text, prefix, args.top_k)
        shown = " | ".join(", ".join(f"{tok} {p:.2f}" for tok, p in mask) for mask in predictions)
        print(f"{(prefix or '(no prefix)'):>24}  {shown}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    config = SynthConfig(
        checkpoint=args.checkpoint, out=args.out, per_class=args.per_class, generator=args.generator,
        classes=args.classes.split(",") if args.classes else None, length=args.length, batch_size=args.batch_size,
        seed=args.seed, cfg_scale=args.cfg_scale, judge=args.judge, judge_method=args.judge_method,
        threshold=args.threshold, ngram=args.ngram, duplicate_jaccard=args.duplicate_jaccard,
        leak_jaccard=args.leak_jaccard, data=args.data, judge_check=args.judge_check,
        trust_remote_code=bool(args.trust_remote_code),
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


COMMANDS = {  # command name -> what runs it
    "fill-mask": cmd_fill_mask,
    "generate": cmd_generate,
    "synthesize": cmd_synthesize,
}
