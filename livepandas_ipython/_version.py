"""The single version string of livepandas-ipython (setup.cfg reads it with ``attr:``)."""

__version__ = "0.1.0"
