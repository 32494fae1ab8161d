"""Faults: calls that never return, clients that vanish mid-stream, processes stopped while busy.

- ``call_timeout``: a call that has not returned answers 504 ``CallTimeout`` and the server keeps
  answering; the thread it holds counts as stuck until it returns, and while every pool thread is
  stuck pool calls answer 503 ``ServerBusy`` at once; a call timed out in the queue never runs;
  ``async def`` code is cancelled; streams time out per step; no call is inlined.
- Without a timeout, a blocked call holds only its own thread.
- A client that disconnects mid-stream gets its generator closed (``finally`` runs), on every path
  (handler, fast path, SSE, WebSocket, a step still running) and in a real ``livepandas`` process.
- A process whose server has stopped exits even while a call is stuck in a thread.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests
import websocket
from testsupport import endless

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.server.calls import PROMOTE_AFTER

from .support import TIMEOUT, start_cli, wait_until

# call_timeout of the servers under test: what must time out blocks for good, what must not takes
# milliseconds, so the outcome never depends on the machine's speed. Other waits are TIMEOUT.
SHORT = 1.0


def url(server, name):
    return f"http://127.0.0.1:{server.port}/{name}"


def get(server, name, timeout=TIMEOUT, **kwargs):
    response = requests.get(url(server, name), params={"kwargs": json.dumps(kwargs)}, timeout=timeout)
    return response.status_code, response.json()


def ws_connect(server, name):
    return websocket.create_connection(f"ws://127.0.0.1:{server.port}/{name}/ws", timeout=TIMEOUT)


def late(name, seconds=SHORT):
    return {"exception": f"{name} did not return within {seconds:g} s (call_timeout)", "type": "CallTimeout"}


class Blocker:
    """Functions that block until :meth:`release`; counts entries and exits."""

    def __init__(self):
        self.gate = threading.Event()
        self.entered = 0
        self.returned = threading.Event()
        self.lock = threading.Lock()

    def block(self):
        with self.lock:
            self.entered += 1
        self.gate.wait(TIMEOUT)
        self.returned.set()
        return "released"

    def release(self):
        self.gate.set()


@pytest.fixture
def blocker():
    b = Blocker()
    yield b
    b.release()  # never leave a pool thread blocked behind a failed test


def add(x=1, y=2):
    return x + y


async def aadd(x=1, y=2):
    await asyncio.sleep(0)
    return x + y


def where():
    return threading.current_thread().name


# -- call_timeout --------------------------------------------------------------------------------


def test_a_call_that_never_returns_answers_504_and_others_keep_working(serve, blocker):
    server = serve({"block": blocker.block, "add": add, "aadd": aadd}, call_timeout=SHORT)
    assert get(server, "block") == (504, late("block"))
    assert get(server, "add", x=2) == (200, {"result": 4})
    assert get(server, "aadd") == (200, {"result": 3})
    assert not blocker.returned.is_set()  # still blocked: a thread can't be stopped
    assert len(server.stuck_calls) == 1
    assert server.stats.errors == {"block": 1}
    assert server.stats.last_error["type"] == "CallTimeout"
    blocker.release()
    assert wait_until(lambda: not server.stuck_calls)  # its thread is free again once it returns
    assert get(server, "block") == (200, {"result": "released"})


def test_a_functions_own_timeout_error_is_still_a_500(serve):
    def own():
        raise TimeoutError("the database did not answer")

    async def aown():
        raise TimeoutError("neither did the cache")

    server = serve({"own": own, "aown": aown}, call_timeout=SHORT)
    assert get(server, "own") == (500, {"exception": "the database did not answer", "type": "TimeoutError"})
    assert get(server, "aown") == (500, {"exception": "neither did the cache", "type": "TimeoutError"})


def test_stuck_calls_on_every_thread_make_pool_calls_answer_503(serve, blocker):
    server = serve({"block": blocker.block, "add": add, "aadd": aadd}, call_timeout=SHORT, max_workers=2)
    assert get(server, "block") == (504, late("block"))
    assert get(server, "block") == (504, late("block"))
    busy = {
        "exception": "all 2 threads are still running calls that timed out (call_timeout); try again later",
        "type": "ServerBusy",
    }
    assert get(server, "add") == (503, busy)  # at once, not after another call_timeout
    assert get(server, "aadd") == (200, {"result": 3})  # async functions run on the loop
    ws = ws_connect(server, "add")
    try:
        ws.send("{}")
        assert json.loads(ws.recv()) == busy
    finally:
        ws.close()
    assert blocker.entered == 2
    blocker.release()
    assert wait_until(lambda: not server.stuck_calls)
    assert get(server, "add") == (200, {"result": 3})


def test_a_call_timed_out_while_queued_never_runs(serve, blocker):
    ran = []
    # Long enough that "record" is queued before "block" has timed out (and made the pool busy).
    timeout = 3 * SHORT
    server = serve({"block": blocker.block, "record": lambda: ran.append(1)}, call_timeout=timeout, max_workers=1)
    first = threading.Thread(target=get, args=(server, "block"), daemon=True)
    first.start()
    assert wait_until(lambda: blocker.entered == 1)
    # The only thread is taken: this call waits in the queue, then times out there.
    assert get(server, "record") == (504, late("record", timeout))
    first.join(TIMEOUT)
    blocker.release()
    assert wait_until(lambda: not server.stuck_calls)
    assert get(server, "block") == (200, {"result": "released"})  # queued after it, had it been kept
    assert ran == []


def test_an_async_function_is_cancelled_at_the_timeout(serve):
    cleaned = threading.Event()

    async def forever():
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    server = serve({"forever": forever, "add": add}, call_timeout=SHORT)
    assert get(server, "forever") == (504, late("forever"))
    assert cleaned.is_set()  # cancelled, and its cleanup ran, before the reply
    assert get(server, "add") == (200, {"result": 3})
    assert not server.stuck_calls


def test_a_plain_function_returning_an_awaitable_shares_one_deadline(serve):
    def later():
        return asyncio.sleep(3600)

    server = serve({"later": later}, call_timeout=SHORT)
    assert get(server, "later") == (504, late("later"))


def _ndjson(response):
    return [json.loads(line) for line in response.iter_lines() if line]


def test_a_stream_times_out_per_step_and_its_generator_is_closed(serve, blocker):
    closed = threading.Event()

    def slow_second():
        try:
            yield 1
            blocker.block()
            yield 2
        finally:
            closed.set()

    def steady(n=3):
        for i in range(n):
            time.sleep(SHORT / 10)  # each step well within the timeout, the whole stream not
            yield i

    server = serve({"slow": slow_second, "steady": steady}, call_timeout=SHORT)
    stream_late = {
        "exception": f"the stream did not yield its next value within {SHORT:g} s (call_timeout)",
        "type": "CallTimeout",
        "done": True,
    }
    with requests.get(url(server, "slow"), stream=True, timeout=TIMEOUT) as response:
        assert response.status_code == 200  # the stream had begun: the timeout is its last message
        assert _ndjson(response) == [{"partial": 1}, stream_late]
    assert not closed.is_set()  # its step is still running
    blocker.release()
    assert closed.wait(TIMEOUT), "the generator was not closed when its step returned"
    with requests.get(url(server, "steady"), params={"kwargs": '{"n": 15}'}, stream=True, timeout=TIMEOUT) as r:
        assert _ndjson(r) == [{"partial": i} for i in range(15)] + [{"result": None, "done": True}]


def test_an_async_stream_times_out_per_step(serve):
    closed = threading.Event()

    async def stalls():
        try:
            yield 1
            await asyncio.sleep(3600)
            yield 2
        finally:
            closed.set()

    server = serve({"stalls": stalls}, call_timeout=SHORT)
    ws = ws_connect(server, "stalls")
    try:
        ws.send("{}")
        assert json.loads(ws.recv()) == {"partial": 1}
        assert json.loads(ws.recv()) == {
            "exception": f"the stream did not yield its next value within {SHORT:g} s (call_timeout)",
            "type": "CallTimeout",
            "done": True,
        }
        assert closed.is_set()
        ws.send("{}")  # the socket keeps working
        assert json.loads(ws.recv()) == {"partial": 1}
    finally:
        ws.close()


def test_a_websocket_call_timeout_keeps_the_socket(serve, blocker):
    server = serve({"block": blocker.block}, call_timeout=SHORT)
    ws = ws_connect(server, "block")
    try:
        ws.send("{}")
        assert json.loads(ws.recv()) == late("block")
        blocker.release()
        ws.send("{}")
        assert json.loads(ws.recv()) == {"result": "released"}
    finally:
        ws.close()


def test_with_a_call_timeout_no_call_is_inlined(serve):
    server = serve({"where": where}, call_timeout=5.0, inline_budget=10.0)
    names = [get(server, "where")[1]["result"] for _ in range(PROMOTE_AFTER * 3)]
    assert all(name.startswith("livepandas-call") for name in names), names
    ws = ws_connect(server, "where")
    try:
        for _ in range(PROMOTE_AFTER * 2):
            ws.send("{}")
            assert json.loads(ws.recv())["result"].startswith("livepandas-call")
    finally:
        ws.close()


@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_call_timeout_must_be_positive(value):
    from livepandas_ipython.server import FunctionServer

    with pytest.raises(ValueError, match="call_timeout must be a positive number of seconds or None"):
        FunctionServer(Canvas({"add": add}), call_timeout=value)


def test_without_a_timeout_blocked_calls_hold_only_their_own_threads(serve, blocker):
    server = serve({"block": blocker.block, "add": add, "aadd": aadd}, max_workers=3)
    http_call = threading.Thread(target=get, args=(server, "block"), daemon=True)
    http_call.start()
    ws = ws_connect(server, "block")
    try:
        ws.send("{}")
        assert wait_until(lambda: blocker.entered == 2)
        for _ in range(20):  # more calls than threads: the third thread serves them all
            assert get(server, "add") == (200, {"result": 3})
        assert get(server, "aadd") == (200, {"result": 3})
        blocker.release()
        assert json.loads(ws.recv()) == {"result": "released"}
    finally:
        ws.close()
    http_call.join(TIMEOUT)
    assert not http_call.is_alive()


# -- clients that disconnect mid-stream ----------------------------------------------------------


def test_disconnect_mid_stream_on_the_fast_path_closes_the_generator(serve):
    """A plain function returning a generator, once inlined, streams from the fast path."""
    closed = threading.Event()
    stream_of = endless(closed)["gen"]
    calls = {"n": 0}

    def maybe_stream(stream=False):
        calls["n"] += 1
        return stream_of() if stream else "plain"

    server = serve({"maybe": maybe_stream}, inline_budget=10.0)
    for _ in range(PROMOTE_AFTER):
        assert get(server, "maybe") == (200, {"result": "plain"})
    assert server.costs.fast(server.canvas.functions["maybe"])
    with requests.get(url(server, "maybe"), params={"kwargs": '{"stream": true}'}, stream=True, timeout=TIMEOUT) as r:
        assert json.loads(next(r.iter_lines())) == {"partial": 0}
    assert closed.wait(TIMEOUT), "the generator's finally never ran"
    assert get(server, "maybe") == (200, {"result": "plain"})


def test_disconnect_mid_server_sent_events_closes_the_generator(serve):
    closed = threading.Event()
    server = serve({"endless": endless(closed)["gen"]})
    headers = {"Accept": "text/event-stream"}
    with requests.get(url(server, "endless"), headers=headers, stream=True, timeout=TIMEOUT) as r:
        assert next(r.iter_lines()) == b'data: {"partial":0}'
    assert closed.wait(TIMEOUT), "the generator's finally never ran"


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_disconnect_while_a_step_runs_closes_the_generator_when_it_returns(serve, blocker, transport):
    closed = threading.Event()

    def gen():
        try:
            yield "first"
            blocker.block()
            yield "second"
        finally:
            closed.set()

    server = serve({"gen": gen})
    if transport == "http":
        with requests.get(url(server, "gen"), stream=True, timeout=TIMEOUT) as r:
            assert json.loads(next(r.iter_lines())) == {"partial": "first"}
            assert wait_until(lambda: blocker.entered == 1)
    else:
        ws = ws_connect(server, "gen")
        try:
            ws.send("{}")
            assert json.loads(ws.recv()) == {"partial": "first"}
            assert wait_until(lambda: blocker.entered == 1)
        finally:
            ws.shutdown()
    time.sleep(0.2)  # let the server notice the disconnect while the step is still blocked
    assert not closed.is_set()
    blocker.release()
    assert closed.wait(TIMEOUT), "the generator was not closed after its step returned"


STREAM_CANVAS = """\
import os
import time

