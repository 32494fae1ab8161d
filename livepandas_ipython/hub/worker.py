"""A hub worker: one canvas served by a :class:`~livepandas_ipython.server.FunctionServer` in its own process.

Run by a spawner as ``python -m livepandas_ipython.hub.worker [--ip IP] [--canvas DIR]``. *DIR*
holds ``code.py``, optionally ``view.html`` and a ``static/`` directory. The server binds *IP*
(default ``127.0.0.1``) on a free port, with no token, and admits any ``Host`` and any
``Origin``: a published canvas is meant to be called from other sites.

The worker talks to its parent in lines:

stdout
    ``LIVEPANDAS_READY {"host", "port", "pid", "warm", ["canvas", "functions"]}`` once it serves;
    ``LIVEPANDAS_LOADED {"canvas", "functions"}`` after a warm worker loaded its canvas;
    ``LIVEPANDAS_LOAD_FAILED {"error"}`` when the canvas can't be loaded (then it exits with 3);
    ``LIVEPANDAS_ACTIVITY <unix time>`` after calls, at most once a second.
stdin
    Without ``--canvas`` the worker starts *warm*: bound and ready with an empty canvas, it waits
    for one line ``{"canvas": DIR}`` and loads it. End of file on stdin (the parent is gone) stops
    the worker, as do SIGTERM and SIGINT; all three exit with status 0.

The canvas's own ``print()`` output goes to stderr and it reads an empty stdin, so user code can't
disturb these lines. The worker runs with the canvas directory as its working directory, so the
canvas can open files next to its ``code.py``. Imports are deferred past argument parsing so a
worker is ready as soon as possible.
"""

import os
import signal
import sys
import threading
import time
import types

__all__ = ["main", "load_canvas", "READY", "LOADED", "LOAD_FAILED", "ACTIVITY", "LOAD_FAILED_STATUS"]

READY = "LIVEPANDAS_READY"
LOADED = "LIVEPANDAS_LOADED"
LOAD_FAILED = "LIVEPANDAS_LOAD_FAILED"
ACTIVITY = "LIVEPANDAS_ACTIVITY"
LOAD_FAILED_STATUS = 3
ACTIVITY_INTERVAL = 1.0


