"""The HTTP protocol of the function server (SPEC §2), against real servers on 127.0.0.1:0."""

import http.client
import json
import os
import textwrap
import threading
import time

import pytest
import requests

import livepandas_ipython.server.handlers
from livepandas_ipython.canvas import Canvas

TIMEOUT = 30  # seconds; generous, only ever waited on, never asserted

SOURCE = '''
import threading


def livepandas_add(x, y=2):
    """Add two numbers."""
    return x + y


def livepandas_greet(name="world"):
    return f"hello {name}"


def livepandas_fail(message="bad value"):
    raise ValueError(message)


async def livepandas_where():
    return threading.current_thread().name


def livepandas_thread():
    return threading.current_thread().name
'''


def url(server, path=""):
    return f"http://127.0.0.1:{server.port}/{path}"


def get(server, path, kwargs=None, **options):
    params = options.pop("params", {})
    if kwargs is not None:
        params["kwargs"] = kwargs if isinstance(kwargs, str) else json.dumps(kwargs)
    return requests.get(url(server, path), params=params, timeout=TIMEOUT, **options)


def post(server, path, **options):
    return requests.post(url(server, path), timeout=TIMEOUT, **options)


def raw_get(server, path):
    """GET *path* byte for byte (requests would normalise ``..`` away)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


@pytest.fixture
def server(serve):
    return serve(SOURCE)


# -- calling -------------------------------------------------------------------------------------


def test_get_with_kwargs(server):
    r = get(server, "add", {"x": 1, "y": 40})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"result": 41}


def test_get_without_kwargs_calls_with_defaults(server):
    r = get(server, "greet")
    assert (r.status_code, r.json()) == (200, {"result": "hello world"})


def test_get_with_empty_kwargs_object(serve):
    server = serve({"answer": lambda: 42})
    assert get(server, "answer", {}).json() == {"result": 42}
    assert get(server, "answer").json() == {"result": 42}


def test_post_json_body(server):
    r = post(server, "add", json={"x": 5, "y": 6})
    assert (r.status_code, r.json()) == (200, {"result": 11})


def test_post_form_urlencoded(server):
    r = post(server, "add", data={"kwargs": json.dumps({"x": 5})})
    assert r.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (r.status_code, r.json()) == (200, {"result": 7})


def test_post_form_multipart(server):
    r = post(server, "add", files={"kwargs": (None, json.dumps({"x": "a", "y": "b"}))})
    assert r.request.headers["Content-Type"].startswith("multipart/form-data")
    assert (r.status_code, r.json()) == (200, {"result": "ab"})


def test_post_form_without_kwargs_field_is_400(server):
    r = post(server, "add", data={"x": "1"})
    assert r.status_code == 400
    assert r.json() == {"exception": "a form body needs a field 'kwargs' holding a JSON object", "type": "BadRequest"}


def test_post_empty_body_takes_query_kwargs(server):
    r = post(server, "add", params={"kwargs": json.dumps({"x": 1, "y": 1})})
    assert r.request.headers["Content-Length"] == "0"
    assert (r.status_code, r.json()) == (200, {"result": 2})


def test_trailing_slash_is_the_same_function(server):
    assert get(server, "add/", {"x": 3}).json() == {"result": 5}


# -- client errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_malformed_json_is_400(server, method):
    if method == "GET":
        r = get(server, "add", '{"x": 1')
    else:
        r = post(server, "add", data=b'{"x": 1', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "BadRequest"
    assert body["exception"].startswith("kwargs is not valid JSON: ")
    assert set(body) == {"exception", "type"}


@pytest.mark.parametrize(
    "raw, kind",
    [("[1, 2]", "an array"), ('"x"', "a string"), ("3", "a number"), ("true", "a boolean"), ("null", "null")],
)
def test_kwargs_not_an_object_is_400(server, raw, kind):
    r = get(server, "add", raw)
    assert r.status_code == 400
    assert r.json() == {"exception": f"kwargs must be a JSON object, not {kind}", "type": "BadRequest"}


def test_missing_argument_is_400(server):
    r = get(server, "add", {"y": 1})
    assert r.status_code == 400
    assert r.json() == {"exception": "add(x, y=2): missing a required argument: 'x'", "type": "BadArguments"}


def test_unexpected_argument_is_400(server):
    r = post(server, "add", json={"x": 1, "z": 2})
    assert r.status_code == 400
    assert r.json() == {"exception": "add(x, y=2): got an unexpected keyword argument 'z'", "type": "BadArguments"}


def test_client_errors_never_carry_a_traceback_even_in_debug(serve):
    server = serve(SOURCE, debug=True)
    assert get(server, "add", "[]").json() == {
        "exception": "kwargs must be a JSON object, not an array",
        "type": "BadRequest",
    }
    assert "traceback" not in get(server, "nope").json()


def test_unknown_function_is_404_listing_the_available_ones(server):
    r = get(server, "nope", {"x": 1})
    assert r.status_code == 404
    assert r.json() == {
        "exception": "no function 'nope'; available: add, fail, greet, thread, where",
        "type": "FunctionNotFound",
    }


@pytest.mark.parametrize("path", ["a/b/c", "_nope", "add/extra", "9lives"])
def test_unknown_path_is_404_json(server, path):
    r = get(server, path)
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"exception": f"no such path /{path}", "type": "NotFound"}


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("PUT", "add", "GET, POST, OPTIONS"),
        ("DELETE", "add", "GET, POST, OPTIONS"),
        ("PATCH", "add", "GET, POST, OPTIONS"),
        ("POST", "", "GET, OPTIONS"),
        ("POST", "_functions", "GET, OPTIONS"),
        ("POST", "livepandas.js", "GET, OPTIONS"),
    ],
)
def test_wrong_method_is_405_json_naming_the_allowed_ones(server, method, path, allow):
    r = requests.request(method, url(server, path), timeout=TIMEOUT)
    assert r.status_code == 405
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Allow"] == allow
    assert r.json() == {"exception": "Method Not Allowed", "type": "MethodNotAllowed"}


def test_body_over_max_body_size_is_413(serve):
    server = serve({"echo": lambda x=None: x}, max_body_size=100)
    assert post(server, "echo", json={"x": "a" * 80}).json() == {"result": "a" * 80}
    too_large = {"exception": "request body is over the limit of 100 bytes (max_body_size)", "type": "PayloadTooLarge"}
    r = post(server, "echo", json={"x": "a" * 200})
    assert (r.status_code, r.json()) == (413, too_large)
    chunked = iter([b'{"x": "', b"a" * 300, b'"}'])  # no Content-Length: counted as it arrives
    r = post(server, "echo", data=chunked, headers={"Content-Type": "application/json"})
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    assert (r.status_code, r.json()) == (413, too_large)


def test_huge_content_length_is_refused_before_the_body(serve):
    import socket

    server = serve({"echo": lambda x=None: x}, max_body_size=100)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413
        assert json.loads(response.read())["type"] == "PayloadTooLarge"


# -- function errors -----------------------------------------------------------------------------


def test_function_exception_is_500_with_its_type_and_message(server):
    r = get(server, "fail", {"message": "no such column 'z'"})
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"exception": "no such column 'z'", "type": "ValueError"}


def test_exception_without_message_reports_its_type(serve):
    def boom():
        raise KeyError()

    r = get(serve({"boom": boom}), "boom")
    assert (r.status_code, r.json()) == (500, {"exception": "KeyError", "type": "KeyError"})


def test_traceback_only_in_debug_mode(serve):
    body = get(serve(SOURCE, debug=True), "fail", {"message": "oops"}).json()
    assert set(body) == {"exception", "type", "traceback"}
    assert (body["exception"], body["type"]) == ("oops", "ValueError")
    assert body["traceback"].startswith("Traceback (most recent call last):")
    assert 'File "<canvas>", line 15, in livepandas_fail' in body["traceback"]
    assert body["traceback"].rstrip().endswith("ValueError: oops")


# -- where functions run -------------------------------------------------------------------------


def test_async_functions_run_on_the_server_loop(server):
    assert get(server, "where").json() == {"result": server._loop_thread.name}
    assert server._loop_thread.name == "livepandas-server"


def test_plain_functions_run_on_the_pool(server):
    assert get(server, "thread").json()["result"].startswith("livepandas-call")


def _call_in_thread(server, path, kwargs=None):
    """Start a GET in a thread; returns ``(thread, results)`` where results gets the response."""
    results = []
    thread = threading.Thread(target=lambda: results.append(get(server, path, kwargs)), daemon=True)
    thread.start()
    return thread, results


def test_slow_plain_call_does_not_block_other_calls(serve):
    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        deadline = time.monotonic() + TIMEOUT
        while not release.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # a blocking call, as user code would make
        return "slow"

    server = serve({"slow": slow, "fast": lambda: "fast", "afast": _async_value("afast")})
    thread, results = _call_in_thread(server, "slow")
    try:
        assert entered.wait(TIMEOUT)
        assert get(server, "fast").json() == {"result": "fast"}
        assert get(server, "afast").json() == {"result": "afast"}
        assert thread.is_alive() and not results  # the slow call is still in flight
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert results[0].json() == {"result": "slow"}


def test_slow_async_call_does_not_block_other_calls(serve):
    import asyncio

    entered, release = threading.Event(), threading.Event()

    async def slow():
        entered.set()
        for _ in range(TIMEOUT * 100):
            if release.is_set():
                break
            await asyncio.sleep(0.01)
        return "slow"

    server = serve({"slow": slow, "fast": lambda: "fast", "afast": _async_value("afast")})
    thread, results = _call_in_thread(server, "slow")
    try:
        assert entered.wait(TIMEOUT)
        assert get(server, "fast").json() == {"result": "fast"}
        assert get(server, "afast").json() == {"result": "afast"}
        assert not results
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert results[0].json() == {"result": "slow"}


def test_thread_pool_is_bounded(serve):
    lock, release = threading.Lock(), threading.Event()
    state = {"now": 0, "peak": 0, "entered": 0}
    two_in = threading.Event()

    def work():
        with lock:
            state["now"] += 1
            state["entered"] += 1
            state["peak"] = max(state["peak"], state["now"])
            if state["entered"] == 2:
                two_in.set()
        release.wait(TIMEOUT)
        with lock:
            state["now"] -= 1
        return "done"

    server = serve({"work": work, "afast": _async_value("loop free")}, max_workers=2)
    calls = [_call_in_thread(server, "work") for _ in range(4)]
    try:
        assert two_in.wait(TIMEOUT)
        # All four requests reached the server, yet only two run: the others wait for a worker.
        deadline = time.monotonic() + TIMEOUT
        while server.stats.calls.get("work", 0) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.stats.calls["work"] == 4
        assert get(server, "afast").json() == {"result": "loop free"}
        assert state["entered"] == 2
    finally:
        release.set()
        for thread, _ in calls:
            thread.join(TIMEOUT)
    assert [results[0].json() for _, results in calls] == [{"result": "done"}] * 4
    assert state["peak"] == 2


def _async_value(value):
    async def fn():
        return value

    return fn


# -- /_functions ---------------------------------------------------------------------------------


def test_function_list(serve):
    source = '''
    async def livepandas_add(x: int, y: int = 2) -> int:
        """Add two numbers.

        Returns their sum.
        """
        return x + y

    def livepandas_count(n=3, *, step=1.5, label=None, **extra):
        yield from range(n)
    '''
    server = serve(Canvas.from_source(textwrap.dedent(source), name="demo"))
    r = get(server, "_functions")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {
        "canvas": "demo",
        "functions": [
            {
                "name": "add",
                "signature": "add(x: int, y: int = 2) -> int",
                "doc": "Add two numbers.\n\nReturns their sum.",
                "parameters": [
                    {"name": "x", "kind": "positional_or_keyword", "annotation": "int"},
                    {"name": "y", "kind": "positional_or_keyword", "default": 2, "annotation": "int"},
                ],
                "async": True,
                "stream": False,
            },
            {
                "name": "count",
                "signature": "count(n=3, *, step=1.5, label=None, **extra)",
                "doc": "",
                "parameters": [
                    {"name": "n", "kind": "positional_or_keyword", "default": 3},
                    {"name": "step", "kind": "keyword_only", "default": 1.5},
                    {"name": "label", "kind": "keyword_only", "default": None},
                    {"name": "extra", "kind": "var_keyword"},
                ],
                "async": False,
                "stream": True,
            },
        ],
    }
    assert get(server, "_functions/").json() == r.json()


def test_only_livepandas_callables_are_published(serve):
    source = """
    def helper():
        return "helper"

    def livepandas__private():
        return "private"

    livepandas_value = 3

    class livepandas_Thing:
        pass

    def livepandas_ok():
        return helper()
    """
    server = serve(source)
    assert [f["name"] for f in get(server, "_functions").json()["functions"]] == ["Thing", "ok"]
    assert get(server, "ok").json() == {"result": "helper"}
    assert get(server, "helper").json() == {
        "exception": "no function 'helper'; available: Thing, ok",
        "type": "FunctionNotFound",
    }
    assert get(server, "value").status_code == 404
    for path in ("_private", "__private"):
        r = get(server, path)
        assert (r.status_code, r.json()["type"]) == (404, "NotFound")
        assert "private" not in r.text.replace(path, "")


# -- pages ---------------------------------------------------------------------------------------


def test_index_serves_the_html_view(serve):
    view = "<!DOCTYPE html><title>v</title><p>my view ✓</p>"
    r = get(serve(Canvas({"f": lambda: 1}, html=view)), "")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert r.text == view


def test_index_generates_a_page_without_a_view(serve):
    def livepandas_shout(text="<b>hi</b>", times=2):
        """Say <it> loudly."""
        return text * times

    def ticks(n):
        yield n

    canvas = Canvas({"shout": livepandas_shout, "ticks": ticks}, name="<demo>")
    r = get(serve(canvas), "")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=UTF-8"
    page = r.text
    assert "<title>livepandas: &lt;demo&gt;</title>" in page
    assert '<script src="livepandas.js"></script>' in page
    assert '<form data-function="shout" data-stream="false">' in page
    assert '<form data-function="ticks" data-stream="true">' in page
    assert "<p>Say &lt;it&gt; loudly.</p>" in page
    assert '<input name="text" value="&quot;&lt;b&gt;hi&lt;/b&gt;&quot;">' in page
    assert '<input name="times" value="2">' in page
    assert '<input name="n" value="">' in page
    assert "<b>hi</b>" not in page and "<it>" not in page


def test_generated_page_for_an_empty_canvas(serve):
    page = get(serve(Canvas({})), "").text
    assert "<p>This canvas publishes no functions yet.</p>" in page


def test_client_script(server):
    r = get(server, "livepandas.js")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/javascript; charset=UTF-8"
    path = os.path.join(os.path.dirname(livepandas_ipython.server.handlers.__file__), "static", "livepandas.js")
    with open(path, "rb") as f:
        assert r.content == f.read()
    assert b"root.livepandas = {base: base, call: call, stream: stream, socket: socket, rows: rows};" in r.content


@pytest.fixture
def static_server(serve, tmp_path):
    static = tmp_path / "static"
    (static / "css").mkdir(parents=True)
    (static / "data.json").write_text('{"a": 1}')
    (static / "css" / "style.css").write_text("body { color: red }")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    return serve(Canvas({"f": lambda: 1}, static_dir=str(static)))


def test_static_files_are_served(static_server):
    r = get(static_server, "static/data.json")
    assert (r.status_code, r.headers["Content-Type"], r.content) == (200, "application/json", b'{"a": 1}')
    r = get(static_server, "static/css/style.css")
    assert (r.status_code, r.headers["Content-Type"], r.text) == (200, "text/css", "body { color: red }")


def test_static_missing_file_is_404_json(static_server):
    status, ctype, body = raw_get(static_server, "/static/nope.txt")
    assert (status, ctype, json.loads(body)) == (
        404,
        "application/json",
        {"exception": "Not Found", "type": "NotFound"},
    )


@pytest.mark.parametrize(
    "path, shown",
    [
        ("/static/../secret.txt", "../secret.txt"),
        ("/static/css/../../secret.txt", "css/../../secret.txt"),
        ("/static/%2e%2e/secret.txt", "../secret.txt"),
        ("/static/%2E%2E%2Fsecret.txt", "../secret.txt"),
        ("/static//etc/passwd", "/etc/passwd"),
        ("/static/%2Fetc%2Fpasswd", "/etc/passwd"),
    ],
)
def test_static_refuses_traversal(static_server, path, shown):
    status, ctype, body = raw_get(static_server, path)
    assert (status, ctype) == (403, "application/json")
    assert json.loads(body) == {"exception": f"{shown} is not in root static directory", "type": "Forbidden"}


def test_static_without_a_static_dir_is_404_json(server):
    r = get(server, "static/x.js")
    assert (r.status_code, r.json()) == (404, {"exception": "this canvas has no static directory", "type": "NotFound"})
