"""``FunctionServer`` lifecycle, shared loops, atomic canvas swaps and stats."""

import asyncio
import concurrent.futures
import errno
import gc
import socket
import threading
import time

import pytest
import requests
import websocket

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.errors import LivePandasError, ServerError
from livepandas_ipython.server import FunctionServer, LoopThread

TIMEOUT = 30  # seconds; generous, only ever waited on, never asserted

CANVAS = Canvas({"one": lambda: 1})


def get(server, path, **options):
    options.setdefault("timeout", TIMEOUT)
    return requests.get(f"http://127.0.0.1:{server.port}/{path}", **options)


def can_bind(port):
    """True when a fresh listening socket can take 127.0.0.1:*port* (as any server would try)."""
    with socket.socket() as sock:
        # SO_REUSEADDR lets us past the TIME_WAIT of closed connections, never past a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
            return False
        return True


# -- lifecycle -----------------------------------------------------------------------------------


def test_start_and_stop_are_idempotent():
    server = FunctionServer(CANVAS)
    assert not server.running and server.port is None
    assert server.start() is server
    port = server.port
    assert server.start() is server and server.port == port
    assert server.running
    assert get(server, "one").json() == {"result": 1}
    server.stop()
    server.stop()
    assert not server.running
    assert repr(server) == "<FunctionServer 'default' stopped>"


def test_port_is_released_after_stop():
    server = FunctionServer(CANVAS).start()
    port = server.port
    assert get(server, "one").json() == {"result": 1}
    assert not can_bind(port)
    server.stop()
    assert can_bind(port)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/one", timeout=TIMEOUT)


def _reply_or_closed(ws):
    """Send a call; its reply, or "closed" when the server has closed the socket."""
    try:
        ws.send("{}")
        frame = ws.recv_frame()
    except (websocket.WebSocketConnectionClosedException, OSError):
        return "closed"
    return "closed" if frame.opcode == websocket.ABNF.OPCODE_CLOSE else frame.data.decode()


def test_stop_closes_open_websockets(serve):
    server = serve(Canvas({"one": lambda: 1}))
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/one/ws", timeout=TIMEOUT)
    try:
        assert _reply_or_closed(ws) == '{"result":1}'
        server.stop()
        assert _reply_or_closed(ws) == "closed"
    finally:
        ws.close()


@pytest.mark.parametrize(
    "kind",
    [
        "sync",
        "async",
    ],
)
def test_stop_closes_streaming_responses(serve, kind):
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 1
                time.sleep(0.005)
        finally:
            closed.set()

    async def aendless():
        try:
            while True:
                yield 1
                await asyncio.sleep(0.005)
        finally:
            closed.set()

    server = serve(Canvas({"endless": endless if kind == "sync" else aendless}))
    with requests.get(f"http://127.0.0.1:{server.port}/endless", stream=True, timeout=TIMEOUT) as r:
        assert next(r.iter_lines()) == b'{"partial":1}'
        server.stop()
        assert closed.wait(5), "the generator's finally never ran"  # milliseconds when it works


def test_restart_after_stop():
    server = FunctionServer(CANVAS).start()
    server.stop()
    try:
        server.start()
        assert get(server, "one").json() == {"result": 1}
    finally:
        server.stop()


def test_context_manager():
    with FunctionServer(CANVAS) as server:
        assert server.running
        assert server.url == f"http://127.0.0.1:{server.port}/"
        assert repr(server) == f"<FunctionServer 'default' on http://127.0.0.1:{server.port}/>"
        assert server.endpoint_urls("one") == (
            f"http://127.0.0.1:{server.port}/one",
            f"ws://127.0.0.1:{server.port}/one/ws",
        )
    assert not server.running


def start_error(server):
    """The ServerError ``server.start()`` raises, as ``(message, is a RuntimeError)``."""
    try:
        server.start()
    except ServerError as exc:
        result = str(exc), isinstance(exc, (LivePandasError, RuntimeError))
    else:
        pytest.fail("start() did not raise ServerError")
    # A socket left open by the failed bind would warn (ResourceWarning → error) when collected.
    gc.collect()
    assert not server.running
    return result


def test_port_in_use_is_a_server_error(serve):
    first = serve(CANVAS)
    message, builtin = start_error(FunctionServer(CANVAS, port=first.port))
    assert (
        message == f"port {first.port} on 127.0.0.1 is already in use; choose another with --port (0 picks a free one)"
    )
    assert builtin
    assert get(first, "one").json() == {"result": 1}


def test_port_held_by_a_plain_socket_is_a_server_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        message, _ = start_error(FunctionServer(CANVAS, port=port))
    assert message.startswith(f"port {port} on 127.0.0.1 is already in use")


def test_address_not_on_this_machine_is_a_server_error():
    message, _ = start_error(FunctionServer(CANVAS, host="192.0.2.1"))
    assert message == "cannot bind 192.0.2.1:0: that address is not on this machine"


