"""What every worker backend provides, the worker sizes, and which backend serves this process.

A backend launches, lists and stops the workers of one master and describes that master:
:class:`~sense._embedded.EmbeddedBackend` runs them as local processes,
:class:`~sense._hub.HubBackend` asks a hub's REST API. ``SENSE_API_URL`` picks the hub.
"""

import datetime
import os

__all__ = ["Backend", "SIZES", "current_backend", "now_iso", "parse_id", "same_id"]

GiB = 1024**3
HOUR = 3600.0

#: Worker sizes of the embedded backend: ``mem_limit`` is the largest address space in bytes
#: (``RLIMIT_AS``), ``cpu_limit`` the CPU seconds a worker may use in all (``RLIMIT_CPU``); a
#: worker over either limit gets a ``MemoryError`` or is ended by the system. Edit or extend
#: this dict to change them.
SIZES = {
    "small": {"mem_limit": 2 * GiB, "cpu_limit": 1 * HOUR},
    "medium": {"mem_limit": 8 * GiB, "cpu_limit": 4 * HOUR},
    "large": {"mem_limit": 32 * GiB, "cpu_limit": 16 * HOUR},
}

DEFAULT_ENGINE = "sense-ipython-engine"


class Backend:
    """Launches, lists and stops the workers of one master; records are plain dicts."""

    kind = ""

    def launch(self, n, size, engine, startup_script, startup_code, env):
        raise NotImplementedError

    def workers(self):
        raise NotImplementedError

    def stop(self, ids):
        raise NotImplementedError

    def master(self):
        raise NotImplementedError

    def find(self, worker_id):
        """The record of one worker (any status); :class:`UnknownWorkerError` if there is none."""
        raise NotImplementedError


def current_backend():
    """The hub's REST API when ``SENSE_API_URL`` is set, else this process's embedded backend."""
    if os.environ.get("SENSE_API_URL"):
        from ._hub import HubBackend

        return HubBackend.from_environment()
    from ._embedded import EmbeddedBackend

    return EmbeddedBackend.instance()


def now_iso(timestamp=None):
    """UTC time in ISO 8601 with seconds, as the records carry it."""
    moment = datetime.datetime.fromtimestamp(
        timestamp if timestamp is not None else datetime.datetime.now().timestamp(), datetime.timezone.utc
    )
    return moment.isoformat(timespec="seconds")


def parse_id(value):
    """An id as records hold it: an int when it is all digits, else the string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def same_id(a, b):
    return a is not None and b is not None and str(a) == str(b)
