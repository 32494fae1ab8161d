"""The examples' views in a real Chromium: what a user sees, over HTTP and WebSocket.

Each test serves an example with the real ``livepandas`` command (see ``conftest.py``) and
drives the page with Playwright; waits are Playwright's auto-waiting ``expect``, never sleeps.
"""

import http.server
import json
import runpy
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _path(url):
    return urlsplit(url).path


def _kwargs(url):
    """The decoded ``?kwargs=`` object of a call URL (None without one)."""
    raw = parse_qs(urlsplit(url).query).get("kwargs")
    return json.loads(raw[-1]) if raw else None


def _is_call(response, name, kwargs):
    return _path(response.url) == f"/{name}" and _kwargs(response.url) == kwargs


# -- 1. hello: HTTP and WebSocket results -----------------------------------------------------------


def test_hello_adds_over_http_and_websocket(page, hello_server):
    with page.expect_websocket() as socket_info:
        page.goto(hello_server.url)
    socket = socket_info.value
    assert socket.url == hello_server.url.replace("http://", "ws://") + "add/ws"
    frames_sent, frames_received = [], []
    socket.on("framesent", lambda payload: frames_sent.append(json.loads(payload)))
    socket.on("framereceived", lambda payload: frames_received.append(json.loads(payload)))

    # The view computes the defaults (1 + 2) on load, both ways.
    expect(page.locator("#result")).to_have_text("Result: 3")
    expect(page.locator("#ws-result")).to_have_text("WebSocket result: 3")

    x, y = page.get_by_label("x", exact=True), page.get_by_label("y", exact=True)
    with (
        socket.expect_event("framereceived", lambda payload: json.loads(payload) == {"result": 42}),
        page.expect_response(lambda r: _is_call(r, "add", {"x": 40, "y": 2})) as response_info,
    ):
        x.fill("40")
        y.fill("2")
    expect(page.locator("#result")).to_have_text("Result: 42")
    expect(page.locator("#ws-result")).to_have_text("WebSocket result: 42")

    # The HTTP result came from a GET /add ...
    response = response_info.value
    assert response.request.method == "GET"
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"result": 42}
    # ... and the WebSocket one over the socket: the same kwargs went out as a message.
    assert {"x": 40, "y": 2} in frames_sent
    assert {"result": 42} in frames_received

    # Change again: both results follow.
    with page.expect_response(lambda r: _is_call(r, "add", {"x": 0.5, "y": -3})):
        x.fill("0.5")
        y.fill("-3")
    expect(page.locator("#result")).to_have_text("Result: -2.5")
    expect(page.locator("#ws-result")).to_have_text("WebSocket result: -2.5")
    assert {"x": 0.5, "y": -3} in frames_sent
    expect(page.locator("#error")).to_have_text("")


# -- 2. streaming: partial results arrive one by one -------------------------------------------------

# Records the page's state each time the log or the status changes (MutationObserver callbacks run
# once per task, so chunks that arrive separately give separate snapshots); ``window.firstStep``
# resolves with the state when the first step is listed. Installed before the click, so a slow
# round trip between Playwright and the page can't make the test miss the intermediate states.
_RECORD_STATES = """() => {
  window.snapshots = [];
  let firstStep;
  window.firstStep = new Promise((resolve) => { firstStep = resolve; });
  const snap = () => {
    const state = {
      items: document.querySelectorAll("#log li").length,
      status: document.getElementById("status").textContent,
      bar: document.getElementById("bar").value,
    };
    window.snapshots.push(state);
    if (state.items > 0) firstStep(state);
  };
  if (window.observer) window.observer.disconnect();
  window.observer = new MutationObserver(snap);
  for (const id of ["log", "status"])
    window.observer.observe(document.getElementById(id), {childList: true, subtree: true, characterData: true});
}"""


def _run_and_check_stream(page, button, label):
    running = f"Running over {label}…"
    page.evaluate(_RECORD_STATES)
    page.get_by_role("button", name=button).click()
    # The page's state when the first step showed up: still running, not all steps listed.
    midway = page.evaluate("window.firstStep")
    assert midway["status"] == running
    assert 1 <= midway["items"] < 10
    assert midway["bar"] == 10 * midway["items"]
    # The final state.
    expect(page.locator("#status")).to_have_text("done 10 steps")
    expect(page.locator("#log li")).to_have_text([f"step {i} of 10" for i in range(1, 11)])
    expect(page.locator("#percent")).to_have_text("100%")
    expect(page.locator("#bar")).to_have_js_property("value", 100)

    # Every change on the way: the list grew while the status said "Running", then "done".
    snapshots = page.evaluate("window.snapshots")
    started = next(i for i, s in enumerate(snapshots) if s["status"] == running)
    growing = [s for s in snapshots[started:] if s["items"] > 0]
    assert growing[-1] == {"items": 10, "status": "done 10 steps", "bar": 100}
    during = [s for s in growing if s["status"] == running]
    assert [s["items"] for s in during] == sorted(s["items"] for s in during)
    assert all(s["bar"] == 10 * s["items"] for s in during), during
    assert any(s["items"] < 10 for s in during), f"no intermediate state recorded: {snapshots}"
    assert all(s["status"] in (running, "done 10 steps") for s in snapshots[started:]), snapshots


