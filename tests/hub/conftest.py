"""Fixtures for the hub: real ``livepandas-hub`` child processes on ``127.0.0.1:0``.

``hub(*args)`` starts ``python -m livepandas_ipython.hub --port 0 --data-dir <tmp>`` (plus
*args*), waits for its ``LIVEPANDAS_HUB_READY`` line and returns a :class:`Hub`; every hub is
stopped at teardown, and the test fails if one left a worker process behind. A child process
(rather than a hub on a thread) is what lets tests send it SIGTERM and SIGKILL and restart it
on the same data directory.

``shared_hub`` is one hub per test module (with users ``alice`` and ``bob``) for tests that
don't change its configuration.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

READY = "LIVEPANDAS_HUB_READY "
START_TIMEOUT = 20

ADD = textwrap.dedent(
    '''
    def livepandas_add(x, y):
        """Add two numbers."""
        return x + y

    def livepandas_pid():
        import os
        return os.getpid()

    def helper():
        return 1
    '''
)


def hub_command(*args):
    return [sys.executable, "-m", "livepandas_ipython.hub", *args]


def descendants(pid):
    """Pids of every living process below *pid* (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def wait_until(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Poll *predicate* until true; fail the test after *timeout* seconds (a deadline, not a timing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message}")
        time.sleep(interval)


class Hub:
    """A running hub child process: ``url``, ``data_dir``, HTTP helpers, stop/kill/restart."""

    def __init__(self, data_dir, args, log_path):
        self.data_dir = data_dir
        self.args = list(args)
        self.log_path = log_path
        self.proc = None
        self.url = None
        self.keys = {}
        self.http = requests.Session()

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            hub_command("--port", "0", "--data-dir", self.data_dir, *self.args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=os.path.dirname(self.data_dir),
            text=True,
        )
        lines = queue.Queue()
        self._reader = threading.Thread(target=_pump, args=(self.proc.stdout, lines), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"the hub did not start within {START_TIMEOUT} s:\n{self.log}")
            if line is None:
                self.stop()
                pytest.fail(f"the hub exited before it was ready:\n{self.log}")
            if line.startswith(READY):
                self.url = json.loads(line[len(READY):])["url"]
                return self

    @property
    def pid(self):
        return self.proc.pid

    @property
    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _finish(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(5)
            self.proc.stdout.close()
            self._log.close()
        return self.proc.returncode

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Send *sig* (if still running) and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        if self._log.closed:
            return self.proc.returncode
        return self._finish(timeout)

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        """Start a new hub process on the same data directory (the old one must be stopped)."""
        assert not self.running
        return self.start()

    # -- users and HTTP ---------------------------------------------------------------------

    def create_user(self, name, password=None):
        """Run ``create-user`` on this hub's data directory; returns (and remembers) the key."""
        args = ["create-user", name, "--data-dir", self.data_dir]
        if password:
            args += ["--password", password]
        result = subprocess.run(hub_command(*args), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip().splitlines()[-1]
        self.keys[name] = key
        return key

    def auth(self, user):
        return {"Authorization": f"APIKey {user}:{self.keys[user]}"}

    def request(self, method, path, user=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if user is not None:
            headers.update(self.auth(user))
        kwargs.setdefault("timeout", 15)
        return self.http.request(method, self.url + path.lstrip("/"), headers=headers, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def upload(self, user, python=ADD, **fields):
        """POST a canvas as *user*; returns its JSON model (asserting 201)."""
        r = self.post("api/v1/canvases/", user=user, json={"python": python, **fields})
        assert r.status_code == 201, r.text
        return r.json()

    def new_session(self, canvas_id, **kwargs):
        r = self.post("api/v1/canvas_sessions/", json={"canvas": canvas_id}, **kwargs)
        assert r.status_code == 201, r.text
        return r.json()

    def wait_running(self, session, timeout=15):
        """Poll a session until it runs (socket set); returns its JSON model."""

        def running():
            model = self.get(f"api/v1/canvas_sessions/{session['id']}/").json()
            assert model["status"] in ("starting", "running"), model
            return model if model["socket"] else None

        return wait_until(running, timeout, message="a running session")

    def worker_pids(self):
        """Pids of the hub's living descendants (its workers)."""
        return descendants(self.pid) if self.running else []

    def recorded_states(self):
        """The spawner states the hub saved for its sessions (read from its database)."""
        import sqlite3

        conn = sqlite3.connect(f"file:{os.path.join(self.data_dir, 'hub.sqlite')}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT status, state FROM sessions").fetchall()
        finally:
            conn.close()
        return [(status, json.loads(state) if state else None) for status, state in rows]

    def close(self):
        pids = []
        if self.proc is not None and not self._log.closed:
            if self.running:
                pids = self.worker_pids()
            self.stop()
        self.http.close()
        return pids


def _pump(stream, lines):
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _make_factory(tmp_path_factory, hubs):
    def make(*args, users=(), data_dir=None, config=None, start=True):
        if data_dir is None:
            data_dir = str(tmp_path_factory.mktemp("hub") / "data")
        log_path = os.path.join(os.path.dirname(data_dir), f"hub-{len(hubs)}.log")
        hub = Hub(data_dir, args, log_path)
        hubs.append(hub)
        if config is not None:
            os.makedirs(data_dir, mode=0o700, exist_ok=True)
            with open(os.path.join(data_dir, "livepandas_hub_config.py"), "w") as f:
                f.write(textwrap.dedent(config))
        for name in users:  # before start: the data directory is created by create-user
            hub.create_user(name)
        return hub.start() if start else hub

    return make


def _close_all(hubs):
    leftovers = []
    for hub in hubs:
        before = hub.close()
        leftovers += [pid for pid in before if alive(pid)]
    # Workers exit with their hub; give the last ones a moment, then fail on any left.
    deadline = time.monotonic() + 10
    while leftovers and time.monotonic() < deadline:
        leftovers = [pid for pid in leftovers if alive(pid)]
        time.sleep(0.05)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"worker processes outlived their hub: {leftovers}"


@pytest.fixture
def hub(tmp_path_factory):
    """Factory: ``hub(*cli_args, users=("alice",))`` → a started :class:`Hub`, stopped at teardown."""
    hubs = []
    yield _make_factory(tmp_path_factory, hubs)
    _close_all(hubs)


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory):
    """One hub for a whole module, with users ``alice`` and ``bob``."""
    hubs = []
    yield _make_factory(tmp_path_factory, hubs)("--warm-pool-size", "1", users=("alice", "bob"))
    _close_all(hubs)
