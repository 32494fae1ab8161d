"""Generators and async generators stream: NDJSON or SSE over HTTP, ``partial`` messages over WebSocket."""

import asyncio
import json
import threading

import pytest
import requests
import websocket
from testsupport import endless

TIMEOUT = 30  # seconds; generous, only ever waited on, never asserted


def url(server, path):
    return f"http://127.0.0.1:{server.port}/{path}"


def ws_connect(server, name):
    return websocket.create_connection(f"ws://127.0.0.1:{server.port}/{name}/ws", timeout=TIMEOUT)


def stream(server, name, kwargs=None, **headers):
    params = {"kwargs": json.dumps(kwargs)} if kwargs is not None else {}
    return requests.get(url(server, name), params=params, headers=headers, stream=True, timeout=TIMEOUT)


def ndjson(response):
    return [json.loads(line) for line in response.iter_lines() if line]


def ws_stream(ws, kwargs=None):
    """Send one call and collect replies up to (and including) the one with ``done``."""
    ws.send(json.dumps(kwargs or {}))
    replies = []
    while True:
        replies.append(json.loads(ws.recv()))
        if "partial" not in replies[-1]:
            return replies


def count(n=3):
    for i in range(n):
        yield i
    return f"counted {n}"


async def acount(n=3):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def fails_midway():
    yield 1
    raise ValueError("broke at 2")


async def afails_midway():
    yield 1
    raise KeyError("k")


def where():
    yield threading.current_thread().name
    yield threading.current_thread().name


async def awhere():
    yield threading.current_thread().name


def returns_a_generator(n=2):
    return count(n)  # a plain function handing back a generator streams too


FUNCTIONS = {
    "count": count,
    "acount": acount,
    "fails": fails_midway,
    "afails": afails_midway,
    "where": where,
    "awhere": awhere,
    "indirect": returns_a_generator,
}


@pytest.fixture
def server(serve):
    return serve(FUNCTIONS)


# -- HTTP ----------------------------------------------------------------------------------------


def test_generator_streams_ndjson_by_default(server):
    with stream(server, "count", {"n": 3}) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/x-ndjson"
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.headers["X-Accel-Buffering"] == "no"
        assert ndjson(r) == [{"partial": 0}, {"partial": 1}, {"partial": 2}, {"result": "counted 3", "done": True}]


def test_async_generator_streams_ndjson(server):
    with stream(server, "acount", {"n": 2}) as r:
        assert r.headers["Content-Type"] == "application/x-ndjson"
        assert ndjson(r) == [{"partial": 0}, {"partial": 1}, {"result": None, "done": True}]


def test_empty_generator_sends_only_the_result(server):
    with stream(server, "count", {"n": 0}) as r:
        assert r.content == b'{"result":"counted 0","done":true}\n'


def test_plain_function_returning_a_generator_streams(server):
    with stream(server, "indirect") as r:
        assert ndjson(r) == [{"partial": 0}, {"partial": 1}, {"result": "counted 2", "done": True}]


def test_post_streams_too(server):
    with requests.post(url(server, "count"), json={"n": 1}, stream=True, timeout=TIMEOUT) as r:
        assert ndjson(r) == [{"partial": 0}, {"result": "counted 1", "done": True}]


def test_server_sent_events(server):
    with stream(server, "count", {"n": 2}, Accept="text/event-stream") as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/event-stream"
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.content == (
            b'data: {"partial":0}\n\ndata: {"partial":1}\n\ndata: {"result":"counted 2","done":true}\n\n'
        )


def test_server_sent_events_error(server):
    with stream(server, "fails", Accept="text/event-stream") as r:
        assert r.content == (
            b'data: {"partial":1}\n\ndata: {"exception":"broke at 2","type":"ValueError","done":true}\n\n'
        )


def test_sync_generator_steps_on_the_pool_async_on_the_loop(server):
    with stream(server, "where") as r:
        names = [m.get("partial") for m in ndjson(r)[:2]]
    assert all(name.startswith("livepandas-call") for name in names), names
    with stream(server, "awhere") as r:
        assert ndjson(r)[0] == {"partial": server._loop_thread.name}


