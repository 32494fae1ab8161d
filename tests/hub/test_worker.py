"""Hub workers (``python -m livepandas_ipython.hub.worker``) as real processes, over real HTTP and WebSocket."""

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests
import websocket

from livepandas_ipython.hub.spawner import LocalProcessSpawner, SpawnError

pytestmark = pytest.mark.anyio

WORKER = [sys.executable, "-m", "livepandas_ipython.hub.worker"]

CODE = """
def livepandas_add(x, y):
    print("adding", x, y)
    return x + y

def livepandas_data():
    with open("data.txt") as f:
        return f.read()
"""


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def canvas_dir(tmp_path):
    """Factory: ``canvas_dir(code, view=None, static=None)`` → a canvas directory as the hub stores it."""

    def make(code=CODE, view=None, static=None, name="canvas"):
        root = tmp_path / name
        root.mkdir()
        (root / "code.py").write_text(textwrap.dedent(code))
        (root / "data.txt").write_text("next to code.py")
        if view is not None:
            (root / "view.html").write_text(view)
        for path, content in (static or {}).items():
            target = root / "static" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        return str(root)

    return make


class Worker:
    """A worker under a spawner; ``lines`` collects its protocol lines other than the ready one."""

    def __init__(self, canvas=None, ip="127.0.0.1"):
        self.lines = []
        self.exits = []
        cmd = WORKER + ["--ip", ip] + (["--canvas", canvas] if canvas else [])
        self.spawner = LocalProcessSpawner(
            cmd=cmd, start_timeout=10, on_line=self.lines.append, on_exit=self.exits.append
        )

    async def start(self):
        self.host, self.port = await self.spawner.start()
        self.url = f"http://{self.host}:{self.port}"
        return self

    def tagged(self, tag):
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith(tag + " ")]

    async def wait_line(self, tag, timeout=5):
        deadline = time.monotonic() + timeout
        while not self.tagged(tag):
            assert not self.exits or tag == "LIVEPANDAS_LOAD_FAILED", f"worker exited: {self.spawner.stderr_tail}"
            assert time.monotonic() < deadline, f"no {tag} line; got {self.lines}"
            await asyncio.sleep(0.02)
        return self.tagged(tag)[0]

    def get(self, path, **kwargs):
        return asyncio.to_thread(requests.get, self.url + path, timeout=5, **kwargs)


@pytest.fixture
async def worker():
    made = []

    async def start(canvas=None, **options):
        w = Worker(canvas, **options)
        made.append(w)
        return await w.start()

    yield start
    for w in made:
        await w.spawner.stop(now=True)


def call(url, **kwargs):
    return asyncio.to_thread(requests.get, url, params={"kwargs": json.dumps(kwargs)}, timeout=5)


# -- cold ---------------------------------------------------------------------------------------


async def test_cold_worker_serves_its_canvas_over_http_and_websocket(worker, canvas_dir):
    w = await worker(canvas_dir())
    info = w.spawner.ready_info
    assert info["warm"] is False and info["functions"] == ["add", "data"] and info["pid"] == w.spawner.pid
    response = await call(w.url + "/add", x=2, y=3)
    assert response.status_code == 200 and response.json() == {"result": 5}
    assert (await call(w.url + "/data")).json() == {"result": "next to code.py"}

    def ws_round_trip():
        ws = websocket.create_connection(f"ws://{w.host}:{w.port}/add/ws", timeout=5)
        try:
            ws.send(json.dumps({"x": 20, "y": 22}))
            first = json.loads(ws.recv())
            ws.send("not json")
            second = json.loads(ws.recv())
            return first, second
        finally:
            ws.close()

    first, second = await asyncio.to_thread(ws_round_trip)
    assert first == {"result": 42}
    assert second["type"] == "BadRequest"


async def test_view_and_static_files_are_served(worker, canvas_dir):
    view = "<!DOCTYPE html><title>my view</title><script src='static/js/app.js'></script>"
    w = await worker(canvas_dir(view=view, static={"js/app.js": "console.log('hi')"}))
    page = await w.get("/")
    assert page.status_code == 200 and page.text == view
    script = await w.get("/static/js/app.js")
    assert script.status_code == 200 and script.text == "console.log('hi')"
    assert (await w.get("/static/../code.py")).status_code in (403, 404)
    assert (await w.get("/static/missing.js")).status_code == 404


async def test_without_a_view_the_generated_page_lists_the_functions(worker, canvas_dir):
    w = await worker(canvas_dir())
    page = await w.get("/")
    assert page.status_code == 200 and "add" in page.text and "data" in page.text