def livepandas_endless(tag="x"):
    try:
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.01)
    finally:
        with open(os.path.join({marks!r}, tag), "w") as f:
            f.write("closed")

def livepandas_add(x=1, y=2):
    return x + y
"""


def _stop_cli(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError("the livepandas process did not exit after SIGTERM") from None
    return proc.communicate()


def test_disconnects_close_generators_in_a_real_livepandas_process(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    proc, port = start_cli(tmp_path, STREAM_CANVAS.format(marks=str(marks)))
    try:
        base = f"http://127.0.0.1:{port}/endless"
        with requests.get(base, params={"kwargs": '{"tag": "http"}'}, stream=True, timeout=TIMEOUT) as r:
            assert json.loads(next(r.iter_lines())) == {"partial": 0}
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/endless/ws", timeout=TIMEOUT)
        try:
            ws.send('{"tag": "ws"}')
            assert json.loads(ws.recv()) == {"partial": 0}
        finally:
            ws.shutdown()
        assert wait_until(lambda: sorted(os.listdir(marks)) == ["http", "ws"]), os.listdir(marks)
        assert requests.get(f"http://127.0.0.1:{port}/add", timeout=TIMEOUT).json() == {"result": 3}
    finally:
        out, err = _stop_cli(proc)
    assert proc.returncode == 0, err
    assert out.rstrip().endswith("Stopped.")


# -- processes stopped while a call is stuck -----------------------------------------------------

BLOCK_CANVAS = """\
import threading

