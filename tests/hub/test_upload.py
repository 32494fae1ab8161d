"""Publishing to a real hub: ``HubClient``, ``livepandas ... --new`` (a real child process) and
``%livepandas upload`` (a real InteractiveShell).

The canvas's Python is checked before anything is sent, so each refused upload also asserts
that the hub got no canvas.
"""

import atexit
import base64
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import requests
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from livepandas_ipython.client import HubClient
from livepandas_ipython.commands.upload import read_static, undefined_names
from livepandas_ipython.errors import CanvasError, HubError

from .conftest import ADD

ENV = ("LIVEPANDAS_HUB_URL", "LIVEPANDAS_USERNAME", "LIVEPANDAS_API_KEY")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 60

USES_OFFSET = "offset_scale = 2\n\ndef livepandas_add(x, y):\n    return (x + y) * offset_scale + offset\n"


# -- helpers --------------------------------------------------------------------------------------


def clean_env(**values):
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(values)
    return env


def livepandas(*args, env=None, cwd=None):
    """Run the ``livepandas`` command with no terminal; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "livepandas_ipython", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env if env is not None else clean_env(),
        cwd=cwd or ROOT,
    )


def field(stdout, name):
    match = re.search(rf"^  {name}:\s+(\S+)$", stdout, re.M)
    assert match, stdout
    return match.group(1)


def one_line_error(result):
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("livepandas: error: ")
    return lines[0][len("livepandas: error: "):]


def canvas_ids(hub, user="alice"):
    r = hub.get("api/v1/canvases/", user=user)
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()]


def call_socket(socket_, name, **kwargs):
    r = requests.get(f"http://{socket_}/{name}", params={"kwargs": json.dumps(kwargs)}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()["result"]


@pytest.fixture
def code(tmp_path):
    """Factory: write a canvas file (and optional view and static dir) in a fresh directory."""

    def write(python=ADD, html=None, static=None, name="adder.py"):
        folder = tmp_path / f"canvas{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        path = folder / name
        path.write_text(python)
        paths = {"python": str(path)}
        if html is not None:
            (folder / "view.html").write_text(html)
            paths["html"] = str(folder / "view.html")
        if static is not None:
            root = folder / "static"
            for rel, data in static.items():
                target = root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            root.mkdir(exist_ok=True)
            paths["static"] = str(root)
        return paths

    return write


@pytest.fixture
def closed_port():
    """A loopback port bound by this test but not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


# -- HubClient ------------------------------------------------------------------------------------


def test_client_round_trip(shared_hub):
    with HubClient(shared_hub.url, "alice", shared_hub.keys["alice"], timeout=30) as client:
        assert client.info()["canvases"] == f"{shared_hub.url}api/v1/canvases/"
        assert client.whoami()["name"] == "alice"
        model = client.create_canvas(ADD, html="<p>v</p>", static={"img/a.bin": b"\x00\x01", "t.txt": "text"}, name="rt")
        assert model["functions"] == ["add", "pid"]
        got = client.canvas(model["id"])
        assert (got["python"], got["html"], got["static"], got["name"]) == (ADD, "<p>v</p>", ["img/a.bin", "t.txt"], "rt")
        static = os.path.join(shared_hub.data_dir, "canvases", str(model["id"]), "static", "img", "a.bin")
        with open(static, "rb") as f:
            assert f.read() == b"\x00\x01"
        assert model["id"] in [c["id"] for c in client.canvases()]
        client.update_canvas(model["id"], html=None, static={})
        got = client.canvas(model["id"])
        assert (got["python"], got["html"], got["static"]) == (ADD, None, [])
        session = client.wait_for_socket(client.create_session(model["id"])["id"], timeout=30)
        assert call_socket(session["socket"], "add", x=1, y=2) == 3
        client.delete_session(session["id"])
        assert client.session(session["id"])["status"] == "stopped"
        client.delete_canvas(model["id"])
        assert client.share_url(7) == f"{shared_hub.url}canvases/7/"


