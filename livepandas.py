"""Shim so ``import livepandas`` and ``%load_ext livepandas`` reach ``livepandas_ipython``.

Other names resolve lazily, as in the package itself (PEP 562): ``%load_ext`` stays cheap.
"""

import livepandas_ipython as _package
from livepandas_ipython import __all__, __version__, load_ipython_extension, unload_ipython_extension  # noqa: F401


def __getattr__(name):
    return getattr(_package, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
