"""Shim so ``import livepandas`` and ``%load_ext livepandas`` reach ``livepandas_ipython``."""

from livepandas_ipython import *  # noqa: F401,F403
from livepandas_ipython import __all__, __version__, load_ipython_extension, unload_ipython_extension  # noqa: F401
