"""``FunctionServer``: serve one canvas on one port, from a :class:`.LoopThread`.

The one implementation behind the kernel's canvases, the ``livepandas`` CLI and hub workers::

    from livepandas_ipython import Canvas, FunctionServer

    server = FunctionServer(Canvas({"add": lambda x, y: x + y}), port=0).start()
    print(server.url)            # http://127.0.0.1:54321/
    server.canvas = new_canvas   # atomic swap: calls in flight finish on the old functions
    server.stop()                # idempotent; the port is free again when it returns

Thread-safety: ``canvas`` may be replaced from any thread (a single attribute store). Plain
functions run on the server's thread pool (``max_workers`` at once), ``async def`` functions on
the loop thread. ``start``/``stop`` may be called from any thread except the loop's own.
"""

import asyncio
import errno
import logging
import os
import socket
import threading
import time

from ..errors import ServerError
from .calls import CallCosts, CallPool
from .security import TOKEN_COOKIE, Security, is_loopback_host, new_token
from .thread import LoopThread

__all__ = ["FunctionServer", "ServerStats"]

log = logging.getLogger("livepandas.server")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_INLINE_BUDGET = 0.001


class ServerStats:
    """Call counts and the last error of one server (updated on the loop thread).

    ``on_call``, when set, is called (on the loop thread) for every call started.
    """

    on_call = None

    def __init__(self):
        self.calls = {}
        self.errors = {}
        self.last_error = None
        self.sockets = 0
        self.last_activity = time.time()  # wall time of the last call or WebSocket message

    def started(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1
        self.last_activity = time.time()
        if self.on_call is not None:
            self.on_call()

    def failed(self, name, exc):
        self.errors[name] = self.errors.get(name, 0) + 1
        self.last_error = {"function": name, "type": type(exc).__name__, "message": str(exc), "time": time.time()}
        log.info("%s raised %s: %s", name, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG) and exc)

    def as_dict(self):
        return {"calls": dict(self.calls), "errors": dict(self.errors), "last_error": self.last_error, "sockets": self.sockets}


