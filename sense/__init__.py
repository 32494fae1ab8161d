"""Sense for IPython: install packages into the project, find this dashboard's network
details, and launch, list and stop worker dashboards — on a hub, or locally with no hub at all.

Every function has both spellings, the Sense one and the Python one::

    import sense, pickle
    sense.install("beautifulsoup4", flags=["U"])
    info = pickle.dumps(sense.networkInfo())
    workers = sense.launchWorkers(2, "medium", startupCode="import numpy")
    kc = sense.connect(workers[0])             # a Jupyter client of the worker's kernel
    sense.stopWorkers()

With ``SENSE_API_URL`` set the workers are the hub's dashboards; without it they are local
processes of this one (an IPython kernel each) that stop when it exits.

Environment (set by the hub on every dashboard; read here)::

    SENSE_API_URL, SENSE_OWNER_ID, SENSE_PROJECT_ID   where the dashboards API is
    SENSE_DASHBOARD_ID, SENSE_MASTER_ID               this dashboard and its master
    SENSE_API_TOKEN or SENSE_USERNAME/SENSE_PASSWORD  credentials (get_auth)
    SENSE_PUBLIC_DNS, SENSE_PROJECT_IP,               network_info
    SENSE_PORT<i>/SENSE_PUBLIC_PORT<i>, SENSE_PUBLIC_SSH_PORT, SENSE_SSH_PASSWORD
    SENSE_PROJECT_PACKAGES                            the project's shared package directory (install)
"""

from ._backend import SIZES
from .auth import get_auth
from .errors import (
    ConfigurationError,
    HubError,
    InstallError,
    SenseError,
    UnknownWorkerError,
    WorkerError,
)
from .install import install
from .network import network_info
from .workers import connect, get_master, get_workers, launch_workers, stop_workers

__all__ = [
    "install",
    "network_info",
    "networkInfo",
    "get_auth",
    "getAuth",
    "launch_workers",
    "launchWorkers",
    "get_workers",
    "getWorkers",
    "stop_workers",
    "stopWorkers",
    "get_master",
    "getMaster",
    "connect",
    "SIZES",
    "SenseError",
    "ConfigurationError",
    "InstallError",
    "UnknownWorkerError",
    "WorkerError",
    "HubError",
]

# The Sense spellings: the same functions, so both accept both keyword spellings.
networkInfo = network_info
getAuth = get_auth
launchWorkers = launch_workers
getWorkers = get_workers
stopWorkers = stop_workers
getMaster = get_master
