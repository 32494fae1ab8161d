"""Hostile input: property-based fuzzing (hypothesis) of the function server's HTTP and WebSocket inputs.

The properties, for every input the strategies generate:

- input alone never causes a 5xx: the canvas's functions accept any JSON (they never raise), so
  every reply is a result or a 4xx;
- every error is a JSON object ``{"exception": str, "type": str}`` (without a traceback, even in
  debug mode);
- the server still answers afterwards (checked at the end of every test);
- nothing outside the static directory is ever served, no header comes from the input;
- oversized bodies answer 413, oversized WebSocket messages close the socket with 1009;
- a foreign ``Host`` and a cross-site ``Origin`` are refused (403).

Examples are bounded (``max_examples``), there is no deadline (the machine may be busy) and no
example database; Hypothesis's caches go to the temporary directory, not the working tree.
"""

import json
import os
import struct
import tempfile
import urllib.parse

import orjson
import pytest
import requests
import websocket
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from livepandas_ipython.canvas import Canvas

from .support import TIMEOUT, assert_json_error, exchange, is_bare_400, request_bytes

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), f"livepandas-hypothesis-{os.getuid()}"))
FUZZ = settings(max_examples=120, deadline=None, database=None)
LIMIT = 4096  # max_body_size and max_message_size of the fuzzed server
SECRET = "the-neighbour-of-the-static-directory"


def echo(**kwargs):
    return kwargs


def pair(a=None, b=None):
    return [a, b]


async def aecho(**kwargs):
    return kwargs


@pytest.fixture
def server(serve, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "hello.txt").write_text("hello")
    (tmp_path / "secret.txt").write_text(SECRET)
    canvas = Canvas({"echo": echo, "pair": pair, "aecho": aecho}, static_dir=str(static))
    return serve(canvas, debug=True, max_body_size=LIMIT, max_message_size=LIMIT)


def still_answers(server):
    response = requests.get(
        f"http://127.0.0.1:{server.port}/echo", params={"kwargs": '{"still": "here"}'}, timeout=TIMEOUT
    )
    assert (response.status_code, response.json()) == (200, {"result": {"still": "here"}})