async def test_any_origin_and_any_host_are_admitted(worker, canvas_dir):
    w = await worker(canvas_dir())
    headers = {"Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site", "Host": "public.example:8080"}
    response = await asyncio.to_thread(
        requests.get, w.url + "/add", params={"kwargs": '{"x": 1, "y": 1}'}, headers=headers, timeout=5
    )
    assert response.status_code == 200 and response.json() == {"result": 2}
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://elsewhere.example")
    preflight = await asyncio.to_thread(
        requests.options,
        w.url + "/add",
        headers={**headers, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
        timeout=5,
    )
    assert preflight.status_code in (200, 204)
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

    def ws_from_elsewhere():
        ws = websocket.create_connection(
            f"ws://{w.host}:{w.port}/add/ws", timeout=5, origin="https://elsewhere.example"
        )
        try:
            ws.send('{"x": 1, "y": 2}')
            return json.loads(ws.recv())
        finally:
            ws.close()

    assert await asyncio.to_thread(ws_from_elsewhere) == {"result": 3}


async def test_canvas_output_goes_to_stderr_not_the_protocol(worker, canvas_dir):
    w = await worker(canvas_dir())
    await call(w.url + "/add", x=1, y=2)
    await w.wait_line("LIVEPANDAS_ACTIVITY")
    assert "adding 1 2" in w.spawner.stderr_tail
    assert all(line.startswith("LIVEPANDAS_") for line in w.lines)


async def test_activity_lines_follow_calls(worker, canvas_dir):
    w = await worker(canvas_dir())
    assert w.tagged("LIVEPANDAS_ACTIVITY") == []
    before = time.time()
    await call(w.url + "/add", x=1, y=2)
    stamp = float(await w.wait_line("LIVEPANDAS_ACTIVITY"))
    assert before - 0.01 <= stamp <= time.time() + 0.01

    def ws_call():
        ws = websocket.create_connection(f"ws://{w.host}:{w.port}/add/ws", timeout=5)
        try:
            ws.send('{"x": 1, "y": 2}')
            return ws.recv()
        finally:
            ws.close()

    await asyncio.to_thread(ws_call)
    deadline = time.monotonic() + 5
    while len(w.tagged("LIVEPANDAS_ACTIVITY")) < 2:
        assert time.monotonic() < deadline, w.lines
        await asyncio.sleep(0.05)
    assert float(w.tagged("LIVEPANDAS_ACTIVITY")[1]) > stamp


async def test_a_canvas_that_raises_on_import_fails_to_load(worker, canvas_dir):
    path = canvas_dir("import os\nvalue = undefined_thing + 1\ndef livepandas_f():\n    return value\n")
    w = Worker(path)
    with pytest.raises(SpawnError) as info:
        await w.start()
    expected = "NameError: name 'undefined_thing' is not defined (code.py, line 2)"
    assert info.value.status == 3
    assert expected in str(info.value)
    assert json.loads(w.tagged("LIVEPANDAS_LOAD_FAILED")[0]) == {"error": expected}


async def test_a_canvas_without_functions_or_directory_fails_to_load(canvas_dir, tmp_path):
    w = Worker(canvas_dir("x = 1\n"))
    with pytest.raises(SpawnError, match="status 3"):
        await w.start()
    assert "defines no function named livepandas_<name>" in json.loads(w.tagged("LIVEPANDAS_LOAD_FAILED")[0])["error"]
    w = Worker(str(tmp_path / "missing"))
    with pytest.raises(SpawnError, match="status 3"):
        await w.start()
    assert json.loads(w.tagged("LIVEPANDAS_LOAD_FAILED")[0]) == {
        "error": f"canvas directory {tmp_path / 'missing'} does not exist"
    }


# -- warm ---------------------------------------------------------------------------------------


async def test_warm_worker_loads_its_canvas_from_stdin(worker, canvas_dir):
    w = await worker()
    assert w.spawner.ready_info["warm"] is True
    functions = await w.get("/_functions")
    assert functions.status_code == 200 and functions.json() == {"canvas": "warm", "functions": []}
    path = canvas_dir(view="<p>warm view</p>")
    await w.spawner.send(json.dumps({"canvas": path}))
    loaded = json.loads(await w.wait_line("LIVEPANDAS_LOADED"))
    assert loaded == {"canvas": path, "functions": ["add", "data"]}
    assert (await call(w.url + "/add", x=4, y=5)).json() == {"result": 9}
    assert (await call(w.url + "/data")).json() == {"result": "next to code.py"}
    assert (await w.get("/")).text == "<p>warm view</p>"
    await w.spawner.stop()
    assert await w.spawner.poll() == 0  # SIGINT is a clean exit


async def test_warm_worker_load_failure_exits_3(worker, canvas_dir):
    w = await worker()
    await w.spawner.send(json.dumps({"canvas": canvas_dir("def livepandas_f(:\n    pass\n")}))
    failed = json.loads(await w.wait_line("LIVEPANDAS_LOAD_FAILED"))
    assert failed["error"].startswith("SyntaxError: ") and failed["error"].endswith("(code.py, line 1)")
    deadline = time.monotonic() + 5
    while await w.spawner.poll() is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await w.spawner.poll() == 3 and w.exits == [3]


async def test_warm_worker_rejects_a_malformed_request(worker):
    w = await worker()
    await w.spawner.send("canvas please")
    failed = json.loads(await w.wait_line("LIVEPANDAS_LOAD_FAILED"))
    assert failed == {"error": "expected a line {\"canvas\": DIR}, got 'canvas please'"}


# -- exit ---------------------------------------------------------------------------------------


@pytest.fixture
def raw_worker():
    """Factory: a worker as a bare Popen (for the exit paths), killed at teardown if still running."""
    procs = []

    def start(*args):
        proc = subprocess.Popen(
            WORKER + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        procs.append(proc)
        line = proc.stdout.readline().decode()
        assert line.startswith("LIVEPANDAS_READY "), line + proc.stderr.read().decode()
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()


@pytest.mark.parametrize("how", ["eof", "SIGTERM", "SIGINT"])
def test_worker_exits_cleanly(raw_worker, canvas_dir, how):
    for args in ([], ["--canvas", canvas_dir(name=f"c-{how}")]):
        proc = raw_worker(*args)
        if how == "eof":
            proc.stdin.close()
        else:
            proc.send_signal(getattr(signal, how))
        assert proc.wait(timeout=10) == 0, proc.stderr.read().decode()
        out, err = proc.stdout.read(), proc.stderr.read()
        assert out == b"" and b"Traceback" not in err
