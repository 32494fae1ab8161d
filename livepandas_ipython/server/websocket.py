"""WebSocket handler of the function server: ``/<name>/ws``.

Each text (or binary) message is a JSON kwargs object and gets one reply, in order:
``{"result": ...}`` or the error object ``{"exception", "type"}``. A streaming function sends
``{"partial": chunk}`` messages, then ``{"result": ..., "done": true}``. A bad message gets an
error reply and never closes the socket. The function is looked up on every message, so a socket
keeps working across a canvas swap (and answers ``FunctionNotFound`` if its function is gone).
"""

import asyncio
import collections
from contextlib import aclosing

import tornado.web
import tornado.websocket

from .. import jsonutil
from ..errors import RequestError
from .calls import Deferred, call_inline, finish_deferred, iterate, run_call
from .handlers import BaseHandler, error_body, parse_kwargs, stream_message


class FunctionSocketHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    """GET /<name>/ws — a WebSocket calling function <name> once per message."""

    def prepare(self):
        BaseHandler.prepare(self)
        if self._finished:
            return
        name = self.path_args[0]
        if name not in self.server.canvas.functions:
            try:
                self.server.canvas.get(name)
            except RequestError as exc:
                self.reply_error(exc)

    def check_origin(self, origin):
        return True  # prepare() has applied the server's origin policy already

    def open(self, name):
        self.name = name
        self._inbox = collections.deque()
        self._worker = None
        self.server.websockets.add(self)
        self.server.stats.sockets += 1

    def on_close(self):
        self.server.websockets.discard(self)
        self.server.stats.sockets -= 1
        if self._worker is not None:
            self._worker.cancel()  # a stream in progress closes its generator

    def on_message(self, message):
        # Queue and return: Tornado reads no further frame (a close included) until on_message
        # returns, so a long stream must not run inside it. Replies stay in message order.
        idle = not self._inbox and (self._worker is None or self._worker.done())
        if idle and self._answer_now(message):
            return
        self._inbox.append(message)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())

    def _answer_now(self, message):
        """Answer a call of an inlined function at once, without a task: the hot path, kept flat.

        Anything unusual (bad JSON, arguments needing a full check, a generator or awaitable
        returned) returns False, or hands over to a task, and takes the general path.
        """
        server = self.server
        fn = server.canvas.functions.get(self.name)
        if fn is None or not server.costs.inline(fn):
            return False
        try:
            kwargs = jsonutil.loads(message)
        except ValueError:
            return False
        if type(kwargs) is not dict or not fn.accepts(kwargs):
            return False
        server.stats.started(fn.name)
        try:
            outcome = call_inline(server, fn, kwargs)
        except Exception as exc:
            server.stats.failed(fn.name, exc)
            self._send(error_body(exc, debug=server.debug))
            return True
        if type(outcome) is bytes:
            try:
                self.write_message(outcome)
            except tornado.websocket.WebSocketClosedError:
                pass
        else:  # a plain function that returned a generator or an awaitable
            self._worker = asyncio.ensure_future(self._finish(fn, outcome))
        return True

    async def _finish(self, fn, outcome):
        try:
            outcome = await finish_deferred(outcome)
        except Exception as exc:
            self.server.stats.failed(fn.name, exc)
            self._send(error_body(exc, debug=self.server.debug))
        else:
            await self._reply(fn, outcome)
        await self._drain()

    async def _drain(self):
        while self._inbox:
            await self._handle(self._inbox.popleft())

    async def _handle(self, message):
        server = self.server
        try:
            fn = server.canvas.get(self.name)
            kwargs = parse_kwargs(message)
            fn.check(kwargs)
        except RequestError as exc:
            return self._send(error_body(exc))
        server.stats.started(fn.name)
        try:
            outcome = await run_call(server, fn, kwargs)
        except Exception as exc:
            server.stats.failed(fn.name, exc)
            return self._send(error_body(exc, debug=server.debug))
        await self._reply(fn, outcome)

    async def _reply(self, fn, outcome):
        server = self.server
        if not isinstance(outcome, Deferred):
            return self._send_raw(outcome)
        async with aclosing(iterate(server, outcome.value)) as events:
            async for kind, value in events:
                if not self._send(stream_message(server, fn, kind, value)):
                    return

    def _send(self, obj):
        try:
            return self._send_raw(jsonutil.dumps(obj))
        except TypeError as exc:  # a chunk that can't be encoded
            return self._send_raw(jsonutil.dumps(error_body(exc)))

    def _send_raw(self, data):
        """Send one text message (*data*: UTF-8 JSON bytes); False when the socket has closed."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return False
        try:
            self.write_message(data)  # bytes go out as they are, in a text frame
        except tornado.websocket.WebSocketClosedError:
            return False
        return True


default_handlers = [
    (r"/([A-Za-z][A-Za-z0-9_]*)/ws", FunctionSocketHandler),
]
