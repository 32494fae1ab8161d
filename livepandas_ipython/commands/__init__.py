"""The commands shared by the ``livepandas`` CLI and the ``%livepandas`` magic.

Each module holds the library-level work of one command; the front-ends only parse arguments
and print. ``COMMANDS`` names them in the order shown in help and error messages.
"""

from . import serve, test, upload

COMMANDS = {"serve": serve, "test": test, "upload": upload}

__all__ = ["COMMANDS"]
