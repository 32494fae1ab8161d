"""Run every notebook in notebooks/ on a real kernel (nbclient) and check what it shows and serves.

While the kernel still runs, this process calls the canvas URLs the notebooks print, as a browser
or any client would; after the kernel shuts down its process must be gone and its ports free.
"""

import ast
import contextlib
import json
import re
import socket
from pathlib import Path

import pytest
import requests
import websocket
from testsupport import assert_port_free

# nbformat and nbclient are imported where used: nbformat brings ~130,000 objects (its JSON
# schemas), which every later gc.collect() of the suite would walk (tests/conftest.py collects
# after each test).

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Per cell and for kernel start-up: generous, a loaded CI machine must never turn a wait into a failure.
TIMEOUT = 60
PREVIEW = re.compile(r"^Canvas '(?P<name>[^']+)' on (?P<url>http://127\.0\.0\.1:(?P<port>\d+)/) \(\d+ functions?\)")


class Notebook:
    """A notebook executed cell by cell on a kernel that stays up until :meth:`shutdown`."""

    def __init__(self, name, workdir):
        import nbformat
        from nbclient import NotebookClient

        self.nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        self.client = NotebookClient(
            self.nb,
            kernel_name="python3",
            timeout=TIMEOUT,
            startup_timeout=TIMEOUT,
            resources={"metadata": {"path": str(workdir)}},
        )
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.client.setup_kernel())
        self.process = self.client.km.provisioner.process
        self.code = []
        for index, cell in enumerate(self.nb.cells):
            self.client.execute_cell(cell, index)  # raises CellExecutionError on any error
            if cell.cell_type == "code":
                self.code.append(cell)

    def run(self, source):
        """Execute one more cell in the running kernel; return it (with its outputs)."""
        from nbformat.v4 import new_code_cell

        cell = new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return cell

    def shutdown(self):
        self._stack.close()

    def canvases(self):
        """``{name: base URL}`` from the text/plain form of every preview shown."""
        found = {}
        for cell in self.code:
            for output in cell.outputs:
                match = PREVIEW.match(output.get("data", {}).get("text/plain", ""))
                if match:
                    found[match["name"]] = match["url"]
        return found


def plain(cell):
    """The text/plain of every displayed or returned output, and the stdout text, of *cell*."""
    texts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            texts.append(output.text)
        elif "data" in output:
            texts.append(output.data.get("text/plain", ""))
    return texts


