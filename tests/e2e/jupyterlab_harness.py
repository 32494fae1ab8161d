"""A real JupyterLab in a child process, sealed off from the user's home and from the network, and
the Playwright steps that open a notebook in it and run all its cells.

Shared by ``tests/e2e/`` (through its ``conftest.py``) and ``tools/screenshot_preview.py``; it
imports nothing from pytest.

The server
----------
``LabServer(workdir, notebooks).start()`` runs ``python -m jupyterlab`` with this interpreter
(the venv: its ``share/jupyter`` holds the ``python3`` kernel spec and the ipywidgets lab
extension, and jupyter_client runs a spec whose ``argv[0]`` is ``python`` with this
``sys.executable``), with:

- ``HOME``, ``JUPYTER_CONFIG_DIR``, ``JUPYTER_DATA_DIR``, ``JUPYTER_RUNTIME_DIR`` and
  ``IPYTHONDIR`` under *workdir*, and every other ``JUPYTER*``/``JPY_``/``IPYTHON*``/
  ``LIVEPANDAS_*``/``XDG_*`` variable removed: nothing is read from the user's home, and
  ``JUPYTERHUB_SERVICE_PREFIX`` cannot leak in and change the preview's URLs;
- ``LIVEPANDAS_PORT=0`` for the kernel, so canvases take free ports instead of trying 8888;
- ``--ServerApp.port=0``: jupyter_server asks the OS for a free port, closes that probe socket
  and listens on the port a moment later, in the same process. That leaves a window of
  microseconds in which another process could take the port; if it happens the server exits
  with "could not be started" and ``start()`` tries again (up to ``START_ATTEMPTS`` times).
  Binding in the parent and keeping the socket is not possible: jupyter_server cannot inherit a
  listening TCP socket (``ServerApp.sock`` is a Unix socket path, which Chromium cannot reach),
  and probing a port in the parent to pass it down leaves a far wider window (a process start).
  The port is read back from the server's ``jpserver-<pid>.json`` in the runtime directory;
- a random token; no browser;
- no outgoing traffic: ``LabApp.news_url=None`` (no Atom feed),
  ``LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate`` (no
  PyPI version check), ``LabApp.extension_manager=readonly`` (no PyPI listing), and user settings
  that turn off the front end's news/update notifications (which also removes the "Would you
  like to get notified about official Jupyter news?" toast that would cover cells);
- ``LanguageServerManager.autodetect=False``: jupyter-lsp does not spawn ``npm``/``node`` to look
  for language servers.

``shutdown_kernels()`` shuts the kernels down through the REST API (as JupyterLab's menu does);
``stop()`` sends the server SIGTERM and waits (a clean stop exits 0 and stops any kernel left);
only if it hangs is its process group (started with ``start_new_session``) killed.

The browser
-----------
``launch_chromium(playwright)`` starts Debian's ``/usr/bin/chromium`` headless (Playwright never
downloads one here). ``LabPage`` opens a page that records page errors and every request that
leaves ``127.0.0.1``; ``open_notebook`` and ``run_all_cells`` drive JupyterLab through its menus.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from testsupport import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


# Generous: a loaded 2-core machine must never turn a wait into a failure.
START_TIMEOUT = 90
STOP_TIMEOUT = 30
KERNEL_TIMEOUT = 120
UI_TIMEOUT_MS = 30_000
START_ATTEMPTS = 3

LAB_OPTIONS = [
    "--no-browser",
    "--ServerApp.ip=127.0.0.1",
    "--ServerApp.port=0",
    "--ServerApp.port_retries=0",
    "--ServerApp.allow_root=True",  # containers run the tests as root
    "--ServerApp.password=",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
    # jupyter-lsp would look for language servers by running `npm prefix --global` and the like:
    # nothing the tests use, and subprocesses a loaded machine can do without.
    "--LanguageServerManager.autodetect=False",
]

# <JUPYTER_CONFIG_DIR>/lab/user-settings/<plugin>.jupyterlab-settings
LAB_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}

_DROPPED_ENV = ("JUPYTER", "JPY_", "IPYTHON", "LIVEPANDAS_", "XDG_")


class LabStartError(RuntimeError):
    pass


class LabServer:
    """One ``python -m jupyterlab`` process whose root directory holds copies of *notebooks*.

    Attributes once started: ``port``, ``token``, ``base_url`` (``http://127.0.0.1:<port>/``),
    ``root_dir``, ``proc``; ``log()`` is everything the server wrote.
    """

    def __init__(self, workdir, notebooks=(), python=sys.executable):
        self.workdir = Path(workdir)
        self.python = python
        self.token = secrets.token_hex(24)
        self.root_dir = self.workdir / "root"
        self.dirs = {
            name: self.workdir / name for name in ("home", "config", "data", "runtime", "ipython")
        }
        for path in (self.root_dir, *self.dirs.values()):
            path.mkdir(parents=True, exist_ok=True)
        for notebook in notebooks:
            shutil.copy(notebook, self.root_dir / Path(notebook).name)
        settings = self.dirs["config"] / "lab" / "user-settings"
        for plugin, values in LAB_USER_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.log_path = self.workdir / "jupyterlab.log"
        self.proc = None
        self.port = None
        self.returncode = None
        self._log_file = None
        self._log_start = 0
        # urllib without the environment's proxies: everything here is on 127.0.0.1.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- starting -------------------------------------------------------------------------------

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV)}
        env.update(
            HOME=str(self.dirs["home"]),
            JUPYTER_CONFIG_DIR=str(self.dirs["config"]),
            JUPYTER_DATA_DIR=str(self.dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(self.dirs["runtime"]),
            IPYTHONDIR=str(self.dirs["ipython"]),
            LIVEPANDAS_PORT="0",
            PYTHONNOUSERSITE="1",
        )
        return env

    def command(self):
        return [
            self.python,
            "-m",
            "jupyterlab",
            *LAB_OPTIONS,
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
        ]

    def start(self):
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once()
                return self
            except LabStartError:
                lost_race = self.proc.poll() is not None and "could not be started" in self.log()[self._log_start :]
                self.stop()
                if not lost_race or attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self):
        self.returncode = None
        self.port = None
        self._log_start = len(self.log())
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.root_dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for a last-resort kill
        )
        info_file = self.dirs["runtime"] / f"jpserver-{self.proc.pid}.json"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabStartError(f"JupyterLab exited with status {self.proc.returncode}:\n{self.log()}")
            if self.port is None and info_file.exists():
                try:
                    self.port = json.loads(info_file.read_text())["port"]
                except (ValueError, KeyError):
                    pass  # still being written
            if self.port is not None:
                try:
                    self.api("GET", "api/status")
                    return
                except OSError:
                    pass  # bound a moment after the info file is written
            time.sleep(0.2)
        raise LabStartError(f"JupyterLab did not answer within {START_TIMEOUT}s:\n{self.log()}")

    # -- talking to it --------------------------------------------------------------------------

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path):
        """The browser URL of *path* (e.g. ``lab/tree/nb.ipynb``), logging in with the token."""
        return f"{self.base_url}{path}?token={self.token}"

    def api(self, method, path, timeout=10):
        request = urllib.request.Request(
            self.base_url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with self._http.open(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kernel_pids(self):
        """Process ids of the server's kernels (its children running ``ipykernel_launcher``)."""
        return [pid for pid in _children(self.proc.pid) if "ipykernel_launcher" in _cmdline(pid)]

    def wait_kernels_idle(self, timeout=KERNEL_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            kernels = self.api("GET", "api/kernels")
            if kernels and all(k["execution_state"] == "idle" for k in kernels):
                return kernels
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernels not idle after {timeout}s: {kernels}")
            time.sleep(0.2)

    # -- stopping -------------------------------------------------------------------------------

    def shutdown_kernels(self):
        """Shut every session's kernel down through the REST API, as JupyterLab's menu does."""
        for session in self.api("GET", "api/sessions"):
            self.api("DELETE", f"api/sessions/{session['id']}", timeout=STOP_TIMEOUT)
        for kernel in self.api("GET", "api/kernels"):
            self.api("DELETE", f"api/kernels/{kernel['id']}", timeout=STOP_TIMEOUT)

    def stop(self):
        """SIGTERM the server and wait; returns its exit status. Idempotent."""
        if self.proc is None:
            return None
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _killpg(self.proc.pid)
                self.proc.wait()
            self.returncode = self.proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.returncode

    def kill_leftovers(self, pids):
        """Last resort for kernels the server failed to stop (each in its own session)."""
        for pid in pids:
            if pid_alive(pid):
                _killpg(pid)


def _children(pid):
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kernel_executable(pid):
    """``argv[0]`` of process *pid*."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None


def pid_alive(pid):
    """True while *pid* exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _killpg(pid):
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(predicate, timeout=STOP_TIMEOUT, interval=0.1):
    """Poll *predicate* until it is true (→ True) or *timeout* seconds pass (→ False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def port_open(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


# -- the browser side ---------------------------------------------------------------------------


def make_expect(timeout_ms=UI_TIMEOUT_MS):
    """Playwright's ``expect`` with a timeout of its own: the default is 5 s, too short for a
    kernel round trip on a loaded machine, and ``expect.set_options`` would change it for every
    other test of the run too."""
    from playwright.sync_api import Expect

    own = Expect()
    own.set_options(timeout=timeout_ms)
    return own


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def is_loopback_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return True  # data:, blob:, about:, chrome-extension:...
    return parts.hostname in ("127.0.0.1", "localhost", "::1")


class LabPage:
    """A fresh context and page; ``errors`` gets uncaught page errors, ``external`` every URL
    requested that is not on the loopback interface (there must be none)."""

    def __init__(self, browser, viewport=None):
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 1000})
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.errors = []
        self.external = []
        self.context.on("request", lambda r: None if is_loopback_url(r.url) else self.external.append(r.url))
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("websocket", lambda ws: None if is_loopback_url(ws.url) else self.external.append(ws.url))

    def close(self):
        self.context.close()


_PROMPTS_DONE = """() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
  return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
}"""


def open_notebook(page, lab, path):
    """Open *path* in JupyterLab and wait until its kernel is up and idle."""
    expect = make_expect()
    page.goto(lab.url(f"lab/tree/{path}"))
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=START_TIMEOUT * 1000)
    expect(page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=KERNEL_TIMEOUT * 1000
    )
    lab.wait_kernels_idle()


def run_all_cells(page, lab):
    """Run > Run All Cells, then wait until every code cell has an execution count and the
    kernel is idle."""
    expect = make_expect()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(_PROMPTS_DONE, timeout=KERNEL_TIMEOUT * 1000)
    expect(page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=KERNEL_TIMEOUT * 1000
    )
    lab.wait_kernels_idle()


def code_cell(page, first_line):
    """The code cell whose source's first line is exactly *first_line*."""
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    firsts = cells.evaluate_all(
        "cells => cells.map(c => { const l = c.querySelector('.jp-InputArea-editor .cm-line');"
        " return l ? l.textContent : null; })"
    )
    matches = [i for i, line in enumerate(firsts) if line is not None and line.rstrip() == first_line]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} code cells start with {first_line!r}; first lines: {firsts}")
    return cells.nth(matches[0])
