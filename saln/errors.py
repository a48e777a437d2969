"""User-facing errors: stages print them as one line instead of a traceback."""

import functools
import sys


class SalnError(Exception):
    """Bad input or an unavailable resource, with the remedy in the message."""


def one_line_errors(main):
    """Run a stage's ``main`` and turn a ``SalnError`` into ``error: ...`` and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except SalnError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
