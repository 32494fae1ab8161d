"""``/<name>/ws``: one reply per message, in order; bad messages never close the socket."""

import json
import struct
import time

import pytest
import requests
import websocket

from livepandas_ipython.canvas import Canvas

TIMEOUT = 30  # seconds; generous, only ever waited on, never asserted


def echo(x=None, delay=0.0):
    if delay:
        time.sleep(delay)
    return x


async def aecho(x=None):
    return x


def fail(message="bad"):
    raise ValueError(message)


def add(x, y=2):
    return x + y


CANVAS = Canvas({"echo": echo, "aecho": aecho, "fail": fail, "add": add})


def connect(server, name, **options):
    return websocket.create_connection(f"ws://127.0.0.1:{server.port}/{name}/ws", timeout=TIMEOUT, **options)


@pytest.fixture
def server(serve):
    return serve(CANVAS)


@pytest.fixture
def ws_factory(server):
    sockets = []

    def _connect(name, srv=None):
        ws = connect(srv or server, name)
        sockets.append(ws)
        return ws

    yield _connect
    for ws in sockets:
        ws.close()


def call(ws, message):
    ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))
    return json.loads(ws.recv())


@pytest.mark.parametrize("name", ["echo", "aecho"])
def test_each_message_gets_one_reply_in_order(ws_factory, name):
    ws = ws_factory(name)
    # Send all first: earlier calls are the slower ones, yet replies keep the order of messages.
    messages = [{"x": i, "delay": 0.02 * (4 - i)} if name == "echo" else {"x": i} for i in range(5)]
    for message in messages:
        ws.send(json.dumps(message))
    assert [json.loads(ws.recv()) for _ in messages] == [{"result": i} for i in range(5)]


def test_empty_message_means_no_kwargs(ws_factory):
    ws = ws_factory("echo")
    assert call(ws, "") == {"result": None}
    assert call(ws, "{}") == {"result": None}


@pytest.mark.parametrize(
    "message, reply",
    [
        ("[1]", {"exception": "kwargs must be a JSON object, not an array", "type": "BadRequest"}),
        ('"x"', {"exception": "kwargs must be a JSON object, not a string", "type": "BadRequest"}),
        ({"y": 1}, {"exception": "add(x, y=2): missing a required argument: 'x'", "type": "BadArguments"}),
        (
            {"x": 1, "z": 1},
            {"exception": "add(x, y=2): got an unexpected keyword argument 'z'", "type": "BadArguments"},
        ),
        ({"x": "a"}, {"exception": 'can only concatenate str (not "int") to str', "type": "TypeError"}),
    ],
)
def test_bad_message_gets_an_error_and_the_socket_stays_open(ws_factory, message, reply):
    ws = ws_factory("add")
    assert call(ws, message) == reply
    assert call(ws, {"x": 40}) == {"result": 42}
    assert ws.connected


def test_malformed_json_gets_an_error_and_the_socket_stays_open(ws_factory):
    ws = ws_factory("add")
    reply = call(ws, '{"x": ')
    assert reply["type"] == "BadRequest"
    assert reply["exception"].startswith("kwargs is not valid JSON: ")
    assert set(reply) == {"exception", "type"}
    assert call(ws, {"x": 1}) == {"result": 3}


def test_function_raising_gets_an_error_reply(ws_factory):
    ws = ws_factory("fail")
    assert call(ws, {"message": "nope"}) == {"exception": "nope", "type": "ValueError"}
    assert call(ws, {}) == {"exception": "bad", "type": "ValueError"}


def test_traceback_in_debug_mode_only_for_function_errors(serve):
    server = serve(CANVAS, debug=True)
    ws = connect(server, "fail")
    try:
        reply = call(ws, {"message": "nope"})
        assert (reply["exception"], reply["type"]) == ("nope", "ValueError")
        assert reply["traceback"].rstrip().endswith("ValueError: nope")
        assert call(ws, "[]") == {"exception": "kwargs must be a JSON object, not an array", "type": "BadRequest"}
    finally:
        ws.close()


def test_unknown_function_fails_the_handshake_with_404(server):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(server, "nope")
    assert info.value.status_code == 404
    assert json.loads(info.value.resp_body) == {
        "exception": "no function 'nope'; available: echo, aecho, fail, add",
        "type": "FunctionNotFound",
    }


def test_canvas_swap_while_open(server, ws_factory):
    ws = ws_factory("add")
    assert call(ws, {"x": 1}) == {"result": 3}
    server.canvas = Canvas({"add": lambda x, y=2: x * y, "echo": echo})
    assert call(ws, {"x": 5}) == {"result": 10}  # the socket follows the new code
    server.canvas = Canvas({"echo": echo})
    assert call(ws, {"x": 1}) == {"exception": "no function 'add'; available: echo", "type": "FunctionNotFound"}
    server.canvas = CANVAS
    assert call(ws, {"x": 1}) == {"result": 3}  # and it comes back


def test_binary_message_with_json(ws_factory):
    ws = ws_factory("add")
    ws.send_binary(b'{"x": 1, "y": 2}')
    assert json.loads(ws.recv()) == {"result": 3}
    ws.send_binary(b"\xff\xfe")
    assert json.loads(ws.recv())["type"] == "BadRequest"
    assert call(ws, {"x": 2}) == {"result": 4}


def test_oversized_message_closes_the_socket(serve):
    server = serve(CANVAS, max_message_size=1024)
    ws = connect(server, "echo")
    try:
        assert call(ws, {"x": "a" * 900}) == {"result": "a" * 900}
        ws.send(json.dumps({"x": "a" * 2000}))
        frame = ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert struct.unpack("!H", frame.data[:2]) == (1009,)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws.recv()
    finally:
        ws.close()
    other = connect(server, "echo")
    try:
        assert call(other, {"x": 1}) == {"result": 1}
    finally:
        other.close()
    r = requests.get(f"http://127.0.0.1:{server.port}/echo", params={"kwargs": '{"x": 2}'}, timeout=TIMEOUT)
    assert r.json() == {"result": 2}


def test_many_sockets_at_once(ws_factory):
    sockets = [ws_factory("echo") for _ in range(5)]
    for i, ws in enumerate(sockets):
        ws.send(json.dumps({"x": i}))
    assert [json.loads(ws.recv()) for ws in sockets] == [{"result": i} for i in range(5)]
