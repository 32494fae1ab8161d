"""Fixtures shared by every test module: real function servers on ``127.0.0.1:0``.

``serve(canvas_or_source, **options)`` starts a :class:`FunctionServer` and stops it when the test
ends; ``no_server_left_running`` (autouse) fails a test that leaves any server or private loop
thread behind, and stops them so the next test starts clean.
"""

import gc
import textwrap

import pytest

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.server import FunctionServer, LoopThread


@pytest.fixture
def serve(request):
    """Factory: ``serve(canvas, **FunctionServer options)`` → a started server, stopped at teardown.

    *canvas* is a :class:`Canvas`, a ``{name: callable}`` dict, or Python source (dedented and
    loaded with :meth:`Canvas.from_source`). The server binds ``127.0.0.1`` port 0 unless the
    options say otherwise.
    """

    def _serve(canvas, **options):
        if isinstance(canvas, str):
            canvas = Canvas.from_source(textwrap.dedent(canvas))
        elif isinstance(canvas, dict):
            canvas = Canvas(canvas)
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        server = FunctionServer(canvas, **options)
        request.addfinalizer(server.stop)
        return server.start()

    return _serve


@pytest.fixture(autouse=True)
def no_server_left_running():
    """Fail (and clean up after) a test that leaves a server or a private loop thread running."""
    yield
    # A running server is always reachable (its loop holds it), so no gc.collect() is needed.
    objects = gc.get_objects()
    servers = [o for o in objects if isinstance(o, FunctionServer) and o.running]
    loops = [o for o in objects if isinstance(o, LoopThread) and o.running and o is not LoopThread._shared]
    del objects
    leaked = [repr(s) for s in servers] + [f"<LoopThread {loop.name!r}>" for loop in loops]
    for server in servers:
        server.stop()
    for loop in loops:
        loop.stop()
    assert not leaked, f"left running: {', '.join(leaked)}"
