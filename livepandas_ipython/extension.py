"""Loading and unloading the IPython extension.

One :class:`~.magics.LivePandasMagics` per shell, whichever name loaded it (``livepandas`` or
``livepandas_ipython``): a second load is a no-op, and unloading stops every canvas server of
that shell and releases its ports.
"""

import weakref

__all__ = ["load", "unload", "magics_for", "canvas_server", "canvas_url"]

_MAGICS = weakref.WeakKeyDictionary()


def magics_for(shell):
    """The shell's :class:`LivePandasMagics`, or None when the extension is not loaded."""
    return _MAGICS.get(shell)


def load(shell):
    if shell in _MAGICS:
        return
    from .magics import LivePandasMagics

    magics = LivePandasMagics(shell=shell)
    shell.register_magics(magics)
    _MAGICS[shell] = magics


def unload(shell):
    magics = _MAGICS.pop(shell, None)
    if magics is None:
        return
    magics.close()
    manager = shell.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(type(magics).__name__, None)
    # Magics.__init__ added it; left there, %config would keep configuring the unloaded instance.
    if magics in shell.configurables:
        shell.configurables.remove(magics)


def canvas_server(name="default", shell=None):
    """The :class:`FunctionServer` of canvas *name* in *shell* (default: the running one)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    magics = _MAGICS.get(shell) if shell is not None else None
    if magics is None:
        from .errors import LivePandasError

        raise LivePandasError("the livepandas extension is not loaded: run %load_ext livepandas")
    return magics.manager.get(name)


def canvas_url(name="default", shell=None):
    """The loopback base URL of canvas *name*, for calls from this machine (ends with ``/``)."""
    server = canvas_server(name, shell)
    return f"http://{server.url_host}:{server.port}/"
