"""Shim so ``import livepandas`` and ``%load_ext livepandas`` reach ``livepandas_ipython``."""

from livepandas_ipython import *  # noqa: F401,F403
from livepandas_ipython import __all__, __version__  # noqa: F401