def test_client_reads_its_defaults_from_the_environment(shared_hub, monkeypatch):
    monkeypatch.setenv("LIVEPANDAS_HUB_URL", shared_hub.url.rstrip("/"))
    monkeypatch.setenv("LIVEPANDAS_USERNAME", "alice")
    monkeypatch.setenv("LIVEPANDAS_API_KEY", shared_hub.keys["alice"])
    with HubClient() as client:
        assert client.url == shared_hub.url
        assert client.whoami()["name"] == "alice"


def test_client_errors_carry_status_and_the_hubs_message(shared_hub, closed_port):
    with HubClient(shared_hub.url, "alice", "wrong-key") as client:
        with pytest.raises(HubError) as info:
            client.canvases()
    err = info.value
    assert err.status == 401 and err.response.status_code == 401
    assert err.message == "invalid credentials: unknown user, or a wrong or revoked key"
    assert err.url == f"{shared_hub.url}api/v1/canvases/"
    assert str(err) == f"401 Unauthorized for url: {err.url} — {err.message}"
    assert isinstance(err, HubError) and "\n" not in str(err)

    with HubClient(shared_hub.url, "alice", shared_hub.keys["alice"]) as client:
        with pytest.raises(HubError) as info:
            client.canvas(999999)
        assert (info.value.status, info.value.message) == (404, "no canvas 999999")
        with pytest.raises(HubError) as info:
            client.create_canvas("x = 1\ndef livepandas_f(:\n    pass\n")
        assert (info.value.status, info.value.line) == (400, 2)
        assert "SyntaxError" in info.value.message
        with pytest.raises(HubError) as info:
            client.create_session("not-an-id")
        assert info.value.status == 400
        # A canvas that fails to load on the worker: the session fails, and says why.
        broken = client.create_canvas("def livepandas_f():\n    pass\nraise RuntimeError('boom at import')\n")
        with pytest.raises(HubError) as info:
            client.wait_for_socket(client.create_session(broken["id"])["id"], timeout=30)
        assert info.value.status is None
        assert str(info.value).startswith("session failed: ") and "boom at import" in str(info.value)

    with pytest.raises(HubError) as info:
        HubClient(shared_hub.url, "alice", None).canvases()
    assert "no API key" in str(info.value) and "LIVEPANDAS_API_KEY" in str(info.value)

    url = f"http://127.0.0.1:{closed_port}/"
    with pytest.raises(HubError) as info:
        HubClient(url, "alice", "key", timeout=5).info()
    assert info.value.status is None and info.value.response is None
    assert str(info.value) == f"cannot reach the hub at {url}: Connection refused"

    with pytest.raises(HubError, match="is not a valid hub URL"):
        HubClient("http://", "alice", "key")


# -- the upload checks ----------------------------------------------------------------------------


def test_undefined_names_sees_every_scope():
    source = textwrap.dedent(
        """
        import os
        from math import pi as PI
        count = 0

        def livepandas_f(x, y=default_y):
            global count, made
            count += 1
            made = 1
            return [z * scale for z in range(x)] + [(lambda q: q + hidden)(1), PI, os.sep, len(made_somewhere)]

        class K:
            a = klass_var

            def m(self):
                return made + __name__ + print.__name__

        try:
            import numpy as np
        except ImportError:
            np = None
        with open(__file__) as fh:
            pass
        if (walrus := 3):
            made_somewhere = [walrus]
        """
    )
    assert undefined_names(source) == [("default_y", 6), ("hidden", 10), ("scale", 10), ("klass_var", 13)]
    assert undefined_names("from os import *\ndef livepandas_f():\n    return sep + nope\n") == []


