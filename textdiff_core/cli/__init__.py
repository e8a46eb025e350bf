"""textdiff command line: train masked-diffusion and left-to-right models, and probe them.

    python train_cli.py train --objective diffusion --model minilm --data imdb --conditioning class --out DIR
    torchrun --nproc_per_node 2 train_cli.py train ...        # several processes (CPU: gloo)
    accelerate launch train_cli.py train ...                   # several GPUs
    python train_cli.py fill-mask --checkpoint DIR "The movie was [MASK]."
    python train_cli.py generate --checkpoint DIR --prompt "The movie was" --length 32 --strategy confidence

Errors the user can fix are printed on one line and exit with status 2; an interrupted run (Ctrl-C) saves a
checkpoint first and exits with 130, and ``--resume`` continues it.

One module per group of commands: ``training`` (train, campaign, crossover, campaign-ship, export), ``scoring``
(classify, evaluate, calibrate, paired, perplexity, zero-shot), ``generation`` (generate, fill-mask, synthesize),
``reporting`` (report). Every command parses its flags here, and gets the loading flags as one ``LoadOptions``
(``args.load``), checked before any work starts.
"""

from __future__ import annotations

import argparse
import os
import sys

from textdiff_core.cli import generation, reporting, scoring, training
from textdiff_core.errors import TextdiffError
from textdiff_core.progress import quiet_progress
from textdiff_core.settings import LoadOptions

COMMANDS = training.COMMANDS | scoring.COMMANDS | generation.COMMANDS | reporting.COMMANDS
RENAMED_FLAGS = {"--noise-schedule": "--masking-rates"}  # old flag -> its name since v0.1; the old one is refused
RENAMED_METHODS = {"seed": "mlm-loss"}  # old --method value -> its name


def renamed(argv: list[str]) -> str | None:
    """What is wrong with an old name in ``argv``, in one line; None when there is none."""
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag in RENAMED_FLAGS:
            return f"{flag} is now called {RENAMED_FLAGS[flag]}"
        if flag in ("--method", "--judge-method"):
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            if value in RENAMED_METHODS:
                return f"method {value!r} is now called {RENAMED_METHODS[value]!r}: {flag} {RENAMED_METHODS[value]}"
    return None


def _model_flags(parser: argparse.ArgumentParser, top: bool) -> None:
    """Loading flags, accepted before the command name (``top``) and after it (then they do not reset the former)."""
    keep = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--trust-remote-code", action="store_true", **keep,
                        help="run modeling code shipped with a model (MDLM, LLaDA, Dream); only for models you trust")
    parser.add_argument("--allow-large-cpu", action="store_true", **keep,
                        help="load a model of over 1B parameters on CPU (slow; meant for a GPU)")
    parser.add_argument("--mask-id", type=int, default=None if top else argparse.SUPPRESS,
                        help="diffusion models: the mask token id (default: from the model's config or tokenizer)")
    parser.add_argument("--logit-shift", type=int, choices=[0, 1], default=None if top else argparse.SUPPRESS,
                        help="diffusion models: 1 if position i's logits predict token i+1 (Dream; default: config)")
    parser.add_argument("--time-input", choices=["none", "sigma"], default=None if top else argparse.SUPPRESS,
                        help="diffusion models: pass the noise level as timesteps (sigma: MDLM; default from config)")
    parser.add_argument("--context-length", type=int, default=None if top else argparse.SUPPRESS,
                        help="diffusion models: positions the model takes (default from config)")
    parser.add_argument("--model-dtype", choices=["fp32", "bf16", "fp16"], default=None if top else argparse.SUPPRESS,
                        help="dtype to load weights in (default: bf16 on GPU, fp32 on CPU)")


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The loading flags as the ``LoadOptions`` every command passes to ``load_model``."""
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
    train = training.add_train(commands)
    training.add_campaign(commands, train)
    training.add_crossover(commands, train)
    training.add_augment(commands, train)
    training.add_campaign_ship(commands)
    generation.add_fill_mask(commands)
    scoring.add_classifiers(commands)
    generation.add_generate(commands)
    training.add_export(commands)
    scoring.add_paired(commands)
    scoring.add_perplexity(commands)
    scoring.add_zero_shot(commands)
    generation.add_synthesize(commands)
    reporting.add_report(commands)
    for name, sub in commands.choices.items():  # the loading flags also after the command name
        if name != "report":  # the report loads the shipped models as they are
            _model_flags(sub, top=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if old := renamed(argv):
        print(f"error: {old}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    args.argv_after_command = argv[argv.index(args.command) + 1:]  # what the report records as its command
    try:
        args.load = load_options(args)  # every command's model-loading options, checked before any work
        with quiet_progress(getattr(args, "no_progress", False)):
            return COMMANDS[args.command](args)
    except TextdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
