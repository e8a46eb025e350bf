"""The commands that measure the shipped models: report (RESULTS.md, results.json) and promises (promises.json)."""

from __future__ import annotations

import argparse

from textdiff_core.experiments import measure, promises


def add_report(commands) -> None:
    """``report``: the flags of ``textdiff_core.experiments.measure``, parsed here like every other command's."""
    r = commands.add_parser("report", help="regenerate RESULTS.md and results.json from the shipped checkpoints "
                                           "(options: python train_cli.py report --help)",
                            description=measure.__doc__.split("\n")[0])
    measure.add_arguments(r)


def add_promises(commands) -> None:
    """``promises``: the flags of ``textdiff_core.experiments.promises``."""
    r = commands.add_parser("promises", help="measure what a generative classifier promises (uncertainty, OOD, "
                                             "robustness, faithful evidence) for every reading",
                            description=promises.__doc__.split("\n")[0])
    promises.add_arguments(r)


def _own(args: argparse.Namespace, add_arguments) -> argparse.Namespace:
    """A command's own settings, without the top-level loading flags (the record keeps them all): the names its
    flags parse into (those of an empty command line), with the values parsed."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return argparse.Namespace(**{name: getattr(args, name) for name in vars(parser.parse_args([]))})


def cmd_report(args: argparse.Namespace) -> int:
    return measure.run_report(_own(args, measure.add_arguments), args.argv_after_command)


def cmd_promises(args: argparse.Namespace) -> int:
    return promises.run_promises(_own(args, promises.add_arguments), args.argv_after_command)


COMMANDS = {"report": cmd_report, "promises": cmd_promises}  # command name -> what runs it
