"""Who may call a function server: Host check, cross-site refusal, CORS and tokens (SPEC §2)."""

import json

import pytest
import requests
import websocket

from livepandas_ipython.canvas import Canvas

TIMEOUT = 30  # seconds; generous, only ever waited on, never asserted
EVIL = "https://evil.example"


@pytest.fixture
def canvas(tmp_path):
    (tmp_path / "a.txt").write_text("static A")
    return Canvas({"add": lambda x=1, y=2: x + y}, html="<p>view</p>", static_dir=str(tmp_path))


def get(server, path="add", **options):
    options.setdefault("timeout", TIMEOUT)
    return requests.get(f"http://127.0.0.1:{server.port}/{path}", **options)


def host_refused(host):
    return {
        "exception": f"Host {host!r} is not allowed; use localhost, add it to allow_hosts, "
        "or open the URL with the server's token",
        "type": "Forbidden",
    }


def cross_site_refused(origin):
    return {
        "exception": f"cross-site request from {origin} refused; add the origin to allow_origins to permit it",
        "type": "Forbidden",
    }


TOKEN_NEEDED = {"exception": "this server needs its token: add ?token=<token> to the URL", "type": "Forbidden"}


def ws_connect(server, name="add", path_query="", **options):
    url = f"ws://127.0.0.1:{server.port}/{name}/ws{path_query}"
    return websocket.create_connection(url, timeout=TIMEOUT, **options)


def ws_status(server, **options):
    """The HTTP status of a WebSocket handshake (101 when it succeeds)."""
    try:
        ws = ws_connect(server, **options)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code, json.loads(exc.resp_body)
    try:
        ws.send('{"x": 40}')
        return 101, json.loads(ws.recv())
    finally:
        ws.close()


# -- Host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.1.nip.io", "0.0.0.0"]
)
def test_foreign_host_is_403_json(serve, canvas, host):
    r = get(serve(canvas), headers={"Host": host})
    assert r.status_code == 403
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == host_refused(host)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:{port}",
        "127.0.0.1",
        "127.0.0.1:{port}",
        "127.1.2.3",
        "[::1]",
        "[::1]:{port}",
        "foo.localhost",
        "LocalHost.",
    ],
)
def test_loopback_hosts_pass(serve, canvas, host):
    server = serve(canvas)
    r = get(server, headers={"Host": host.format(port=server.port)})
    assert (r.status_code, r.json()) == (200, {"result": 3})


def test_allow_hosts(serve, canvas):
    server = serve(canvas, allow_hosts=["Notebook.Example"])
    for host in ("notebook.example", "notebook.example:8443", "localhost"):
        assert get(server, headers={"Host": host}).json() == {"result": 3}
    assert get(server, headers={"Host": "other.example"}).json() == host_refused("other.example")


def test_allow_any_host(serve, canvas):
    server = serve(canvas, allow_hosts=["*"])
    assert get(server, headers={"Host": "anything.example"}).json() == {"result": 3}


# -- cross-site ----------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [EVIL, "http://localhost:1", "null"])
def test_cross_site_origin_is_403(serve, canvas, origin):
    server = serve(canvas)
    for path in ("add", "_functions"):
        r = get(server, path, headers={"Origin": origin})
        assert (r.status_code, r.json()) == (403, cross_site_refused(origin))
        assert "Access-Control-Allow-Origin" not in r.headers


def test_same_origin_passes(serve, canvas):
    server = serve(canvas)
    r = get(server, headers={"Origin": f"http://127.0.0.1:{server.port}"})
    assert (r.status_code, r.json()) == (200, {"result": 3})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.post(
        f"http://localhost:{server.port}/add",
        json={"x": 2},
        headers={"Origin": f"http://localhost:{server.port}"},
        timeout=TIMEOUT,
    )
    assert (r.status_code, r.json()) == (200, {"result": 4})


def test_sec_fetch_site_cross_site_is_403(serve, canvas):
    server = serve(canvas)
    r = get(server, headers={"Sec-Fetch-Site": "cross-site"})
    assert (r.status_code, r.json()) == (403, cross_site_refused("another site"))
    for value in ("same-origin", "same-site", "none"):
        assert get(server, headers={"Sec-Fetch-Site": value}).json() == {"result": 3}


