"""livepandas for IPython: serve ``livepandas_<name>`` functions over HTTP and WebSocket, live.

The public surface is listed in ``__all__``; everything is imported lazily (PEP 562), so
``import livepandas_ipython`` (and ``%load_ext livepandas``) stays cheap in a kernel.
"""

from ._version import __version__

__all__ = ["__version__", "Canvas", "FunctionServer", "LoopThread", "dumps"]

_LAZY = {
    "Canvas": ("livepandas_ipython.canvas", "Canvas"),
    "FunctionServer": ("livepandas_ipython.server", "FunctionServer"),
    "LoopThread": ("livepandas_ipython.server", "LoopThread"),
    "dumps": ("livepandas_ipython.jsonutil", "dumps"),
}


def __getattr__(name):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'livepandas_ipython' has no attribute {name!r}") from None
    import importlib

    return getattr(importlib.import_module(module), attr)


def __dir__():
    return sorted(set(globals()) | set(__all__))
