"""Errors raised for bad user input (configs, data files, checkpoints), and the one CLI
runner that turns them into one stderr line and exit code 2.
"""

from __future__ import annotations

import argparse


class InputError(ValueError):
    """Bad input: the message is one line and names the field or file."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: MESSAGE`` (usage only with ``-h``).

    Sub-parsers made by ``add_subparsers`` are of the same class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand's ``handler``; bad input -> one line, 2."""
    import sys

    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except InputError as error:
        print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