def test_streaming_fills_step_by_step_over_http(page, streaming_server):
    page.goto(streaming_server.url)
    expect(page.locator("#status")).to_have_text("Idle")
    with page.expect_response(lambda r: _path(r.url) == "/progress") as response_info:
        _run_and_check_stream(page, "Run over HTTP", "HTTP")
    response = response_info.value
    assert response.request.method == "GET"
    assert response.headers["content-type"] == "application/x-ndjson"
    assert _kwargs(response.url) == {"steps": 10, "delay": 0.05}


def test_streaming_fills_step_by_step_over_websocket(page, streaming_server):
    with page.expect_websocket() as socket_info:
        page.goto(streaming_server.url)
    socket = socket_info.value
    received = []
    socket.on("framereceived", lambda payload: received.append(json.loads(payload)))
    expect(page.locator("#status")).to_have_text("Idle")
    _run_and_check_stream(page, "Run over WebSocket", "WebSocket")
    assert received == [{"partial": {"step": i, "of": 10, "percent": 10 * i}} for i in range(1, 11)] + [
        {"result": "done 10 steps", "done": True}
    ]

    # Run again on the same socket, with another step count.
    page.get_by_label("Steps").fill("4")
    page.get_by_role("button", name="Run over WebSocket").click()
    expect(page.locator("#status")).to_have_text("done 4 steps")
    expect(page.locator("#log li")).to_have_text([f"step {i} of 4" for i in range(1, 5)])


# -- 3. dataframe: server-filled select, filtering, summary, static stylesheet ----------------------


@pytest.fixture(scope="module")
def sales():
    """The dataframe example's functions, run here as the oracle for what the page must show."""
    return runpy.run_path(str(EXAMPLES / "dataframe" / "code.py"))


def _summary_lines(series):
    return [f"{city} {value:.2f}" for city, value in series.items()]


def test_dataframe_filters_live(page, dataframe_server, sales):
    with page.expect_response(lambda r: _path(r.url) == "/static/style.css") as css_info:
        page.goto(dataframe_server.url)
    assert css_info.value.status == 200
    assert css_info.value.headers["content-type"].startswith("text/css")

    cities = sales["livepandas_cities"]()
    assert len(cities) == 5
    city_select = page.locator("select[name=city]")
    expect(city_select.locator("option")).to_have_text(["all", *cities])

    rows = page.locator("#rows tbody tr")
    city_cells = page.locator("#rows tbody td:nth-child(1)")
    units_cells = page.locator("#rows tbody td:nth-child(2)")
    count = page.locator("#count")
    summary = page.locator("#summary > div")

    # All cities, no minimum.
    expect(page.locator("#rows thead th")).to_have_text(["city", "units", "price", "day", "revenue"])
    expected = sales["livepandas_filter"]()
    expect(rows).to_have_count(len(expected))
    expect(count).to_have_text(str(len(expected)))
    expect(city_cells).to_have_text(list(expected["city"]))
    expect(summary).to_have_text(_summary_lines(sales["livepandas_summary"]()))
    # The stylesheet applies.
    expect(page.locator("#rows th").first).to_have_css("background-color", "rgb(243, 243, 243)")

    # One city: only its rows.
    city_select.select_option("Lisbon")
    expected = sales["livepandas_filter"]("Lisbon")
    expect(city_cells).to_have_text(["Lisbon"] * len(expected))
    expect(units_cells).to_have_text([str(u) for u in expected["units"]])
    expect(count).to_have_text(str(len(expected)))

    # A minimum number of units: fewer rows, a smaller summary.
    page.get_by_label("Minimum units").fill("90")
    expected = sales["livepandas_filter"]("Lisbon", 90)
    assert 0 < len(expected) < 20
    expect(count).to_have_text(str(len(expected)))
    expect(city_cells).to_have_text(["Lisbon"] * len(expected))
    expect(units_cells).to_have_text([str(u) for u in expected["units"]])
    expect(summary).to_have_text(_summary_lines(sales["livepandas_summary"](90)))

    # Back to all cities, still at least 90 units.
    city_select.select_option(label="all")
    expected = sales["livepandas_filter"]("", 90)
    expect(count).to_have_text(str(len(expected)))
    expect(city_cells).to_have_text(list(expected["city"]))
    assert len(set(expected["city"])) > 1


