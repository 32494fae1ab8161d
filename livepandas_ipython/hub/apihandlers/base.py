"""``APIHandler``: what every REST handler of the hub shares.

- **One error shape.** Every error, ours or Tornado's (405, malformed requests, unknown paths),
  answers JSON ``{"status": N, "message": "..."}``; a few add a field that helps a client (``line``
  for a canvas syntax error). The client message and the log message are separate: an
  unexpected exception answers ``500 Internal Server Error`` and is logged with its traceback.
- **Bodies are streamed in** (``@stream_request_body``) and counted, so a body over the
  handler's limit is answered ``413`` with that JSON body instead of a dropped connection:
  bodies a little over the limit (up to 4x, at most 16 MiB more) are read and thrown away,
  larger ones are refused at once (and the connection closed).
  Authentication happens in :meth:`APIHandler.prepare`, before any of the body is read.
- **Credentials** come from the ``Authorization`` header only (never cookies), so these
  handlers need no XSRF protection; see :mod:`..auth` for the schemes.
"""

import asyncio
import datetime
import http.client
import json
import logging

import tornado.web
from tornado import httputil

from ..auth import parse_authorization
from ..errors import BadRequest, APIError, TooLarge, TooManySessions, Unauthorized

__all__ = ["APIHandler", "NotFoundHandler", "iso8601"]

log = logging.getLogger("livepandas.hub")

_JSON = "application/json; charset=UTF-8"


