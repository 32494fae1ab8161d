"""Fixtures for the extension tests: a fresh IPython shell per test, driven like a notebook.

``shell`` is a real :class:`~IPython.core.interactiveshell.InteractiveShell`, made the process's
singleton for the duration of one test so ``display()``, ``get_ipython()`` and
:func:`IPython.utils.capture.capture_output` all reach it (as they reach the kernel's shell in a
notebook). History is kept in memory and IPython's profile lives in a temporary directory.
Teardown unloads the extension (stopping every canvas server), runs the shell's exit operations
and puts back the process-wide state IPython takes over (``__main__``, display and except hooks).

Widgets get a recording comm (``recording_comm``, autouse) and are closed after each test.

``lp`` is that shell with ``%load_ext livepandas`` done. Magics are called with
``run_line_magic``/``run_cell_magic``, which let a ``UsageError`` propagate unchanged (helpers in
``extension_helpers.py``).
"""

import atexit
import socket
import sys

import comm
import pytest
from extension_helpers import RecordingComm, widget
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

# The environment the extension reads; tests set what they need.
LIVEPANDAS_ENV = (
    "LIVEPANDAS_PORT",
    "LIVEPANDAS_HOST",
    "LIVEPANDAS_URL_PATTERN",
    "LIVEPANDAS_SWITCH_INTERVAL",
    "JUPYTERHUB_SERVICE_PREFIX",
)


@pytest.fixture
def shell(tmp_path, monkeypatch):
    """A fresh InteractiveShell, the singleton for this test only."""
    for name in LIVEPANDAS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    saved = sys.modules.get("__main__"), sys.displayhook, sys.excepthook, sys.getswitchinterval()

    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # no sqlite file, no history-saving thread
    config.InteractiveShell.colors = "nocolor"  # tracebacks compared as plain text
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(config=config)
    try:
        yield ip
    finally:
        from livepandas_ipython import extension

        extension.unload(ip)  # stops every canvas server; a no-op when already unloaded
        atexit.unregister(ip.atexit_operations)
        ip.atexit_operations()
        InteractiveShell.clear_instance()
        main, sys.displayhook, sys.excepthook, interval = saved
        sys.modules["__main__"] = main
        if sys.modules.get("__mp_main__") is ip.user_module:  # multiprocessing first imported in the test
            sys.modules["__mp_main__"] = main
        sys.setswitchinterval(interval)


@pytest.fixture(autouse=True)
def recording_comm(monkeypatch):
    """Every widget gets a :class:`RecordingComm`; the widgets a test opened are closed after it.

    Closing matters: ipywidgets keeps every open widget, and a preview's forms hold the magics and
    through them the whole shell.
    """
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    monkeypatch.setattr(RecordingComm, "opened", [])
    yield
    for opened in RecordingComm.opened:
        found = widget(opened.comm_id)
        if found is not None:
            found.close()


@pytest.fixture
def lp(shell):
    """The shell with ``%load_ext livepandas`` done."""
    shell.run_line_magic("load_ext", "livepandas")
    return shell


@pytest.fixture
def reserved_port():
    """Factory: a port nobody else gets while the test runs, yet one our servers can bind.

    On Linux a socket bound with SO_REUSEADDR but not listening keeps ``bind(0)`` callers off its
    port, while a server that also sets SO_REUSEADDR (Tornado's ``bind_sockets`` does) may still
    bind and listen there. So the port passed to ``--port`` or ``%config`` cannot be taken by
    another process between choosing and binding it (the race of bind-close-rebind helpers).
    Elsewhere the socket is closed at once, which leaves that small race.
    """
    socks = []

    def reserve():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        if sys.platform.startswith("linux"):
            socks.append(sock)
        port = sock.getsockname()[1]
        if not sys.platform.startswith("linux"):
            sock.close()
        return port

    yield reserve
    for sock in socks:
        sock.close()


@pytest.fixture
def held_port():
    """Factory: a port taken by a listening socket of the test's own (so servers can't bind it)."""
    socks = []

    def hold(port=0):
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen()
        socks.append(sock)
        return sock.getsockname()[1]

    yield hold
    for sock in socks:
        sock.close()