_never = threading.Event()

def livepandas_block():
    _never.wait()

def livepandas_add(x=1, y=2):
    return x + y
"""


def test_the_cli_times_calls_out_and_exits_on_sigterm_with_a_call_stuck(tmp_path):
    proc, port = start_cli(tmp_path, BLOCK_CANVAS, "--call-timeout", str(SHORT))
    try:
        response = requests.get(f"http://127.0.0.1:{port}/block", timeout=TIMEOUT)
        assert (response.status_code, response.json()) == (504, late("block"))
        assert requests.get(f"http://127.0.0.1:{port}/add", timeout=TIMEOUT).json() == {"result": 3}
    finally:
        out, err = _stop_cli(proc)  # fails if the stuck thread keeps the interpreter alive
    assert proc.returncode == 0, err
    assert f"block did not return within {SHORT:g} s (call_timeout); its thread stays busy until it does" in err


def test_a_process_exits_once_its_server_stops_even_with_calls_stuck(tmp_path):
    """Without a timeout: the call blocks forever, yet stop() and interpreter exit don't wait for it."""
    script = textwrap.dedent(
        """
        import threading, urllib.request
        from livepandas_ipython.canvas import Canvas
        from livepandas_ipython.server import FunctionServer

        never, entered = threading.Event(), threading.Event()

        def block():
            entered.set()
            never.wait()

        server = FunctionServer(Canvas({"block": block})).start()
        url = f"http://127.0.0.1:{server.port}/block"
        threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=60), daemon=True).start()
        assert entered.wait(30)
        server.stop()
        print("stopped", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the interpreter waited for a call that never returns") from None
    assert (proc.returncode, out) == (0, "stopped\n"), err


def test_a_call_cut_off_by_the_process_exiting_answers_503_server_stopping():
    """The interpreter exits (as a kernel does on restart) while a call runs: a clear 503, not a 500."""
    script = textwrap.dedent(
        """
        import sys, threading
        from livepandas_ipython.canvas import Canvas
        from livepandas_ipython.server import FunctionServer

        entered = threading.Event()

        def block():
            entered.set()
            threading.Event().wait()

        server = FunctionServer(Canvas({"block": block}), port=0).start()
        print(server.port, flush=True)
        assert entered.wait(30)
        sys.exit(0)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        reply = requests.get(f"http://127.0.0.1:{port}/block", timeout=TIMEOUT)
        assert proc.wait(TIMEOUT) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert reply.status_code == 503
    assert reply.headers["Connection"] == "close"
    assert reply.json() == {
        "exception": "the server stopped (its process is exiting) before the call finished",
        "type": "ServerStopping",
    }