# -- strategies ----------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # JSON can carry any of it
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4), max_leaves=12
)
json_objects = st.dictionaries(_text, json_values, max_size=5)
# Anything at all: JSON of any type, near-JSON, arbitrary text and bytes.
raw_kwargs = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    json_objects.map(lambda v: json.dumps(v)[:-1].encode()),  # truncated
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b"{", b"}", b"null", b'{"a":1}{"b":2}', b'{"a": NaN}', b"\x00", b"\xef\xbb\xbf{}",
                     b'{"a": 1e999}', b"[" * 2000 + b"]" * 2000, b'{"__proto__": 1}', b"'; DROP TABLE canvases; --"]),
)
functions = st.sampled_from(["echo", "pair", "aecho"])
content_types = st.one_of(
    st.sampled_from([
        None, "application/json", "text/plain", "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1", "multipart/form-data",
        "multipart/form-data; boundary=", "multipart/form-data; boundary=xyz", "multipart/form-dataxyz",
        "application/json; charset=utf-16", "*/*", "",
    ]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


def _quote(data):
    return urllib.parse.quote_from_bytes(data, safe="")


def _kwargs(raw):
    """What the server calls with for the raw kwargs *raw* (str or bytes) that it accepted."""
    return orjson.loads(raw) if raw.strip() else {}


def assert_refused(status, headers, body):
    """A JSON error, or Tornado's bare 400 for bytes that are not HTTP at all."""
    if not is_bare_400(status, headers, body):
        assert_json_error(status, headers, body)


# -- HTTP ----------------------------------------------------------------------------------------


def test_any_json_object_round_trips(server):
    @FUZZ
    @given(kwargs=json_objects, name=st.sampled_from(["echo", "aecho"]), how=st.sampled_from(["get", "json", "form"]))
    def check(kwargs, name, how):
        body = json.dumps(kwargs).encode()
        if how == "get":
            data = request_bytes("GET", f"/{name}?kwargs={_quote(body)}")
        elif how == "json":
            data = request_bytes("POST", f"/{name}", [("Content-Type", "application/json")], body)
        else:
            form = f"kwargs={_quote(body)}".encode()
            data = request_bytes("POST", f"/{name}", [("Content-Type", "application/x-www-form-urlencoded")], form)
        status, _, reply = exchange(server.port, data)
        assert status == 200, reply
        assert json.loads(reply) == {"result": kwargs}

    check()
    still_answers(server)


def test_arbitrary_query_kwargs_never_5xx(server):
    @FUZZ
    @given(raw=raw_kwargs, name=functions, extra=st.sampled_from(["", "&kwargs={}", "&token=x", "&kwargs"]))
    def check(raw, name, extra):
        status, headers, reply = exchange(server.port, request_bytes("GET", f"/{name}?kwargs={_quote(raw)}{extra}"))
        if status == 200:
            result = json.loads(reply)["result"]
            if name == "echo" and not extra:
                assert result == _kwargs(raw)
        else:
            assert_json_error(status, headers, reply)

    check()
    still_answers(server)


def test_arbitrary_post_bodies_and_content_types_never_5xx(server):
    @FUZZ
    @given(
        body=raw_kwargs | st.binary(max_size=200),
        ctype=content_types,
        name=functions,
        encoding=st.sampled_from([None, None, "gzip", "identity", "br"]),
        form_field=st.booleans(),
    )
    def check(body, ctype, name, encoding, form_field):
        if form_field:
            body = b"kwargs=" + body
        headers = []
        if ctype is not None:
            headers.append(("Content-Type", ctype))
        if encoding is not None:
            headers.append(("Content-Encoding", encoding))
        status, headers, reply = exchange(server.port, request_bytes("POST", f"/{name}", headers, body))
        if status != 200:
            assert_json_error(status, headers, reply)

    check()
    still_answers(server)


def test_multipart_bodies_never_5xx(server):
    boundary = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)

    @FUZZ
    @given(
        sent=boundary,
        declared=boundary,
        field=st.sampled_from(["kwargs", "other", "", 'kwargs"; filename="x.json']),
        value=raw_kwargs,
        closing=st.booleans(),
    )
    def check(sent, declared, field, value, closing):
        body = (
            f'--{sent}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'.encode()
            + value
            + (f"\r\n--{sent}--\r\n".encode() if closing else b"")
        )
        headers = [("Content-Type", f"multipart/form-data; boundary={declared}")]
        status, headers, reply = exchange(server.port, request_bytes("POST", "/echo", headers, body))
        if status != 200:
            assert_json_error(status, headers, reply)

    check()
    still_answers(server)


@pytest.mark.parametrize(
    "ctype, body",
    [
        ("multipart/form-data", b"x"),
        ("multipart/form-data; boundary=zz", b"no boundary in here"),
        ("multipart/form-dataxyz", b"x"),
        ("multipart/form-data; boundary=zz", b'--zz\r\nContent-Disposition: form-data; name="kwargs"\r\n\r\n{}'),
    ],
)
def test_malformed_form_bodies_are_400(server, ctype, body):
    response = requests.post(
        f"http://127.0.0.1:{server.port}/echo", data=body, headers={"Content-Type": ctype}, timeout=TIMEOUT
    )
    error = assert_json_error(response.status_code, response.headers, response.content)
    assert (response.status_code, error["type"]) == (400, "BadRequest")
    assert error["exception"].startswith("malformed form body: ")


def test_form_body_with_a_content_encoding_is_400(server):
    response = requests.post(
        f"http://127.0.0.1:{server.port}/echo",
        data=b"kwargs=%7B%7D",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
        timeout=TIMEOUT,
    )
    assert (response.status_code, response.json()["type"]) == (400, "BadRequest")


_segments = st.one_of(
    st.sampled_from([
        "..", "%2e%2e", "%2E%2e", ".%2e", "%252e%252e", ".", "static", "echo", "ws", "_functions", "livepandas.js",
        "hello.txt", "secret.txt", "%00", "\x00", "%2f", "..%2f", "..%5c", "%5c", "\\", "//", "%0d%0aX-Injected:%201",
        "~", "%c0%ae%c0%ae", "%ff", "\xe9", "etc", "passwd", "proc", "self", "environ", ";", "?", "#", "&", "%",
    ]),
    st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="?#"), max_size=8),
)