def test_allow_origins_echoes_cors_header(serve, canvas):
    server = serve(canvas, allow_origins=["https://app.example/"])
    r = get(server, headers={"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"})
    assert (r.status_code, r.json()) == (200, {"result": 3})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Vary"] == "Origin"
    r = get(server, headers={"Origin": EVIL})
    assert (r.status_code, r.json()) == (403, cross_site_refused(EVIL))
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_header_also_on_errors(serve, canvas):
    server = serve(canvas, allow_origins=["https://app.example"])
    r = get(server, "nope", headers={"Origin": "https://app.example"})
    assert r.status_code == 404
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_preflight(serve, canvas):
    server = serve(canvas, allow_origins=["https://app.example"])
    headers = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    r = requests.options(f"http://127.0.0.1:{server.port}/add", headers=headers, timeout=TIMEOUT)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    assert r.content == b""
    headers["Origin"] = EVIL
    r = requests.options(f"http://127.0.0.1:{server.port}/add", headers=headers, timeout=TIMEOUT)
    assert (r.status_code, r.json()) == (403, cross_site_refused(EVIL))


def test_allow_any_origin(serve, canvas):
    server = serve(canvas, allow_origins=["*"])
    r = get(server, headers={"Origin": EVIL})
    assert (r.status_code, r.json()) == (200, {"result": 3})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in r.headers
    # With a token (credentials in play) the origin is echoed instead of "*".
    server = serve(canvas, allow_origins=["*"], token="sekret")
    r = get(server, headers={"Origin": EVIL})
    assert r.headers["Access-Control-Allow-Origin"] == EVIL


