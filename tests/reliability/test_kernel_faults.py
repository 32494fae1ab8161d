"""Faults of the kernel a canvas is served from: interrupted, restarted, killed while serving.

A real IPython kernel (``jupyter_client``) runs ``%load_ext livepandas`` and a ``%%canvas``;
this process calls the canvas over HTTP and WebSocket as a browser would.

- Interrupted during a long CPU-bound cell while calls are in flight: the cell stops with
  ``KeyboardInterrupt``, every call in flight is answered, the canvas keeps serving (with the
  notebook's variables) and the kernel answers the next cell.
- Restarted while serving, with a stream open, a call stuck forever in a pool thread and calls
  arriving: the old kernel exits by itself (it is not killed after the shutdown timeout: nothing
  wedges it), the canvas's port is released (connections refused), the open WebSocket is closed,
  and a ``%%canvas`` on the same port in the new kernel serves the new code.
- Killed (SIGKILL, ``restart_kernel(now=True)``): the port is released all the same.
"""

import json
import os
import socket
import sys
import threading

import pytest
import requests
import websocket

from .support import TIMEOUT, wait_until

CANVAS = """\
%%canvas faults --port {port}
import threading
import time

_never = threading.Event()


def livepandas_add(x=1, y=2):
    return x + y


def livepandas_where():
    return where


def livepandas_slow(seconds=0.5):
    time.sleep(seconds)
    return "slept"


def livepandas_block():
    _never.wait()


def livepandas_ticks():
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.02)
"""

LONG_CELL = """\
n = 0
while True:
    n += 1
"""