class _Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT (a BaseException: canvas code can't swallow it)."""


def _on_signal(signum, frame):
    # One signal is enough: a second one while shutting down must not interrupt the cleanup.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Shutdown(signum)


def _take_fd(fd, mode):
    """A private copy of *fd*; *fd* itself then points to stderr (output) or /dev/null (input)."""
    import fcntl

    try:
        private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)  # never 0-2, which get reassigned below
    except OSError:  # started without it: as good as closed
        null = os.open(os.devnull, mode)
        private = fcntl.fcntl(null, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(null)
    if fd == 1:
        os.dup2(2, 1)  # print() in a canvas goes to stderr
    else:
        null = os.open(os.devnull, mode)
        os.dup2(null, fd)
        os.close(null)
    return private


class _Channel:
    """The private stdin/stdout of the protocol; fds 0 and 1 are given to user code instead."""

    def __init__(self):
        self.out_fd = _take_fd(1, os.O_WRONLY)
        in_fd = _take_fd(0, os.O_RDONLY)
        self.input = os.fdopen(in_fd, "rb")
        self._lock = threading.Lock()

    def write(self, tag, payload):
        import json

        data = f"{tag} {payload if isinstance(payload, str) else json.dumps(payload)}\n".encode()
        with self._lock:
            try:
                while data:
                    data = data[os.write(self.out_fd, data):]
            except OSError:
                pass  # the parent is gone: stdin EOF ends the worker

    def readline(self):
        """One line from the parent (bytes), or b"" at end of file."""
        try:
            return self.input.readline()
        except OSError:  # no usable stdin: as good as closed
            return b""


def _activity_stats(channel):
    """A ``ServerStats`` that reports on *channel* when ``last_activity`` advances."""
    from ..server import ServerStats

    class ActivityStats(ServerStats):
        reporter = None

        @property
        def last_activity(self):
            return self._last_activity

        @last_activity.setter
        def last_activity(self, value):
            self._last_activity = value
            if self.reporter is not None:
                self.reporter.touch()

    stats = ActivityStats()
    stats.reporter = _ActivityReporter(channel, stats)
    return stats


class _ActivityReporter:
    """Write ``LIVEPANDAS_ACTIVITY`` at once after a quiet second, else once the second is over."""

    def __init__(self, channel, stats):
        self.channel = channel
        self.stats = stats
        self.loop_thread = None
        self.last_sent = float("-inf")
        self.pending = None

    def attach(self, loop_thread):
        self.loop_thread = loop_thread

    def touch(self):
        loop_thread = self.loop_thread
        if loop_thread is None or not loop_thread.running:
            return
        if not loop_thread.in_thread():
            loop_thread.submit(self.touch)
        elif self.pending is None:
            delay = max(0.0, self.last_sent + ACTIVITY_INTERVAL - time.monotonic())
            self.pending = loop_thread.loop.call_later(delay, self.flush)

    def flush(self):
        self.pending = None
        self.last_sent = time.monotonic()
        self.channel.write(ACTIVITY, f"{self.stats.last_activity:.3f}")


def load_canvas(directory):
    """Load the canvas stored in *directory* and make it the working directory.

    Returns
    -------
    Canvas

    Raises
    ------
    CanvasError
        When ``code.py`` is missing, doesn't compile, raises, or defines no function.
    """
    from ..canvas import Canvas
    from ..errors import CanvasError

    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise CanvasError(f"canvas directory {directory} does not exist", filename=directory)
    os.chdir(directory)
    return Canvas.from_file(
        "code.py",
        html_path="view.html" if os.path.isfile("view.html") else None,
        static_dir="static" if os.path.isdir("static") else None,
        name=os.path.basename(directory),
    )


def _load_or_exit(channel, directory):
    """The loaded canvas, or exit with LOAD_FAILED_STATUS after telling the parent why."""
    from ..canvas import describe_exception
    from ..errors import CanvasError

    try:
        return load_canvas(directory)
    except (Exception, SystemExit) as exc:
        message = str(exc) if isinstance(exc, CanvasError) else describe_exception(exc, "code.py")
    channel.write(LOAD_FAILED, {"error": message})
    sys.stderr.write(f"cannot load canvas {directory}: {message}\n")
    raise SystemExit(LOAD_FAILED_STATUS)


def _parse_args(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    # The spawner's own command lines, parsed without importing argparse (a worker's start is on
    # a session's critical path); anything else (--help, a typo) goes to argparse.
    options = {"ip": "127.0.0.1", "canvas": None}
    pairs = list(zip(argv[::2], argv[1::2]))
    if len(argv) % 2 == 0 and all(k in ("--ip", "--canvas") and not v.startswith("-") for k, v in pairs):
        options.update((k[2:], v) for k, v in pairs)
        return types.SimpleNamespace(**options)
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m livepandas_ipython.hub.worker",
        description="Serve one canvas for the livepandas hub (see the module docstring for the protocol).",
    )
    parser.add_argument("--ip", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--canvas", metavar="DIR", help="the canvas directory; without it, start warm")
    return parser.parse_args(argv)


def _warm_up(server, ip):
    """Serve one request to ourselves, so a session's first call doesn't pay for first-time paths.

    Best effort (about a millisecond off the first call); a warm worker has the time to spare.
    """
    import socket

    host = "127.0.0.1" if ip in ("", "0.0.0.0") else "::1" if ip == "::" else ip
    try:
        with socket.create_connection((host, server.port), timeout=1) as sock:
            sock.sendall(b"GET /_functions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
        server.pool.submit(int).result(1)  # the call pool's first thread
    except Exception:
        pass


def _warm_request(line):
    import json

    try:
        request = json.loads(line)
        directory = request["canvas"]
        if not isinstance(directory, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ValueError(f'expected a line {{"canvas": DIR}}, got {line[:200]!r}') from None
    return directory


def main(argv=None):
    """Run a worker until stdin closes or SIGTERM/SIGINT; return the exit status."""
    args = _parse_args(argv)
    server = loop_thread = None
    status = 0
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        channel = _Channel()
        from ..canvas import Canvas
        from ..server import FunctionServer, LoopThread

        loop_thread = LoopThread(name="livepandas-worker")

        if args.canvas:
            canvas = _load_or_exit(channel, args.canvas)
        else:
            canvas = Canvas({}, name="warm")
        server = FunctionServer(
            canvas,
            host=args.ip,
            port=0,
            token=False,
            allow_hosts=("*",),
            allow_origins=("*",),
            loop_thread=loop_thread,
        )
        server.stats = _activity_stats(channel)
        server.start()
        if not args.canvas:
            _warm_up(server, args.ip)
        server.stats.reporter.attach(loop_thread)
        ready = {"host": args.ip, "port": server.port, "pid": os.getpid(), "warm": not args.canvas}
        if args.canvas:
            ready.update(canvas=os.getcwd(), functions=list(canvas.functions))
        channel.write(READY, ready)

        if not args.canvas:
            line = channel.readline()
            if not line:
                return 0
            try:
                directory = _warm_request(line.decode("utf-8", "replace").strip())
            except ValueError as exc:
                channel.write(LOAD_FAILED, {"error": str(exc)})
                sys.stderr.write(f"{exc}\n")
                return LOAD_FAILED_STATUS
            canvas = _load_or_exit(channel, directory)
            server.canvas = canvas
            channel.write(LOADED, {"canvas": os.getcwd(), "functions": list(canvas.functions)})

        while channel.readline():
            pass  # nothing else is expected; EOF means the parent is gone
    except _Shutdown:
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            server.stop(timeout=2)
        if loop_thread is not None:
            loop_thread.stop(timeout=1)
    return status


def _run():
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit(): a canvas function stuck in a pool thread would keep the interpreter waiting
    # for it at exit; the server has already closed every connection.
    os._exit(status)


if __name__ == "__main__":
    _run()