@pytest.mark.parametrize("path, body", [("", b"<p>view</p>"), ("static/a.txt", b"static A")])
def test_views_skip_the_origin_check_not_the_host_check(serve, canvas, path, body):
    server = serve(canvas)
    r = get(server, path, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert (r.status_code, r.content) == (200, body)
    r = get(server, path, headers={"Host": "evil.example"})
    assert (r.status_code, r.json()) == (403, host_refused("evil.example"))


def test_client_script_skips_the_origin_check_not_the_host_check(serve, canvas):
    server = serve(canvas)
    r = get(server, "livepandas.js", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200 and b"root.livepandas" in r.content
    r = get(server, "livepandas.js", headers={"Host": "evil.example"})
    assert (r.status_code, r.json()) == (403, host_refused("evil.example"))


# -- tokens --------------------------------------------------------------------------------------


def test_token_admits_a_foreign_host_and_sets_a_cookie(serve, canvas):
    server = serve(canvas, token="sekret")
    proxied = {"Host": "hub.example"}
    assert get(server, headers=proxied).json() == host_refused("hub.example")
    r = get(server, "", params={"token": "sekret"}, headers=proxied)
    assert (r.status_code, r.text) == (200, "<p>view</p>")
    assert r.headers["Set-Cookie"] == f"livepandas-token-{server.port}=sekret; HttpOnly; SameSite=Lax"
    # The page's own later requests carry only the cookie.
    cookie = {f"livepandas-token-{server.port}": "sekret"}
    for path in ("livepandas.js", "static/a.txt", "_functions", "add"):
        r = get(server, path, headers=proxied, cookies=cookie)
        assert r.status_code == 200, (path, r.text)
        assert "Set-Cookie" not in r.headers
    assert get(server, headers=proxied, cookies=cookie).json() == {"result": 3}


def test_token_in_authorization_header(serve, canvas):
    server = serve(canvas, token="sekret")
    for value in ("token sekret", "Token sekret", "token  sekret "):
        r = get(server, headers={"Host": "hub.example", "Authorization": value})
        assert (r.status_code, r.json()) == (200, {"result": 3}), value
        assert "Set-Cookie" not in r.headers


@pytest.mark.parametrize(
    "how",
    [
        {"params": {"token": "wrong"}},
        {"headers": {"Authorization": "token wrong"}},
        {"headers": {"Authorization": "Bearer sekret"}},
        {"cookies": {"livepandas-token": "wrong"}},
    ],
)
def test_wrong_token_is_403(serve, canvas, how):
    server = serve(canvas, token="sekret")
    how.setdefault("headers", {})["Host"] = "hub.example"
    r = get(server, **how)
    assert (r.status_code, r.json()) == (403, host_refused("hub.example"))
    assert "Set-Cookie" not in r.headers


def test_token_does_not_lift_the_origin_check(serve, canvas):
    server = serve(canvas, token="sekret")
    r = get(server, params={"token": "sekret"}, headers={"Origin": EVIL})
    assert (r.status_code, r.json()) == (403, cross_site_refused(EVIL))


def test_binding_all_interfaces_requires_a_generated_token(serve, canvas):
    server = serve(canvas, host="0.0.0.0")
    token = server.security.token
    assert isinstance(token, str) and len(token) >= 32
    assert server.url.endswith(f":{server.port}/?token={token}")
    assert serve(canvas, host="0.0.0.0").security.token != token  # fresh per server
    for path in ("add", "_functions", "", "livepandas.js", "static/a.txt"):
        r = get(server, path)  # even from loopback
        assert (r.status_code, r.json()) == (403, TOKEN_NEEDED), path
    assert get(server, params={"token": "wrong"}).json() == TOKEN_NEEDED
    assert get(server, params={"token": token}).json() == {"result": 3}
    assert get(server, headers={"Authorization": f"token {token}"}).json() == {"result": 3}
    r = get(server, "", params={"token": token})
    assert (r.status_code, r.text) == (200, "<p>view</p>")
    cookie = {f"livepandas-token-{server.port}": token}
    assert get(server, "livepandas.js", cookies=cookie).status_code == 200
    assert get(server, cookies=cookie).json() == {"result": 3}


def test_binding_all_interfaces_with_a_given_token(serve, canvas):
    server = serve(canvas, host="0.0.0.0", token="chosen")
    assert get(server).json() == TOKEN_NEEDED
    assert get(server, params={"token": "chosen"}).json() == {"result": 3}


def test_token_false_turns_the_token_off(serve, canvas):
    server = serve(canvas, host="0.0.0.0", token=False)
    assert server.security.token is None
    assert "token" not in server.url
    r = get(server)
    assert (r.status_code, r.json()) == (200, {"result": 3})
    assert get(server, headers={"Host": "evil.example"}).json() == host_refused("evil.example")


# -- WebSocket -----------------------------------------------------------------------------------


def test_websocket_same_origin_passes(serve, canvas):
    server = serve(canvas)
    assert ws_status(server) == (101, {"result": 42})  # websocket-client sends the server's own origin
    assert ws_status(server, origin=f"http://127.0.0.1:{server.port}") == (101, {"result": 42})


def test_websocket_cross_site_origin_is_403(serve, canvas):
    server = serve(canvas)
    assert ws_status(server, origin=EVIL) == (403, cross_site_refused(EVIL))


def test_websocket_allowed_origin_passes(serve, canvas):
    server = serve(canvas, allow_origins=["https://app.example"])
    assert ws_status(server, origin="https://app.example") == (101, {"result": 42})
    assert ws_status(server, origin=EVIL) == (403, cross_site_refused(EVIL))


def test_websocket_foreign_host_is_403(serve, canvas):
    server = serve(canvas)
    status, body = ws_status(server, host="evil.example", suppress_origin=True)
    assert (status, body) == (403, host_refused("evil.example"))


def test_websocket_token(serve, canvas):
    server = serve(canvas, host="0.0.0.0")
    assert ws_status(server) == (403, TOKEN_NEEDED)
    assert ws_status(server, path_query=f"?token={server.security.token}") == (101, {"result": 42})
    assert ws_status(server, header=[f"Authorization: token {server.security.token}"]) == (101, {"result": 42})


def test_a_keep_alive_client_carries_on_after_a_refused_post(serve, canvas):
    """A refusal sent before the body is read closes the connection, and says so."""
    server = serve(canvas)
    base = f"http://127.0.0.1:{server.port}/add"
    with requests.Session() as session:
        refused = session.post(base, data='{"x": 1, "y": 2}', headers={"Origin": "http://evil.example"}, timeout=10)
        assert refused.status_code == 403
        assert refused.headers["Connection"] == "close"
        again = session.post(base, data='{"x": 1, "y": 2}', timeout=10)
        assert again.status_code == 200 and again.json() == {"result": 3}