def test_static_files_stay_inside_their_directory(tmp_path):
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_bytes(b"body{}")
    (root / "alias.css").symlink_to(root / "css" / "site.css")
    (root / "loop").symlink_to(root)  # a link back up the tree is not followed twice
    assert read_static(str(root)) == {"alias.css": b"body{}", "css/site.css": b"body{}"}

    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (root / "leak.txt").symlink_to(secret)
    with pytest.raises(CanvasError, match=r"static file leak.txt links to .*secret.txt, outside"):
        read_static(str(root))
    (root / "leak.txt").unlink()
    (root / "up").symlink_to(tmp_path)
    with pytest.raises(CanvasError, match="static directory entry up links to"):
        read_static(str(root))


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_upload_with_flags_view_and_static(shared_hub, code):
    paths = code(html="<h1>view</h1>", static={"css/site.css": b"body{}", "logo.bin": b"\x89PNG\x00"})
    result = livepandas(
        "-P", paths["python"], "-H", paths["html"], "-S", paths["static"], "--new",
        "-U", "alice", "-K", shared_hub.keys["alice"], "--hub", shared_hub.url, "--name", "flags",
    )
    assert result.returncode == 0, result.stderr
    canvas_id = int(field(result.stdout, "id"))
    assert result.stdout.startswith(f"Uploaded canvas {canvas_id} 'flags' to {shared_hub.url}\n")
    assert "  functions: add, pid\n" in result.stdout
    assert field(result.stdout, "share") == f"{shared_hub.url}canvases/{canvas_id}/"
    assert "socket" not in result.stdout

    got = shared_hub.get(f"api/v1/canvases/{canvas_id}/", user="alice").json()
    with open(paths["python"]) as f:
        assert got["python"] == f.read()
    assert got["html"] == "<h1>view</h1>"
    assert got["static"] == ["css/site.css", "logo.bin"]
    assert got["name"] == "flags"
    stored = os.path.join(shared_hub.data_dir, "canvases", str(canvas_id), "static", "logo.bin")
    with open(stored, "rb") as f:
        assert f.read() == b"\x89PNG\x00"


def test_cli_upload_from_the_environment_with_a_session(shared_hub, code):
    paths = code(name="summing.py")
    env = clean_env(
        LIVEPANDAS_HUB_URL=shared_hub.url, LIVEPANDAS_USERNAME="alice", LIVEPANDAS_API_KEY=shared_hub.keys["alice"]
    )
    result = livepandas("-P", paths["python"], "--new", "--session", env=env)
    assert result.returncode == 0, result.stderr
    canvas_id = int(field(result.stdout, "id"))
    got = shared_hub.get(f"api/v1/canvases/{canvas_id}/", user="alice").json()
    assert (got["name"], got["html"], got["static"]) == ("summing", None, [])
    socket_ = field(result.stdout, "socket")
    assert call_socket(socket_, "add", x=20, y=22) == 42
    session = shared_hub.get(f"api/v1/canvas_sessions/{field(result.stdout, 'session')}/").json()
    assert (session["canvas"], session["socket"], session["status"]) == (canvas_id, socket_, "running")
    assert f"  call:      http://{socket_}/add?kwargs={{...}}" in result.stdout


def test_cli_missing_key_without_a_terminal_is_one_line(shared_hub, code):
    before = canvas_ids(shared_hub)
    result = livepandas("-P", code()["python"], "--new", "-U", "alice", "--hub", shared_hub.url)
    assert one_line_error(result) == "no API key: give -K KEY or set LIVEPANDAS_API_KEY"
    result = livepandas("-P", code()["python"], "--new", "-K", "k", "--hub", shared_hub.url)
    assert one_line_error(result) == "no user name: give -U USER or set LIVEPANDAS_USERNAME"
    assert canvas_ids(shared_hub) == before


def test_cli_wrong_key_is_a_one_line_401(shared_hub, code):
    result = livepandas("-P", code()["python"], "--new", "-U", "alice", "-K", "wrong", "--hub", shared_hub.url)
    assert one_line_error(result) == (
        f"401 Unauthorized for url: {shared_hub.url}api/v1/canvases/ — "
        "invalid credentials: unknown user, or a wrong or revoked key"
    )


