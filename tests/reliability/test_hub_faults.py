"""Faults of the hub's processes: a worker killed mid-call, the hub killed with live sessions.

- A worker killed with SIGKILL while calls are in flight: the HTTP caller gets a connection
  error, the WebSocket closes, the session reports ``failed`` with an error, a new session works.
- The hub killed with SIGKILL while 20 sessions run and requests are arriving, then restarted on
  the same data directory: every user, key and canvas is intact (read back through the API),
  no worker of the killed hub is left alive, the database passes ``PRAGMA integrity_check``
  both right after the kill and once the new hub runs, and new sessions work.
"""

import concurrent.futures
import json
import os
import signal
import sqlite3
import threading

import psutil
import requests
import websocket
from hub.conftest import alive, wait_until

from .support import TIMEOUT

CANVAS = '''\
import os
import threading

_never = threading.Event()
_entered = []


def livepandas_add(x=1, y=2):
    return x + y


def livepandas_pid():
    return os.getpid()


def livepandas_entered():
    """How many calls of hang have started."""
    return len(_entered)


def livepandas_hang(tag=""):
    _entered.append(tag)
    _never.wait()
'''


def call(session, name, **kwargs):
    r = requests.get(f"http://{session['socket']}/{name}", params={"kwargs": json.dumps(kwargs)}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def processes_under(directory):
    """Pids of the processes whose working directory is *directory* or below it."""
    found = []
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd = proc.info["cwd"]
        if cwd and (cwd == directory or cwd.startswith(directory + os.sep)) and proc.info["status"] != "zombie":
            found.append(proc.pid)
    return found


def check_database(path):
    """``PRAGMA integrity_check`` and ``foreign_key_check`` of the hub's SQLite file."""
    conn = sqlite3.connect(path, timeout=TIMEOUT)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def test_a_worker_killed_mid_call_fails_its_calls_and_its_session(hub):
    h = hub("--warm-pool-size", "1", users=["alice"])
    canvas = h.upload("alice", python=CANVAS)
    session = h.wait_running(h.new_session(canvas["id"]))
    pid = call(session, "pid")

    outcome = {}

    def http_call():
        try:
            outcome["http"] = requests.get(f"http://{session['socket']}/hang", timeout=TIMEOUT)
        except requests.RequestException as exc:
            outcome["http"] = exc

    caller = threading.Thread(target=http_call)
    caller.start()
    ws = websocket.create_connection(f"ws://{session['socket']}/hang/ws", timeout=TIMEOUT)
    try:
        ws.send(json.dumps({"tag": "ws"}))
        wait_until(lambda: call(session, "entered") == 2, timeout=TIMEOUT, message="both calls to start")
        os.kill(pid, signal.SIGKILL)

        caller.join(TIMEOUT)
        assert not caller.is_alive()
        assert isinstance(outcome["http"], requests.ConnectionError), outcome["http"]
        try:
            reply = ws.recv()
        except (websocket.WebSocketException, OSError):
            reply = None
        assert not reply, reply  # closed, never a (fake) answer
        assert not ws.connected
    finally:
        ws.close()

    path = f"api/v1/canvas_sessions/{session['id']}/"
    failed = wait_until(lambda: (m := h.get(path).json())["status"] != "running" and m, message="the failure")
    assert (failed["status"], failed["socket"]) == ("failed", None), failed
    assert failed["error"] == f"the worker exited with status {-signal.SIGKILL}"
    try:
        requests.get(f"http://{session['socket']}/add", timeout=TIMEOUT)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("the dead worker's address still answers")

    replacement = h.wait_running(h.new_session(canvas["id"]))
    assert call(replacement, "pid") != pid
    assert call(replacement, "add", x=20, y=22) == 42
    assert h.delete(f"api/v1/canvas_sessions/{replacement['id']}/").status_code == 204


def test_hub_killed_with_20_live_sessions_restarts_with_everything_intact(hub):
    h = hub("--warm-pool-size", "2", users=["alice", "bob"])
    canvases = {
        "alice": [h.upload("alice", python=CANVAS, name="first"), h.upload("alice", html="<p>v</p>", name="second")],
        "bob": [h.upload("bob", python=CANVAS, static={"data/a.txt": "YQ=="}, name="third")],
    }
    second_key = h.post("api/v1/keys/", user="bob", json={"note": "second"}).json()["key"]
    revoked = h.post("api/v1/keys/", user="bob", json={"note": "revoked"}).json()
    assert h.delete(f"api/v1/keys/{revoked['prefix']}/", user="bob").status_code == 204
    sources = {c["id"]: h.get(f"api/v1/canvases/{c['id']}/", user=u).json() for u, cs in canvases.items() for c in cs}
    ids = [c["id"] for cs in canvases.values() for c in cs]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda i: h.new_session(ids[i % len(ids)]), range(20)))
        sessions = list(pool.map(h.wait_running, created))
    assert len({s["socket"] for s in sessions}) == 20
    workers = h.worker_pids()
    assert len(workers) >= 20
    assert {call(s, "pid") for s in sessions if s["canvas"] != canvases["alice"][1]["id"]} <= set(workers)

    # Keep the hub writing while it dies: sessions created and deleted, canvases uploaded.
    stop = threading.Event()

    def churn():
        user = "alice"
        while not stop.is_set():
            try:
                r = h.post("api/v1/canvas_sessions/", json={"canvas": ids[0]}, timeout=5)
                if r.status_code == 201:
                    h.delete(f"api/v1/canvas_sessions/{r.json()['id']}/", timeout=5)
                h.post("api/v1/canvases/", user=user, json={"python": CANVAS}, timeout=5)
            except requests.RequestException:
                pass  # the hub is gone: that is the point

    churners = [threading.Thread(target=churn) for _ in range(2)]
    for t in churners:
        t.start()
    try:
        wait_until(lambda: len(h.get("api/v1/canvases/", user="alice").json()) >= 4, message="uploads under way")
        workers = set(workers) | set(h.worker_pids())
        h.kill()
    finally:
        stop.set()
        for t in churners:
            t.join(TIMEOUT)
    # Orphans exit by themselves (their stdin closed); any the snapshot missed still run in the
    # hub's working directory or a canvas directory below it.
    home = os.path.dirname(h.data_dir)
    wait_until(
        lambda: not [pid for pid in workers if alive(pid)] and not processes_under(home),
        timeout=TIMEOUT,
        message="the killed hub's workers to exit",
    )
    database = os.path.join(h.data_dir, "hub.sqlite")
    check_database(database)

    h.restart()
    check_database(database)

    # Users and keys: the first keys, bob's second one; the revoked one stays revoked.
    assert h.get("api/v1/user/", user="alice").json()["name"] == "alice"
    assert h.get("api/v1/user/", user="bob").json()["name"] == "bob"
    assert h.get("api/v1/user/", headers={"Authorization": f"APIKey bob:{second_key}"}).json()["name"] == "bob"
    assert h.get("api/v1/user/", headers={"Authorization": f"APIKey bob:{revoked['key']}"}).status_code == 401
    # Canvases: each one as it was, whatever the churn added after them.
    for user, own in canvases.items():
        listed = [c["id"] for c in h.get("api/v1/canvases/", user=user).json()]
        assert listed[: len(own)] == [c["id"] for c in own]
        for canvas in own:
            got = h.get(f"api/v1/canvases/{canvas['id']}/", user=user).json()
            before = sources[canvas["id"]]
            for field in ("name", "owner", "functions", "python", "html", "static"):
                assert got[field] == before[field], field
    # The sessions of the killed hub are over; new ones work.
    for session in sessions:
        got = h.get(f"api/v1/canvas_sessions/{session['id']}/").json()
        assert (got["status"], got["socket"]) == ("stopped", None), got
    replacement = h.wait_running(h.new_session(canvases["bob"][0]["id"]))
    assert call(replacement, "add", x=1, y=1) == 2
    assert requests.get(f"http://{replacement['socket']}/static/data/a.txt", timeout=TIMEOUT).text == "a"
    check_database(database)
