"""``LocalProcessSpawner`` with real child processes (``sys.executable -c "<tiny script>"``)."""

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from livepandas_ipython.hub.spawner import (
    LocalProcessSpawner,
    SpawnError,
    process_start_time,
    reap_orphan,
)
from livepandas_ipython.server import LoopThread

pytestmark = pytest.mark.anyio

# A child that reports ready (with its pid), echoes stdin lines to stdout, exits on stdin EOF.
ECHO = """
import json, os, sys
print("LIVEPANDAS_READY " + json.dumps({"host": "127.0.0.1", "port": 4321, "pid": os.getpid()}), flush=True)
for line in sys.stdin:
    print("echo " + line.strip(), flush=True)
"""


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def spawner():
    """Factory: ``spawner(script, **traits)`` → a LocalProcessSpawner running ``python -c script``."""
    made = []

    def make(script, **traits):
        traits.setdefault("start_timeout", 5)
        sp = LocalProcessSpawner(cmd=[sys.executable, "-c", textwrap.dedent(script)], **traits)
        made.append(sp)
        return sp

    yield make
    for sp in made:
        await sp.stop(now=True)


def alive(pid):
    """True while *pid* runs (a zombie left to a non-reaping init counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def wait_gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.02)


# -- start --------------------------------------------------------------------------------------


async def test_start_returns_the_ready_address_and_forwards_later_lines(spawner):
    lines = []
    sp = spawner(ECHO, on_line=lines.append)
    assert await sp.start() == ("127.0.0.1", 4321)
    assert sp.ready_info["pid"] == sp.pid
    assert await sp.poll() is None
    await sp.send("hello")
    await sp.send("again\n")
    await until(lambda: len(lines) == 2)
    assert lines == ["echo hello", "echo again"]


async def test_environment_cwd_and_limits_reach_the_child(spawner, tmp_path):
    script = """
        import json, os, resource
        info = {"host": "h", "port": 1, "cwd": os.getcwd(), "var": os.environ.get("LP_TEST_VAR"),
                "path": bool(os.environ.get("PATH")),
                "as": resource.getrlimit(resource.RLIMIT_AS)[0], "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
                "sid": os.getsid(0) == os.getpid(), "pgid": os.getpgid(0) == os.getpid()}
        print("LIVEPANDAS_READY", json.dumps(info), flush=True)
        import sys; sys.stdin.read()
    """
    sp = spawner(script, env={"LP_TEST_VAR": "yes"}, cwd=str(tmp_path), mem_limit=2**31, cpu_limit=30.5)
    await sp.start()
    info = sp.ready_info
    assert (info["cwd"], info["var"], info["path"]) == (str(tmp_path), "yes", True)
    assert (info["as"], info["cpu"]) == (2**31, 31)
    assert info["sid"] and info["pgid"]


async def test_no_limits_by_default(spawner):
    sp = spawner(
        "import json, resource, sys\n"
        "print('LIVEPANDAS_READY', json.dumps({'host': 'h', 'port': 1,"
        " 'as': resource.getrlimit(resource.RLIMIT_AS)[0]}), flush=True)\n"
        "sys.stdin.read()"
    )
    await sp.start()
    assert sp.ready_info["as"] == resource.getrlimit(resource.RLIMIT_AS)[0]


async def test_exit_before_ready_reports_status_and_stderr(spawner):
    sp = spawner("import sys; sys.stderr.write('first\\nboom: bad config\\n'); sys.exit(4)")
    with pytest.raises(SpawnError) as info:
        await sp.start()
    message = str(info.value)
    assert "exited with status 4 before it was ready" in message
    assert message.endswith("its stderr ended with:\nfirst\nboom: bad config")
    assert info.value.status == 4
    assert await sp.poll() == 4


async def test_timeout_kills_the_child_and_quotes_stderr(spawner):
    sp = spawner(
        "import sys, time; print('warming up', file=sys.stderr, flush=True); time.sleep(30)", start_timeout=0.5
    )
    with pytest.raises(SpawnError, match=r"was not ready within 0.5 s; its stderr ended with:\nwarming up$"):
        await sp.start()
    assert sp.pid is not None and not alive(sp.pid)
    assert await sp.poll() == -signal.SIGKILL


async def test_invalid_ready_line(spawner):
    sp = spawner("print('LIVEPANDAS_READY {\"port\": 1}', flush=True); import time; time.sleep(30)")
    with pytest.raises(SpawnError, match="invalid ready line"):
        await sp.start()
    assert not alive(sp.pid)


async def test_missing_program_is_a_clear_error():
    sp = LocalProcessSpawner(cmd=["/nonexistent/worker", "--ip", "x"])
    expected = r"^cannot run /nonexistent/worker --ip x: /nonexistent/worker does not exist$"
    with pytest.raises(SpawnError, match=expected):
        await sp.start()
    sp = LocalProcessSpawner(cmd=[sys.executable], cwd="/nonexistent-dir")
    with pytest.raises(SpawnError, match="directory /nonexistent-dir does not exist"):
        await sp.start()


async def test_not_executable_is_explained(tmp_path):
    script = tmp_path / "worker.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    sp = LocalProcessSpawner(cmd=[str(script)])
    with pytest.raises(SpawnError, match="permission denied.*is it executable"):
        await sp.start()


async def test_cannot_start_twice(spawner):
    sp = spawner(ECHO)
    await sp.start()
    with pytest.raises(SpawnError, match="already running"):
        await sp.start()
    await sp.stop()
    sp.clear_state()
    assert await sp.start() == ("127.0.0.1", 4321)


async def test_unexpected_exit_is_reported_by_poll_and_on_exit(spawner):
    exits = []
    sp = spawner(ECHO, on_exit=exits.append)
    await sp.start()
    os.kill(sp.pid, signal.SIGKILL)
    await until(lambda: exits)
    assert exits == [-signal.SIGKILL]
    assert await sp.poll() == -signal.SIGKILL


# -- stop -----------------------------------------------------------------------------------------


async def test_stop_interrupts_first(spawner):
    sp = spawner(ECHO)  # KeyboardInterrupt, then Python dies by SIGINT
    await sp.start()
    await sp.stop()
    assert await sp.poll() == -signal.SIGINT
    assert "KeyboardInterrupt" in sp.stderr_tail
    await sp.stop()  # idempotent


async def test_stop_escalates_to_sigterm_then_sigkill(spawner):
    ignore_int = """
        import json, signal, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))
        print("LIVEPANDAS_READY", json.dumps({"host": "h", "port": 1}), flush=True)
        time.sleep(30)
    """
    sp = spawner(ignore_int, interrupt_timeout=0.2, term_timeout=0.5)
    await sp.start()
    await sp.stop()
    assert await sp.poll() == 15

    stubborn = ignore_int.replace("lambda *a: sys.exit(15)", "signal.SIG_IGN")
    sp = spawner(stubborn, interrupt_timeout=0.1, term_timeout=0.1)
    await sp.start()
    t0 = time.monotonic()
    await sp.stop()
    assert await sp.poll() == -signal.SIGKILL
    assert time.monotonic() - t0 >= 0.2


async def test_stop_now_kills_at_once(spawner):
    ignore_int = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    sp = spawner(ignore_int + ECHO, interrupt_timeout=30)
    await sp.start()
    await sp.stop(now=True)
    assert await sp.poll() == -signal.SIGKILL


async def test_concurrent_stops_share_one_escalation(spawner):
    sp = spawner(ECHO)
    await sp.start()
    await asyncio.gather(sp.stop(), sp.stop(), sp.stop())
    assert await sp.poll() == -signal.SIGINT


async def test_grandchildren_die_with_the_worker(spawner):
    script = """
        import json, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("LIVEPANDAS_READY", json.dumps({"host": "h", "port": 1, "grandchild": child.pid}), flush=True)
        sys.stdin.read()
    """
    sp = spawner(script)
    await sp.start()
    grandchild = sp.ready_info["grandchild"]
    assert alive(grandchild)
    await sp.stop()
    await until(lambda: not alive(grandchild))


async def test_what_an_exiting_worker_leaves_in_its_group_is_killed(spawner):
    script = """
        import json, os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("LIVEPANDAS_READY", json.dumps({"host": "h", "port": 1, "grandchild": child.pid}), flush=True)
        sys.stdin.readline()
        os._exit(0)
    """
    sp = spawner(script)
    await sp.start()
    grandchild = sp.ready_info["grandchild"]
    await sp.send("exit")
    await until(lambda: sp._exited.done())
    assert await sp.poll() == 0
    await until(lambda: not alive(grandchild))


async def test_no_file_descriptor_is_left_open(spawner):
    before = sorted(os.listdir("/proc/self/fd"))
    for script in (ECHO, "import sys; sys.exit(2)"):
        sp = spawner(script)
        try:
            await sp.start()
        except SpawnError:
            pass
        await sp.stop()
    assert sorted(os.listdir("/proc/self/fd")) == before


# -- the parent's death ---------------------------------------------------------------------------

# A stand-in for a hub: starts a worker with a spawner, prints its state, then waits to be killed.
MIDDLE = """
import asyncio, json, sys
from livepandas_ipython.hub.spawner import LocalProcessSpawner
async def main():
    sp = LocalProcessSpawner(cmd=[sys.executable, "-c", sys.argv[1]], start_timeout=5)
    await sp.start()
    print(json.dumps(sp.get_state()), flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""

# Exits on stdin EOF, as every worker must.
OBEDIENT = """
import json, sys
print("LIVEPANDAS_READY", json.dumps({"host": "h", "port": 1}), flush=True)
sys.stdin.read()
"""

# Ignores stdin EOF (a broken worker): only a restarted hub can clean it up.
DEAF = """
import json, signal, time
print("LIVEPANDAS_READY", json.dumps({"host": "h", "port": 1}), flush=True)
time.sleep(60)
"""


@pytest.fixture
def orphan():
    """Factory: start *child* under a middle process, SIGKILL the middle, return the child's state."""
    pids = []

    def make(child):
        middle = subprocess.Popen([sys.executable, "-c", MIDDLE, child], stdout=subprocess.PIPE, text=True)
        try:
            state = json.loads(middle.stdout.readline())
        finally:
            middle.kill()
            middle.wait()
            middle.stdout.close()
        pids.append(state["pid"])
        return state

    yield make
    for pid in pids:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_worker_sees_stdin_eof_when_its_parent_is_killed(orphan):
    state = orphan(OBEDIENT)
    wait_gone(state["pid"])


def test_state_is_json_and_identifies_the_process(orphan):
    state = orphan(DEAF)
    assert json.loads(json.dumps(state)) == state
    assert state["pgid"] == state["pid"]
    assert state["start_time"] == process_start_time(state["pid"])
    assert state["cmd"][0] == sys.executable
    assert state["ready_info"] == {"host": "h", "port": 1}


async def test_a_restarted_hub_polls_and_stops_an_adopted_worker(orphan):
    state = orphan(DEAF)
    sp = LocalProcessSpawner(interrupt_timeout=0.1, term_timeout=1)
    sp.load_state(state)
    assert sp.ready_info == {"host": "h", "port": 1}
    assert await sp.poll() is None
    assert sp.get_state() == state
    await sp.stop()
    assert not alive(state["pid"])
    assert await sp.poll() == 0
    assert sp.get_state() == {}


def test_reap_orphan_kills_only_that_process(orphan):
    state = orphan(DEAF)
    assert reap_orphan(state) is True
    assert not alive(state["pid"])
    assert reap_orphan(state) is False  # gone now


@pytest.fixture
def bystander():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


async def test_a_recycled_pid_is_never_signalled(bystander):
    # A saved state whose pid now belongs to another process (its start time differs).
    state = {"pid": bystander.pid, "pgid": bystander.pid, "start_time": process_start_time(bystander.pid) - 1}
    assert reap_orphan(state) is False
    assert reap_orphan({"pid": bystander.pid}) is False  # no start time: not sure, so no
    sp = LocalProcessSpawner()
    sp.load_state(state)
    assert await sp.poll() == 0
    await sp.stop(now=True)
    assert bystander.poll() is None and alive(bystander.pid)
    assert reap_orphan({"pid": 1, "start_time": -5}) is False
    assert reap_orphan({}) is False


# -- synchronous callers --------------------------------------------------------------------------


def test_synchronous_use_through_the_shared_loop_thread():
    loop = LoopThread.shared()
    sp = LocalProcessSpawner(cmd=[sys.executable, "-c", ECHO], start_timeout=5)
    try:
        assert loop.call(sp.start, timeout=10) == ("127.0.0.1", 4321)
        assert loop.call(sp.poll) is None
    finally:
        loop.call(sp.stop, timeout=10)
    assert loop.call(sp.poll) == -signal.SIGINT
