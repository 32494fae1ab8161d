"""Load, in CI-sized doses: every call answered, no memory growth, nothing leaked.

The full sizes (64 connections for 60 s, 100,000 calls, 50 hub loops for 60 s) are run by
``benchmarks/reliability.py``, which writes the figures to ``docs/reliability.md``; these tests
run the same kinds of load for a few seconds and assert only on outcomes, never on speed:

- a ``livepandas`` process (the real CLI) under 64 keep-alive HTTP connections and under 200
  WebSockets answers every call with ``{"result": 3}``;
- its resident memory after 12,000 more calls is within 2 MiB of what it was after the first
  4,000 (it grows by about 0.02 MiB; keeping 256 bytes per call would add 3.5 MiB);
- a hub under concurrent create / poll / call / delete session loops answers no 5xx, and once
  the loops end it has no more processes and no more open file descriptors than before.

The load generator is ``benchmarks/loadgen.py`` in its own process, on loopback only.
"""

import itertools
import json
import threading
import time
from collections import Counter

import psutil
import pytest
import requests
from hub.conftest import wait_until

from .support import TIMEOUT, loadgen, start_cli

CANVAS = """\
import gc
import os


def livepandas_add(x=1, y=2):
    return x + y


def livepandas_collect():
    gc.collect()
    return os.getpid()
"""

ADD = "/add?kwargs=%7B%22x%22%3A1%2C%22y%22%3A2%7D"
MESSAGE = '{"x":1,"y":2}'
EXPECTED = {"result": 3}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``livepandas -P canvas.py --port 0`` process: ``(port, pid)``."""
    proc, port = start_cli(tmp_path_factory.mktemp("load"), CANVAS)
    try:
        yield port, proc.pid
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err


def collected_rss(port, pid):
    """The server process's resident memory right after a ``gc.collect()`` in it."""
    r = requests.get(f"http://127.0.0.1:{port}/collect", timeout=TIMEOUT)
    assert r.json() == {"result": pid}
    return psutil.Process(pid).memory_info().rss


def assert_clean(result, calls=1):
    assert result["errors"] == 0, result
    assert result["requests"] >= calls, result
    assert json.loads(result["first_reply"]) == EXPECTED, result


def test_64_http_connections_all_answered(server):
    port, _ = server
    assert_clean(loadgen("http", port, ADD, connections=64, duration=3))


def test_200_websockets_all_answered(server):
    port, _ = server
    assert_clean(loadgen("ws", port, "/add/ws", connections=200, duration=2, message=MESSAGE), calls=200)


def test_memory_after_12000_more_calls_is_what_it_was_after_4000(server):
    port, pid = server

    def calls(n):
        # Half over HTTP, half over WebSockets; each run opens and closes its connections.
        assert_clean(loadgen("http", port, ADD, connections=16, duration=TIMEOUT, max_requests=n // 2))
        assert_clean(loadgen("ws", port, "/add/ws", connections=16, duration=TIMEOUT, max_requests=n // 2,
                             message=MESSAGE))

    calls(4000)
    before = collected_rss(port, pid)
    for _ in range(3):
        calls(4000)
    after = collected_rss(port, pid)
    assert after - before < 2 * MiB, f"{(after - before) / MiB:.2f} MiB more after 12,000 calls"


# -- the hub ------------------------------------------------------------------------------------

HUB_CANVAS = "def livepandas_add(x=1, y=2):\n    return x + y\n"


def session_loop(hub_url, canvas_id, more, statuses, failures):
    """Create a session, poll it until it runs, call its worker, delete it; while ``more()``."""
    api = hub_url + "api/v1/canvas_sessions/"
    with requests.Session() as http:
        while more():
            r = http.post(api, json={"canvas": canvas_id}, timeout=TIMEOUT)
            statuses[r.status_code] += 1
            if r.status_code != 201:
                failures.append(f"POST {r.status_code} {r.text[:200]}")
                continue
            session = r.json()
            while session["status"] == "starting":
                time.sleep(0.02)
                r = http.get(api + session["id"] + "/", timeout=TIMEOUT)
                statuses[r.status_code] += 1
                session = r.json()
            if session["status"] != "running":
                failures.append(f"session {session['status']}: {session['error']}")
            else:
                reply = http.get(f"http://{session['socket']}{ADD}", timeout=TIMEOUT)
                if reply.json() != EXPECTED:
                    failures.append(f"worker answered {reply.status_code} {reply.text[:200]}")
            r = http.delete(api + session["id"] + "/", timeout=TIMEOUT)
            statuses[r.status_code] += 1
            if r.status_code != 204:
                failures.append(f"DELETE {r.status_code} {r.text[:200]}")


@pytest.mark.parametrize("sessions", [None, 200], ids=["5s-of-loops", "200-sessions"])
def test_hub_session_loops_answer_no_5xx_and_leak_nothing(hub, sessions):
    """8 loops for 5 s, or until 200 sessions in all; then no process or descriptor left over."""
    warm = 2
    h = hub("--warm-pool-size", str(warm), users=["alice"])
    canvas = h.upload("alice", python=HUB_CANVAS)
    process = psutil.Process(h.pid)
    h.http.close()  # no keep-alive connection of ours among the hub's descriptors
    wait_until(lambda: len(h.worker_pids()) == warm, timeout=TIMEOUT, message="the warm pool")
    fds_before = process.num_fds()

    statuses, failures = Counter(), []
    if sessions is None:
        deadline = time.monotonic() + 5
        more = lambda: time.monotonic() < deadline  # noqa: E731
    else:
        started = itertools.count()
        more = lambda: next(started) < sessions  # noqa: E731 (atomic under the GIL)
    loops = [
        threading.Thread(target=session_loop, args=(h.url, canvas["id"], more, statuses, failures))
        for _ in range(8)
    ]
    for t in loops:
        t.start()
    for t in loops:
        t.join(TIMEOUT + 10)
    assert not any(t.is_alive() for t in loops)

    assert not [code for code in statuses if code >= 500], statuses
    assert not failures, failures[:5]
    assert statuses[201] >= 8 and statuses[204] == statuses[201], statuses
    if sessions is not None:
        assert statuses[201] == sessions, statuses
    # Back to the warm pool and the descriptors it started with.
    wait_until(
        lambda: len(h.worker_pids()) == warm and process.num_fds() <= fds_before,
        timeout=TIMEOUT,
        message=f"the hub back to {warm} workers and {fds_before} descriptors",
    )
    sessions = h.recorded_states()
    assert len(sessions) == statuses[201] and {status for status, _ in sessions} == {"stopped"}
