"""``%%canvas`` and ``%livepandas`` through a real shell, against the real servers they start.

Every canvas binds 127.0.0.1 on a port the magics choose (the configured one when free, else any
free one); tests read it back from the server and call it with ``requests``. User mistakes must
raise exactly ``UsageError`` with the texts pinned here, never ``SystemExit``.
"""

import concurrent.futures
import gc
import json
import threading
import time
import warnings

import pytest
import requests
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from extension_helpers import (
    TIMEOUT,
    assert_port_free,
    call,
    canvas,
    line_magic,
    result,
    server,
    usage_error,
)

from livepandas_ipython.extension import magics_for

ADD = "def livepandas_add(x: int = 1, y: int = 2):\n    return x + y\n"
CANVAS_USAGE = "usage: %%canvas [--port PORT] [--host HOST] [--html FILE] [--static DIR] [--view] [--no-preview] [--height PIXELS] [name]"
VALID = "Valid commands are: serve, stop, list, status, test, upload, preview"


def texts(captured):
    """The text/plain form of everything displayed."""
    return [output.data["text/plain"] for output in captured.outputs]


def wait_until(predicate, what):
    """Poll *predicate* until true; fail after TIMEOUT seconds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def functions(port):
    reply = requests.get(f"http://127.0.0.1:{port}/_functions", timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    return [f["name"] for f in reply.json()["functions"]]


# -- the cell and the notebook's namespace --------------------------------------------------


def test_functions_see_notebook_variables_live(lp):
    lp.run_cell("offset = 1").raise_error()
    canvas(lp, "", "def livepandas_add(x: int = 1):\n    return x + offset\n")
    port = server(lp).port
    assert result(port, "add", x=2) == 3
    lp.run_cell("offset = 100").raise_error()
    assert result(port, "add", x=2) == 102


def test_functions_defined_by_the_cell_are_also_notebook_functions(lp):
    canvas(lp, "", ADD)
    assert lp.run_cell("livepandas_add(2, 3)").result == 5


def test_only_the_cells_own_top_level_functions_are_published(lp):
    lp.run_cell("def livepandas_old():\n    return 'old'\n").raise_error()
    canvas(
        lp,
        "",
        "def livepandas_new():\n"
        "    def livepandas_nested():\n"
        "        return 'nested'\n"
        "    return 'new'\n"
        "\n"
        "def helper():\n"
        "    return 1\n"
        "\n"
        "def livepandas__private():\n"
        "    return 'private'\n",
    )
    port = server(lp).port
    assert functions(port) == ["new"]
    assert result(port, "new") == "new"
    for name in ("old", "nested", "helper", "_private"):
        assert call(port, name).status_code == 404
    assert call(port, "old").json() == {"exception": "no function 'old'; available: new", "type": "FunctionNotFound"}


def test_rerunning_swaps_on_the_same_port_and_drops_functions(lp):
    canvas(lp, "", ADD + "def livepandas_sub(x: int = 1, y: int = 2):\n    return x - y\n")
    port = server(lp).port
    assert result(port, "sub", x=5) == 3
    first = server(lp)

    captured = canvas(lp, "", "def livepandas_add(x: int = 1, y: int = 2):\n    return 10 * (x + y)\n")

    assert server(lp) is first and server(lp).port == port
    assert "address" not in captured.stdout + captured.stderr
    assert result(port, "add", x=1, y=1) == 20
    reply = call(port, "sub", x=5)
    assert reply.status_code == 404
    assert reply.json() == {"exception": "no function 'sub'; available: add", "type": "FunctionNotFound"}


def test_swap_under_concurrent_calls(lp):
    """Callers hammering the endpoint while the cell is re-run see only whole versions, in order."""
    canvas(lp, "", "def livepandas_version():\n    return 0\n")
    port = server(lp).port
    url = f"http://127.0.0.1:{port}/version"
    stop = threading.Event()
    seen = [[] for _ in range(4)]
    failures = []

    def hammer(replies):
        try:
            with requests.Session() as session:
                while not stop.is_set():
                    reply = session.get(url, timeout=TIMEOUT)
                    if reply.status_code != 200:
                        failures.append((reply.status_code, reply.text))
                    else:
                        replies.append(reply.json()["result"])
        except Exception as exc:  # reported by the assertion below
            failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(replies,), daemon=True) for replies in seen]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(seen) or failures, "every caller's first reply")
        for version in range(1, 6):
            canvas(lp, "", f"def livepandas_version():\n    return {version}\n")
            assert server(lp).port == port
            # The callers overlap each swap: one of them has already seen the new version.
            wait_until(lambda: any(r and r[-1] == version for r in seen) or failures, f"version {version}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
    assert failures == []
    for replies in seen:
        assert set(replies) <= set(range(6))
        assert replies == sorted(replies), "a caller saw an older version after a newer one"
    assert {r for replies in seen for r in replies} == set(range(6))


def test_a_call_in_flight_finishes_on_the_old_code(lp):
    lp.user_ns["started"] = started = threading.Event()
    lp.user_ns["release"] = release = threading.Event()
    canvas(lp, "", "def livepandas_slow():\n    started.set()\n    release.wait(60)\n    return 'old'\n")
    port = server(lp).port
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            in_flight = pool.submit(call, port, "slow")
            assert started.wait(TIMEOUT)
            canvas(lp, "", "def livepandas_slow():\n    return 'new'\n")
            # New calls run the new code at once, while the old call is still running.
            assert result(port, "slow") == "new"
            assert not in_flight.done()
        finally:
            release.set()
        reply = in_flight.result(TIMEOUT)
    assert reply.status_code == 200
    assert reply.json() == {"result": "old"}


# -- views, files, ports --------------------------------------------------------------------


def test_view_sets_the_page_without_touching_the_functions(lp):
    canvas(lp, "", ADD)
    port = server(lp).port
    captured = canvas(lp, "--view", "<h1>Adder</h1>\n")
    assert server(lp).port == port
    page = requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
    assert page.status_code == 200
    assert page.text == "<h1>Adder</h1>\n"
    assert page.headers["Content-Type"].startswith("text/html")
    assert functions(port) == ["add"]
    assert result(port, "add", x=3) == 5
    # A view cell previews the view, not the forms.
    assert texts(captured) == [
        f"Canvas 'default' on http://127.0.0.1:{port}/ (1 function)\n"
        f"  add(x: int = 1, y: int = 2)\n"
        f"    GET http://127.0.0.1:{port}/add?kwargs={{...}}   WS ws://127.0.0.1:{port}/add/ws\n"
        f"  view: http://127.0.0.1:{port}/"
    ]
    # Re-running the functions keeps the view.
    canvas(lp, "", "def livepandas_add(x: int = 1, y: int = 2):\n    return -1\n")
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "<h1>Adder</h1>\n"
    assert result(port, "add") == -1


def test_view_before_any_function_cell(lp):
    canvas(lp, "board --view", "<p>board</p>")
    port = server(lp, "board").port
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "<p>board</p>"
    assert functions(port) == []
    canvas(lp, "board", ADD)
    assert server(lp, "board").port == port
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "<p>board</p>"
    assert result(port, "add") == 3


def test_view_moves_to_the_port_it_names(lp, reserved_port):
    port = reserved_port()
    canvas(lp, "", ADD)
    old = server(lp).port
    canvas(lp, f"--view --port {port}", "<p>moved</p>")
    assert server(lp).port == port
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "<p>moved</p>"
    assert result(port, "add") == 3
    assert_port_free(old)


def test_view_height_from_flag_and_trait(lp):
    canvas(lp, "", ADD)
    captured = canvas(lp, "--view --height 120", "<p>small</p>")
    assert "height: 120px" in captured.outputs[0].data["text/html"]
    lp.run_line_magic("config", "LivePandasMagics.height = 480")
    captured = canvas(lp, "--view", "<p>tall</p>")
    assert "height: 480px" in captured.outputs[0].data["text/html"]


def test_view_and_html_file_conflict(lp, tmp_path):
    view = tmp_path / "view.html"
    view.write_text("<p>file</p>", encoding="utf-8")
    message = usage_error(canvas, lp, f"--view --html {view}", "<p>cell</p>")
    assert message == "%%canvas: --view takes the view from the cell and --html from a file; use one of them"
    with pytest.raises(LookupError):
        server(lp)


def test_html_file_and_static_dir(lp, tmp_path):
    view = tmp_path / "view.html"
    view.write_text("<p>from a file</p>", encoding="utf-8")
    static = tmp_path / "static"
    static.mkdir()
    (static / "data.txt").write_text("static data", encoding="utf-8")

    canvas(lp, f"files --html {view} --static {static}", ADD)
    port = server(lp, "files").port
    base = f"http://127.0.0.1:{port}/"
    assert requests.get(base, timeout=TIMEOUT).text == "<p>from a file</p>"
    assert requests.get(base + "static/data.txt", timeout=TIMEOUT).text == "static data"
    assert result(port, "add", y=1) == 2

    # Without the flags, a re-run keeps both.
    canvas(lp, "files", ADD)
    assert requests.get(base, timeout=TIMEOUT).text == "<p>from a file</p>"
    assert requests.get(base + "static/data.txt", timeout=TIMEOUT).text == "static data"


def test_port_moves_the_canvas(lp, reserved_port):
    canvas(lp, "", ADD)
    old = server(lp).port
    new = reserved_port()
    canvas(lp, f"--port {new}", ADD)
    assert server(lp).port == new
    assert result(new, "add") == 3
    assert_port_free(old)
    # Naming the port it already has is a plain swap.
    first = server(lp)
    canvas(lp, f"--port {new}", "def livepandas_add():\n    return 'same port'\n")
    assert server(lp) is first
    assert result(new, "add") == "same port"


def test_a_port_in_use_is_a_usage_error(lp, held_port):
    port = held_port()
    assert usage_error(lp.run_cell_magic, "canvas", f"--port {port}", ADD) == (
        f"%%canvas: port {port} on 127.0.0.1 is already in use; choose another with --port (0 picks a free one)"
    )


def test_two_canvases_get_two_ports(lp):
    canvas(lp, "one", "def livepandas_which():\n    return 'one'\n")
    canvas(lp, "two", "def livepandas_which():\n    return 'two'\n")
    one, two = server(lp, "one").port, server(lp, "two").port
    assert one != two
    assert result(one, "which") == "one"
    assert result(two, "which") == "two"


def test_the_configured_port_is_tried_first_then_a_free_one(lp, reserved_port, held_port):
    port = reserved_port()
    lp.run_line_magic("config", f"LivePandasMagics.port = {port}")
    canvas(lp, "first", ADD)
    assert server(lp, "first").port == port
    # Taken now: the next canvas gets a free port instead of an error.
    canvas(lp, "second", ADD)
    assert server(lp, "second").port not in (port, None)
    assert result(server(lp, "second").port, "add") == 3


def test_config_port_applies_to_canvases_started_after_the_change(lp, reserved_port):
    canvas(lp, "first", ADD)
    port = reserved_port()
    lp.run_line_magic("config", f"LivePandasMagics.port = {port}")
    canvas(lp, "second", ADD)
    assert server(lp, "second").port == port


def test_env_port_is_the_default(shell, monkeypatch, reserved_port):
    port = reserved_port()
    monkeypatch.setenv("LIVEPANDAS_PORT", str(port))
    shell.run_line_magic("load_ext", "livepandas")
    assert magics_for(shell).port == port
    canvas(shell, "", ADD)
    assert server(shell).port == port


def test_config_overrides_the_env(shell, monkeypatch, reserved_port):
    monkeypatch.setenv("LIVEPANDAS_PORT", "1")
    monkeypatch.setenv("LIVEPANDAS_URL_PATTERN", "http://env.example/{port}/")
    shell.run_line_magic("load_ext", "livepandas")
    port = reserved_port()
    shell.run_line_magic("config", f"LivePandasMagics.port = {port}")
    shell.run_line_magic("config", "LivePandasMagics.url_pattern = 'http://config.example/{port}/'")
    captured = canvas(shell, "", ADD)
    assert server(shell).port == port
    assert texts(captured)[0].startswith(f"Canvas 'default' on http://config.example/{port}/?token=")


def test_env_url_pattern_is_the_default(shell, monkeypatch):
    monkeypatch.setenv("LIVEPANDAS_URL_PATTERN", "https://hub.example.org/user/me/proxy/{port}/")
    shell.run_line_magic("load_ext", "livepandas")
    captured = canvas(shell, "", ADD)
    port = server(shell).port
    token = server(shell).security.token
    base = f"https://hub.example.org/user/me/proxy/{port}/"
    assert texts(captured)[0] == (
        f"Canvas 'default' on {base}?token={token} (1 function)\n"
        f"  add(x: int = 1, y: int = 2)\n"
        f"    GET {base}add?kwargs={{...}}   WS wss://hub.example.org/user/me/proxy/{port}/add/ws"
    )


def test_options_are_documented_traits(lp):
    with capture_output() as captured:
        lp.run_line_magic("config", "LivePandasMagics")
    text = " ".join(captured.stdout.split())  # help is wrapped
    for option in ("port", "host", "url_pattern", "debug", "preview", "widgets", "allow_origins", "max_workers"):
        assert f"LivePandasMagics.{option}=" in text
    assert "(env: LIVEPANDAS_PORT)" in text
    assert "(env: LIVEPANDAS_URL_PATTERN)" in text


# -- failing cells --------------------------------------------------------------------------


def test_a_cell_that_raises_keeps_the_previous_functions(lp):
    canvas(lp, "", ADD)
    port = server(lp).port
    message = usage_error(
        lp.run_cell_magic, "canvas", "", "def livepandas_add(x: int = 1, y: int = 2):\n    return 0\n1 / 0\n"
    )
    assert message == "%%canvas: the cell failed, so canvas 'default' keeps its functions (error above)"
    assert result(port, "add") == 3


def test_the_error_of_a_failing_cell_is_shown(lp):
    with capture_output() as captured, pytest.raises(UsageError):
        lp.run_cell_magic("canvas", "", "def livepandas_add():\n    return 0\n1 / 0\n")
    assert "ZeroDivisionError" in captured.stdout
    assert "division by zero" in captured.stdout


def test_a_first_cell_that_raises_starts_nothing(lp):
    message = usage_error(lp.run_cell_magic, "canvas", "fresh", "def livepandas_add():\n    return 0\nundefined_name\n")
    assert message == "%%canvas: the cell failed, so canvas 'fresh' was not started (error above)"
    assert magics_for(lp).manager.servers == {}


def test_a_cell_with_a_syntax_error(lp):
    canvas(lp, "", ADD)
    message = usage_error(lp.run_cell_magic, "canvas", "", "def livepandas_add(:\n    pass\n")
    assert message == "%%canvas: the cell failed, so canvas 'default' keeps its functions (error above)"
    assert result(server(lp).port, "add") == 3


def test_a_cell_without_functions(lp):
    message = usage_error(lp.run_cell_magic, "canvas", "", "x = 1\ndef helper():\n    return x\n")
    assert message == (
        "%%canvas: this cell defines no function named livepandas_<name>, so canvas 'default' has nothing to serve"
    )
    assert magics_for(lp).manager.servers == {}
    # The cell still ran, as any cell does.
    assert lp.user_ns["x"] == 1


# -- exact usage errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, message",
    [
        ("--port x", f"%%canvas: argument --port: invalid int value: 'x'\n{CANVAS_USAGE}"),
        ("--port", f"%%canvas: argument --port: expected one argument\n{CANVAS_USAGE}"),
        ("--bogus", f"%%canvas: unrecognized arguments: --bogus\n{CANVAS_USAGE}"),
        ("--help", f"%%canvas: unrecognized arguments: --help\n{CANVAS_USAGE}"),
        ("-h", f"%%canvas: unrecognized arguments: -h\n{CANVAS_USAGE}"),
        ("one two", f"%%canvas: unrecognized arguments: two\n{CANVAS_USAGE}"),
        ("--por 1", f"%%canvas: unrecognized arguments: --por\n{CANVAS_USAGE}"),
        ("'unclosed", "%%canvas: No closing quotation"),
        (
            "--html /nonexistent/view.html",
            "%%canvas: cannot read HTML view /nonexistent/view.html: No such file or directory",
        ),
        ("--static /nonexistent/dir", "%%canvas: static directory /nonexistent/dir does not exist"),
    ],
)
def test_canvas_usage_errors(lp, line, message):
    assert usage_error(lp.run_cell_magic, "canvas", line, ADD) == message
    assert magics_for(lp).manager.servers == {}


@pytest.mark.parametrize(
    "line, message",
    [
        ("", f"%livepandas needs a command. {VALID}"),
        ("srve", f"%livepandas has no command 'srve'. {VALID}"),
        ("--help", f"%livepandas has no command '--help'. {VALID}"),
        ("uplaod", f"%livepandas has no command 'uplaod'. {VALID}"),
        ("upload nope", "%livepandas upload: no canvas 'nope'; served canvases: default"),
        (
            "upload --port",
            "%livepandas upload: unrecognized arguments: --port\n"
            "usage: %livepandas upload [--session] [--hub URL] [-U USER] [-K KEY] [--name NAME] [canvas]",
        ),
        ("list 'x", "%livepandas: No closing quotation"),
        ("list x", "%livepandas list: unrecognized arguments: x\nusage: %livepandas list"),
        ("stop --all", "%livepandas stop: unrecognized arguments: --all\nusage: %livepandas stop [NAME ...]"),
        ("stop nope", "%livepandas stop: no canvas 'nope'; served canvases: default"),
        ("status a b", "%livepandas status: unrecognized arguments: b\nusage: %livepandas status [name]"),
        ("status nope", "%livepandas status: no canvas 'nope'; served canvases: default"),
        ("preview nope", "%livepandas preview: no canvas 'nope'; served canvases: default"),
        ("preview --x", "%livepandas preview: unrecognized arguments: --x\nusage: %livepandas preview [name]"),
        (
            "test",
            "%livepandas test: the following arguments are required: function\n"
            "usage: %livepandas test [--canvas NAME] [--kwargs JSON] function",
        ),
        (
            "test add --kwargs",
            "%livepandas test: argument --kwargs: expected one argument\n"
            "usage: %livepandas test [--canvas NAME] [--kwargs JSON] function",
        ),
        (
            "test add --kwargs '{'",
            "%livepandas test: --kwargs is not valid JSON: unexpected end of data: line 1 column 2 (char 1)",
        ),
        ("test add --kwargs '[1]'", "%livepandas test: --kwargs must be a JSON object, like '{\"x\": 1}'"),
        (
            "test add --kwargs '{\"z\": 1}'",
            "%livepandas test: add(x: int = 1, y: int = 2): got an unexpected keyword argument 'z'",
        ),
        ("test nope", "%livepandas test: no served canvas has a function 'nope'; served: default (add)"),
        ("test add --canvas nope", "%livepandas test: no canvas 'nope'; served canvases: default"),
        (
            "serve",
            "%livepandas serve: the following arguments are required: -P/--python\n"
            "usage: %livepandas serve -P CODE.PY [-H VIEW.HTML] [-S DIR] [--port PORT] [--host HOST] [name]",
        ),
        ("serve -P /nonexistent/code.py", "%livepandas serve: Python file /nonexistent/code.py does not exist"),
        (
            "serve -P code.py --bogus",
            "%livepandas serve: unrecognized arguments: --bogus\n"
            "usage: %livepandas serve -P CODE.PY [-H VIEW.HTML] [-S DIR] [--port PORT] [--host HOST] [name]",
        ),
    ],
)
def test_livepandas_usage_errors(lp, line, message):
    canvas(lp, "", ADD)
    assert usage_error(lp.run_line_magic, "livepandas", line) == message


@pytest.mark.parametrize("command", ["serve", "stop", "list", "status", "test", "upload", "preview"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_flags_are_usage_errors_not_exits(lp, command, flag):
    """argparse would print help and ``sys.exit``: in a kernel that must be a UsageError instead."""
    message = usage_error(lp.run_line_magic, "livepandas", f"{command} {flag}")
    assert message.startswith(f"%livepandas {command}: ")
    assert f"\nusage: %livepandas {command}" in message


def test_falling_back_from_a_taken_port_leaves_no_socket_open(lp, held_port):
    port = held_port()
    lp.run_line_magic("config", f"LivePandasMagics.port = {port}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        canvas(lp, "", ADD)
        gc.collect()  # a socket left to the collector warns when collected
    assert server(lp).port != port
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- %livepandas subcommands ----------------------------------------------------------------


def test_list(lp):
    assert texts(line_magic(lp, "list")) == ["No canvases are served."]
    canvas(lp, "", ADD)
    canvas(lp, "other", "def livepandas_a():\n    return 1\n\ndef livepandas_b():\n    return 2\n")
    p, q = server(lp).port, server(lp, "other").port
    captured = line_magic(lp, "list")
    assert texts(captured) == [
        f"default  port {p}  http://127.0.0.1:{p}/\n"
        f"  functions: add\n"
        f"other  port {q}  http://127.0.0.1:{q}/\n"
        f"  functions: a, b"
    ]
    assert f'<a href="http://127.0.0.1:{q}/" target="_blank">' in captured.outputs[0].data["text/html"]


def test_status_counts_calls_and_keeps_the_last_error(lp):
    canvas(
        lp,
        "",
        ADD + "def livepandas_boom(what: str = 'input'):\n    raise ValueError(f'bad <{what}>')\n",
    )
    port = server(lp).port
    assert texts(line_magic(lp, "status")) == [
        f"default  port {port}  http://127.0.0.1:{port}/\n  add: 0 calls, 0 errors\n  boom: 0 calls, 0 errors"
    ]
    assert result(port, "add") == 3
    assert result(port, "add", x=2) == 4
    assert call(port, "boom").status_code == 500

    captured = line_magic(lp, "status default")
    assert texts(captured) == [
        f"default  port {port}  http://127.0.0.1:{port}/\n"
        "  add: 2 calls, 0 errors\n"
        "  boom: 1 calls, 1 errors\n"
        "  last error: boom: ValueError: bad <input>"
    ]
    html = captured.outputs[0].data["text/html"]
    assert "boom: ValueError: bad &lt;input&gt;" in html
    assert "<input>" not in html


def test_test_prints_the_json_result(lp):
    canvas(lp, "", ADD + "def livepandas_info(name: str = 'x'):\n    return {'name': name, 'n': [1, 2]}\n")
    assert line_magic(lp, "test add").stdout == "3\n"
    assert line_magic(lp, "test add --kwargs '{\"x\": 40}'").stdout == "42\n"
    captured = line_magic(lp, "test info --canvas default --kwargs '{\"name\": \"é\"}'")
    assert captured.stdout == '{"name":"é","n":[1,2]}\n'
    # In this kernel: no HTTP call is counted.
    assert server(lp).stats.as_dict()["calls"] == {}


def test_test_reports_a_raising_function(lp):
    canvas(lp, "", "def livepandas_boom():\n    raise KeyError('missing')\n")
    assert usage_error(lp.run_line_magic, "livepandas", "test boom") == "%livepandas test: KeyError: 'missing'"


def test_test_finds_the_function_in_any_canvas(lp):
    canvas(lp, "one", ADD)
    canvas(lp, "two", "def livepandas_mul(x: int = 2, y: int = 3):\n    return x * y\n")
    assert line_magic(lp, "test mul").stdout == "6\n"
    assert line_magic(lp, "test add").stdout == "3\n"


def test_stop_one_canvas_releases_its_port(lp):
    canvas(lp, "one", ADD)
    canvas(lp, "two", ADD)
    one, two = server(lp, "one").port, server(lp, "two").port
    assert line_magic(lp, "stop one").stdout == f"Stopped canvas 'one' (port {one} released).\n"
    assert_port_free(one)
    assert result(two, "add") == 3
    assert list(magics_for(lp).manager.servers) == ["two"]


def test_stop_all(lp):
    assert line_magic(lp, "stop").stdout == "No canvases are served.\n"
    canvas(lp, "one", ADD)
    canvas(lp, "two", ADD)
    one, two = server(lp, "one").port, server(lp, "two").port
    assert line_magic(lp, "stop").stdout == (
        f"Stopped canvas 'one' (port {one} released).\nStopped canvas 'two' (port {two} released).\n"
    )
    assert_port_free(one)
    assert_port_free(two)
    assert texts(line_magic(lp, "list")) == ["No canvases are served."]
    # A stopped canvas starts again on the next run of its cell.
    canvas(lp, "one", ADD)
    assert result(server(lp, "one").port, "add") == 3


def test_serve_a_file(lp, tmp_path):
    code = tmp_path / "shop.py"
    code.write_text("PRICE = 3\n\ndef livepandas_total(n: int = 1):\n    return n * PRICE\n", encoding="utf-8")
    view = tmp_path / "shop.html"
    view.write_text("<p>shop</p>", encoding="utf-8")
    captured = line_magic(lp, f"serve -P {code} -H {view}")
    port = server(lp, "shop").port
    assert texts(captured)[0].startswith(
        f"Canvas 'shop' on http://127.0.0.1:{port}/ (1 function)\n  total(n: int = 1)\n"
    )
    assert result(port, "total", n=4) == 12
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "<p>shop</p>"
    # The file's names are its own, not the notebook's.
    assert "PRICE" not in lp.user_ns

    # Serving again under that name swaps on the same port; another name gets its own.
    code.write_text("def livepandas_total(n: int = 1):\n    return -n\n", encoding="utf-8")
    line_magic(lp, f"serve -P {code}")
    assert server(lp, "shop").port == port
    assert result(port, "total", n=4) == -4
    line_magic(lp, f"serve copy -P {code}")
    assert server(lp, "copy").port != port


def test_serve_a_file_that_fails(lp, tmp_path):
    code = tmp_path / "broken.py"
    code.write_text("def livepandas_f():\n    return 1\n\nraise RuntimeError('no')\n", encoding="utf-8")
    assert usage_error(lp.run_line_magic, "livepandas", f"serve -P {code}") == (
        f"%livepandas serve: RuntimeError: no ({code}, line 4)"
    )


def test_preview_shows_text_html_and_forms(lp):
    canvas(lp, "", ADD)
    port = server(lp).port
    captured = line_magic(lp, "preview")
    preview, forms = captured.outputs
    assert preview.data["text/plain"] == (
        f"Canvas 'default' on http://127.0.0.1:{port}/ (1 function)\n"
        f"  add(x: int = 1, y: int = 2)\n"
        f"    GET http://127.0.0.1:{port}/add?kwargs={{...}}   WS ws://127.0.0.1:{port}/add/ws"
    )
    assert f'<a href="http://127.0.0.1:{port}/add" target="_blank">' in preview.data["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in forms.data


def test_canvas_cell_displays_the_same_preview(lp):
    captured = canvas(lp, "", ADD)
    assert len(captured.outputs) == 2
    assert captured.outputs[0].data == line_magic(lp, "preview").outputs[0].data
    assert captured.stdout == ""


def test_no_preview(lp):
    assert canvas(lp, "--no-preview", ADD).outputs == []
    lp.run_line_magic("config", "LivePandasMagics.preview = False")
    assert canvas(lp, "", ADD).outputs == []


def test_widgets_can_be_turned_off(lp):
    lp.run_line_magic("config", "LivePandasMagics.widgets = False")
    captured = canvas(lp, "", ADD)
    assert [list(output.data) for output in captured.outputs] == [["text/plain", "text/html"]]


def test_kwargs_json_reaches_the_function_as_json(lp):
    canvas(lp, "", "def livepandas_echo(value=None):\n    return {'type': type(value).__name__, 'value': value}\n")
    port = server(lp).port
    assert result(port, "echo", value=[1, "two", None]) == {"type": "list", "value": [1, "two", None]}
    assert json.loads(line_magic(lp, "test echo --kwargs '{\"value\": {\"a\": 1}}'").stdout) == {
        "type": "dict",
        "value": {"a": 1},
    }
