"""The HTTP fast path answers plain calls of inlined functions exactly as the handlers do.

A reply from the fast path has no ``Server`` header (Tornado's handlers always send one): that is
how these tests tell which path answered.
"""

import json
import socket

import pytest
import requests

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.server.calls import PROMOTE_AFTER

TIMEOUT = 30
BUDGET = 0.05  # far above any call's noise on a busy machine: promotion must not depend on load


def add(x, y=2):
    return x + y


def fail(message="bad"):
    raise ValueError(message)


def sometimes_stream(n=0):
    """A plain function returning a value, or (when n > 0) a generator."""
    if n:
        return (i for i in range(n))
    return "value"


CANVAS = Canvas({"add": add, "fail": fail, "sometimes_stream": sometimes_stream})


@pytest.fixture
def server(serve):
    return serve(CANVAS, inline_budget=BUDGET)


def url(server, name):
    return f"http://127.0.0.1:{server.port}/{name}"


def call(server, name, kwargs=None, **options):
    params = {} if kwargs is None else {"kwargs": kwargs if isinstance(kwargs, str) else json.dumps(kwargs)}
    return requests.get(url(server, name), params=params, timeout=TIMEOUT, **options)


def promote(server, name, kwargs=None):
    """Call *name* on the handlers' path until the server has learnt it is fast."""
    fn = server.canvas.get(name)
    for _ in range(PROMOTE_AFTER):
        if server.costs.fast(fn):
            break
        assert "Server" in call(server, name, kwargs).headers
    assert server.costs.fast(fn)


def fast(response):
    return "Server" not in response.headers


def test_promoted_calls_take_the_fast_path_with_the_same_reply(server):
    slow = call(server, "add", {"x": 1})
    promote(server, "add", {"x": 1})
    quick = call(server, "add", {"x": 1})
    assert fast(quick) and not fast(slow)
    assert quick.status_code == slow.status_code == 200
    assert quick.content == slow.content == b'{"result":3}'
    assert quick.headers["Content-Type"] == slow.headers["Content-Type"] == "application/json"
    assert call(server, "add/", {"x": 5, "y": 5}).json() == {"result": 10}
    assert server.stats.calls["add"] == PROMOTE_AFTER + 2


def test_keep_alive_connection_serves_many_fast_calls(server):
    promote(server, "add", {"x": 1})
    with requests.Session() as session:
        for i in range(50):
            response = session.get(url(server, "add"), params={"kwargs": json.dumps({"x": i})}, timeout=TIMEOUT)
            assert fast(response) and response.json() == {"result": i + 2}


def test_errors_raised_by_the_function_are_the_same_json(server):
    slow = call(server, "fail", {"message": "boom"})
    promote(server, "fail", {"message": "boom"})
    quick = call(server, "fail", {"message": "boom"})
    assert fast(quick)
    assert quick.status_code == slow.status_code == 500
    assert quick.json()["exception"] == slow.json()["exception"] == "boom"
    assert quick.json()["type"] == "ValueError"
    assert server.stats.errors["fail"] == PROMOTE_AFTER + 1


@pytest.mark.parametrize(
    "kwargs, status, kind",
    [
        ("{bad json", 400, "BadRequest"),
        ("[1, 2]", 400, "BadRequest"),
        ({"x": 1, "z": 3}, 400, "BadArguments"),
        ({}, 400, "BadArguments"),
    ],
)
def test_bad_input_after_promotion_gets_the_handlers_error(server, kwargs, status, kind):
    promote(server, "add", {"x": 1})
    response = call(server, "add", kwargs)
    assert not fast(response)
    assert response.status_code == status and response.json()["type"] == kind


def test_security_checks_still_apply_on_the_fast_path(server):
    promote(server, "add", {"x": 1})
    assert call(server, "add", {"x": 1}, headers={"Host": "evil.example"}).status_code == 403
    refused = call(server, "add", {"x": 1}, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and not fast(refused)
    cross = call(server, "add", {"x": 1}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403


def test_token_servers_require_the_token_on_the_fast_path(serve):
    server = serve(CANVAS, inline_budget=BUDGET, token="sekrit")
    for _ in range(PROMOTE_AFTER):
        assert call(server, "add", {"x": 1}, headers={"Authorization": "token sekrit"}).status_code == 200
    quick = call(server, "add", {"x": 1}, headers={"Authorization": "token sekrit"})
    assert fast(quick) and quick.status_code == 200
    # On loopback the token is optional for a loopback Host; a foreign Host needs it.
    assert call(server, "add", {"x": 1}, headers={"Host": "example.org"}).status_code == 403
    assert call(server, "add", {"x": 1}, headers={"Host": "example.org", "Authorization": "token sekrit"}).status_code == 200


def test_cors_requests_take_the_handlers_path(serve):
    server = serve(CANVAS, inline_budget=BUDGET, allow_origins=("http://app.example",))
    promote(server, "add", {"x": 1})
    response = call(server, "add", {"x": 1}, headers={"Origin": "http://app.example"})
    assert response.status_code == 200 and not fast(response)
    assert response.headers["Access-Control-Allow-Origin"] == "http://app.example"


def test_a_function_that_starts_streaming_is_streamed_then_leaves_the_fast_path(server):
    promote(server, "sometimes_stream")
    response = call(server, "sometimes_stream", {"n": 2})
    assert fast(response)
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert [json.loads(line) for line in response.text.splitlines()] == [
        {"partial": 0},
        {"partial": 1},
        {"result": None, "done": True},
    ]
    assert not server.costs.fast(server.canvas.get("sometimes_stream"))
    again = call(server, "sometimes_stream")
    assert again.json() == {"result": "value"} and not fast(again)


def test_http_1_0_client_gets_a_complete_reply(server):
    promote(server, "add", {"x": 1})
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b'GET /add?kwargs=%7B%22x%22%3A4%7D HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n')
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Server:" not in head  # Tornado answers 1.1 to all
    assert body == b'{"result":6}'


def test_a_get_with_a_body_takes_the_handlers_path(server):
    promote(server, "add", {"x": 1})
    response = requests.get(url(server, "add"), params={"kwargs": '{"x": 1}'}, data=b"ignored", timeout=TIMEOUT)
    assert response.status_code == 200 and not fast(response)
