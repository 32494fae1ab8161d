"""An ArgumentParser that never exits: errors raise :class:`~.errors.ArgumentError`.

The CLI turns that into a usage message and exit code 2; the magics turn it into an exact
``UsageError``. Neither front-end lets argparse call ``sys.exit`` (which would kill a kernel).
"""

import argparse

from .errors import ArgumentError

__all__ = ["ArgumentParser"]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose ``error()`` and ``exit()`` raise instead of exiting."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise ArgumentError(message, usage=self.format_usage())

    def exit(self, status=0, message=None):
        # --help and --version land here after printing; the caller decides what "exit" means.
        raise HelpShown(status, message)


class HelpShown(Exception):
    """``--help`` or ``--version`` was handled; ``status`` is the exit status argparse wanted."""

    def __init__(self, status=0, message=None):
        super().__init__(message)
        self.status = status