def test_arbitrary_paths_never_5xx_nor_escape_the_static_directory(server):
    @FUZZ
    @given(segments=st.lists(_segments, min_size=1, max_size=6), method=st.sampled_from(["GET", "POST", "HEAD"]))
    def check(segments, method):
        target = "/" + "/".join(segments)
        status, headers, reply = exchange(server.port, request_bytes(method, target.encode("utf-8")))
        assert status is not None and status < 500, (target, status, reply[:300])
        assert SECRET.encode() not in reply
        assert "X-Injected" not in headers
        if status >= 400 and method != "HEAD":
            assert_refused(status, headers, reply)

    check()
    still_answers(server)


def test_crlf_in_query_values_injects_no_header(server):
    injected = st.sampled_from(["\r\nX-Injected: 1", "\nX-Injected: 1", "\r\n\r\n<html>X-Injected", "\rX-Injected: 1"])

    @FUZZ
    @given(prefix=_text, payload=injected, where=st.sampled_from(["json", "raw", "name"]), name=functions)
    def check(prefix, payload, where, name):
        if where == "json":  # inside a JSON string: the value is echoed in the body, escaped
            target = f"/{name}?kwargs={_quote(json.dumps({'a': prefix + payload}).encode())}"
        elif where == "raw":  # percent-encoded CR/LF as the whole kwargs value: invalid JSON
            target = f"/{name}?kwargs={_quote((prefix + payload).encode())}"
        else:  # in the function name: an unknown function, named in the 404 message
            target = f"/{_quote((name + payload).encode())}"
        status, headers, reply = exchange(server.port, request_bytes("GET", target))
        assert status is not None and status < 500
        assert "X-Injected" not in headers, dict(headers)
        assert b"\r\nX-Injected" not in reply.split(b"\r\n\r\n")[0]
        if status != 200:
            assert_json_error(status, headers, reply)

    check()
    still_answers(server)


_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
foreign_hosts = st.one_of(
    st.lists(_labels, min_size=1, max_size=3).map(lambda labels: ".".join(labels + ["example"])),
    st.sampled_from(["127.0.0.1.evil.example", "localhost.evil.example", "evil.example:8888", "10.0.0.1",
                     "[fe80::1]", "0.0.0.0", "192.168.1.1:80", "localhost@evil.example", "evil.example#localhost"]),
    st.ip_addresses().filter(lambda ip: not ip.is_loopback).map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip)),
)


def test_foreign_host_is_refused(server):
    @FUZZ
    @given(host=foreign_hosts, port=st.one_of(st.none(), st.integers(1, 65535)), method=st.sampled_from(["GET", "POST"]),
           path=st.sampled_from(["/echo", "/_functions", "/", "/livepandas.js", "/static/hello.txt", "/nope"]))
    def check(host, port, method, path):
        value = f"{host}:{port}" if port is not None and (host.endswith("]") or ":" not in host) else host
        status, headers, reply = exchange(server.port, request_bytes(method, path, [("Host", value)]))
        if not is_bare_400(status, headers, reply):  # Tornado refuses a Host that isn't one at all
            assert status == 403, (value, path, status, reply[:200])
            assert assert_json_error(status, headers, reply)["type"] == "Forbidden"

    check()
    still_answers(server)


cross_origins = st.one_of(
    st.builds(lambda scheme, host, port: f"{scheme}://{host}" + (f":{port}" if port else ""),
              st.sampled_from(["http", "https"]), foreign_hosts, st.one_of(st.none(), st.integers(1, 65535))),
    st.sampled_from(["null", "file://", "http://127.0.0.1:1", "http://localhost", "https://localhost"]),
)


def test_cross_site_origin_is_refused_for_calls(server):
    @FUZZ
    @given(origin=cross_origins, method=st.sampled_from(["GET", "POST"]), name=functions)
    def check(origin, method, name):
        body = b"{}" if method == "POST" else b""
        headers = [("Origin", origin), ("Content-Type", "application/json")]
        status, headers, reply = exchange(server.port, request_bytes(method, f"/{name}", headers, body))
        assert status == 403, (origin, status, reply[:200])
        assert assert_json_error(status, headers, reply)["type"] == "Forbidden"
        assert "Access-Control-Allow-Origin" not in headers

    check()
    still_answers(server)


