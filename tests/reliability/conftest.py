"""Fixtures of the reliability tests: real hubs, as in ``tests/hub/conftest.py``.

``hub(*args, users=(...))`` starts a ``livepandas-hub`` child process on ``127.0.0.1:0`` with its
own data directory (see :class:`hub.conftest.Hub`); every hub is stopped at teardown, and the
test fails if one left a worker process behind.
"""

import pytest
from hub.conftest import _close_all, _make_factory


@pytest.fixture
def hub(tmp_path_factory):
    """Factory: ``hub(*cli_args, users=("alice",))`` → a started hub, stopped at teardown."""
    hubs = []
    yield _make_factory(tmp_path_factory, hubs)
    _close_all(hubs)