@pytest.mark.parametrize("sse", [False, True], ids=["ndjson", "sse"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_chunks_arrive_incrementally(serve, kind, sse):
    go = threading.Event()

    def gen():
        yield "first"
        if not go.wait(TIMEOUT):
            raise TimeoutError("the test never read the first chunk")
        yield "second"
        return "end"

    async def agen():
        yield "first"
        while not go.is_set():
            await asyncio.sleep(0.005)
        yield "second"

    server = serve({"gen": gen if kind == "sync" else agen})
    prefix = b"data: " if sse else b""
    with stream(server, "gen", **({"Accept": "text/event-stream"} if sse else {})) as r:
        lines = r.iter_lines()
        assert next(lines) == prefix + b'{"partial":"first"}'  # while the generator is blocked
        go.set()
        rest = [json.loads(line.removeprefix(prefix)) for line in lines if line]
    assert rest == [{"partial": "second"}, {"result": "end" if kind == "sync" else None, "done": True}]


@pytest.mark.parametrize("name, error", [("fails", ["broke at 2", "ValueError"]), ("afails", ["'k'", "KeyError"])])
def test_exception_mid_stream_ends_with_an_error_object(server, name, error):
    with stream(server, name) as r:
        assert r.status_code == 200  # the status was sent with the first chunk
        assert ndjson(r) == [{"partial": 1}, {"exception": error[0], "type": error[1], "done": True}]
    assert server.stats.last_error["type"] == error[1]


def test_exception_mid_stream_carries_traceback_in_debug(serve):
    server = serve(FUNCTIONS, debug=True)
    with stream(server, "fails") as r:
        last = ndjson(r)[-1]
    assert (last["exception"], last["type"], last["done"]) == ("broke at 2", "ValueError", True)
    assert last["traceback"].rstrip().endswith("ValueError: broke at 2")


def test_stream_bad_arguments_are_a_plain_400(server):
    r = requests.get(url(server, "count"), params={"kwargs": '{"m": 1}'}, timeout=TIMEOUT)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"exception": "count(n=3): got an unexpected keyword argument 'm'", "type": "BadArguments"}


def test_unencodable_chunk_becomes_an_error_message(serve):
    def gen():
        yield 1
        yield object()
        yield 3

    with stream(serve({"gen": gen}), "gen") as r:
        messages = ndjson(r)
    assert messages[0] == {"partial": 1}
    assert messages[1]["type"] == "TypeError" and "object" in messages[1]["exception"]
    assert messages[2:] == [{"partial": 3}, {"result": None, "done": True}]


@pytest.mark.parametrize("name", ["gen", "agen"])
def test_client_disconnect_closes_the_generator(serve, name):
    closed = threading.Event()
    server = serve(endless(closed))
    with stream(server, name) as r:
        assert json.loads(next(r.iter_lines())) == {"partial": 0}
        assert not closed.is_set()
    assert closed.wait(TIMEOUT), "the generator's finally never ran"
    assert requests.get(url(server, "_functions"), timeout=TIMEOUT).status_code == 200


# -- WebSocket -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, result", [("count", "counted 3"), ("acount", None), ("indirect", "counted 2")])
def test_websocket_streams_partials_then_result(server, name, result):
    ws = ws_connect(server, name)
    try:
        replies = ws_stream(ws)
        n = len(replies) - 1
        assert replies == [{"partial": i} for i in range(n)] + [{"result": result, "done": True}]
        assert n == (2 if name == "indirect" else 3)
        # The socket is still good for the next call.
        assert ws_stream(ws, {"n": 1}) == [{"partial": 0}, {"result": result and "counted 1", "done": True}]
    finally:
        ws.close()


@pytest.mark.parametrize("name, error", [("fails", ["broke at 2", "ValueError"]), ("afails", ["'k'", "KeyError"])])
def test_websocket_exception_mid_stream(server, name, error):
    ws = ws_connect(server, name)
    try:
        assert ws_stream(ws) == [{"partial": 1}, {"exception": error[0], "type": error[1], "done": True}]
        assert ws_stream(ws) == [{"partial": 1}, {"exception": error[0], "type": error[1], "done": True}]
    finally:
        ws.close()


def test_websocket_chunks_arrive_incrementally(serve):
    go = threading.Event()

    def gen():
        yield "first"
        if not go.wait(TIMEOUT):
            raise TimeoutError("the test never read the first chunk")
        yield "second"
        return "end"

    ws = ws_connect(serve({"gen": gen}), "gen")
    try:
        ws.send("{}")
        assert json.loads(ws.recv()) == {"partial": "first"}
        go.set()
        assert [json.loads(ws.recv()) for _ in range(2)] == [{"partial": "second"}, {"result": "end", "done": True}]
    finally:
        ws.close()


@pytest.mark.parametrize("name", ["gen", "agen"])
def test_websocket_disconnect_closes_the_generator(serve, name):
    closed = threading.Event()
    server = serve(endless(closed))
    ws = ws_connect(server, name)
    try:
        ws.send("{}")
        assert json.loads(ws.recv()) == {"partial": 0}
        assert not closed.is_set()
    finally:
        ws.shutdown()  # the connection drops, as when a laptop lid closes
    assert closed.wait(TIMEOUT), "the generator's finally never ran"


def test_websocket_close_handshake_during_a_stream(serve):
    go, closed = threading.Event(), threading.Event()

    def gen():
        try:
            yield "first"
            go.wait(TIMEOUT)
            yield "second"
        finally:
            closed.set()

    ws = ws_connect(serve({"gen": gen}), "gen")
    try:
        ws.send("{}")
        assert json.loads(ws.recv()) == {"partial": "first"}
        ws.send_close()
        ws.settimeout(5)  # a loopback close reply takes milliseconds
        frame = ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    finally:
        ws.shutdown()
        go.set()
        assert closed.wait(TIMEOUT)
