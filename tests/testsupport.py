"""Helpers shared by test modules in several folders (``tests/`` is on ``sys.path`` via conftest)."""

import asyncio
import errno
import socket
import time

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    # No traffic of Chromium's own: the test machines have no network.
    "--disable-quic",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def assert_port_free(port):
    """Bind and listen on *port* as a new server would (SO_REUSEADDR: TIME_WAIT is not "in use")."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError as exc:
            assert exc.errno != errno.EADDRINUSE, f"port {port} is still in use"
            raise
    finally:
        sock.close()


def endless(closed):
    """``{"gen": ..., "agen": ...}``: streams that never end and set Event *closed* once closed."""

    def gen():
        try:
            i = 0
            while True:
                yield i
                i += 1
                time.sleep(0.005)
        finally:
            closed.set()

    async def agen():
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.005)
        finally:
            closed.set()

    return {"gen": gen, "agen": agen}