# -- 4. the generated page of a canvas without a view -----------------------------------------------


def test_generated_page_has_a_form_per_function(page, seed_server):
    page.goto(seed_server.url)
    expect(page).to_have_title("livepandas: code")
    expect(page.locator("form[data-function] h2")).to_have_text(["addition(x, y)", "subtract(x, y)"])

    addition = page.locator("form[data-function=addition]")
    addition.locator("input[name=x]").fill("1")
    addition.locator("input[name=y]").fill("2")
    with page.expect_response(lambda r: _is_call(r, "addition", {"x": 1, "y": 2})) as response_info:
        addition.get_by_role("button", name="Call addition").click()
    expect(addition.locator("pre")).to_have_text("3")
    expect(addition.locator("pre")).not_to_have_class("error")
    assert response_info.value.json() == {"result": 3}

    # JSON values: strings concatenate.
    addition.locator("input[name=x]").fill('"live"')
    addition.locator("input[name=y]").fill('"pandas"')
    addition.get_by_role("button", name="Call addition").click()
    expect(addition.locator("pre")).to_have_text('"livepandas"')

    # The README's typo: the error is shown, as an error.
    subtract = page.locator("form[data-function=subtract]")
    subtract.locator("input[name=x]").fill("5")
    subtract.locator("input[name=y]").fill("3")
    subtract.get_by_role("button", name="Call subtract").click()
    expect(subtract.locator("pre")).to_have_text("NameError: name 'substract' is not defined")
    expect(subtract.locator("pre")).to_have_class("error")

    # Bad JSON never reaches the server.
    subtract.locator("input[name=x]").fill("{oops")
    subtract.get_by_role("button", name="Call subtract").click()
    expect(subtract.locator("pre")).to_have_text(
        "Bad JSON: Expected property name or '}' in JSON at position 1 (line 1 column 2)"
    )


# -- 5. the client's error path and helpers ----------------------------------------------------------


def test_client_errors_and_rows(page, hello_server):
    page.goto(hello_server.url)
    expect(page.locator("#ws-result")).to_have_text("WebSocket result: 3")

    error = page.evaluate(
        """() => livepandas.call("nope", {}).then(
             (result) => ({resolved: result}),
             (err) => ({isError: err instanceof Error, type: err.type, status: err.status, message: err.message}))"""
    )
    assert error == {
        "isError": True,
        "type": "FunctionNotFound",
        "status": 404,
        "message": error["message"],
    }
    assert "nope" in error["message"]

    # The same over a WebSocket: the handshake is refused, the call rejects.
    error = page.evaluate(
        """() => livepandas.socket("nope").call({}).then(
             (result) => ({resolved: result}), (err) => ({message: err.message, type: err.type}))"""
    )
    assert error == {"message": "WebSocket to nope failed", "type": "ConnectionError"}

    # Bad arguments: a 400 with the server's message.
    error = page.evaluate(
        """() => livepandas.call("add", {z: 1}).then(
             (result) => ({resolved: result}), (err) => ({type: err.type, status: err.status}))"""
    )
    assert error == {"type": "BadArguments", "status": 400}

    # A call on a socket that has been closed rejects instead of hanging.
    error = page.evaluate(
        """async () => {
             const socket = livepandas.socket("add");
             const first = await socket.call({x: 1, y: 1});
             socket.close();
             await new Promise((resolve) => socket.ws.addEventListener("close", resolve));
             return socket.call({x: 2, y: 2}).then(
               (result) => ({first, resolved: result}), (err) => ({first, message: err.message, type: err.type}));
           }"""
    )
    assert error == {"first": 2, "message": "WebSocket closed", "type": "ConnectionError"}

    # A server that can't be reached at all: a ConnectionError, status 0, for calls and streams.
    hello_server.stop()
    for method in ("call", "stream"):
        error = page.evaluate(
            f"""() => livepandas.{method}("add", {{x: 1, y: 2}}).then(
                 (result) => ({{resolved: result}}), (err) => ({{type: err.type, status: err.status}}))"""
        )
        assert error == {"type": "ConnectionError", "status": 0}

    frame = {"columns": ["city", "units"], "index": [10, 11, 12], "data": [["Lisbon", "Osaka", "Lisbon"], [3, 5, 8]]}
    assert page.evaluate("(frame) => livepandas.rows(frame)", frame) == [
        {"city": "Lisbon", "units": 3},
        {"city": "Osaka", "units": 5},
        {"city": "Lisbon", "units": 8},
    ]
    assert page.evaluate("livepandas.rows({columns: ['a'], index: [], data: [[]]})") == []


