"""Errors raised for bad user input (configs, data files, checkpoints).

CLIs catch :class:`InputError` and print its one-line message with exit code 2.
"""


class InputError(ValueError):
    """Bad input: the message is one line and names the field or file."""
