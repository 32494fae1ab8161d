"""The errors of the hub's own logic, and the HTTP status each maps to.

The hub's stores (:mod:`.db`, :mod:`.canvases`, :mod:`.sessions`) raise these; the API handlers
turn any of them into the JSON error body ``{"status": N, "message": "..."}``, so the same logic
serves REST clients and, later, server-rendered pages::

    LivePandasError
     └── APIError                              .status, .message (shown to the client)
          ├── BadRequest (ValueError)          400: malformed JSON, missing or wrong fields
          │    └── InvalidCanvas               400: syntax error (.line) or no livepandas_* function
          ├── Unauthorized (PermissionError)   401: no or wrong credentials
          ├── NotFound (LookupError)           404: no such object *for this caller*
          ├── Conflict (ValueError)            409: a name already taken
          ├── TooLarge (ValueError)            413: a body or field over its configured limit
          └── TooManySessions (RuntimeError)   429: session caps reached (.retry_after seconds)
"""

from ..errors import LivePandasError

__all__ = [
    "APIError",
    "BadRequest",
    "InvalidCanvas",
    "Unauthorized",
    "NotFound",
    "Conflict",
    "TooLarge",
    "TooManySessions",
]


class APIError(LivePandasError):
    """Base of the hub's client-facing errors; ``str(exc)`` is the message the client sees."""

    status = 500

    @property
    def message(self):
        return str(self)

    def body(self):
        """The JSON error object for this error (extra fields only where they help a client)."""
        return {"status": self.status, "message": self.message}


class BadRequest(APIError, ValueError):
    status = 400


class InvalidCanvas(BadRequest):
    """The canvas's Python does not compile or publishes nothing; ``line`` is 1-based or None."""

    def __init__(self, message, line=None):
        super().__init__(message)
        self.line = line

    def body(self):
        body = super().body()
        if self.line is not None:
            body["line"] = self.line
        return body


class Unauthorized(APIError, PermissionError):
    status = 401


class NotFound(APIError, LookupError):
    status = 404


class Conflict(APIError, ValueError):
    status = 409


class TooLarge(APIError, ValueError):
    status = 413


class TooManySessions(APIError, RuntimeError):
    """A session cap is reached; ``retry_after`` is the number of seconds to wait (>= 1)."""

    status = 429

    def __init__(self, message, retry_after=1):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