def test_two_servers_on_one_loop_thread():
    loop = LoopThread(name="test-loop")

    async def where():
        return threading.current_thread().name

    canvas = Canvas({"where": where})
    a = FunctionServer(canvas, loop_thread=loop)
    b = FunctionServer(Canvas({"where": where, "two": lambda: 2}), loop_thread=loop)
    try:
        a.start()  # starts the loop thread it was given
        b.start()
        assert loop.running
        assert a.port != b.port
        assert get(a, "where").json() == get(b, "where").json() == {"result": "test-loop"}
        a.stop()
        assert get(b, "two").json() == {"result": 2}
        assert loop.running
    finally:
        a.stop()
        b.stop()
        loop.stop()
    assert not loop.running


def test_default_loop_thread_is_shared(serve):
    a, b = serve(CANVAS), serve(CANVAS)
    assert a._loop_thread is b._loop_thread is LoopThread.shared()


def test_loop_thread_is_a_daemon_and_stop_is_idempotent():
    loop = LoopThread(name="test-daemon").start()
    try:
        assert loop.start() is loop
        thread = next(t for t in threading.enumerate() if t.name == "test-daemon")
        assert thread.daemon
        assert loop.call(lambda: threading.current_thread().name) == "test-daemon"
    finally:
        loop.stop()
        loop.stop()
    assert not thread.is_alive()
    with pytest.raises(ServerError, match="not running"):
        loop.call(lambda: None)


# -- canvas swaps --------------------------------------------------------------------------------


def test_swap_answers_with_the_new_code(serve):
    server = serve(Canvas({"value": lambda: 1, "old": lambda: "old"}))
    assert get(server, "value").json() == {"result": 1}
    server.canvas = Canvas({"value": lambda: 2, "new": lambda: "new"})
    assert get(server, "value").json() == {"result": 2}
    assert get(server, "new").json() == {"result": "new"}
    r = get(server, "old")
    assert (r.status_code, r.json()) == (
        404,
        {"exception": "no function 'old'; available: value, new", "type": "FunctionNotFound"},
    )
    assert [f["name"] for f in get(server, "_functions").json()["functions"]] == ["value", "new"]


def test_in_flight_call_finishes_on_the_old_code(serve):
    entered, release = threading.Event(), threading.Event()

    def slow_v1():
        entered.set()
        release.wait(TIMEOUT)
        return 1

    server = serve(Canvas({"value": slow_v1}))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(get, server, "value")
        try:
            assert entered.wait(TIMEOUT)
            server.canvas = Canvas({"value": lambda: 2})
            assert get(server, "value").json() == {"result": 2}
        finally:
            release.set()
        assert in_flight.result(TIMEOUT).json() == {"result": 1}


def test_swap_is_atomic_under_concurrent_calls(serve):
    v1 = Canvas({"value": lambda: 1, "both": lambda: "v1"})
    v2 = Canvas({"value": lambda: 2, "both": lambda: "v2"})
    server = serve(v1, max_workers=4)

    def client(_):
        seen = []
        with requests.Session() as session:
            for _ in range(25):
                r = session.get(f"http://127.0.0.1:{server.port}/value", timeout=TIMEOUT)
                seen.append((r.status_code, r.json()))
        return seen

    swaps = 0
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(client, i) for i in range(6)]
        while swaps < 2 or not all(f.done() for f in futures):
            server.canvas = v2 if server.canvas is v1 else v1
            swaps += 1
            concurrent.futures.wait(futures, timeout=0.001)  # pacing only
        results = [item for f in futures for item in f.result(TIMEOUT)]
    assert len(results) == 150
    unexpected = [r for r in results if r not in [(200, {"result": 1}), (200, {"result": 2})]]
    assert unexpected == []
    server.canvas = v2
    assert get(server, "value").json() == {"result": 2}
    assert get(server, "both").json() == {"result": "v2"}


# -- stats ---------------------------------------------------------------------------------------


def test_stats_count_calls_and_record_the_last_error(serve):
    def fail(why="no"):
        raise KeyError(why)

    server = serve(Canvas({"one": lambda: 1, "fail": fail}))
    assert server.stats.as_dict() == {"calls": {}, "errors": {}, "last_error": None, "sockets": 0}
    for _ in range(3):
        get(server, "one")
    get(server, "fail", params={"kwargs": '{"why": "missing key"}'})
    get(server, "one", params={"kwargs": '{"bad": 1}'})  # refused before the call: not counted
    get(server, "nope")
    stats = server.stats.as_dict()
    assert stats["calls"] == {"one": 3, "fail": 1}
    assert stats["errors"] == {"fail": 1}
    last = stats["last_error"]
    assert (last["function"], last["type"], last["message"]) == ("fail", "KeyError", "'missing key'")
    assert isinstance(last["time"], float)


def wait_until(predicate):
    """Poll *predicate* (state updated on the loop thread) until true or TIMEOUT; return its last value."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_stats_count_open_sockets(serve):
    server = serve(CANVAS, max_message_size=100)
    url = f"ws://127.0.0.1:{server.port}/one/ws"
    a = websocket.create_connection(url, timeout=TIMEOUT)
    b = websocket.create_connection(url, timeout=TIMEOUT)
    try:
        assert wait_until(lambda: server.stats.sockets == 2)
        a.close()
        assert wait_until(lambda: server.stats.sockets == 1)
        b.send("{" + " " * 200 + "}")  # over max_message_size: the server closes it
        assert wait_until(lambda: server.stats.sockets == 0)
    finally:
        a.close()
        b.close()
    assert server.stats.calls == {}
