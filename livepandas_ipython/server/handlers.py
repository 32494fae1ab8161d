"""HTTP handlers of the function server. Thin: calling and encoding live in :mod:`.calls`.

Routes (see :func:`.app.make_app`)::

    GET  /                  the canvas's HTML view, or a generated page with a form per function
    GET  /livepandas.js     the JavaScript client (call, stream, socket, rows)
    GET  /static/<path>     the canvas's static directory
    GET  /_functions        the published functions: signatures, docstrings, parameters
    GET  /<name>?kwargs=    call a function; POST /<name> with a JSON body or a form field ``kwargs``

Every error answers JSON ``{"exception": message, "type": name}`` (plus ``"traceback"`` in debug
mode for errors raised by user functions).
"""

import asyncio
import http.client
import os
import traceback
from contextlib import aclosing

import tornado.web
from tornado import httputil
from tornado.iostream import StreamClosedError

from .. import jsonutil
from ..errors import BadRequest, CallTimeout, PayloadTooLarge, RequestError, ServerBusy, ServerStopping
from . import pages
from .calls import Deferred, iterate, run_call

_JSON = "application/json"
_STATIC = os.path.join(os.path.dirname(__file__), "static")


def error_body(exc, *, debug=False, type_name=None):
    """The JSON error object for *exc*: ``{"exception", "type"}`` (+ ``"traceback"`` if *debug*)."""
    body = {"exception": str(exc) if str(exc) else type(exc).__name__, "type": type_name or type(exc).__name__}
    if debug and not isinstance(exc, RequestError):
        body["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return body


class BaseHandler(tornado.web.RequestHandler):
    """Security, CORS and JSON errors shared by every handler of a function server."""

    # Function calls and /_functions refuse cross-site browsers; pages only check Host/token.
    calls = True
    _in_prepare = False  # set by FunctionHandler while its prepare() runs

    def initialize(self, server):
        self.server = server
        self.set_default_headers()

    def prepare(self):
        try:
            has_token = self.server.security.check(self.request, calls=self.calls)
        except RequestError as exc:
            self.reply_error(exc)
            return
        if has_token and "token" in self.request.query_arguments:
            # Keep the token for the page's own later requests (no Path: the browser scopes
            # it to the URL's directory, which is the proxy prefix behind jupyter-server-proxy).
            self.set_header(
                "Set-Cookie", f"{self.server.token_cookie}={self.server.security.token}; HttpOnly; SameSite=Lax"
            )

    def set_default_headers(self):
        server = getattr(self, "server", None)  # Tornado calls this before initialize() too
        if server is None:
            return
        origin = server.security.cors_origin(self.request)
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            if origin != "*":
                self.set_header("Vary", "Origin")

    def options(self, *args):
        """Preflight: answered for allowed origins (prepare() refuses the rest)."""
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def reply_error(self, exc, status=None, close=False):
        """Finish with the JSON error object for *exc* (and ``Connection: close`` with *close*)."""
        if self._finished:
            return
        status = status or getattr(exc, "status", 500)
        self.clear()
        self.set_default_headers()
        if close or self._in_prepare:
            # Answered before a streamed body was read: Tornado then drops the connection, so
            # say so, or a keep-alive client sends its next request into a closed socket.
            self.set_header("Connection", "close")
        self.set_status(status)
        self.set_header("Content-Type", _JSON)
        self.finish(jsonutil.dumps(error_body(exc, debug=self.server.debug)))

    def write_error(self, status_code, **kwargs):
        """Errors raised by Tornado itself (bad unicode, 405, static 403/404): JSON too."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is None and status_code == 500 and _cancelling():
            # Tornado answers 500 when a handler's task is cancelled: here, the loop shutting down
            # as the process exits, with this call unfinished. Not the function's fault.
            stopping = ServerStopping("the server stopped (its process is exiting) before the call finished")
            return self.reply_error(stopping, close=True)
        reason = http.client.responses.get(status_code, "Error")
        message = reason
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif isinstance(exc, RequestError):
            message = str(exc)
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", _JSON)
        self.finish(jsonutil.dumps({"exception": message, "type": reason.replace(" ", "")}))

    @classmethod
    def allowed_methods(cls):
        """The HTTP methods this handler answers (for ``Allow`` on a 405)."""
        return [
            method
            for method in cls.SUPPORTED_METHODS
            if getattr(cls, method.lower()) is not getattr(tornado.web.RequestHandler, method.lower())
        ]

    def log_exception(self, typ, value, tb):
        if isinstance(value, (tornado.web.HTTPError, RequestError)):
            return  # answered with a JSON error; not a server fault
        super().log_exception(typ, value, tb)


@tornado.web.stream_request_body
class FunctionHandler(BaseHandler):
    """GET/POST /<name> — call a published function with JSON kwargs.

    The body is streamed in so an oversized one is answered ``413`` with a JSON error instead of
    a dropped connection: bodies up to ``discard_limit`` are read and thrown away, larger ones are
    refused at once.
    """

    def prepare(self):
        self._in_prepare = True
        try:
            self._prepare()
        finally:
            self._in_prepare = False

    def _prepare(self):
        super().prepare()
        if self._finished:
            return
        self._chunks = []
        self._size = 0
        self._too_large = False
        if self.request.method != "POST":
            return
        limit, discard = self.server.max_body_size, self.server.discard_limit
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            if int(length) > discard:
                return self.reply_error(PayloadTooLarge(_too_large_message(limit)))
            self._too_large = True
        self.request.connection.set_max_body_size(discard)

    def data_received(self, chunk):
        if self._too_large:
            return
        self._size += len(chunk)
        if self._size > self.server.max_body_size:
            self._too_large = True
            self._chunks = []
        else:
            self._chunks.append(chunk)

    async def get(self, name):
        raw = self.request.query_arguments.get("kwargs")
        await self._call(name, raw[-1] if raw else None)

    async def post(self, name):
        if self._too_large:
            return self.reply_error(PayloadTooLarge(_too_large_message(self.server.max_body_size)))
        request = self.request
        body = b"".join(self._chunks)
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            fields = {}
            try:
                httputil.parse_body_arguments(ctype, body, fields, {}, request.headers)
            except httputil.HTTPInputError as exc:  # a malformed form is the client's error, not a 500
                return self.reply_error(BadRequest(f"malformed form body: {exc}"))
            raw = fields.get("kwargs")
            if raw is None and fields:
                return self.reply_error(BadRequest("a form body needs a field 'kwargs' holding a JSON object"))
            raw = raw[-1] if raw else None
        else:
            raw = body or None
        if raw is None:
            query = request.query_arguments.get("kwargs")
            raw = query[-1] if query else None
        await self._call(name, raw)

    async def _call(self, name, raw):
        server = self.server
        try:
            fn = server.canvas.get(name)
            kwargs = parse_kwargs(raw)
            fn.check(kwargs)
        except RequestError as exc:
            return self.reply_error(exc)
        server.stats.started(name)
        try:
            outcome = await run_call(server, fn, kwargs)
        except (CallTimeout, ServerBusy) as exc:
            server.stats.failed(name, exc)
            return self.reply_error(exc)
        except Exception as exc:
            server.stats.failed(name, exc)
            return self.reply_error(exc, 500)
        if isinstance(outcome, Deferred):
            return await self._stream(fn, outcome.value)
        self.set_header("Content-Type", _JSON)
        self.finish(outcome)

    async def _stream(self, fn, gen):
        """Stream a generator as NDJSON (default) or Server-Sent Events (``Accept: text/event-stream``)."""
        sse = "text/event-stream" in self.request.headers.get("Accept", "")
        self.set_header("Content-Type", "text/event-stream" if sse else "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx and friends: don't buffer
        fmt = b"data: %s\n\n" if sse else b"%s\n"
        try:
            async with aclosing(iterate(self.server, gen)) as events:
                async for kind, value in events:
                    self.write(fmt % encode_chunk(stream_message(self.server, fn, kind, value)))
                    if kind == "partial":
                        await self.flush()
            self.finish()
        except StreamClosedError:
            pass  # the client went away; leaving the block closed the generator


class FunctionListHandler(BaseHandler):
    """GET /_functions — the published functions with signatures, docstrings and parameters."""

    def get(self):
        canvas = self.server.canvas
        self.set_header("Content-Type", _JSON)
        self.finish(
            jsonutil.dumps({"canvas": canvas.name, "functions": [f.describe() for f in canvas.functions.values()]})
        )


class IndexHandler(BaseHandler):
    """GET / — the canvas's HTML view, or a generated page with a form per function."""

    calls = False

    def get(self):
        canvas = self.server.canvas
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(canvas.html if canvas.html is not None else pages.generated_index(canvas))


class ClientScriptHandler(BaseHandler):
    """GET /livepandas.js — the JavaScript client."""

    calls = False
    _script = None

    def get(self):
        if ClientScriptHandler._script is None:
            with open(os.path.join(_STATIC, "livepandas.js"), "rb") as f:
                ClientScriptHandler._script = f.read()
        self.set_header("Content-Type", "text/javascript; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(ClientScriptHandler._script)


class StaticHandler(BaseHandler, tornado.web.StaticFileHandler):
    """GET /static/<path> — files of the canvas's static directory (no traversal outside it)."""

    calls = False

    def initialize(self, server):
        BaseHandler.initialize(self, server)
        tornado.web.StaticFileHandler.initialize(self, path=server.canvas.static_dir or _STATIC)

    def prepare(self):
        super().prepare()
        if self._finished:
            return
        static_dir = self.server.canvas.static_dir
        if static_dir is None:
            raise tornado.web.HTTPError(404, "this canvas has no static directory")
        self.root = static_dir


class NotFoundHandler(BaseHandler):
    """Anything unrouted: a JSON 404."""

    def prepare(self):
        super().prepare()
        if not self._finished:
            raise tornado.web.HTTPError(404, "no such path %s", self.request.path)


def parse_kwargs(raw):
    """Decode the JSON kwargs object of a call (``None``/empty → ``{}``)."""
    if raw is None or not raw.strip():
        return {}
    try:
        kwargs = jsonutil.loads(raw)
    except jsonutil.orjson.JSONDecodeError as exc:
        raise BadRequest(f"kwargs is not valid JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise BadRequest(f"kwargs must be a JSON object, not {_json_type(kwargs)}")
    return kwargs


def _too_large_message(limit):
    return f"request body is over the limit of {limit} bytes (max_body_size)"


def stream_message(server, fn, kind, value):
    """The message for one event of :func:`.calls.iterate`: ``{"partial"}``, the final
    ``{"result", "done"}``, or the error object with ``"done"`` (counted as a failure)."""
    if kind == "partial":
        return {"partial": value}
    if kind == "result":
        return {"result": value, "done": True}
    server.stats.failed(fn.name, value)
    message = error_body(value, debug=server.debug)
    message["done"] = True
    return message


def encode_chunk(message):
    """Encode one stream message; a chunk that can't be encoded becomes an error message."""
    try:
        return jsonutil.dumps(message)
    except TypeError as exc:
        return jsonutil.dumps({"exception": str(exc), "type": "TypeError"})


def _json_type(value):
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


default_handlers = [
    (r"/", IndexHandler),
    (r"/livepandas\.js", ClientScriptHandler),
    (r"/static/(.*)", StaticHandler),
    (r"/_functions/?", FunctionListHandler),
    (r"/([A-Za-z][A-Za-z0-9_]*)/?", FunctionHandler),
]


def _cancelling():
    """True when the running task is being cancelled (the loop is shutting down)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.cancelling() > 0
