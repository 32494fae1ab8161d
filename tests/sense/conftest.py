"""Fixtures of the ``sense`` tests: a clean ``SENSE_*`` environment, and no worker left behind.

``clean_environment`` (autouse) removes every ``SENSE_*`` variable (and pip's own settings) for
the test, so the embedded backend and the defaults apply unless a test sets them.
``no_worker_left`` (autouse) fails a test that leaves a worker running, after stopping it.
``connected`` gives ``connect(worker)`` (``sense.connect``) whose clients are stopped at teardown.

This folder is named like the package it tests, and pytest puts ``tests/`` on ``sys.path``: there
``tests/sense`` would be found first, as an empty namespace package. The repository root goes on
``sys.path`` too (last), so the import system finds the real package (a regular package beats
namespace portions wherever they are on the path); hence no ``__init__.py`` here either.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.append(ROOT)
if "sense" in sys.modules and getattr(sys.modules["sense"], "__file__", None) is None:
    for _name in [n for n in sys.modules if n == "sense" or n.startswith("sense.")]:
        del sys.modules[_name]

import sense  # noqa: E402
from sense._embedded import EmbeddedBackend  # noqa: E402


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SENSE_") or name.startswith("PIP_"):
            monkeypatch.delenv(name)
    # pip reads no configuration file: the tests must not depend on this machine's indexes.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


@pytest.fixture(autouse=True)
def no_worker_left():
    yield
    backend = EmbeddedBackend._instance
    if backend is None:
        return
    running = backend.workers()
    if running:
        backend.stop_all_now()
    pids = [r["pid"] for r in running]
    assert not pids, f"workers left running: pids {pids}"


@pytest.fixture
def connected():
    """``connect(worker)`` whose clients are stopped at teardown."""
    clients = []

    def connect(worker):
        kc = sense.connect(worker)
        clients.append(kc)
        return kc

    yield connect
    for kc in clients:
        kc.stop_channels()