class Kernel:
    """A running kernel and its client; ``run(code)`` executes a cell and returns its messages."""

    def __init__(self, cwd):
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=cwd, env=dict(os.environ))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    @property
    def process(self):
        return self.km.provisioner.process

    def run(self, code, timeout=TIMEOUT):
        """Execute *code*; its iopub messages. Fails the test on an error."""
        messages = []
        reply = self.kc.execute_interactive(code, output_hook=messages.append, timeout=timeout)
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert reply["content"]["status"] == "ok", errors
        return messages

    def value(self, expression):
        """The text/plain of *expression* evaluated in the kernel."""
        for message in self.run(expression):
            if message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
        raise AssertionError(f"{expression!r} showed no result")

    def wait_started(self, msg_id):
        """Wait until the kernel has begun executing request *msg_id*."""
        while True:
            message = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if message["msg_type"] == "execute_input" and message["parent_header"].get("msg_id") == msg_id:
                return

    def restart(self, now=False):
        self.km.restart_kernel(now=now)
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def close(self):
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)
        self.km.cleanup_resources()


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    for name in ("LIVEPANDAS_PORT", "LIVEPANDAS_HOST", "LIVEPANDAS_URL_PATTERN", "LIVEPANDAS_SWITCH_INTERVAL",
                 "JUPYTERHUB_SERVICE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    k = Kernel(str(tmp_path))
    yield k
    k.close()


@pytest.fixture
def port():
    """A port no other process gets during the test, which the kernel's servers can still bind.

    A socket bound with SO_REUSEADDR and never listening keeps ``bind(0)`` callers off the port,
    while a server that sets SO_REUSEADDR too may listen there; connections to it are refused
    whenever no server listens.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("port reservation by a bound socket is Linux behaviour")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def get(port, name, timeout=TIMEOUT, **kwargs):
    r = requests.get(f"http://127.0.0.1:{port}/{name}", params={"kwargs": json.dumps(kwargs)}, timeout=timeout)
    return r.status_code, r.json()


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def serve_canvas(kernel, port):
    kernel.run("%load_ext livepandas")
    kernel.run("where = 'the notebook'")
    kernel.run(CANVAS.format(port=port))
    assert get(port, "add") == (200, {"result": 3})


class Callers:
    """Threads calling ``add`` in a loop until stopped; every answer is kept."""

    def __init__(self, port, count=4):
        self.port = port
        self.answers = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(count)]
        for t in self.threads:
            t.start()

    def _loop(self, i):
        with requests.Session() as http:
            while not self.stopping.is_set():
                try:
                    r = http.get(f"http://127.0.0.1:{self.port}/add", params={"kwargs": json.dumps({"x": i})},
                                 timeout=TIMEOUT)
                    self.answers.append((i, r.status_code, r.json()))
                except requests.RequestException as exc:
                    self.answers.append((i, None, repr(exc)))
                    return

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(TIMEOUT)
        return self.answers


def test_interrupting_a_long_cell_while_calls_are_in_flight(kernel, port):
    serve_canvas(kernel, port)
    msg_id = kernel.kc.execute(LONG_CELL)
    kernel.wait_started(msg_id)
    callers = Callers(port)
    slow = {}
    slow_caller = threading.Thread(target=lambda: slow.update(reply=get(port, "slow", seconds=1.0)))
    slow_caller.start()
    try:
        wait_until(lambda: len(callers.answers) >= 20)
        kernel.km.interrupt_kernel()
        reply = kernel.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kernel.kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        count = len(callers.answers)
        wait_until(lambda: len(callers.answers) >= count + 20)  # still served after the interrupt
    finally:
        answers = callers.stop()
        slow_caller.join(TIMEOUT)
    assert answers and all(status == 200 and body == {"result": i + 2} for i, status, body in answers), answers[-3:]
    assert slow["reply"] == (200, {"result": "slept"})
    # The kernel answers; the canvas serves, with the notebook's variables and the interrupted cell's.
    assert int(kernel.value("n")) > 0
    assert kernel.value("1 + 1") == "2"
    assert get(port, "where") == (200, {"result": "the notebook"})
    kernel.run("where = 'changed'")
    assert get(port, "where") == (200, {"result": "changed"})


@pytest.mark.parametrize("now", [False, True], ids=["restart", "kill"])
def test_restarting_the_kernel_releases_the_port_and_the_canvas_comes_back(kernel, port, now):
    serve_canvas(kernel, port)
    old = kernel.process
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ticks/ws", timeout=TIMEOUT)
    ws.send("{}")
    assert json.loads(ws.recv()) == {"partial": 0}
    outcome = {}

    def call_block():
        try:
            outcome["block"] = get(port, "block")
        except requests.RequestException as exc:
            outcome["block"] = exc

    stuck = threading.Thread(target=call_block)
    stuck.start()
    callers = Callers(port)
    try:
        wait_until(lambda: len(callers.answers) >= 20)
        kernel.restart(now=now)
    finally:
        answers = callers.stop()
    # Every call got its answer, a refused or closed connection, or (cut off by the exit) 503
    # ServerStopping; never a wrong answer.
    assert all(status in (200, None) or (status == 503 and body["type"] == "ServerStopping") for _, status, body in answers)
    assert all(body == {"result": i + 2} for i, status, body in answers if status == 200)
    if now:
        assert old.returncode == -9
    else:
        assert old.returncode == 0  # it exited by itself: not killed after the shutdown wait
    assert refused(port)
    try:
        while True:  # the partials already on the way, then the end
            if not ws.recv():
                break
    except (websocket.WebSocketException, OSError):
        pass
    assert not ws.connected
    ws.close()
    stuck.join(TIMEOUT)
    # The stuck call ends with the kernel, never hangs: a closed connection, or (when the
    # kernel's exit cancels the request before its connection is closed) 503 ServerStopping.
    block = outcome["block"]
    assert isinstance(block, requests.ConnectionError) or (block[0] == 503 and block[1]["type"] == "ServerStopping"), block

    kernel.run("%load_ext livepandas")
    kernel.run("where = 'the new kernel'")
    kernel.run(CANVAS.format(port=port).replace("return x + y", "return x * y"))
    assert get(port, "add", x=3, y=4) == (200, {"result": 12})
    assert get(port, "where") == (200, {"result": "the new kernel"})
    new = kernel.process
    kernel.km.shutdown_kernel(now=False)
    assert new.returncode == 0
    assert refused(port)