def iso8601(timestamp):
    """A Unix time as ISO 8601 UTC with milliseconds (``2024-05-01T12:00:00.000Z``), None kept."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@tornado.web.stream_request_body
class APIHandler(tornado.web.RequestHandler):
    """Base of the hub's REST handlers.

    Class attributes for subclasses:

    ``auth`` — ``"required"`` (default), or ``None`` for anonymous endpoints.
    ``basic_auth`` — also accept HTTP Basic credentials (the Sense API).
    ``cors`` — answer browsers on any origin (``Access-Control-Allow-Origin``), preflight included.
    ``large_body`` — the body may be as large as ``max_body_size`` (uploads); others are small.
    """

    auth = "required"
    basic_auth = False
    cors = False
    large_body = False

    @property
    def hub(self):
        """The :class:`..app.LivePandasHub` serving this request."""
        return self.settings["hub"]

    @property
    def log(self):
        return self.hub.log if "hub" in self.settings else log

    # -- headers ----------------------------------------------------------------------------

    def set_default_headers(self):
        self.set_header("Content-Type", _JSON)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        if self.cors:
            self.set_header("Access-Control-Allow-Origin", self.settings.get("cors_origin", "*"))
            self.set_header("Access-Control-Expose-Headers", "Location, Retry-After")

    def options(self, *args):
        """CORS preflight (only routes with ``cors`` answer it)."""
        if not self.cors:
            raise tornado.web.HTTPError(405)
        self.set_header("Access-Control-Allow-Methods", ", ".join(self._allowed_methods()))
        self.set_header("Access-Control-Allow-Headers", "Content-Type, X-Requested-With")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def _allowed_methods(self):
        methods = [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if _overrides(self, m.lower())]
        return methods + ["OPTIONS"]

    def check_xsrf_cookie(self):
        """No XSRF check: API credentials are headers a foreign page cannot make a browser send."""

    # -- request body and auth --------------------------------------------------------------

    @property
    def body_limit(self):
        return self.settings["max_body_size"] if self.large_body else self.settings["max_request_size"]

    async def prepare(self):
        self._chunks = []
        self._size = 0
        self._too_large = False
        # An answer given here comes before the body was read, so Tornado closes the connection
        # after it: write_error says so (Connection: close), or a keep-alive client would
        # send its next request into a closing socket.
        self._preparing = True
        limit = self.body_limit
        discard = limit + min(3 * limit, 16 * 1024 * 1024)
        if self.request.method in ("POST", "PUT", "PATCH", "DELETE"):
            self.request.connection.set_max_body_size(discard)
            length = self.request.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                if int(length) > discard:
                    raise TooLarge(_too_large(limit))
                self._too_large = True
        await self.check_request()
        self._preparing = False

    async def check_request(self):
        """Refuse the request before its body is read (the default: authenticate if required)."""
        if self.request.method != "OPTIONS" and self.auth == "required":
            self.current_user = await self.authenticate()

    def data_received(self, chunk):
        if self._finished or self._too_large:
            return
        self._size += len(chunk)
        if self._size > self.body_limit:
            self._too_large = True
            self._chunks = []
        else:
            self._chunks.append(chunk)

    @property
    def body(self):
        """The request body (bytes). Raises TooLarge when it was over the limit."""
        if self._too_large:
            raise TooLarge(_too_large(self.body_limit))
        return b"".join(self._chunks)

    def get_json_body(self, required=True):
        """The body decoded as JSON (None for an empty body unless *required*)."""
        body = self.body
        if not body.strip():
            if required:
                raise BadRequest("the request needs a JSON body")
            return None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None

    def get_fields(self):
        """The body as a dict: a JSON object, or form fields (urlencoded or multipart; last value wins)."""
        ctype = self.request.headers.get("Content-Type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            arguments = {}
            try:
                httputil.parse_body_arguments(ctype, self.body, arguments, {}, self.request.headers)
            except (httputil.HTTPInputError, ValueError) as exc:
                raise BadRequest(f"the form body is malformed: {exc}"[:300]) from None
            return {name: values[-1].decode("utf-8", "replace") for name, values in arguments.items()}
        data = self.get_json_body(required=False)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    async def authenticate(self):
        """The user row for this request's credentials; raises Unauthorized without valid ones."""
        parsed = parse_authorization(self.request.headers.get("Authorization"))
        if parsed is None:
            raise Unauthorized("authentication required: send the header 'Authorization: APIKey <user>:<key>'")
        scheme, user, secret = parsed
        auth = self.hub.authenticator
        if scheme == "apikey":
            row = auth.user_for_key(secret, user=user)
        elif self.basic_auth:
            row = await asyncio.get_running_loop().run_in_executor(None, auth.check_basic, user, secret)
        else:
            raise Unauthorized("this API takes 'Authorization: APIKey <user>:<key>', not Basic credentials")
        if row is None:
            raise Unauthorized("invalid credentials: unknown user, or a wrong or revoked key")
        return row

    # -- replies ----------------------------------------------------------------------------

    def url_for(self, path):
        """The absolute URL of hub *path* (``api/v1/...``) as this client reached the hub."""
        return f"{self.request.protocol}://{self.request.host}/{path.lstrip('/')}"

    def write_json(self, data, status=200):
        self.set_status(status)
        self.finish(json.dumps(data))

    def write_error(self, status_code, **kwargs):
        """Every error as ``{"status", "message"}``; never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if getattr(self, "_preparing", False):
            self.set_header("Connection", "close")
        if isinstance(exc, APIError):
            self.set_status(exc.status)
            body = exc.body()
            if isinstance(exc, TooManySessions):
                self.set_header("Retry-After", str(exc.retry_after))
            if isinstance(exc, Unauthorized):
                scheme = 'Basic realm="livepandas-hub"' if self.basic_auth else 'APIKey realm="livepandas-hub"'
                self.set_header("WWW-Authenticate", scheme)
        else:
            reason = http.client.responses.get(status_code, "Error")
            message = reason
            if isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            elif status_code == 405:
                message = f"{self.request.method} is not allowed here"
            body = {"status": status_code, "message": message}
        if self.request.method == "HEAD":
            self.finish()
        else:
            self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb):
        if isinstance(value, (APIError, tornado.web.HTTPError)):
            return  # answered with its JSON error, and in the access log; not a hub fault
        super().log_exception(typ, value, tb)


class NotFoundHandler(APIHandler):
    """Any path no handler claims: a JSON 404."""

    auth = None

    async def check_request(self):
        raise tornado.web.HTTPError(404, "no such path: %s", self.request.path)


def _overrides(handler, method):
    return getattr(type(handler), method) is not getattr(tornado.web.RequestHandler, method)


def _too_large(limit):
    return f"the request body is over the limit of {limit} bytes"
