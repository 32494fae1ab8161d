"""livepandas for IPython: serve ``livepandas_<name>`` functions over HTTP and WebSocket, live.

The public surface is listed in ``__all__``; everything is imported lazily (PEP 562), so
``import livepandas_ipython`` (and ``%load_ext livepandas``) stays cheap in a kernel.
"""

from ._version import __version__

__all__ = [
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
    "Canvas",
    "FunctionServer",
    "canvas_server",
    "canvas_url",
    "LoopThread",
    "dumps",
]

_LAZY = {
    "Canvas": ("livepandas_ipython.canvas", "Canvas"),
    "FunctionServer": ("livepandas_ipython.server", "FunctionServer"),
    "LoopThread": ("livepandas_ipython.server", "LoopThread"),
    "dumps": ("livepandas_ipython.jsonutil", "dumps"),
    "canvas_server": ("livepandas_ipython.extension", "canvas_server"),
    "canvas_url": ("livepandas_ipython.extension", "canvas_url"),
}


def load_ipython_extension(ip):
    """``%load_ext livepandas``: register ``%%canvas`` and ``%livepandas`` (idempotent)."""
    from .extension import load

    load(ip)


def unload_ipython_extension(ip):
    """``%unload_ext livepandas``: stop every canvas server and remove the magics."""
    from .extension import unload

    unload(ip)


def __getattr__(name):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'livepandas_ipython' has no attribute {name!r}") from None
    import importlib

    return getattr(importlib.import_module(module), attr)


def __dir__():
    return sorted(set(globals()) | set(__all__))
