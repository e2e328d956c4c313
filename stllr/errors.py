"""Errors raised for bad user input (configs, data files, checkpoints).

CLIs catch :class:`InputError` and print its one-line message with exit code 2.
"""


class InputError(ValueError):
    """Bad input: the message is one line and names the field or file."""


def run_cli(parser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand's ``handler``; bad input -> one line, 2."""
    import sys

    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except InputError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
