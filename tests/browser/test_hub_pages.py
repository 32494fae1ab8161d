"""The hub's web pages in a real Chromium: accounts and keys through the forms, a canvas's share
page running its view on a session, and the seed's page on another origin using the session API.

Hubs are real ``livepandas-hub`` child processes (the factory of ``tests/hub/conftest.py``);
waits are Playwright's auto-waiting ``expect`` or deadlines, never sleeps.
"""

import functools
import http.server
import json
import os
import threading

import pytest
import requests
from hub.conftest import ADD, _close_all, _make_factory, wait_until
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PASSWORD = "correct horse"
JQUERY = "/usr/share/javascript/jquery/jquery.js"  # Debian's libjs-jquery, when installed

VIEW = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="livepandas.js"></script></head>
<body>
<label>x <input id="x" value="1"></label>
<label>y <input id="y" value="2"></label>
<p id="sum">…</p>
<script>
function update() {
  var kwargs = {x: Number(document.getElementById("x").value), y: Number(document.getElementById("y").value)};
  livepandas.call("add", kwargs).then(function (result) {
    document.getElementById("sum").textContent = "Sum: " + result;
  }, function (err) {
    document.getElementById("sum").textContent = "Error: " + err.message;
  });
}
document.querySelectorAll("input").forEach(function (input) { input.addEventListener("input", update); });
update();
</script>
</body></html>
"""


@pytest.fixture
def hub(tmp_path_factory):
    """Factory of real hubs (see ``tests/hub/conftest.py``), stopped at teardown."""
    hubs = []
    yield _make_factory(tmp_path_factory, hubs)
    _close_all(hubs)


def session_model(h, session_id):
    return requests.get(f"{h.url}api/v1/canvas_sessions/{session_id}/", timeout=15).json()


# -- accounts and keys ----------------------------------------------------------------------------


def test_register_create_a_key_see_it_once_revoke_it(page, hub):
    h = hub("--warm-pool-size", "0")
    page.goto(h.url)
    page.get_by_role("link", name="Register").first.click()
    page.get_by_label("User name").fill("dora")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill("not the same")
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#error")).to_have_text("The two passwords differ.")
    expect(page.get_by_label("User name")).to_have_value("dora")

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    expect(page).to_have_url(h.url)
    expect(page.locator("#nav-user")).to_have_text("dora")
    expect(page.locator("#no-canvases")).to_be_visible()

    page.get_by_role("link", name="Profile", exact=True).click()
    expect(page.locator("#profile-name")).to_have_text("dora")
    expect(page.locator("#no-keys")).to_be_visible()
    page.get_by_label("Note").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_be_visible()
    key = page.locator("#new-key").inner_text()
    assert len(key) >= 40
    row = page.locator(f'tr[data-prefix="{key[:8]}"]')
    expect(row).to_contain_text("laptop")
    assert requests.get(h.url + "api/v1/user/", headers={"Authorization": f"APIKey dora:{key}"},
                        timeout=15).json()["name"] == "dora"

    # Shown once: the profile page lists the prefix only.
    page.goto(h.url + "profile")
    expect(row).to_be_visible()
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()

    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#no-keys")).to_be_visible()
    assert requests.get(h.url + "api/v1/user/", headers={"Authorization": f"APIKey dora:{key}"},
                        timeout=15).status_code == 401

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("navigation").get_by_role("link", name="Log in")).to_be_visible()
    page.goto(h.url + "profile")
    expect(page).to_have_url(h.url + "login?next=%2Fprofile")
    page.get_by_label("User name").fill("dora")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#error")).to_have_text("Invalid user name or password.")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(h.url + "profile")
    expect(page.locator("#profile-name")).to_have_text("dora")


# -- the share page --------------------------------------------------------------------------------


def test_share_page_runs_the_view_on_its_own_session(page, hub):
    h = hub("--warm-pool-size", "1", users=("alice",))
    canvas = h.upload("alice", name="Adder", html=VIEW)
    page.clock.install()  # real time flows; fast_forward() below skips to the keep-alive poll
    page.goto(f"{h.url}canvases/{canvas['id']}/")
    expect(page.locator("#canvas-name")).to_have_text("Adder")
    expect(page.locator("#functions")).to_contain_text("add(x, y)")
    expect(page.locator("#status")).to_have_text("Live")

    session_id = page.locator("#share").get_attribute("data-session")
    model = session_model(h, session_id)
    assert model["status"] == "running" and model["canvas"] == canvas["id"]
    assert page.locator("#view").get_attribute("src") == f"http://{model['socket']}/"

    # The view, served by the session's worker, computes live there.
    view = page.frame_locator("#view")
    expect(view.locator("#sum")).to_have_text("Sum: 3")
    view.locator("#x").fill("40")
    expect(view.locator("#sum")).to_have_text("Sum: 42")
    view.locator("#y").fill("0.5")
    expect(view.locator("#sum")).to_have_text("Sum: 40.5")

    # The page keeps its session alive about every minute.
    with page.expect_request(
        lambda r: r.method == "GET" and r.url.endswith(f"/api/v1/canvas_sessions/{session_id}/")
    ):
        page.clock.fast_forward(61_000)

    # Leaving the page deletes the session (a keepalive DELETE on pagehide).
    page.goto("about:blank")
    wait_until(lambda: session_model(h, session_id)["status"] == "stopped", 15, message="the session stopped")


def test_share_page_without_a_view_shows_the_generated_form(page, hub):
    h = hub("--warm-pool-size", "1", users=("alice",))
    canvas = h.upload("alice", name="Plain")
    page.goto(f"{h.url}canvases/{canvas['id']}/")
    view = page.frame_locator("#view")
    form = view.locator('form[data-function="add"]')
    form.locator('input[name="x"]').fill("20")
    form.locator('input[name="y"]').fill("22")
    form.get_by_role("button", name="Call add").click()
    expect(form.locator("pre")).to_have_text("42")


def test_share_page_says_why_there_is_no_session(page, hub):
    h = hub("--warm-pool-size", "0", "--max-sessions", "1", users=("alice",))
    canvas = h.upload("alice", name="Busy")
    taken = h.new_session(canvas["id"])
    page.goto(f"{h.url}canvases/{canvas['id']}/")
    expect(page.locator("#status")).to_contain_text("The hub is busy (too many sessions)")
    expect(page.locator("#view")).to_be_hidden()
    assert h.delete(f"api/v1/canvas_sessions/{taken['id']}/").status_code == 204

    # A canvas whose code fails in the worker: the session fails, and the page says so.
    python = "def livepandas_f():\n    return 1\n\nraise RuntimeError('boom at import')\n"
    broken = h.upload("alice", name="Broken", python=python)
    page.goto(f"{h.url}canvases/{broken['id']}/")
    expect(page.locator("#status")).to_contain_text("The session failed")
    expect(page.locator("#status")).to_contain_text("boom at import")

    page.goto(f"{h.url}canvases/424242/")
    expect(page.locator("#message")).to_have_text("There is no canvas 424242; it may have been deleted.")


# -- the seed's page, on another origin -------------------------------------------------------------

# The seed README's WebSocket example, with the hub's URL and the canvas id filled in. Its jQuery
# is the machine's own copy when there is one; without it, SHIM below stands in for the few
# jQuery calls the page makes ($.post sends exactly what jQuery sends: form-encoded, UTF-8).
# One change from the seed: the inputs are bound once the socket is open, so a fast typist (the
# test) never sends on a socket that is still connecting.
SEED_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="jquery.js"></script></head>
<body>
<input name="x" value="1"> <input name="y" value="2">
<h2 id="socket"></h2>
<h2 id="result"></h2>
<script>
window.hub = %(hub)s;
window.canvas_id = %(canvas)s;

function prepare_socket(websocket, name) {
  $('h2#socket').html('Using WebSocket: ' + websocket);
  var ws = new WebSocket("ws://" + websocket + "/" + name + "/ws");
  ws.onmessage = function (evt) {
    var data = JSON.parse(evt.data);
    if ('result' in data)
      $('h2#result').html("Result: " + data['result']);
  };
  ws.onopen = function () {
    $('h2#socket').html('Connected to: ' + websocket);
    $('input').on('change keydown keyup', function () {
      var x = parseInt($("input[name='x']").val(), 10);
      var y = parseInt($("input[name='y']").val(), 10);
      ws.send(JSON.stringify({x: x, y: y}));
    });
  };
}

function wait_for_socket() {
  var url = window.hub + 'api/v1/canvas_sessions/' + window.session_id + '/';
  $.getJSON(url, function (d, s, x) {
    if (d.socket != null) {
      prepare_socket(d.socket, 'add');
    } else {
      setTimeout(wait_for_socket, 1000);
    }
  });
}

$(document).ready(function () {
  var url = window.hub + 'api/v1/canvas_sessions/';
  $.post(url, {canvas: canvas_id}, function (d, s, x) {
    window.session_id = d.id;
    wait_for_socket();
  });
});
</script>
</body></html>
"""

