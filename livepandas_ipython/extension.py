"""Loading and unloading the IPython extension.

One :class:`~.magics.LivePandasMagics` per shell, whichever name loaded it (``livepandas`` or
``livepandas_ipython``): a second load is a no-op, and unloading stops every canvas server of
that shell and releases its ports.
"""

import weakref

__all__ = ["load", "unload", "magics_for"]

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
