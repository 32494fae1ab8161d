"""``livepandas-hub`` as a program: options, config file, data directory, signals, restarts."""

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest
import requests
from testsupport import assert_port_free

from livepandas_ipython.hub.db import SCHEMA_VERSION, Database

from .conftest import ADD, alive, hub_command, wait_until


def run(*args, cwd=None):
    return subprocess.run(hub_command(*args), capture_output=True, text=True, timeout=30, cwd=cwd)


# -- create-user ----------------------------------------------------------------------------------


def test_create_user_prints_a_working_key_last(hub, tmp_path):
    data = str(tmp_path / "data")
    result = run("create-user", "alice", "--password", "pw", "--data-dir", data)
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert len(key) >= 40 and " " not in key
    h = hub(data_dir=data)
    assert h.get("api/v1/user/", headers={"Authorization": f"APIKey alice:{key}"}).json()["name"] == "alice"


def test_create_user_errors_are_one_line(tmp_path):
    data = str(tmp_path / "data")
    assert run("create-user", "alice", "--data-dir", data).returncode == 0
    again = run("create-user", "alice", "--data-dir", data)
    assert again.returncode == 1
    assert again.stderr.strip() == "livepandas-hub create-user: user 'alice' already exists"
    bad = run("create-user", "no:colons", "--data-dir", data)
    assert bad.returncode == 1 and "user name" in bad.stderr
    assert run("create-user", "--data-dir", data).returncode == 2


