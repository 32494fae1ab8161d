"""The fast path: ``GET /<name>?kwargs=`` to an inlined function, answered without a RequestHandler.

Tornado's ``RequestHandler`` machinery (routing by regex, handler construction, ``prepare``,
default headers, the ETag hash of every body) costs more CPU than a small function call and its
JSON. In a busy kernel that CPU is paid out of the share of the GIL the cell leaves the server,
so it directly limits how many calls a notebook answers while it computes. :class:`FastRouter`
sits in front of the application and takes only the plainest requests:

- ``GET /<name>`` with no body, to a plain function the server calls inline (see
  :class:`.calls.CallCosts`) and that has only ever returned plain values;
- that passes the server's :class:`.security.Security` check, carries no ``Origin`` header,
  no ``?token=`` (which sets a cookie), no ``Accept: text/event-stream``;
- whose ``kwargs`` is a JSON object that surely binds to the signature.

Everything else, every error included, goes to the application exactly as before, so replies
are the same either way (less the ``Server`` and ``Etag`` headers).
"""

import time
from contextlib import aclosing

from tornado import httputil
from tornado.iostream import StreamClosedError
from tornado.routing import Router

from .. import jsonutil
from ..errors import RequestError
from .calls import Deferred, call_inline, finish_deferred, iterate
from .handlers import encode_chunk, error_body, stream_message

__all__ = ["FastRouter"]

_JSON_HEADERS = (("Content-Type", "application/json"),)


class FastRouter(Router):
    """Route the plainest function calls to :class:`FastCall`, everything else to *app*."""

    def __init__(self, server, app):
        self.server = server
        self.app = app

    def find_handler(self, request, **kwargs):
        call = self._fast_call(request)
        return call if call is not None else self.app.find_handler(request, **kwargs)

    def _fast_call(self, request):
        server = self.server
        if request.method != "GET" or server.log_requests:
            return None
        path = request.path
        name = path[1:-1] if path.endswith("/") else path[1:]
        fn = server.canvas.functions.get(name)
        if fn is None or not server.costs.fast(fn):
            return None
        headers = request.headers
        if (
            "Origin" in headers
            or "Content-Length" in headers
            or "Transfer-Encoding" in headers
            or "text/event-stream" in headers.get("Accept", "")
        ):
            return None
        query = request.query_arguments
        if "token" in query:
            return None
        try:
            server.security.check(request)
        except RequestError:
            return None
        raw = query.get("kwargs")
        if raw:
            try:
                kwargs = jsonutil.loads(raw[-1])
            except ValueError:
                return None
            if type(kwargs) is not dict:
                return None
        else:
            kwargs = {}
        if not fn.accepts(kwargs):
            return None
        return FastCall(server, request, fn, kwargs)


class FastCall(httputil.HTTPMessageDelegate):
    """Call one inlined function once the request is in, and write its JSON reply."""

    def __init__(self, server, request, fn, kwargs):
        self.server = server
        self.request = request
        self.fn = fn
        self.kwargs = kwargs

    def finish(self):
        server, fn = self.server, self.fn
        server.stats.started(fn.name)
        try:
            outcome = call_inline(server, fn, self.kwargs)
        except Exception as exc:
            server.stats.failed(fn.name, exc)
            return self._reply(500, jsonutil.dumps(error_body(exc, debug=server.debug)))
        if isinstance(outcome, Deferred):
            # First sight of a stream or awaitable from this function: finish this one here;
            # the costs keep its later calls off the fast path.
            self._task = server.loop.create_task(self._finish_deferred(outcome))
            return None
        self._reply(200, outcome)

    async def _finish_deferred(self, outcome):
        server, fn = self.server, self.fn
        try:
            outcome = await finish_deferred(outcome)
        except Exception as exc:
            server.stats.failed(fn.name, exc)
            return self._reply(500, jsonutil.dumps(error_body(exc, debug=server.debug)))
        if not isinstance(outcome, Deferred):
            return self._reply(200, outcome)
        # A stream, as NDJSON (FunctionHandler's default format; SSE requests never come here).
        connection = self.request.connection
        headers = httputil.HTTPHeaders(
            {"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        connection.write_headers(httputil.ResponseStartLine(self.request.version, 200, "OK"), headers)
        try:
            async with aclosing(iterate(server, outcome.value)) as events:
                async for kind, value in events:
                    await connection.write(encode_chunk(stream_message(server, fn, kind, value)) + b"\n")
            connection.finish()
        except StreamClosedError:
            pass  # the client went away; leaving the block closed the generator

    def _reply(self, status, body):
        request = self.request
        headers = httputil.HTTPHeaders(_JSON_HEADERS)
        headers["Content-Length"] = str(len(body))
        headers["Date"] = httputil.format_timestamp(time.time())
        start = httputil.ResponseStartLine(request.version, status, "OK" if status == 200 else "Internal Server Error")
        connection = request.connection
        connection.write_headers(start, headers, body)
        connection.finish()

    def on_connection_close(self):
        pass
