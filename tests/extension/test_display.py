"""What the notebook shows: ``CanvasPreview`` and ``StatusTable`` (text and HTML), and the URLs.

HTML forms escape every piece of user data; text forms list each function's HTTP and WebSocket
URL. Behind JupyterHub the URLs go through jupyter-server-proxy (``<prefix>proxy/<port>/``) and
the view URL carries the server's token, which a request with a foreign ``Host`` must present.
"""

import html
import json
import re

import pytest
import requests
import websocket
from extension_helpers import TIMEOUT, canvas, server

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.display import CanvasPreview, StatusTable, canvas_urls

EVIL_DOC = "<script>alert(1)</script>"
EVIL_NAME = "<b>bold</b> & co"


def evil(what: str = "<img src=x onerror=alert(2)>"):
    """<script>alert(1)</script>

    More text.
    """
    raise ValueError(f"bad <i>{what}</i>")


def add(x: int = 1, y: int = 2):
    """Add two numbers."""
    return x + y


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)


def test_preview_html_escapes_user_data(serve, clean_env):
    srv = serve(Canvas({"evil": evil, "add": add}, name=EVIL_NAME, html="<p>view</p>"), token="t0k")
    page = CanvasPreview(EVIL_NAME, srv)._repr_html_()
    for raw in ("<script>", "<b>bold</b>", "<img", " & co"):
        assert raw not in page
    assert html.escape(EVIL_DOC) in page  # the docstring's first line
    assert "More text." not in page
    assert html.escape(EVIL_NAME) in page
    assert f'title="{html.escape(EVIL_NAME)} view"' in page
    signature = html.escape("(what: str = '<img src=x onerror=alert(2)>')")
    assert f'<code style="white-space: nowrap">{signature}</code></td>' in page
    assert f'<iframe src="http://127.0.0.1:{srv.port}/"' in page
    assert "height: 320px" in page
    # The only tags are the preview's own.
    tags = set(re.findall(r"<([a-z]+)", page))
    assert tags == {"div", "p", "strong", "code", "a", "table", "thead", "tbody", "tr", "th", "td", "iframe"}


def test_preview_without_functions_or_view(serve, clean_env):
    srv = serve(Canvas({}, name="empty"))
    preview = CanvasPreview("empty", srv)
    assert "<em>no functions yet</em>" in preview._repr_html_()
    assert "<iframe" not in preview._repr_html_()
    assert repr(preview) == f"Canvas 'empty' on http://127.0.0.1:{srv.port}/ (0 functions)"


def test_preview_text_lists_http_and_ws_urls(serve, clean_env):
    srv = serve(Canvas({"add": add, "evil": evil}, name="calc", html="<p>view</p>"))
    p = srv.port
    assert repr(CanvasPreview("calc", srv)) == (
        f"Canvas 'calc' on http://127.0.0.1:{p}/ (2 functions)\n"
        f"  add(x: int = 1, y: int = 2)\n"
        f"    GET http://127.0.0.1:{p}/add?kwargs={{...}}   WS ws://127.0.0.1:{p}/add/ws\n"
        f"  evil(what: str = '<img src=x onerror=alert(2)>')\n"
        f"    GET http://127.0.0.1:{p}/evil?kwargs={{...}}   WS ws://127.0.0.1:{p}/evil/ws\n"
        f"  view: http://127.0.0.1:{p}/"
    )


def test_the_listed_urls_answer(serve, clean_env):
    srv = serve(Canvas({"add": add}))
    ((fn, http_url, ws_url),) = CanvasPreview("default", srv).rows()
    assert requests.get(http_url, params={"kwargs": '{"x": 5}'}, timeout=TIMEOUT).json() == {"result": 7}
    ws = websocket.create_connection(ws_url, timeout=TIMEOUT)
    try:
        ws.send('{"y": 5}')
        assert json.loads(ws.recv()) == {"result": 6}
    finally:
        ws.close()


def test_status_table_escapes_user_data(serve, clean_env):
    srv = serve(Canvas({"evil": evil}, name=EVIL_NAME))
    reply = requests.get(f"http://127.0.0.1:{srv.port}/evil", timeout=TIMEOUT)
    assert reply.status_code == 500
    table = StatusTable({EVIL_NAME: srv})
    page = table._repr_html_()
    for raw in ("<b>bold</b>", "<img", "<i>", " & co"):
        assert raw not in page
    assert html.escape("evil: ValueError: bad <i><img src=x onerror=alert(2)></i>") in page
    assert html.escape(EVIL_NAME) in page
    assert repr(table) == (
        f"{EVIL_NAME}  port {srv.port}  http://127.0.0.1:{srv.port}/\n"
        "  evil: 1 calls, 1 errors\n"
        "  last error: evil: ValueError: bad <i><img src=x onerror=alert(2)></i>"
    )


def test_status_table_with_nothing_served():
    table = StatusTable({})
    assert repr(table) == "No canvases are served."
    assert table._repr_html_() == "<p>No canvases are served.</p>"


def test_list_table_has_no_call_columns(serve, clean_env):
    srv = serve(Canvas({"add": add, "evil": evil}))
    table = StatusTable({"default": srv}, detail=False)
    assert repr(table) == f"default  port {srv.port}  http://127.0.0.1:{srv.port}/\n  functions: add, evil"
    assert "<th>calls</th>" not in table._repr_html_()
    assert "<th>calls</th>" in StatusTable({"default": srv})._repr_html_()


