"""The exceptions livepandas raises, and the HTTP status each maps to.

Every error subclasses the builtin it resembles, so callers can catch either::

    Exception
     └── LivePandasError
          ├── CanvasError (ValueError)          the canvas's Python can't be loaded
          ├── ServerError (RuntimeError)        a server failed to start (port in use, timeout)
          ├── ArgumentError (ValueError)        bad command-line / magic arguments
          ├── HubError                          a hub refused a client's request or can't be reached
          └── RequestError                      a call the function server refuses (has .status)
               ├── BadRequest (ValueError)            400: malformed JSON, kwargs not an object
               │    └── BadArguments (TypeError)      400: kwargs don't bind to the signature
               ├── Forbidden (PermissionError)        403: foreign Host, cross-site, bad token
               ├── FunctionNotFound (LookupError)     404: no such ``livepandas_<name>``
               ├── PayloadTooLarge (ValueError)       413: body over the configured limit
               ├── ServerBusy (RuntimeError)          503: every pool thread holds a timed-out call
               ├── ServerStopping (RuntimeError)      503: the process exited before the call finished
               └── CallTimeout (TimeoutError)         504: a call ran over ``call_timeout``

Errors raised *by a user's function* are not wrapped: the server answers 500 with the
function's own exception type and message.
"""

__all__ = [
    "LivePandasError",
    "CanvasError",
    "ServerError",
    "ArgumentError",
    "HubError",
    "RequestError",
    "BadRequest",
    "BadArguments",
    "Forbidden",
    "FunctionNotFound",
    "PayloadTooLarge",
    "ServerBusy",
    "ServerStopping",
    "CallTimeout",
]


class LivePandasError(Exception):
    """Base class of every error livepandas raises itself."""


class CanvasError(LivePandasError, ValueError):
    """A canvas's Python source failed to compile or run, or publishes nothing.

    ``lineno`` is the 1-based line in ``filename`` where it failed, when known.
    """

    def __init__(self, message, *, filename=None, lineno=None):
        super().__init__(message)
        self.filename = filename
        self.lineno = lineno


class ServerError(LivePandasError, RuntimeError):
    """A function server could not start or stop (port in use, loop not answering)."""


class ArgumentError(LivePandasError, ValueError):
    """Command-line or magic arguments that don't parse; ``usage`` is the usage text."""

    def __init__(self, message, usage=""):
        super().__init__(message)
        self.usage = usage


class HubError(LivePandasError):
    """A hub answered :class:`~.client.HubClient` with an error, or could not be reached.

    ``status`` is the HTTP status (None when no answer came), ``message`` the hub's own message
    (its JSON ``message``), ``url`` the URL requested, ``line`` the line of a syntax error in an
    uploaded canvas, ``response`` the :class:`requests.Response` (None without an answer).
    ``str(exc)`` is one line: ``"401 Unauthorized for url: http://hub/api/v1/canvases/ — <message>"``.
    """

    def __init__(self, message, *, status=None, url=None, line=None, response=None, reason=None):
        self.status = status
        self.message = message
        self.url = url
        self.line = line
        self.response = response
        if status is None:
            text = message
        else:
            text = f"{status} {reason or 'Error'} for url: {url} — {message}"
        super().__init__(text)


class RequestError(LivePandasError):
    """A request the function server refuses; ``status`` is its HTTP status code."""

    status = 400


class BadRequest(RequestError, ValueError):
    status = 400


class BadArguments(BadRequest, TypeError):
    status = 400


class Forbidden(RequestError, PermissionError):
    status = 403


class FunctionNotFound(RequestError, LookupError):
    status = 404


class PayloadTooLarge(RequestError, ValueError):
    status = 413


class ServerBusy(RequestError, RuntimeError):
    """Every thread of the server's pool is still running a call that timed out."""

    status = 503


class ServerStopping(RequestError, RuntimeError):
    """The server's loop shut down (its process is exiting) while the call was still running."""

    status = 503


class CallTimeout(RequestError, TimeoutError):
    """A call (or a stream's step) did not finish within the server's ``call_timeout``."""

    status = 504