def test_data_dir_is_private_and_schema_versioned(tmp_path):
    data = tmp_path / "data"
    assert run("create-user", "alice", "--data-dir", str(data)).returncode == 0
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "hub.sqlite").st_mode) == 0o600
    conn = sqlite3.connect(data / "hub.sqlite")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    data = tmp_path / "data"
    assert run("create-user", "alice", "--data-dir", str(data)).returncode == 0
    conn = sqlite3.connect(data / "hub.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    result = run("--port", "0", "--data-dir", str(data))
    assert result.returncode == 1
    assert "newer than this release" in result.stderr
    with pytest.raises(RuntimeError):
        Database(str(data / "hub.sqlite"))


def test_migrations_run_once(tmp_path):
    db = Database(str(tmp_path / "hub.sqlite"))
    db.add_user("u")
    db.close()
    db = Database(str(tmp_path / "hub.sqlite"))  # reopening keeps the data
    assert [row["name"] for row in db.users()] == ["u"]
    assert db.version == SCHEMA_VERSION
    db.close()


# -- options and config ---------------------------------------------------------------------------


def test_help_lists_the_options():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--ip", "--port", "--data-dir", "--session-timeout", "--config", "create-user"):
        assert option in result.stdout
    assert run("--help-all").stdout.count("LocalProcessSpawner.") > 3


def test_unexpected_arguments_and_bad_values_exit_non_zero(tmp_path):
    data = str(tmp_path / "data")
    assert run("--port", "0", "--data-dir", data, "stray").returncode == 2
    for args, message in [
        (["--port", "70000"], "port must be between 0 and 65535"),
        (["--port", "abc"], "expected an int"),
        (["--session-timeout", "0"], "session_timeout must be positive"),
    ]:
        result = run(*args, "--data-dir", data)
        assert result.returncode == 1
        assert message in result.stderr and "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = run("--port", str(sock.getsockname()[1]), "--data-dir", str(tmp_path / "data"))
    finally:
        sock.close()
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_config_file_in_the_data_dir_applies_and_the_command_line_wins(hub):
    config = """
        c.LivePandasHub.max_python_size = 60
        c.LivePandasHub.warm_pool_size = 0
        c.LivePandasHub.max_html_size = 5
    """
    h = hub("--LivePandasHub.max_html_size=1000", users=["alice"], config=config)
    long_code = "def livepandas_f():\n    return 1\n" + "#" * 60
    assert h.post("api/v1/canvases/", user="alice", json={"python": long_code}).status_code == 413
    assert h.upload("alice", python="def livepandas_f():\n    return 1\n", html="x" * 100)
    assert h.worker_pids() == []  # no warm pool


def test_config_option_names_a_file(hub, tmp_path):
    path = tmp_path / "elsewhere.py"
    path.write_text("c.LivePandasHub.max_python_size = 10\n")
    h = hub("--config", str(path), users=["alice"])
    assert h.post("api/v1/canvases/", user="alice", json={"python": ADD}).status_code == 413
    assert run("--config", str(tmp_path / "missing.py"), "--data-dir", str(tmp_path / "d")).returncode == 1


def test_ready_line_and_log_name_the_url(hub):
    h = hub("--warm-pool-size", "0")
    assert h.url.startswith("http://127.0.0.1:") and h.url.endswith("/")
    assert h.url in h.log
    assert requests.get(h.url + "api/v1/", timeout=5).status_code == 200


# -- shutdown and restart -------------------------------------------------------------------------


def sessions_running(h, canvas_id, count):
    sessions = [h.wait_running(h.new_session(canvas_id)) for _ in range(count)]
    pids = [requests.get(f"http://{s['socket']}/pid", timeout=5).json()["result"] for s in sessions]
    return sessions, pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_every_worker_and_releases_the_port(hub, sig):
    h = hub("--warm-pool-size", "1", users=["alice"])
    canvas = h.upload("alice")
    sessions, pids = sessions_running(h, canvas["id"], 2)
    everything = h.worker_pids()
    assert set(pids) <= set(everything) and len(everything) >= 3  # the warm one too
    port = int(h.url.rsplit(":", 1)[1].strip("/"))
    assert h.stop(sig) == 0
    assert not [pid for pid in everything if alive(pid)]
    assert_port_free(port)
    assert [status for status, _ in h.recorded_states()] == ["stopped", "stopped"]
    assert "hub stopped" in h.log


def test_restart_after_sigterm_keeps_users_keys_and_canvases(hub):
    h = hub("--warm-pool-size", "0", users=["alice", "bob"])
    canvas = h.upload("alice", html="<p>v</p>", static={"a.txt": "YQ=="}, name="kept")
    r = h.post("api/v1/keys/", user="bob", json={"note": "second"})
    second = r.json()["key"]
    session = h.new_session(canvas["id"])
    assert h.stop() == 0
    h.restart()
    got = h.get(f"api/v1/canvases/{canvas['id']}/", user="alice").json()
    assert (got["name"], got["python"], got["html"], got["static"]) == ("kept", ADD, "<p>v</p>", ["a.txt"])
    assert h.get("api/v1/user/", headers={"Authorization": f"APIKey bob:{second}"}).json()["name"] == "bob"
    assert h.get(f"api/v1/canvas_sessions/{session['id']}/").json()["status"] == "stopped"
    assert h.upload("alice")["id"] == canvas["id"] + 1
    h.wait_running(h.new_session(canvas["id"]))


def test_hub_killed_with_sigkill_leaves_no_worker_and_loses_nothing(hub):
    h = hub("--warm-pool-size", "1", users=["alice"])
    canvas = h.upload("alice")
    sessions, pids = sessions_running(h, canvas["id"], 2)
    everything = h.worker_pids()
    recorded = [state["pid"] for status, state in h.recorded_states() if status == "running"]
    assert sorted(recorded) == sorted(pids)
    h.kill()
    # The workers see their stdin close and exit by themselves.
    wait_until(lambda: not [pid for pid in everything if alive(pid)], timeout=15, message="orphaned workers to exit")
    h.restart()
    assert [status for status, _ in h.recorded_states()] == ["stopped", "stopped"]
    for session in sessions:
        got = h.get(f"api/v1/canvas_sessions/{session['id']}/").json()
        assert (got["status"], got["socket"], got["error"]) == ("stopped", None, "the hub restarted")
    assert h.get(f"api/v1/canvases/{canvas['id']}/", user="alice").json()["python"] == ADD
    replacement = h.wait_running(h.new_session(canvas["id"]))
    r = requests.get(f"http://{replacement['socket']}/add", params={"kwargs": '{"x": 2, "y": 2}'}, timeout=5)
    assert r.json() == {"result": 4}


# A canvas whose worker stops reading its stdin (it swaps the pipe for one that never ends), so
# it would outlive a killed hub: only the restarted hub can stop it.
STUCK = """
import fcntl, os
_r, _w = os.pipe()
for _fd in map(int, os.listdir("/proc/self/fd")):
    try:
        _pipe = os.readlink(f"/proc/self/fd/{_fd}").startswith("pipe:")
        _readable = fcntl.fcntl(_fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    except OSError:
        continue
    if _pipe and _readable and _fd != _r:
        os.dup2(_r, _fd)

def livepandas_pid():
    return os.getpid()
"""


def test_restarted_hub_reaps_a_worker_the_killed_hub_left(hub):
    h = hub("--warm-pool-size", "0", users=["alice"])
    canvas = h.upload("alice", python=STUCK)
    session = h.wait_running(h.new_session(canvas["id"]))
    pid = requests.get(f"http://{session['socket']}/pid", timeout=5).json()["result"]
    try:
        h.kill()
        assert alive(pid)  # nothing will tell it to stop...
        h.restart()  # ...but the new hub finds it from the database before serving
        assert not alive(pid)
        assert "killed 1 worker(s) left running by the previous hub" in h.log
        assert h.get(f"api/v1/canvas_sessions/{session['id']}/").json()["status"] == "stopped"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_recycled_pid_is_not_killed(hub):
    """A recorded worker whose pid now belongs to another process is left alone."""
    h = hub("--warm-pool-size", "0", users=["alice"])
    canvas = h.upload("alice")
    h.wait_running(h.new_session(canvas["id"]))
    h.kill()
    wait_until(lambda: not h.worker_pids() and all(not alive(s["pid"]) for _, s in h.recorded_states()))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        conn = sqlite3.connect(os.path.join(h.data_dir, "hub.sqlite"))
        (state,) = conn.execute("SELECT state FROM sessions").fetchone()
        state = json.loads(state)
        state["pid"] = state["pgid"] = bystander.pid  # same pid, but not the same start time
        conn.execute("UPDATE sessions SET state = ?", (json.dumps(state),))
        conn.commit()
        conn.close()
        h.restart()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_concurrent_session_creation(hub):
    h = hub("--warm-pool-size", "2", users=["alice"])
    canvas = h.upload("alice")
    results, errors = [], []

    def create():
        try:
            results.append(requests.post(h.url + "api/v1/canvas_sessions/", data={"canvas": canvas["id"]}, timeout=30))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r.status_code for r in results) == [201] * 8
    sessions = [h.wait_running(r.json()) for r in results]
    assert len({s["socket"] for s in sessions}) == 8