SHIM = """/* Stand-in for the jQuery calls of the seed's page: $(fn), $(sel).html/val/on, $.post, $.getJSON. */
(function () {
  function request(method, url, body, done) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url);
    if (body !== null) xhr.setRequestHeader("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8");
    xhr.onload = function () { done(JSON.parse(xhr.responseText), "success", xhr); };
    xhr.send(body);
  }
  function form(data) {
    return Object.keys(data).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(data[k]).replace(/%20/g, "+");
    }).join("&");
  }
  window.$ = function (what) {
    if (typeof what === "function" || what === document) {
      return {ready: function (fn) { document.addEventListener("DOMContentLoaded", fn); }};
    }
    var nodes = Array.prototype.slice.call(document.querySelectorAll(what));
    return {
      html: function (text) { nodes.forEach(function (n) { n.innerHTML = text; }); },
      val: function () { return nodes[0].value; },
      on: function (events, fn) {
        events.split(" ").forEach(function (e) { nodes.forEach(function (n) { n.addEventListener(e, fn); }); });
      }
    };
  };
  $.post = function (url, data, done) { request("POST", url, form(data), done); };
  $.getJSON = function (url, done) { request("GET", url, null, done); };
})();
"""


@pytest.fixture
def other_origin(tmp_path):
    """Factory: ``other_origin({name: text})`` → the URL of a static server on another port."""
    servers = []

    def serve(files):
        root = tmp_path / f"site-{len(servers)}"
        root.mkdir()
        for name, text in files.items():
            (root / name).write_text(text, encoding="utf-8")

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_seed_page_on_another_origin_creates_a_session_and_uses_its_socket(page, hub, other_origin):
    h = hub("--warm-pool-size", "1", users=("alice",))
    canvas = h.upload("alice", python=ADD)
    if os.path.exists(JQUERY):
        with open(JQUERY, encoding="utf-8") as f:
            jquery = f.read()
    else:
        jquery = SHIM
    site = other_origin(
        {
            "seed.html": SEED_PAGE % {"hub": json.dumps(h.url), "canvas": canvas["id"]},
            "jquery.js": jquery,
        }
    )
    assert site.split(":")[2] != h.url.split(":")[2]  # another port: another origin

    with (
        page.expect_request(lambda r: r.method == "POST" and r.url == h.url + "api/v1/canvas_sessions/") as posted,
        page.expect_websocket() as socket_info,
    ):
        page.goto(site + "seed.html")
    request = posted.value
    headers = request.all_headers()
    assert headers["content-type"] == "application/x-www-form-urlencoded; charset=UTF-8"
    assert headers["origin"] == site.rstrip("/")
    assert request.post_data == f"canvas={canvas['id']}"
    socket = socket_info.value
    assert socket.url.endswith("/add/ws")

    expect(page.locator("h2#socket")).to_have_text(f"Connected to: {socket.url[5:-len('/add/ws')]}")
    x = page.locator("input[name='x']")
    x.fill("")
    x.press_sequentially("40")
    expect(page.locator("h2#result")).to_have_text("Result: 42")
    y = page.locator("input[name='y']")
    y.fill("")
    y.press_sequentially("20")
    expect(page.locator("h2#result")).to_have_text("Result: 60")
