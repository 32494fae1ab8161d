"""``python -m livepandas_ipython.hub``: the same as the ``livepandas-hub`` command."""

from .app import main

if __name__ == "__main__":
    main()