class FunctionServer:
    """Serve a :class:`~livepandas_ipython.canvas.Canvas` over HTTP and WebSocket.

    Parameters
    ----------
    canvas : Canvas
        What to serve; replace it later through the ``canvas`` attribute.
    host : str
        Address to bind; ``127.0.0.1`` by default.
    port : int
        Port to bind; 0 picks a free one (read it back from ``.port``).
    token : str, None or False
        ``None`` (default): a token is generated, and required, only when *host* is not loopback.
        A string: that token (required for non-loopback hosts; optional proof for proxied
        requests otherwise). ``False``: no token even off loopback (you accept the risk).
    allow_hosts, allow_origins : iterable of str
        See :class:`.security.Security`. Hub workers pass ``("*",)`` for both.
    debug : bool
        Include tracebacks of user-function errors in error replies.
    max_workers : int, optional
        Size of the thread pool for plain functions (default ``min(32, cpu + 4)``).
    max_body_size : int
        Largest request body accepted, in bytes (413 beyond; default 10 MiB).
    max_message_size : int
        Largest WebSocket message accepted, in bytes (default 10 MiB; larger closes with 1009).
    inline_budget : float
        Seconds. A plain function whose calls (with the encoding of their results) keep within
        this budget is called on the loop thread instead of the pool, which saves a thread
        hand-off per call; see :mod:`.calls`. 0 sends every call to the pool. Default 1 ms.
    call_timeout : float, optional
        Seconds. A call that has not returned by then answers ``504``
        (:class:`~livepandas_ipython.errors.CallTimeout`); for streams, each step. ``None``
        (default): no limit. A timed-out plain function keeps its pool thread until it returns
        (threads can't be stopped); while every thread holds one, pool calls answer ``503``
        (:class:`~livepandas_ipython.errors.ServerBusy`). Turns inlining off.
    log_requests : bool
        Log every request to the ``tornado.access`` logger.
    loop_thread : LoopThread, optional
        The loop to run on; by default the process-wide shared one.
    """

    def __init__(
        self,
        canvas,
        *,
        host="127.0.0.1",
        port=0,
        token=None,
        allow_hosts=(),
        allow_origins=(),
        debug=False,
        max_workers=None,
        max_body_size=DEFAULT_MAX_BODY,
        max_message_size=DEFAULT_MAX_BODY,
        log_requests=False,
        inline_budget=DEFAULT_INLINE_BUDGET,
        call_timeout=None,
        loop_thread=None,
    ):
        if call_timeout is not None and not call_timeout > 0:
            raise ValueError(f"call_timeout must be a positive number of seconds or None, not {call_timeout!r}")
        self.call_timeout = call_timeout
        self.stuck_calls = set()  # pool futures of timed-out calls still running (see .calls)
        # A call on the loop could never be timed out: with a timeout, every call uses the pool.
        self.costs = CallCosts(inline_budget if call_timeout is None else 0)
        self.canvas = canvas
        self.host = host
        self.requested_port = port
        self.port = None
        self.debug = debug
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self.max_body_size = max_body_size
        # Bodies a little over the limit are drained so the client can read the 413.
        self.discard_limit = max(4 * max_body_size, 64 * 1024 * 1024)
        self.max_message_size = max_message_size
        self.log_requests = log_requests
        loopback = _is_loopback_bind(host)
        if token is None:
            token = None if loopback else new_token()
        self.security = Security(
            token=token or None,
            require_token=bool(token) and not loopback,
            allow_hosts=allow_hosts,
            allow_origins=allow_origins,
        )
        self.stats = ServerStats()
        self.websockets = set()  # open FunctionSocketHandlers, closed by stop()
        self._loop_thread = loop_thread
        self._owns_loop = False
        self._http_server = None
        self._sockets = []
        self.pool = None
        self.loop = None
        self._lock = threading.Lock()

    def __repr__(self):
        state = f"on {self.url}" if self.running else "stopped"
        return f"<FunctionServer {self.canvas.name!r} {state}>"

    @property
    def canvas(self):
        """The :class:`~livepandas_ipython.canvas.Canvas` served; assign to swap it atomically."""
        return self._canvas

    @canvas.setter
    def canvas(self, canvas):
        self._canvas = canvas
        self.costs.clear()  # costs are per function object; drop the old code's

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self):
        return self._http_server is not None

    def start(self):
        """Bind the port and start serving; idempotent. Returns self.

        Raises
        ------
        ServerError
            When the address can't be bound (in use, not permitted) or the loop doesn't answer.
        """
        with self._lock:
            if self.running:
                return self
            try:
                sockets = _bind_sockets(self.requested_port, self.host)
            except OSError as exc:
                raise ServerError(_bind_message(exc, self.host, self.requested_port)) from None
            if self._loop_thread is None:
                self._loop_thread = LoopThread.shared()
            elif not self._loop_thread.running:
                self._loop_thread.start()
            self.port = sockets[0].getsockname()[1]
            self.pool = CallPool(self.max_workers)
            try:
                self._loop_thread.call(self._start_on_loop, sockets)
            except BaseException:
                for sock in sockets:
                    sock.close()
                self.pool.shutdown(wait=False)
                raise
            self._sockets = sockets
        log.info("serving canvas %r on %s", self.canvas.name, self.url)
        return self

    def _start_on_loop(self, sockets):
        from tornado.httpserver import HTTPServer

        from .app import make_app
        from .fastpath import FastRouter

        self.loop = asyncio.get_running_loop()
        self.app = make_app(self)
        server = HTTPServer(FastRouter(self, self.app), max_body_size=self.max_body_size)
        server.add_sockets(sockets)
        self._http_server = server

    def stop(self, timeout=5.0):
        """Stop serving, close open connections and release the port; idempotent."""
        with self._lock:
            server, self._http_server = self._http_server, None
            if server is None:
                return
            try:
                self._loop_thread.call(self._stop_on_loop, server, timeout=timeout)
            except ServerError:
                log.warning("the server loop did not stop %r in time", self.canvas.name)
            for sock in self._sockets:
                sock.close()  # already closed by HTTPServer.stop(); harmless
            self._sockets = []
            # Calls already queued still run (and streams close their generators) before the
            # threads exit; nothing new is accepted.
            self.pool.shutdown(wait=False)
        log.info("stopped canvas %r", self.canvas.name)

    async def _stop_on_loop(self, server):
        server.stop()
        for ws in list(self.websockets):
            ws.close(1001, "server stopping")  # upgraded sockets have left the HTTPServer
        try:
            await asyncio.wait_for(server.close_all_connections(), 2)
        except asyncio.TimeoutError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def token_cookie(self):
        return f"{TOKEN_COOKIE}-{self.port}"

    @property
    def url_host(self):
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        return f"[{host}]" if ":" in host else host

    @property
    def url(self):
        """The base URL (``http://host:port/``); with the token as a query when one is required."""
        base = f"http://{self.url_host}:{self.port}/"
        return base + (f"?token={self.security.token}" if self.security.require_token else "")

    def endpoint_urls(self, name):
        """``(http_url, ws_url)`` of function *name* (without the token)."""
        base = f"{self.url_host}:{self.port}/{name}"
        return f"http://{base}", f"ws://{base}/ws"


def _bind_sockets(port, host):
    """Listening sockets for every address of *host* (one port for all); nothing left open on error.

    Like ``tornado.netutil.bind_sockets``, which leaves a socket that failed to bind to the garbage
    collector (a ``ResourceWarning`` on every "port taken, use a free one" fallback).
    """
    sockets = []
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.setblocking(False)
            sock.bind(address)
            sock.listen(128)
        return sockets
    except OSError:
        for sock in sockets:
            sock.close()
        raise


def _is_loopback_bind(host):
    return host in ("localhost",) or is_loopback_host(host)


def _bind_message(exc, host, port):
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use; choose another with --port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"not permitted to bind {host}:{port} (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind {host}:{port}: that address is not on this machine"
    return f"cannot bind {host}:{port}: {exc.strerror or exc}"
