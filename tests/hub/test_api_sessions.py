"""The session API of a real hub with real worker processes, as the seed's browser code uses it."""

import json
import os
import signal
import time

import pytest
import requests
import websocket

from .conftest import alive, wait_until

SEED_ORIGIN = "http://seed-page.example"


@pytest.fixture(scope="module")
def canvas(shared_hub):
    return shared_hub.upload("alice", html="<h1>view</h1>", static={"s.txt": "c3RhdGlj"})


def worker_pid(session):
    return requests.get(f"http://{session['socket']}/pid", timeout=5).json()["result"]


def test_form_encoded_cross_origin_create_then_poll_then_websocket(shared_hub, canvas):
    # $.post(url, {canvas: id}) from another origin: a "simple" request, no preflight
    r = shared_hub.post(
        "api/v1/canvas_sessions/",
        data={"canvas": str(canvas["id"])},
        headers={"Origin": SEED_ORIGIN},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    session = r.json()
    assert set(session) >= {"id", "self", "canvas", "socket", "status", "expires_at"}
    assert len(session["id"]) >= 40
    assert session["canvas"] == canvas["id"]
    assert session["status"] in ("starting", "running")
    assert session["self"] == f"{shared_hub.url}api/v1/canvas_sessions/{session['id']}/"
    assert r.headers["Location"] == session["self"]

    # $.getJSON(session url) until socket is set
    polled = shared_hub.wait_running(session)
    assert polled["status"] == "running"
    host, port = polled["socket"].split(":")
    assert host == "127.0.0.1" and int(port) > 0

    # new WebSocket("ws://" + socket + "/add/ws") from the page's origin
    ws = websocket.create_connection(f"ws://{polled['socket']}/add/ws", timeout=5, origin=SEED_ORIGIN)
    try:
        ws.send(json.dumps({"x": 1, "y": 2}))
        assert json.loads(ws.recv()) == {"result": 3}
    finally:
        ws.close()
    # ...and plain HTTP calls, the view and static files, from any origin
    r = requests.get(
        f"http://{polled['socket']}/add",
        params={"kwargs": '{"x": 2, "y": 5}'},
        headers={"Origin": SEED_ORIGIN},
        timeout=5,
    )
    assert r.json() == {"result": 7}
    assert r.headers["Access-Control-Allow-Origin"] in ("*", SEED_ORIGIN)
    assert requests.get(f"http://{polled['socket']}/", timeout=5).text == "<h1>view</h1>"
    assert requests.get(f"http://{polled['socket']}/static/s.txt", timeout=5).text == "static"
    shared_hub.delete(session["self"].replace(shared_hub.url, ""))


def test_json_create_and_hyphenated_spelling(shared_hub, canvas):
    r = shared_hub.post("api/v1/canvas-sessions/", json={"canvas": canvas["id"]})
    assert r.status_code == 201, r.text
    session = r.json()
    got = shared_hub.get(f"api/v1/canvas-sessions/{session['id']}")  # no trailing slash either
    assert got.status_code == 200 and got.json()["id"] == session["id"]
    assert shared_hub.delete(f"api/v1/canvas-sessions/{session['id']}/").status_code == 204


def test_preflight_allows_json_posts_from_any_origin(shared_hub):
    r = shared_hub.request(
        "OPTIONS",
        "api/v1/canvas_sessions/",
        headers={
            "Origin": SEED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "content-type" in r.headers["Access-Control-Allow-Headers"].lower()
    preflight = {"Origin": SEED_ORIGIN, "Access-Control-Request-Method": "DELETE"}
    r = shared_hub.request("OPTIONS", "api/v1/canvas_sessions/abc/", headers=preflight)
    assert r.status_code == 204
    assert set(r.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "DELETE", "OPTIONS"}
    # errors carry CORS headers too, so a page can read them
    r = shared_hub.post("api/v1/canvas_sessions/", data={"canvas": "999999"}, headers={"Origin": SEED_ORIGIN})
    assert r.status_code == 404 and r.headers["Access-Control-Allow-Origin"] == "*"
    # the account APIs are not open to other origins
    r = shared_hub.request("OPTIONS", "api/v1/canvases/", headers={"Origin": SEED_ORIGIN})
    assert r.status_code == 405 and "Access-Control-Allow-Origin" not in r.headers


def test_get_refreshes_expiry_and_delete_stops_the_worker_at_once(shared_hub, canvas):
    session = shared_hub.wait_running(shared_hub.new_session(canvas["id"]))
    pid = worker_pid(session)
    path = f"api/v1/canvas_sessions/{session['id']}/"
    first = shared_hub.get(path).json()["expires_at"]
    time.sleep(0.01)
    assert shared_hub.get(path).json()["expires_at"] > first
    r = shared_hub.delete(path)
    assert r.status_code == 204
    assert not alive(pid)
    stopped = shared_hub.get(path).json()
    assert (stopped["status"], stopped["socket"]) == ("stopped", None)
    assert shared_hub.delete(path).status_code == 204  # idempotent


def test_session_errors(shared_hub):
    def error(r, status, fragment):
        assert r.status_code == status, r.text
        assert fragment in r.json()["message"]

    error(shared_hub.post("api/v1/canvas_sessions/", json={}), 400, "missing field 'canvas'")
    error(shared_hub.post("api/v1/canvas_sessions/"), 400, "missing field 'canvas'")
    error(shared_hub.post("api/v1/canvas_sessions/", json={"canvas": "abc"}), 400, "canvas id")
    error(shared_hub.post("api/v1/canvas_sessions/", json={"canvas": True}), 400, "canvas")
    error(shared_hub.post("api/v1/canvas_sessions/", json=[1]), 400, "JSON object")
    error(shared_hub.post("api/v1/canvas_sessions/", json={"canvas": 999999}), 404, "no canvas 999999")
    error(shared_hub.get("api/v1/canvas_sessions/not-a-session/"), 404, "no such session")
    error(shared_hub.delete("api/v1/canvas_sessions/not-a-session/"), 404, "no such session")
    error(shared_hub.request("PUT", "api/v1/canvas_sessions/x/", json={}), 405, "PUT")
    error(shared_hub.post("api/v1/canvas_sessions/", data=b"x" * 200_000), 413, "limit")


def test_canvas_that_fails_to_load_gives_a_failed_session(shared_hub):
    broken = shared_hub.upload("alice", python="import no_such_module_xyz\ndef livepandas_f():\n    return 1\n")
    session = shared_hub.new_session(broken["id"])
    path = f"api/v1/canvas_sessions/{session['id']}/"
    failed = wait_until(lambda: (m := shared_hub.get(path).json())["status"] != "starting" and m, message="failure")
    assert failed["status"] == "failed"
    assert failed["socket"] is None
    assert "no_such_module_xyz" in failed["error"]


def test_a_killed_worker_fails_its_session_and_a_new_session_works(shared_hub, canvas):
    session = shared_hub.wait_running(shared_hub.new_session(canvas["id"]))
    pid = worker_pid(session)
    os.kill(pid, signal.SIGKILL)
    path = f"api/v1/canvas_sessions/{session['id']}/"
    failed = wait_until(lambda: (m := shared_hub.get(path).json())["status"] == "failed" and m, message="failed")
    assert failed["socket"] is None
    assert "exited" in failed["error"]
    replacement = shared_hub.wait_running(shared_hub.new_session(canvas["id"]))
    assert worker_pid(replacement) != pid
    r = requests.get(f"http://{replacement['socket']}/add", params={"kwargs": '{"x": 1, "y": 1}'}, timeout=5)
    assert r.json() == {"result": 2}
    shared_hub.delete(f"api/v1/canvas_sessions/{replacement['id']}/")


def test_deleting_a_canvas_stops_its_sessions(shared_hub):
    model = shared_hub.upload("bob")
    session = shared_hub.wait_running(shared_hub.new_session(model["id"]))
    pid = worker_pid(session)
    assert shared_hub.delete(f"api/v1/canvases/{model['id']}/", user="bob").status_code == 204
    assert not alive(pid)
    got = shared_hub.get(f"api/v1/canvas_sessions/{session['id']}/").json()
    assert got["status"] == "stopped"
    assert shared_hub.post("api/v1/canvas_sessions/", json={"canvas": model["id"]}).status_code == 404


def test_sessions_expire_after_the_timeout_unless_active(hub):
    h = hub("--session-timeout", "2", "--warm-pool-size", "1", users=["alice"])
    model = h.upload("alice")
    idle = h.wait_running(h.new_session(model["id"]))
    busy = h.wait_running(h.new_session(model["id"]))
    idle_pid, busy_pid = worker_pid(idle), worker_pid(busy)

    # Calls on the busy session's worker count as activity; the idle one is left alone (a GET
    # would keep it alive, so watch its process instead).
    def idle_stopped():
        requests.get(f"http://{busy['socket']}/add", params={"kwargs": '{"x": 1, "y": 1}'}, timeout=5)
        return not alive(idle_pid)

    wait_until(idle_stopped, timeout=15, interval=0.2, message="the idle session to expire")
    idle_now = h.get(f"api/v1/canvas_sessions/{idle['id']}/").json()
    assert (idle_now["status"], idle_now["error"], idle_now["socket"]) == ("stopped", "expired", None)
    assert h.get(f"api/v1/canvas_sessions/{busy['id']}/").json()["status"] == "running"
    assert alive(busy_pid)
    # Without calls or polls, the busy one stops too.
    wait_until(lambda: not alive(busy_pid), timeout=15, message="the expired worker to stop")


def test_caps_answer_429_with_retry_after(hub):
    h = hub(
        "--LivePandasHub.max_sessions=2",
        "--LivePandasHub.max_sessions_per_canvas=1",
        "--warm-pool-size=1",
        users=["alice"],
    )
    one, two = h.upload("alice"), h.upload("alice")
    first = h.new_session(one["id"])
    r = h.post("api/v1/canvas_sessions/", json={"canvas": one["id"]}, headers={"Origin": SEED_ORIGIN})
    assert r.status_code == 429, r.text
    assert "canvas" in r.json()["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 301
    assert "Retry-After" in r.headers["Access-Control-Expose-Headers"]
    second = h.new_session(two["id"])
    r = h.post("api/v1/canvas_sessions/", data={"canvas": two["id"]})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # freeing a slot lets a new session in
    assert h.delete(f"api/v1/canvas_sessions/{first['id']}/").status_code == 204
    h.wait_running(h.new_session(one["id"]))
    h.delete(f"api/v1/canvas_sessions/{second['id']}/")


def test_stopped_sessions_are_forgotten_after_the_history(hub):
    h = hub("--LivePandasHub.session_history=0", "--session-timeout", "1", "--warm-pool-size", "0", users=["alice"])
    session = h.new_session(h.upload("alice")["id"])
    h.delete(f"api/v1/canvas_sessions/{session['id']}/")
    wait_until(
        lambda: h.get(f"api/v1/canvas_sessions/{session['id']}/").status_code == 404, message="the session forgotten"
    )


def test_session_ids_are_stored_hashed(shared_hub, canvas):
    session = shared_hub.new_session(canvas["id"])
    for name in ("hub.sqlite", "hub.sqlite-wal"):
        path = os.path.join(shared_hub.data_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                assert session["id"].encode() not in f.read()
    shared_hub.delete(f"api/v1/canvas_sessions/{session['id']}/")