# -- URLs -----------------------------------------------------------------------------------


def test_loopback_urls_carry_no_token(serve, clean_env):
    srv = serve(Canvas({"add": add}), token="t0k")
    assert canvas_urls(srv) == {
        "base": f"http://127.0.0.1:{srv.port}/",
        "view": f"http://127.0.0.1:{srv.port}/",
        "ws_base": f"ws://127.0.0.1:{srv.port}/",
    }


@pytest.mark.parametrize("prefix", ["/user/x/", "/user/x"])
def test_jupyterhub_urls_go_through_the_proxy_with_the_token(serve, monkeypatch, prefix):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", prefix)
    srv = serve(Canvas({"add": add}), token="t0k")
    base = f"/user/x/proxy/{srv.port}/"
    assert canvas_urls(srv) == {"base": base, "view": base + "?token=t0k", "ws_base": base}
    assert repr(CanvasPreview("default", srv)) == (
        f"Canvas 'default' on {base}?token=t0k (1 function)\n"
        f"  add(x: int = 1, y: int = 2)\n"
        f"    GET {base}add?kwargs={{...}}   WS {base}add/ws"
    )


@pytest.mark.parametrize(
    "pattern, base, ws_base",
    [
        (
            "https://hub.example.org/user/me/proxy/{port}/",
            "https://hub.example.org/user/me/proxy/{port}/",
            "wss://hub.example.org/user/me/proxy/{port}/",
        ),
        (
            "https://hub.example.org/user/me/proxy/{port}",
            "https://hub.example.org/user/me/proxy/{port}/",
            "wss://hub.example.org/user/me/proxy/{port}/",
        ),
        ("http://{host}:{port}/c/{canvas}", "http://127.0.0.1:{port}/c/sales/", "ws://127.0.0.1:{port}/c/sales/"),
        ("/proxy/{port}/", "/proxy/{port}/", "/proxy/{port}/"),
    ],
)
def test_url_pattern(serve, clean_env, pattern, base, ws_base):
    srv = serve(Canvas({"add": add}, name="sales"), token="t0k")
    base, ws_base = base.format(port=srv.port), ws_base.format(port=srv.port)
    assert canvas_urls(srv, pattern) == {"base": base, "view": base + "?token=t0k", "ws_base": ws_base}


def test_url_pattern_wins_over_jupyterhub(serve, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/x/")
    srv = serve(Canvas({"add": add}), token="t0k")
    assert canvas_urls(srv, "https://lab.example/{port}/")["base"] == f"https://lab.example/{srv.port}/"


# -- the proxied request, end to end ------------------------------------------------------------


@pytest.fixture
def hub_canvas(shell, monkeypatch):
    """A canvas served by the magics inside "JupyterHub": ``(port, view path, token)``."""
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/x/")
    shell.run_line_magic("load_ext", "livepandas")
    canvas(shell, "", "def livepandas_add(x: int = 1, y: int = 2):\n    return x + y\n")
    captured = canvas(shell, "--view", "<p>the view</p>")
    port = server(shell).port
    first_line = captured.outputs[0].data["text/plain"].splitlines()[0]
    match = re.fullmatch(r"Canvas 'default' on (/user/x/proxy/(\d+)/\?token=([\w-]+)) \(1 function\)", first_line)
    assert match, first_line
    assert int(match.group(2)) == port
    assert f'<iframe src="{html.escape(match.group(1))}"' in captured.outputs[0].data["text/html"]
    return port, match.group(1), match.group(3)


def proxied(port, path, **kwargs):
    """What jupyter-server-proxy sends for ``https://hub.example.org/user/x/proxy/<port>/<path>``.

    It strips the prefix and forwards the browser's headers unchanged, the public Host included.
    """
    headers = {"Host": "hub.example.org", **kwargs.pop("headers", {})}
    return requests.get(f"http://127.0.0.1:{port}/{path}", headers=headers, timeout=TIMEOUT, **kwargs)


def test_proxied_view_with_the_token_passes_and_sets_a_cookie(hub_canvas):
    port, view, token = hub_canvas
    path = view.split(f"/proxy/{port}/", 1)[1]
    assert path == f"?token={token}"
    reply = proxied(port, path)
    assert reply.status_code == 200
    assert reply.text == "<p>the view</p>"
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith(f"livepandas-token-{port}={token};")
    assert "HttpOnly" in cookie

    # The page's own calls then carry the cookie instead of the token.
    name, value = cookie.split(";", 1)[0].split("=", 1)
    called = proxied(port, "add", params={"kwargs": '{"x": 40}'}, headers={"Cookie": f"{name}={value}"})
    assert called.status_code == 200, called.text
    assert called.json() == {"result": 42}


@pytest.mark.parametrize("path", ["", "add", "_functions", "livepandas.js", "?token=wrong"])
def test_proxied_request_without_the_token_is_refused(hub_canvas, path):
    port, _, _ = hub_canvas
    reply = proxied(port, path)
    assert reply.status_code == 403
    assert reply.json()["type"] == "Forbidden"
    assert "hub.example.org" in reply.json()["exception"]
    assert "Set-Cookie" not in reply.headers


def test_loopback_requests_need_no_token(hub_canvas):
    port, _, _ = hub_canvas
    assert requests.get(f"http://127.0.0.1:{port}/add", timeout=TIMEOUT).json() == {"result": 3}
