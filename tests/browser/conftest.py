"""Fixtures for the browser tests: a headless Chromium (Playwright, sync API) and the examples
served the way a user serves them, by the real ``livepandas`` command in a child process.

Chromium is Debian's ``/usr/bin/chromium``; Playwright never downloads a browser here. Every
server binds ``127.0.0.1`` port 0; its URL is read from the first line it prints, and it is
stopped with SIGTERM at teardown, which must end it with exit status 0.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from testsupport import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# Generous: a loaded CI machine must never turn a wait into a failure.
START_TIMEOUT = 30
STOP_TIMEOUT = 15
EXPECT_TIMEOUT_MS = 10_000

_FIRST_LINE = re.compile(r"^Serving canvas '.*' (?:from .* )?on (http://\S+/)$")


class LiveServer:
    """One ``livepandas -P ... [-H ...] --port 0`` process.

    ``url`` is the view's URL as printed; ``stop()`` sends SIGTERM and returns the exit status;
    ``log()`` is everything the process wrote to stderr (with ``-v``, one line per request).
    """

    def __init__(self, args, log_path):
        self.args = [sys.executable, "-m", "livepandas_ipython", *args, "--port", "0"]
        self.log_path = log_path
        self._stderr = open(log_path, "wb")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self.output = ""
        self.returncode = None
        try:
            self.url = self._read_url()
        except BaseException:
            self.stop()
            raise

    def _read_url(self):
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True)
        reader.start()
        try:
            first = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"{self.describe()} printed nothing in {START_TIMEOUT}s; stderr:\n{self.log()}")
        reader.join()
        self.output = first
        match = _FIRST_LINE.match(first.rstrip("\n"))
        if not match:
            pytest.fail(f"{self.describe()} did not print its URL first: {first!r}; stderr:\n{self.log()}")
        return match.group(1)

    def describe(self):
        return " ".join(str(a) for a in self.args[1:])

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def stop(self):
        """SIGTERM the server (once) and return its exit status."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rest, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rest, _ = self.proc.communicate()
            self.output += rest or ""
            self.returncode = self.proc.returncode
            self._stderr.close()
        return self.returncode


@pytest.fixture
def live_server(request, tmp_path):
    """Factory: ``live_server("hello", html=True, static=False, verbose=False)`` → a started
    :class:`LiveServer` for ``examples/<name>/``, stopped at teardown (exit status must be 0)."""
    servers = []

    def start(example, *, html=True, static=False, verbose=False):
        folder = EXAMPLES / example
        args = ["-P", str((folder / "code.py").relative_to(ROOT))]
        if html:
            args += ["-H", str((folder / "view.html").relative_to(ROOT))]
        if static:
            args += ["-S", str((folder / "static").relative_to(ROOT))]
        if verbose:
            args.append("-v")
        server = LiveServer(args, tmp_path / f"{example}-{len(servers)}.stderr")
        servers.append(server)
        return server

    yield start
    for server in servers:
        status = server.stop()
        assert status == 0, f"{server.describe()} exited with {status}; stderr:\n{server.log()}"
        assert server.output.rstrip().endswith("Stopped."), server.output


@pytest.fixture
def hello_server(live_server):
    return live_server("hello")


@pytest.fixture
def streaming_server(live_server):
    return live_server("streaming")


@pytest.fixture
def dataframe_server(live_server):
    return live_server("dataframe", static=True)


@pytest.fixture
def seed_server(live_server):
    """The README's example, served with no view: ``/`` is the generated page."""
    return live_server("seed", html=False)


# -- the browser ----------------------------------------------------------------------------------


# One browser for the whole package, closed when its last test is done. Not session-scoped: while
# Playwright's sync API is started, the main thread has a running asyncio loop, which would break
# every later test that calls asyncio.run() (or otherwise checks for a running loop).
@pytest.fixture(scope="package")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); Playwright must not download one")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def context(browser):
    context = browser.new_context()
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context):
    """A fresh page; the test fails if a script on it throws an uncaught error."""
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    yield page
    assert not errors, f"uncaught errors in the page: {[str(e) for e in errors]}"