def test_cli_unreachable_hub_is_one_line(code, closed_port):
    url = f"http://127.0.0.1:{closed_port}/"
    result = livepandas("-P", code()["python"], "--new", "-U", "alice", "-K", "key", "--hub", url)
    assert one_line_error(result) == f"cannot reach the hub at {url}: Connection refused"


@pytest.mark.parametrize(
    "python, message",
    [
        (
            USES_OFFSET,
            "name 'offset' is used but not defined in the canvas's code (it came from the notebook?) ({file}, line 4)",
        ),
        ("x = 1\n\ndef livepandas_f(:\n    pass\n", "SyntaxError: invalid syntax ({file}, line 3)"),
        ("def helper():\n    pass\n", "{file} defines no top-level function named livepandas_<name>; only those are published"),
        (
            "import json\ndef livepandas_f():\n    pass\njson.loads('{{')\n",
            "{file} fails when run on its own: JSONDecodeError: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1) ({file}, line 4)",
        ),
    ],
    ids=["notebook-name", "syntax-error", "no-function", "raises-when-run"],
)
def test_cli_refuses_code_that_cannot_run_alone_before_sending(shared_hub, code, python, message):
    before = canvas_ids(shared_hub)
    path = code(python=python)["python"]
    result = livepandas("-P", path, "--new", "-U", "alice", "-K", shared_hub.keys["alice"], "--hub", shared_hub.url)
    assert one_line_error(result) == message.format(file=path)
    assert canvas_ids(shared_hub) == before


def test_cli_runs_the_check_where_the_worker_would(shared_hub, code):
    """The module runs with its files beside it: static/ is there, the notebook's directory is not."""
    python = "import os\nSIZE = os.path.getsize('static/data.csv')\ndef livepandas_size():\n    return SIZE\n"
    paths = code(python=python, static={"data.csv": b"a,b\n1,2\n"})
    common = ["--new", "-U", "alice", "-K", shared_hub.keys["alice"], "--hub", shared_hub.url, "--session"]
    result = livepandas("-P", paths["python"], "-S", paths["static"], *common)
    assert result.returncode == 0, result.stderr
    assert call_socket(field(result.stdout, "socket"), "size") == 8
    result = livepandas("-P", paths["python"], *common)  # no -S: the file is not there
    assert "fails when run on its own: FileNotFoundError" in one_line_error(result)


def test_cli_flags_of_upload_need_new(code):
    result = livepandas("-P", code()["python"], "--session")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "livepandas: error: --session needs --new"


def test_cli_prompts_on_a_terminal_and_hides_the_key(shared_hub, code):
    path = code()["python"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "livepandas_ipython", "-P", path, "--new", "--hub", shared_hub.url],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=clean_env(),
        cwd=ROOT,
        start_new_session=True,  # no controlling terminal: getpass uses the pty on stdin
        text=True,
    )
    os.close(slave)
    screen = b""
    try:
        for prompt, answer in ((b"Hub user name: ", "alice"), (b"Hub API key: ", shared_hub.keys["alice"])):
            deadline = time.monotonic() + TIMEOUT
            while prompt not in screen:
                assert time.monotonic() < deadline, screen
                if select.select([master], [], [], 0.1)[0]:
                    screen += os.read(master, 4096)
            os.write(master, answer.encode() + b"\n")
            screen = screen.replace(prompt, b"<" + prompt.strip() + b">", 1)
        out, _ = proc.communicate(timeout=TIMEOUT)
        while select.select([master], [], [], 0.1)[0]:
            try:
                screen += os.read(master, 4096)
            except OSError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0, screen
    assert int(field(out, "id")) in canvas_ids(shared_hub)
    assert b"alice" in screen  # the user name is echoed as typed
    assert shared_hub.keys["alice"].encode() not in screen  # the key is not


