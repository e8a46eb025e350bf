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
from textdiff_core.settings import add_load_flags, load_options

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


def build_parser() -> argparse.ArgumentParser:
    prog = "textdiff" if os.path.basename(sys.argv[0]) == "textdiff" else "train_cli.py"  # the console script
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    add_load_flags(parser, top=True)  # one flag per LoadOptions field: textdiff_core/settings.py
    commands = parser.add_subparsers(dest="command", required=True)
    training.add_train(commands)
    training.add_campaign(commands)
    training.add_crossover(commands)
    training.add_augment(commands)
    training.add_few_labels(commands)
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
    reporting.add_promises(commands)
    for name, sub in commands.choices.items():  # the loading flags also after the command name
        if name not in ("report", "promises"):  # these load the shipped models as they are
            add_load_flags(sub, top=False)
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
