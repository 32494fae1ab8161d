"""``python -m livepandas_ipython`` runs the ``livepandas`` command."""

import sys

from .cli import main

sys.exit(main())
