"""``CanvasManager``: the canvases of one kernel, each on its own port, all on one loop thread.

The magics are a thin front-end over this object::

    manager = CanvasManager()
    server = manager.publish("default", canvas)        # starts a server, or swaps its canvas
    manager.publish("default", canvas.replace(html=v))  # same port, new view
    manager.stop("default"); manager.close()

Publishing a canvas under a name that is already served replaces the functions atomically on the
same port (calls in flight finish on the old ones); asking for another port moves it.
"""

import threading

from .canvas import Canvas
from .errors import FunctionNotFound, ServerError
from .server import FunctionServer, LoopThread
from .server.security import new_token

__all__ = ["CanvasManager"]


class CanvasManager:
    """Start, swap and stop the function servers of named canvases.

    Parameters
    ----------
    default_port : int
        Port tried for a new canvas when none is given; a free one is used when it is taken.
    host : str
        Address new servers bind.
    switch_interval : float
        The interpreter's thread switch interval while the servers answer calls, in seconds;
        0 leaves it alone. See :mod:`.server.gil`.
    server_options : dict
        Further :class:`FunctionServer` options (``debug``, ``allow_origins``, ``max_workers``...).
    """

    def __init__(self, default_port=8888, host="127.0.0.1", switch_interval=0.0, **server_options):
        self.default_port = default_port
        self.host = host
        self.server_options = server_options
        self.servers = {}
        self._loop_thread = None
        self._switch = None
        self._switch_interval = 0.0
        self._lock = threading.RLock()
        self.switch_interval = switch_interval

    @property
    def switch_interval(self):
        return self._switch_interval

    @switch_interval.setter
    def switch_interval(self, value):
        value = value or 0.0
        with self._lock:
            if value == self._switch_interval:
                return
            self._switch_interval = value
            if self._switch is not None:
                self._switch.close()  # restores the usual interval
                self._switch = None
            for server in self.servers.values():
                server.stats.on_call = self._on_call()

    def _on_call(self):
        """The servers' ``stats.on_call``: the :class:`SwitchInterval`'s, when there is one."""
        if not self._switch_interval:
            return None
        if self._switch is None or self._switch.loop is not self.loop_thread.loop:
            from .server.gil import SwitchInterval

            self._switch = SwitchInterval(self._switch_interval, self.loop_thread.loop)
        return self._switch.activity

    @property
    def loop_thread(self):
        if self._loop_thread is None or not self._loop_thread.running:
            self._loop_thread = LoopThread(name="livepandas-canvases").start()
        return self._loop_thread

    def get(self, name):
        """The server of canvas *name*; :class:`FunctionNotFound` lists the served ones."""
        try:
            return self.servers[name]
        except KeyError:
            served = ", ".join(self.servers) or "none"
            raise FunctionNotFound(f"no canvas {name!r}; served canvases: {served}") from None

    def publish(self, name, canvas, *, port=None, host=None):
        """Serve *canvas* as *name*: start a server, swap the canvas in, or move it to *port*.

        Returns the :class:`FunctionServer`.
        """
        host = host or self.host
        with self._lock:
            server = self.servers.get(name)
            if server is not None and (port in (None, server.port) and host == server.host):
                server.canvas = canvas
                return server
            if server is not None:
                # Moving: free the old port only once the new one is bound.
                new = self._start(canvas, port if port is not None else server.port, host)
                server.stop()
            else:
                new = self._start(canvas, port, host)
            self.servers[name] = new
            return new

    def _start(self, canvas, port, host):
        options = dict(self.server_options)
        options.setdefault("token", new_token())  # lets proxied URLs (non-loopback Host) in
        if port is None:
            try:
                return self._server(canvas, self.default_port, host, options)
            except ServerError:
                port = 0
        return self._server(canvas, port, host, options)

    def _server(self, canvas, port, host, options):
        server = FunctionServer(canvas, host=host, port=port, loop_thread=self.loop_thread, **options)
        server.stats.on_call = self._on_call()
        return server.start()

    def set_view(self, name, html=None, static_dir=None, *, port=None, host=None):
        """Replace the HTML view (and/or static directory) of canvas *name*, leaving its functions.

        A canvas that is not served yet is started with no functions, so the view can come first.
        """
        with self._lock:
            server = self.servers.get(name)
            canvas = server.canvas if server is not None else Canvas({}, name=name)
            changes = {}
            if html is not None:
                changes["html"] = html
            if static_dir is not None:
                changes["static_dir"] = static_dir
            return self.publish(name, canvas.replace(**changes), port=port, host=host)

    def stop(self, name):
        """Stop canvas *name* and release its port."""
        with self._lock:
            server = self.get(name)
            del self.servers[name]
        server.stop()

    def close(self):
        """Stop every canvas and the loop thread; idempotent."""
        with self._lock:
            servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            server.stop()
        if self._switch is not None:
            self._switch.close()
            self._switch = None
        if self._loop_thread is not None:
            self._loop_thread.stop()
            self._loop_thread = None
