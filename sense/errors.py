"""The exceptions ``sense`` raises.

Each subclasses the builtin it resembles, so callers can catch either::

    LivePandasError
     └── SenseError
          ├── ConfigurationError (RuntimeError)   missing or malformed SENSE_* variables (.variables)
          ├── InstallError (RuntimeError)         pip failed (.returncode, .output, .command)
          ├── UnknownWorkerError (LookupError)    an id that names no worker of this master (.ids)
          ├── WorkerError (RuntimeError)          workers could not be launched or reached
          └── HubError (RuntimeError)             the hub answered an error (.status, .url, .response)
"""

from livepandas_ipython.errors import LivePandasError

__all__ = [
    "SenseError",
    "ConfigurationError",
    "InstallError",
    "UnknownWorkerError",
    "WorkerError",
    "HubError",
]


class SenseError(LivePandasError):
    """Base class of every error the ``sense`` module raises itself."""


class ConfigurationError(SenseError, RuntimeError):
    """Environment variables ``sense`` needs are missing or malformed; ``variables`` names them."""

    def __init__(self, message, variables=()):
        super().__init__(message)
        self.variables = list(variables)


class InstallError(SenseError, RuntimeError):
    """``pip install`` failed.

    ``returncode`` is pip's exit status, ``output`` the last lines it printed and ``command`` the
    argv that ran.
    """

    def __init__(self, message, returncode=None, output="", command=()):
        super().__init__(message)
        self.returncode = returncode
        self.output = output
        self.command = list(command)


class UnknownWorkerError(SenseError, LookupError):
    """Worker ids that name no worker of this master; ``ids`` lists them."""

    def __init__(self, message, ids=()):
        super().__init__(message)
        self.ids = list(ids)


class WorkerError(SenseError, RuntimeError):
    """Workers could not be launched, or a worker's kernel could not be reached."""


class HubError(SenseError, RuntimeError):
    """The hub answered with an error status; ``status``, ``url`` and ``response`` say which."""

    def __init__(self, message, status=None, url=None, response=None):
        super().__init__(message)
        self.status = status
        self.url = url
        self.response = response
