"""The command that measures the shipped models: report (RESULTS.md, results.json)."""

from __future__ import annotations

import argparse

from textdiff_core.experiments import measure


def add_report(commands) -> None:
    """``report``: the flags of ``textdiff_core.experiments.measure``, parsed here like every other command's."""
    r = commands.add_parser("report", help="regenerate RESULTS.md and results.json from the shipped checkpoints "
                                           "(options: python train_cli.py report --help)",
                            description=measure.__doc__.split("\n")[0])
    measure.add_arguments(r)


def _own(args: argparse.Namespace) -> argparse.Namespace:
    """The report's own settings, without the top-level loading flags (results.json records them all): the names
    its flags parse into (those of an empty command line), with the values parsed."""
    parser = argparse.ArgumentParser(add_help=False)
    measure.add_arguments(parser)
    return argparse.Namespace(**{name: getattr(args, name) for name in vars(parser.parse_args([]))})


def cmd_report(args: argparse.Namespace) -> int:
    return measure.run_report(_own(args), args.argv_after_command)


COMMANDS = {"report": cmd_report}  # command name -> what runs it