def result_of(cell):
    (output,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    return output.data["text/plain"]




@pytest.fixture
def notebook(tmp_path, monkeypatch):
    """Factory: ``notebook(name)`` → an executed :class:`Notebook` whose kernel is still running.

    The kernel gets a clean environment: no LIVEPANDAS_* or JupyterHub settings, IPython and
    Jupyter runtime directories under the test's temporary directory.
    """
    for name in (
        "LIVEPANDAS_PORT",
        "LIVEPANDAS_HOST",
        "LIVEPANDAS_URL_PATTERN",
        "LIVEPANDAS_SWITCH_INTERVAL",
        "JUPYTERHUB_SERVICE_PREFIX",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    started = []

    def run(name):
        started.append(Notebook(name, tmp_path))
        return started[-1]

    yield run
    for nb in started:
        nb.shutdown()
        if nb.process.poll() is None:  # never leave a kernel behind, even after a failure
            nb.process.kill()
            nb.process.wait(TIMEOUT)


def shut_down_cleanly(nb, ports):
    nb.shutdown()
    assert nb.process.wait(TIMEOUT) is not None
    for port in ports:
        assert_port_free(port)


def get(url, **kwargs):
    reply = requests.get(url, params={"kwargs": json.dumps(kwargs)}, timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_notebooks_are_all_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [
        "01-quickstart.ipynb",
        "02-live-dataframe.ipynb",
        "03-streaming.ipynb",
    ]


def test_notebooks_are_stored_without_outputs():
    import nbformat

    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


def test_quickstart(notebook):
    nb = notebook("01-quickstart.ipynb")
    url = nb.canvases()["hello"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    load, offset, functions, view, first, second, status, test = nb.code

    assert load.outputs == [] and offset.outputs == []
    assert plain(functions)[0] == (
        f"Canvas 'hello' on {url} (1 function)\n"
        f"  add(x: float = 1, y: float = 2)\n"
        f"    GET {url}add?kwargs={{...}}   WS ws://127.0.0.1:{port}/add/ws"
    )
    assert "application/vnd.jupyter.widget-view+json" in functions.outputs[1].data
    assert plain(view)[0].endswith(f"\n  view: {url}")
    assert f'<iframe src="{url}"' in view.outputs[0].data["text/html"]
    assert result_of(first) == "{'result': 42}"
    assert result_of(second) == "{'result': 142}"
    assert plain(status) == [f"hello  port {port}  {url}\n  add: 2 calls, 0 errors"]
    assert plain(test) == ["102\n"]

    # The kernel still serves: this process calls the URL the preview printed.
    assert get(url + "add", x=40, y=2) == {"result": 142}
    page = requests.get(url, timeout=TIMEOUT)
    assert page.status_code == 200 and "livepandas.call('add'" in page.text
    # ...and sees the notebook's later changes.
    nb.run("offset = 1000")
    assert get(url + "add", x=1, y=2) == {"result": 1003}
    assert plain(nb.run("%livepandas status hello")) == [f"hello  port {port}  {url}\n  add: 4 calls, 0 errors"]

    shut_down_cleanly(nb, [port])


def test_live_dataframe(notebook):
    nb = notebook("02-live-dataframe.ipynb")
    url = nb.canvases()["sales"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    load, data, functions, view, frame, changed = nb.code

    assert "text/html" in data.outputs[0].data  # the DataFrame's own table
    assert "Osaka" in result_of(data)
    assert plain(functions)[0].splitlines()[1:4:2] == [
        "  filter(city: str = '', min_units: int = 0, limit: int = 10)",
        "  revenue(min_units: int = 0)",
    ]
    assert result_of(frame) == "(['city', 'units', 'price', 'revenue'], 3)"
    assert result_of(changed) == "['Bogotá', 'Lisbon', 'Nairobi']"

    revenue = get(url + "revenue")["result"]
    assert revenue["index"] == ["Bogotá", "Lisbon", "Nairobi"]
    osaka = get(url + "filter", city="Osaka")["result"]
    assert osaka["columns"] == ["city", "units", "price", "revenue"]
    assert osaka["index"] == []
    nairobi = get(url + "filter", city="Nairobi", min_units=50, limit=100)["result"]
    assert nairobi["index"] and len(nairobi["index"]) <= 100
    assert "Osaka" not in json.dumps(get(url + "filter", limit=1000))

    shut_down_cleanly(nb, [port])


def test_streaming(notebook):
    nb = notebook("03-streaming.ipynb")
    url = nb.canvases()["progress"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    load, functions, view, client = nb.code

    messages = ast.literal_eval(result_of(client))
    assert messages == [
        {"partial": {"step": 1, "percent": 25}},
        {"partial": {"step": 2, "percent": 50}},
        {"partial": {"step": 3, "percent": 75}},
        {"partial": {"step": 4, "percent": 100}},
        {"result": "finished 4 steps", "done": True},
    ]

    # The WebSocket URL the preview printed streams to this process too.
    (ws_url,) = re.findall(r"WS (ws://\S+)", plain(functions)[0])
    assert ws_url == f"ws://127.0.0.1:{port}/work/ws"
    ws = websocket.create_connection(ws_url, timeout=TIMEOUT)
    try:
        ws.send(json.dumps({"steps": 2, "delay": 0}))
        received = [json.loads(ws.recv()) for _ in range(3)]
    finally:
        ws.close()
    assert received == [
        {"partial": {"step": 1, "percent": 50}},
        {"partial": {"step": 2, "percent": 100}},
        {"result": "finished 2 steps", "done": True},
    ]

    shut_down_cleanly(nb, [port])
