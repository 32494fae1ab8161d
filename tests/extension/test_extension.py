"""``%load_ext`` / ``%unload_ext`` / ``%reload_ext`` through a real IPython shell.

The extension loads under two names (``livepandas``, the shim, and ``livepandas_ipython``); either
way one set of magics and, once a canvas is served, one loop thread. Unloading stops every server,
frees every port and removes the magics.
"""

import subprocess
import sys
import threading

import pytest
from extension_helpers import TIMEOUT, assert_port_free, canvas, result, server, usage_error
from IPython.core.error import UsageError

from livepandas_ipython.extension import magics_for

ADD = "def livepandas_add(x: int = 1, y: int = 2):\n    return x + y\n"
LOOP_THREAD = "livepandas-canvases"


def loop_threads():
    return [t for t in threading.enumerate() if t.name == LOOP_THREAD]


def registered(ip):
    """The livepandas magics the shell knows: (line magics, cell magics)."""
    magics = ip.magics_manager.magics
    return "livepandas" in magics["line"], "canvas" in magics["cell"]


@pytest.mark.parametrize("name", ["livepandas", "livepandas_ipython"])
def test_load_ext_registers_both_magics(shell, name):
    assert registered(shell) == (False, False)
    shell.run_line_magic("load_ext", name)
    assert registered(shell) == (True, True)
    assert name in shell.extension_manager.loaded
    # Nothing is started until a canvas is served.
    assert loop_threads() == []


@pytest.mark.parametrize(
    "names",
    [
        ["livepandas", "livepandas"],
        ["livepandas", "livepandas_ipython"],
        ["livepandas_ipython", "livepandas"],
        ["livepandas_ipython", "livepandas_ipython"],
    ],
)
def test_loading_twice_under_either_name_gives_one_set_of_magics_and_one_loop(shell, names):
    shell.run_line_magic("load_ext", names[0])
    first = magics_for(shell)
    shell.run_line_magic("load_ext", names[1])
    assert magics_for(shell) is first
    assert shell.magics_manager.registry["LivePandasMagics"] is first
    assert [c for c in shell.configurables if type(c).__name__ == "LivePandasMagics"] == [first]
    # Both magics are bound to that one instance.
    assert shell.find_cell_magic("canvas").__self__ is first
    assert shell.find_line_magic("livepandas").__self__ is first

    canvas(shell, "", ADD)
    canvas(shell, "other", ADD)
    assert len(loop_threads()) == 1
    assert result(server(shell).port, "add", x=2) == 4
    assert result(server(shell, "other").port, "add", x=3) == 5


def test_unload_ext_stops_every_server_and_releases_every_port(lp):
    canvas(lp, "", ADD)
    canvas(lp, "second", ADD)
    ports = [server(lp).port, server(lp, "second").port]
    assert ports[0] != ports[1]
    assert len(loop_threads()) == 1

    lp.run_line_magic("unload_ext", "livepandas")

    for port in ports:
        assert_port_free(port)
    assert loop_threads() == []
    assert magics_for(lp) is None
    assert registered(lp) == (False, False)
    assert "LivePandasMagics" not in lp.magics_manager.registry


def test_after_unload_the_magics_are_unknown(lp):
    lp.run_line_magic("unload_ext", "livepandas")
    with pytest.raises(UsageError, match="Cell magic `%%canvas` not found"):
        lp.run_cell_magic("canvas", "", ADD)
    with pytest.raises(UsageError, match="Line magic function `%livepandas` not found"):
        lp.run_line_magic("livepandas", "list")


def test_unload_removes_the_magics_from_the_configurables(lp):
    # Otherwise %config would still find (and configure) the unloaded instance.
    old = magics_for(lp)
    lp.run_line_magic("unload_ext", "livepandas")
    assert old not in lp.configurables


def test_unload_under_the_other_name_than_load(shell):
    shell.run_line_magic("load_ext", "livepandas")
    shell.run_line_magic("load_ext", "livepandas_ipython")
    canvas(shell, "", ADD)
    port = server(shell).port
    shell.run_line_magic("unload_ext", "livepandas_ipython")
    assert registered(shell) == (False, False)
    assert_port_free(port)
    # The other name's unload then finds nothing left to do.
    shell.run_line_magic("unload_ext", "livepandas")
    assert registered(shell) == (False, False)


def test_unload_without_any_canvas(lp):
    lp.run_line_magic("unload_ext", "livepandas")
    assert registered(lp) == (False, False)
    assert loop_threads() == []


def test_reload_ext_is_a_clean_restart(lp):
    lp.run_cell("offset = 10").raise_error()
    canvas(lp, "", "def livepandas_add(x: int = 1):\n    return x + offset\n")
    old_magics, old_port = magics_for(lp), server(lp).port
    assert result(old_port, "add", x=1) == 11

    lp.run_line_magic("reload_ext", "livepandas")

    new_magics = magics_for(lp)
    assert new_magics is not None and new_magics is not old_magics
    assert lp.find_cell_magic("canvas").__self__ is new_magics
    assert [c for c in lp.configurables if type(c).__name__ == "LivePandasMagics"] == [new_magics]
    assert_port_free(old_port)
    assert loop_threads() == []
    # The notebook's namespace survives; serving starts over from the new magics.
    assert usage_error(lp.run_line_magic, "livepandas", "status default") == (
        "%livepandas status: no canvas 'default'; served canvases: none"
    )
    canvas(lp, "", "def livepandas_add(x: int = 1):\n    return x + offset\n")
    assert result(server(lp).port, "add", x=2) == 12
    assert len(loop_threads()) == 1


def test_load_after_unload_serves_again(lp):
    canvas(lp, "", ADD)
    lp.run_line_magic("unload_ext", "livepandas")
    lp.run_line_magic("load_ext", "livepandas")
    canvas(lp, "", ADD)
    assert result(server(lp).port, "add", y=5) == 6
    assert len(loop_threads()) == 1


def test_canvas_url_and_server_need_the_extension(shell):
    from livepandas_ipython import canvas_url
    from livepandas_ipython.errors import LivePandasError

    with pytest.raises(LivePandasError, match="run %load_ext livepandas"):
        canvas_url("default", shell)


def test_canvas_url_defaults_to_the_running_shell(lp):
    from livepandas_ipython import canvas_url

    canvas(lp, "", ADD)
    assert canvas_url() == f"http://127.0.0.1:{server(lp).port}/"


@pytest.mark.parametrize("module", ["livepandas_ipython", "livepandas"])
def test_import_is_lazy(module):
    """Importing the package (or the shim) pulls in neither Tornado, ipywidgets nor pandas.

    Nor the package's own server and JSON modules: PEP 562 ``__getattr__`` resolves them on use.
    """
    heavy = (
        "tornado",
        "ipywidgets",
        "pandas",
        "numpy",
        "IPython",
        "orjson",
        "livepandas_ipython.server",
        "livepandas_ipython.canvas",
    )
    code = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_load_ext_is_lazy():
    """``%load_ext livepandas`` imports no server or widget code until a canvas is served."""
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from traitlets.config import Config\n"
        "c = Config(); c.HistoryManager.hist_file = ':memory:'\n"
        "InteractiveShell.instance(config=c).run_line_magic('load_ext', 'livepandas')\n"
        "heavy = ('tornado', 'ipywidgets', 'pandas', 'livepandas_ipython.server')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