def test_body_sizes_around_the_limit(server):
    @settings(max_examples=40, deadline=None, database=None)
    @given(size=st.integers(LIMIT - 64, LIMIT + 64) | st.integers(0, 8 * LIMIT), chunked=st.booleans())
    def check(size, chunked):
        filler = max(0, size - len('{"x": ""}'))
        body = b'{"x": "' + b"a" * filler + b'"}'
        url = f"http://127.0.0.1:{server.port}/echo"
        headers = {"Content-Type": "application/json"}
        data = iter([body[:10], body[10:]]) if chunked else body
        response = requests.post(url, data=data, headers=headers, timeout=TIMEOUT)
        if len(body) <= LIMIT:
            assert response.status_code == 200
        else:
            assert response.status_code == 413
            assert assert_json_error(response.status_code, response.headers, response.content)["type"] == "PayloadTooLarge"

    check()
    still_answers(server)


# -- WebSocket -----------------------------------------------------------------------------------


def _connect(server, name="echo", **headers):
    return websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/{name}/ws", timeout=TIMEOUT, header=[f"{k}: {v}" for k, v in headers.items()]
    )


def _check_reply(message):
    reply = json.loads(message)
    assert isinstance(reply, dict), reply
    if "result" in reply:
        assert set(reply) == {"result"}, reply
    else:
        assert set(reply) == {"exception", "type"}, reply
        assert reply["exception"] and reply["type"] in ("BadRequest", "BadArguments"), reply
    return reply


def test_arbitrary_websocket_frames_get_one_reply_each_and_never_close(server):
    sockets = {name: _connect(server, name) for name in ("echo", "pair", "aecho")}
    try:

        @FUZZ
        @given(
            frame=st.one_of(
                raw_kwargs.map(lambda b: ("binary", b)),
                st.text(st.characters(blacklist_categories=("Cs",)), max_size=60).map(lambda t: ("text", t)),
                json_objects.map(lambda o: ("text", json.dumps(o))),
            ),
            name=functions,
        )
        def check(frame, name):
            ws = sockets[name]
            kind, payload = frame
            if kind == "binary":
                ws.send_binary(payload)
            else:
                ws.send(payload)
            reply = _check_reply(ws.recv())
            if "result" in reply and name != "pair":
                assert reply["result"] == _kwargs(payload)

        check()
        for name, ws in sockets.items():
            ws.send('{"a": 1}' if name == "pair" else '{"still": "open"}')
            assert "result" in json.loads(ws.recv())
    finally:
        for ws in sockets.values():
            ws.close()
    still_answers(server)


def test_websocket_messages_over_the_limit_close_with_1009(server):
    @settings(max_examples=25, deadline=None, database=None)
    @given(size=st.integers(LIMIT - 32, LIMIT + 32) | st.integers(LIMIT + 1, 4 * LIMIT), binary=st.booleans())
    def check(size, binary):
        payload = '{"x": "' + "a" * max(0, size - 9) + '"}'
        ws = _connect(server)
        try:
            if binary:
                ws.send_binary(payload.encode())
            else:
                ws.send(payload)
            if len(payload) <= LIMIT:
                assert "result" in json.loads(ws.recv())
            else:
                frame = ws.recv_frame()
                assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
                assert struct.unpack("!H", frame.data[:2]) == (1009,)
        finally:
            ws.close()

    check()
    still_answers(server)


def test_websocket_from_foreign_host_or_cross_site_origin_is_refused(server):
    @settings(max_examples=40, deadline=None, database=None)
    @given(host=st.one_of(st.none(), foreign_hosts), origin=st.one_of(st.none(), cross_origins))
    def check(host, origin):
        headers = {}
        if host is not None:
            headers["Host"] = host
        if origin is not None:
            headers["Origin"] = origin
        if not headers:
            return
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        extra = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
                 ("Sec-WebSocket-Version", "13")] + list(headers.items())
        data = request_bytes("GET", "/echo/ws", extra).replace(b"Connection: close\r\n", b"", 1)
        status, headers, reply = exchange(server.port, data)
        if not is_bare_400(status, headers, reply):
            assert status == 403, (host, origin, status)
            assert assert_json_error(status, headers, reply)["type"] == "Forbidden"

    check()
    still_answers(server)