# -- 6. cross-site calls are refused ------------------------------------------------------------------

# A page on another site calling the function server: fetch (CORS and no-cors) and a WebSocket.
_HOSTILE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hostile</title></head>
<body>
<p id="fetch">…</p><p id="no-cors">…</p><p id="ws">…</p>
<script>
  const target = %(target)s;
  const call = target + "add?kwargs=" + encodeURIComponent(JSON.stringify({x: 40, y: 2}));
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  fetch(call).then((r) => r.text().then((t) => show("fetch", "read " + r.status + " " + t)),
                   (e) => show("fetch", "failed: " + e.name));
  fetch(call, {mode: "no-cors"}).then((r) => show("no-cors", "sent: " + r.type + " " + r.status),
                                      (e) => show("no-cors", "failed: " + e.name));
  const ws = new WebSocket(target.replace(/^http/, "ws") + "add/ws");
  let opened = false;
  ws.onopen = () => { opened = true; ws.send(JSON.stringify({x: 40, y: 2})); };
  ws.onmessage = (e) => show("ws", "message: " + e.data);
  ws.onclose = (e) => { if (!opened) show("ws", "refused: " + e.code); };
</script>
</body></html>
"""


@pytest.fixture
def hostile_site():
    """Factory: serve ``_HOSTILE`` aimed at *target* from another site; returns its URL.

    It listens on 127.0.0.1 but is opened as ``http://localhost:<port>/``: a different site (and
    origin) from ``http://127.0.0.1:<port>/``, while both stay on loopback, so Chromium's Private
    Network Access rules don't apply.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = (_HOSTILE % {"target": json.dumps(self.server.target)}).encode()
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = []

    def start(target):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.target = target
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://localhost:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def _call_lines(log):
    """``(status, path)`` of each function call in a ``-v`` server's request log."""
    calls = []
    for line in log.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[2].startswith("/add"):
            calls.append((int(parts[0]), parts[2].split("?")[0]))
    return calls


def test_cross_site_calls_are_refused(page, live_server, hostile_site):
    server = live_server("hello", verbose=True)
    hostile = hostile_site(server.url)
    assert urlsplit(hostile).hostname == "localhost" and urlsplit(server.url).hostname == "127.0.0.1"

    responses, sockets, socket_errors = [], [], []

    def on_response(response):
        if _path(response.url) == "/add":
            responses.append(response)

    page.on("response", on_response)

    def on_socket(socket):
        sockets.append(socket)
        socket.on("socketerror", lambda error: socket_errors.append(error))

    page.on("websocket", on_socket)
    page.goto(hostile)

    # In the page: the CORS fetch fails, the no-cors one is opaque, the WebSocket never opens.
    expect(page.locator("#fetch")).to_have_text("failed: TypeError")
    expect(page.locator("#no-cors")).to_have_text("sent: opaque 0")
    expect(page.locator("#ws")).to_have_text("refused: 1006")
    # On the wire: the server answered 403. That matters: CORS only hides a response from the page,
    # and a no-cors GET is sent all the same, so without the server's refusal the call would run.
    # (Playwright sees the no-cors request's response; Chromium reports the CORS one as failed.)
    assert responses and {r.status for r in responses} == {403}
    assert [s.url for s in sockets] == [server.url.replace("http://", "ws://") + "add/ws"]
    assert sockets[0].is_closed()
    assert socket_errors == ["Error during WebSocket handshake: Unexpected response code: 403"]
    page.remove_listener("websocket", on_socket)
    page.remove_listener("response", on_response)

    # The same calls from the view's own origin succeed.
    page.goto(server.url)
    expect(page.locator("#result")).to_have_text("Result: 3")
    expect(page.locator("#ws-result")).to_have_text("WebSocket result: 3")
    own = page.evaluate(
        """async () => {
             const fetched = await (await fetch("add?kwargs=" + encodeURIComponent('{"x": 40, "y": 2}'))).json();
             const socketed = await livepandas.socket("add").call({x: 40, y: 2});
             return {fetched, socketed};
           }"""
    )
    assert own == {"fetched": {"result": 42}, "socketed": 42}

    # The server's own log: the cross-site calls were refused before running, the others ran.
    assert server.stop() == 0
    calls = _call_lines(server.log())
    hostile_calls, own_calls = calls[:3], calls[3:]
    assert sorted(hostile_calls) == [(403, "/add"), (403, "/add"), (403, "/add/ws")], calls
    assert sorted(own_calls) == [(101, "/add/ws"), (101, "/add/ws"), (200, "/add"), (200, "/add")], calls