# -- the magic ------------------------------------------------------------------------------------


@pytest.fixture
def shell(tmp_path, monkeypatch):
    """A real InteractiveShell with ``%load_ext livepandas`` (the singleton for this test only)."""
    for name in ENV + ("LIVEPANDAS_PORT", "LIVEPANDAS_HOST", "LIVEPANDAS_URL_PATTERN", "JUPYTERHUB_SERVICE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    saved = sys.modules.get("__main__"), sys.displayhook, sys.excepthook, sys.getswitchinterval()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "nocolor"
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "livepandas")
    try:
        yield ip
    finally:
        from livepandas_ipython import extension

        extension.unload(ip)
        atexit.unregister(ip.atexit_operations)
        ip.atexit_operations()
        InteractiveShell.clear_instance()
        main, sys.displayhook, sys.excepthook, interval = saved
        sys.modules["__main__"] = main
        if sys.modules.get("__mp_main__") is ip.user_module:
            sys.modules["__mp_main__"] = main
        sys.setswitchinterval(interval)


def upload_line(hub, *extra):
    return " ".join(["upload", *extra, "--hub", hub.url, "-U", "alice", "-K", hub.keys["alice"]])


def test_magic_uploads_a_canvas_cell_with_its_view_and_static_dir(shell, shared_hub, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "app.js").write_text("console.log(1)")
    shell.run_cell_magic("canvas", f"adder --no-preview --static {static}", ADD)
    shell.run_cell_magic("canvas", "adder --view --no-preview", "<h1>adder</h1>")
    with capture_output() as captured:
        shell.run_line_magic("livepandas", upload_line(shared_hub, "adder", "--session", "--name", "from-magic"))
    (output,) = captured.outputs
    text, page = output.data["text/plain"], output.data["text/html"]
    canvas_id = int(field(text, "id"))
    assert text.startswith(f"Uploaded canvas {canvas_id} 'from-magic' to {shared_hub.url}")
    assert f'<a href="{shared_hub.url}canvases/{canvas_id}/"' in page
    got = shared_hub.get(f"api/v1/canvases/{canvas_id}/", user="alice").json()
    assert (got["python"], got["html"], got["static"]) == (ADD, "<h1>adder</h1>", ["app.js"])
    socket_ = field(text, "socket")
    assert f"<code>{socket_}</code>" in page
    assert call_socket(socket_, "add", x=2, y=3) == 5


def test_magic_reports_a_notebook_name_before_sending(shell, shared_hub):
    before = canvas_ids(shared_hub)
    shell.run_cell("offset = 10").raise_error()
    shell.run_cell_magic("canvas", "--no-preview", USES_OFFSET)
    assert shell.user_ns["livepandas_add"](1, 2) == 16  # it works in the notebook...
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("livepandas", upload_line(shared_hub))
    assert str(info.value) == (  # ...but not on its own
        "%livepandas upload: name 'offset' is used but not defined in the canvas's code "
        "(it came from the notebook?) (%%canvas default, line 4)"
    )
    assert canvas_ids(shared_hub) == before


def test_magic_upload_errors_are_usage_errors(shell, shared_hub):
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("livepandas", upload_line(shared_hub, "nope"))
    assert str(info.value) == "%livepandas upload: no canvas 'nope'; served canvases: none"
    shell.run_cell_magic("canvas", "--no-preview", ADD)
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("livepandas", f"upload --hub {shared_hub.url} -U alice -K wrong")
    assert str(info.value).startswith("%livepandas upload: 401 Unauthorized for url: ")
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("livepandas", "upload --bogus")
    assert str(info.value) == (
        "%livepandas upload: unrecognized arguments: --bogus\n"
        "usage: %livepandas upload [--session] [--hub URL] [-U USER] [-K KEY] [--name NAME] [canvas]"
    )
