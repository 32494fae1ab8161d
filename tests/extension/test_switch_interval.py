"""The GIL switch interval: lowered while a canvas answers calls, the usual one otherwise.

Real servers, real HTTP calls; the interval is the interpreter's own (``sys.getswitchinterval``).
"""

import sys
import threading
import time

import pytest
from extension_helpers import call, canvas, result, server

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.manager import CanvasManager
from livepandas_ipython.server.gil import SwitchInterval

TIMEOUT = 30
USUAL = 0.005
BUSY = 0.0002

CELL = "def livepandas_add(x: int = 1, y: int = 2):\n    return x + y\n"


def wait_until(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def usual_interval():
    saved = sys.getswitchinterval()
    sys.setswitchinterval(USUAL)
    yield USUAL
    sys.setswitchinterval(saved)


@pytest.fixture
def manager(usual_interval):
    manager = CanvasManager(default_port=0, switch_interval=BUSY)
    yield manager
    manager.close()


def add_port(manager, name="c"):
    return manager.publish(name, Canvas({"add": lambda x=1, y=2: x + y}, name=name), port=0).port


def test_serving_alone_leaves_the_interval_alone(manager):
    add_port(manager)
    time.sleep(0.2)
    assert sys.getswitchinterval() == USUAL


def test_a_call_lowers_it_and_half_a_second_without_calls_restores_it(manager):
    port = add_port(manager)
    assert result(port, "add", x=2, y=3) == 5
    assert sys.getswitchinterval() == pytest.approx(BUSY)  # lowered before the reply was sent
    wait_until(lambda: sys.getswitchinterval() == USUAL)
    assert result(port, "add") == 3  # and lowered again by the next call
    assert sys.getswitchinterval() == pytest.approx(BUSY)


def test_steady_calls_keep_it_lowered(manager):
    port = add_port(manager)
    seen = []
    end = time.monotonic() + 1.5  # three idle periods
    while time.monotonic() < end:
        call(port, "add")
        seen.append(sys.getswitchinterval())
        time.sleep(0.1)
    assert seen and all(value == pytest.approx(BUSY) for value in seen)


def test_close_restores_it_at_once(manager):
    port = add_port(manager)
    call(port, "add")
    assert sys.getswitchinterval() == pytest.approx(BUSY)
    manager.close()
    assert sys.getswitchinterval() == USUAL


def test_zero_never_touches_it(usual_interval):
    manager = CanvasManager(default_port=0, switch_interval=0)
    try:
        port = add_port(manager)
        for _ in range(3):
            call(port, "add")
        assert sys.getswitchinterval() == USUAL
    finally:
        manager.close()


def test_changing_it_while_lowered_restores_and_applies_the_new_value(manager):
    port = add_port(manager)
    call(port, "add")
    manager.switch_interval = 0.0004
    assert sys.getswitchinterval() == USUAL
    call(port, "add")
    assert sys.getswitchinterval() == pytest.approx(0.0004)
    manager.switch_interval = 0
    assert sys.getswitchinterval() == USUAL
    call(port, "add")
    assert sys.getswitchinterval() == USUAL


def test_websocket_calls_count_too(manager):
    import websocket

    port = add_port(manager)
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/add/ws", timeout=TIMEOUT)
    try:
        ws.send('{"x": 4}')
        assert ws.recv() == '{"result":6}'
        assert sys.getswitchinterval() == pytest.approx(BUSY)
    finally:
        ws.close()


def test_switch_interval_rejects_non_positive_values():
    with pytest.raises(ValueError, match="positive"):
        SwitchInterval(0, loop=None)


def test_concurrent_calls_from_many_threads_restore_exactly_the_usual_value(manager):
    port = add_port(manager)
    errors = []

    def hammer():
        try:
            for _ in range(30):
                assert call(port, "add").status_code == 200
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not errors
    wait_until(lambda: sys.getswitchinterval() == USUAL)


# -- through the extension ------------------------------------------------------------------


def test_the_magics_trait_drives_it_and_unload_restores_it(lp, usual_interval):
    lp.run_line_magic("config", "LivePandasMagics.port = 0")
    canvas(lp, "--no-preview", CELL)
    port = server(lp).port
    assert sys.getswitchinterval() == USUAL  # serving, no call yet
    assert result(port, "add", x=1) == 3
    assert sys.getswitchinterval() == pytest.approx(0.0002)  # the default
    lp.run_line_magic("config", "LivePandasMagics.switch_interval = 0.0003")
    assert result(port, "add") == 3
    assert sys.getswitchinterval() == pytest.approx(0.0003)
    lp.run_line_magic("unload_ext", "livepandas")
    assert sys.getswitchinterval() == USUAL


def test_the_environment_sets_the_default(shell, monkeypatch, usual_interval):
    monkeypatch.setenv("LIVEPANDAS_SWITCH_INTERVAL", "0")
    shell.run_line_magic("load_ext", "livepandas")
    shell.run_line_magic("config", "LivePandasMagics.port = 0")
    canvas(shell, "--no-preview", CELL)
    assert result(server(shell).port, "add") == 3
    assert sys.getswitchinterval() == USUAL
