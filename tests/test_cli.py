"""The ``livepandas`` command, run as a real child process."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(ROOT, "examples", "seed", "code.py")
HELLO = os.path.join(ROOT, "examples", "hello")


def livepandas(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "livepandas_ipython", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        **kwargs,
    )


class Served:
    """A ``livepandas`` serving process; ``url`` is read from its first line of output."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livepandas_ipython", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.first_line = self.proc.stdout.readline()
        assert " on http://" in self.first_line, self.first_line + self.proc.stderr.read()
        self.url = self.first_line.rsplit(" on ", 1)[1].strip()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, out, err


@pytest.fixture
def served():
    procs = []

    def start(*args):
        proc = Served(*args)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.communicate()


# -- --test ---------------------------------------------------------------------------------


def test_seed_test_command_prints_the_result():
    result = livepandas("-P", SEED, "--test", "addition", "--kwargs", '{"x": 1, "y": 2}')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "3"
    assert result.stderr == ""


def test_seed_typo_is_a_clear_name_error():
    result = livepandas("-P", SEED, "--test", "subtract", "--kwargs", '{"x": 3, "y": 1}')
    assert result.returncode == 1
    assert result.stderr == (
        f"livepandas: error: NameError: name 'substract' is not defined ({SEED}, line 14)\n"
    )
    assert "Traceback" not in result.stderr


def test_test_without_kwargs_uses_empty_object(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("def livepandas_hello(name='world'):\n    return {'hello': name}\n")
    result = livepandas("-P", str(code), "--test", "hello")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"hello": "world"}


def test_test_output_of_the_function_comes_before_the_result(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("def livepandas_noisy():\n    print('working')\n    return [1, 2]\n")
    result = livepandas("-P", str(code), "--test", "noisy")
    assert result.stdout.splitlines() == ["working", "[1,2]"]


def test_test_collects_a_generator(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("def livepandas_count(n):\n    yield from range(n)\n")
    result = livepandas("-P", str(code), "--test", "count", "--kwargs", '{"n": 3}')
    assert result.stdout.splitlines()[-1] == "[0,1,2]"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--test", "nope"], "livepandas: error: no function 'nope'; available: addition, subtract"),
        (["--test", "addition", "--kwargs", "{bad"], "livepandas: error: --kwargs is not valid JSON"),
        (["--test", "addition", "--kwargs", "[1, 2]"], "livepandas: error: --kwargs must be a JSON object"),
        (["--test", "addition", "--kwargs", '{"x": 1}'], "livepandas: error: addition(x, y): missing a required"),
    ],
)
def test_test_errors_are_one_line(args, message):
    result = livepandas("-P", SEED, *args)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_missing_file_and_syntax_error(tmp_path):
    result = livepandas("-P", str(tmp_path / "nope.py"), "--test", "x")
    assert result.returncode == 1
    assert result.stderr == f"livepandas: error: Python file {tmp_path / 'nope.py'} does not exist\n"
    bad = tmp_path / "bad.py"
    bad.write_text("def livepandas_x():\n    return (\n\n")
    result = livepandas("-P", str(bad), "--test", "x")
    assert result.returncode == 1
    assert result.stderr.startswith("livepandas: error: SyntaxError: ")
    assert f"({bad}, line 2)" in result.stderr


def test_file_without_functions(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("def add(x, y):\n    return x + y\n")
    result = livepandas("-P", str(code))
    assert result.returncode == 1
    assert "defines no function named livepandas_<name>" in result.stderr


def test_exception_at_load_names_the_line(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("import os\n\nraise RuntimeError('no data')\n")
    result = livepandas("-P", str(code), "--test", "x")
    assert result.stderr == f"livepandas: error: RuntimeError: no data ({code}, line 3)\n"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "the following arguments are required: -P/--python"),
        (["-P", SEED, "--bogus"], "unrecognized arguments: --bogus"),
        (["-P", SEED, "--port", "abc"], "argument --port: invalid int value: 'abc'"),
        (["-P", SEED, "--kwargs", "{}"], "--kwargs needs --test NAME"),
        (["-P", SEED, "--token", "t", "--no-token"], "not allowed with argument"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = livepandas(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: livepandas")
    assert message in result.stderr.splitlines()[-1]


def test_version_and_help():
    result = livepandas("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("livepandas 0.")
    result = livepandas("--help")
    assert result.returncode == 0
    assert "--test NAME" in result.stdout


# -- serving --------------------------------------------------------------------------------


def test_serve_prints_endpoints_and_stops_on_sigterm(served):
    proc = served("-P", SEED, "--port", "0")
    lines = [proc.first_line, proc.proc.stdout.readline(), proc.proc.stdout.readline()]
    port = int(proc.url.rsplit(":", 1)[1].strip("/"))
    assert lines[1].split() == [
        "addition",
        "GET",
        f"http://127.0.0.1:{port}/addition?kwargs={{...}}",
        "WS",
        f"ws://127.0.0.1:{port}/addition/ws",
    ]
    assert lines[2].split()[0] == "subtract"
    reply = requests.get(proc.url + "addition", params={"kwargs": json.dumps({"x": 1, "y": 1})}, timeout=10)
    assert reply.json() == {"result": 2}
    reply = requests.get(proc.url + "subtract", params={"kwargs": json.dumps({"x": 1, "y": 1})}, timeout=10)
    assert reply.status_code == 500
    assert reply.json() == {"exception": "name 'substract' is not defined", "type": "NameError"}
    status, out, err = proc.stop(signal.SIGTERM)
    assert status == 0, err
    assert out.splitlines()[-1] == "Stopped."
    assert err == ""
    # The port is free again (SO_REUSEADDR, as servers bind: closed connections sit in TIME_WAIT).
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_serve_stops_on_ctrl_c(served):
    proc = served("-P", SEED, "--port", "0")
    status, out, err = proc.stop(signal.SIGINT)
    assert status == 0
    assert "Traceback" not in err
    assert out.splitlines()[-1] == "Stopped."


def test_serve_view_and_static(served, tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.css").write_text("h1 { color: red }")
    proc = served(
        "-P", os.path.join(HELLO, "code.py"), "-H", os.path.join(HELLO, "view.html"), "-S", str(tmp_path / "static"),
        "--port", "0",
    )
    page = requests.get(proc.url, timeout=10)
    assert page.status_code == 200
    assert "<h1>Add two numbers, live</h1>" in page.text
    assert requests.get(proc.url + "static/app.css", timeout=10).text == "h1 { color: red }"
    assert requests.get(proc.url + "add", params={"kwargs": '{"x": 40, "y": 2}'}, timeout=10).json() == {"result": 42}


def test_port_in_use_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = livepandas("-P", SEED, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == (
        f"livepandas: error: port {port} on 127.0.0.1 is already in use; "
        "choose another with --port (0 picks a free one)\n"
    )


def test_non_loopback_host_requires_the_printed_token(served):
    proc = served("-P", SEED, "--host", "0.0.0.0", "--port", "0")
    assert "?token=" in proc.url
    token = proc.url.split("?token=")[1]
    port = proc.url.split(":")[2].split("/")[0]
    base = f"http://127.0.0.1:{port}/addition"
    kwargs = json.dumps({"x": 2, "y": 3})
    refused = requests.get(base, params={"kwargs": kwargs}, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["type"] == "Forbidden"
    ok = requests.get(base, params={"kwargs": kwargs, "token": token}, timeout=10)
    assert ok.json() == {"result": 5}
