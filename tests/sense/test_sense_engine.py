"""``sense-ipython-engine`` run directly as a child process, the way a spawner runs it."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from sense_helpers import process_alive, run_code

ENGINE = os.path.join(os.path.dirname(sys.executable), "sense-ipython-engine")


class Engine:
    """A running engine: stdin a pipe we hold, stdout read by a thread, its own session."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen(
            [ENGINE, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=dict(os.environ, **(env or {})),
        )
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, "the engine exited before its ready line: " + self.proc.stderr.read()
            if line.startswith("LIVEPANDAS_READY "):
                return json.loads(line.split(" ", 1)[1])

    def wait(self, timeout=5):
        status = self.proc.wait(timeout)
        self._reader.join(5)
        return status

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the engine's own way out: it cleans up after itself
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)
        self._reader.join(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def engine():
    engines = []

    def start(*args, **kwargs):
        e = Engine(*args, **kwargs)
        engines.append(e)
        return e

    yield start
    for e in engines:
        e.close()


@pytest.fixture
def client():
    clients = []

    def connect(info):
        from jupyter_client import BlockingKernelClient

        kc = BlockingKernelClient()
        kc.load_connection_info(info)
        kc.start_channels()
        clients.append(kc)
        kc.wait_for_ready(timeout=10)
        return kc

    yield connect
    for kc in clients:
        kc.stop_channels()


def test_ready_line_then_a_kernel_that_runs_code_until_stdin_closes(engine, client, tmp_path):
    packages = tmp_path / "packages"
    packages.mkdir()
    e = engine(
        "--startup-code",
        "import os, sys\nanswer = 6 * 7\nprint('started', os.environ['SENSE_DASHBOARD_ID'])",
        env={"SENSE_PROJECT_PACKAGES": str(packages)},
    )
    info = e.ready()
    pid = e.proc.pid
    assert info["startup"] == "ok"
    assert info["id"] == info["pid"] == pid  # SENSE_DASHBOARD_ID unset: the process id
    assert info["output"] == f"started {pid}\n"
    assert info["host"] == "127.0.0.1" and info["port"] == info["connection"]["shell_port"]
    assert os.path.isfile(info["connection_file"])
    with open(info["connection_file"]) as f:
        assert json.load(f)["key"] == info["connection"]["key"]

    kc = client(info["connection"])
    # The startup code ran in the kernel's user namespace, with the project's packages on the path.
    assert run_code(kc, "print(answer, sys.path[0])") == f"42 {packages}\n"

    e.proc.stdin.close()  # the launcher is gone
    assert e.wait() == 0
    assert not os.path.exists(info["connection_file"])
    assert not os.path.exists(os.path.dirname(info["connection_file"]))


def test_a_failing_startup_is_reported_in_the_ready_line(engine):
    e = engine("--startup-code", "print('before')\n1 / 0")
    info = e.ready()
    assert info["startup"] == "error: ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in info["traceback"]
    assert info["output"] == "before\n"
    # The kernel stays up; SIGTERM ends it at once, cleaning up.
    assert e.proc.poll() is None
    os.kill(e.proc.pid, signal.SIGTERM)
    assert e.wait() == 0
    assert not os.path.exists(info["connection_file"])


def test_a_missing_startup_script_is_reported_not_a_hang(engine, tmp_path):
    e = engine("--startup-script", str(tmp_path / "nope.py"))
    info = e.ready()
    assert info["startup"].startswith("error: FileNotFoundError: startup script")
    assert str(tmp_path / "nope.py") in info["startup"]


def test_a_startup_script_runs_with_its_file_and_dashboard_id(engine, tmp_path):
    script = tmp_path / "boot.py"
    script.write_text("import os\nprint(__file__, os.environ['SENSE_DASHBOARD_ID'])\n")
    e = engine("--startup-script", str(script), env={"SENSE_DASHBOARD_ID": "77"})
    info = e.ready()
    assert info["startup"] == "ok"
    assert info["id"] == 77
    assert info["output"] == f"{script} 77\n"


def test_stdin_eof_also_ends_what_the_worker_started(engine):
    e = engine(
        "--startup-code",
        "import subprocess\nchild = subprocess.Popen(['sleep', '60'])\nprint(child.pid)",
    )
    info = e.ready()
    grandchild = int(info["output"])
    assert process_alive(grandchild)
    e.proc.stdin.close()
    assert e.wait() == 0
    deadline = time.monotonic() + 5
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_alive(grandchild)
