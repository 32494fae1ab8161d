"""Worker management: launch, list and stop the workers of this master, and reach their kernels.

With ``SENSE_API_URL`` set (on a hub dashboard, or any client of a hub) these call the hub's
dashboards API, ``<SENSE_API_URL>/users/<SENSE_OWNER_ID>/projects/<SENSE_PROJECT_ID>/dashboards/``
with HTTP Basic credentials from :func:`sense.get_auth`. Without it they run on an embedded
backend: the workers are local processes of this one (see :mod:`sense._embedded`), with the same
records and environment.

A worker record is a dict with at least ``id``, ``engine``, ``size``, ``status``
(``"running"``, ``"stopped"``, ``"failed"``), ``master_id``, ``created_at`` and ``error`` (None,
or why it failed or ended), plus how to reach it: ``host``, ``port`` and ``connection`` (the
Jupyter connection info of its kernel, used by :func:`connect`). Lists of records render as HTML
tables in a notebook.

Embedded sizes (``sense.SIZES``): ``small`` = 2 GiB of address space and 1 CPU-hour,
``medium`` = 8 GiB and 4 CPU-hours, ``large`` = 32 GiB and 16 CPU-hours (``RLIMIT_AS`` and
``RLIMIT_CPU`` of the worker process).
"""

from ._backend import DEFAULT_ENGINE, SIZES, current_backend, parse_id
from .errors import WorkerError

__all__ = ["launch_workers", "get_workers", "stop_workers", "get_master", "connect", "SIZES"]


def _pick(name, value, camel_name, camel_value):
    if value is not None and camel_value is not None:
        raise TypeError(f"give {name} or {camel_name}, not both")
    return value if value is not None else camel_value


def launch_workers(
    n,
    size="small",
    engine=DEFAULT_ENGINE,
    startup_script=None,
    startup_code=None,
    env=None,
    *,
    startupScript=None,  # noqa: N803 - the Sense spelling
    startupCode=None,  # noqa: N803
):
    """Launch *n* workers at once, each running its startup code in its own IPython kernel.

    Parameters
    ----------
    n : int
        How many workers to launch (they start concurrently).
    size : str, optional
        ``"small"``, ``"medium"`` or ``"large"`` (see ``sense.SIZES`` for their limits).
    engine : str, optional
        The command a worker runs; ``"sense-ipython-engine"`` (the default) is an IPython kernel.
    startup_script, startupScript : str, optional
        A Python script each worker runs first.
    startup_code, startupCode : str, optional
        Python code each worker runs first, like a notebook cell. Mutually exclusive with the
        script.
    env : dict, optional
        Environment variables to set on the workers.

    Returns
    -------
    list of dict
        One record per worker, in launch order: ``status`` is ``"running"`` once its startup code
        ran, or ``"failed"`` with ``error`` (and ``traceback``) saying why.

    Raises
    ------
    ValueError
        Both a startup script and startup code, an unknown size or engine, or a bad *n*.

    Examples
    --------
    >>> import sense
    >>> workers = sense.launch_workers(2, "medium", startup_code="import numpy")  # doctest: +SKIP
    """
    startup_script = _pick("startup_script", startup_script, "startupScript", startupScript) or None
    startup_code = _pick("startup_code", startup_code, "startupCode", startupCode) or None
    if startup_script and startup_code:
        raise ValueError("startup_script and startup_code are mutually exclusive: give one of them")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of workers, not {n!r}")
    if env is not None and not isinstance(env, dict):
        raise TypeError(f"env must be a dict of environment variables, not {type(env).__name__}")
    return current_backend().launch(n, size, engine, startup_script, startup_code, dict(env or {}))


def get_workers():
    """The running workers of this master (those sharing the current dashboard's master).

    Returns
    -------
    list of dict
        Their records.
    """
    return current_backend().workers()


def stop_workers(*ids):
    """Stop the workers with these ids, or all of this master's workers when none are given.

    Parameters
    ----------
    *ids : int or str
        Worker ids, as in the records' ``id`` (records themselves, or lists of either, work too).

    Returns
    -------
    list of dict
        The records of the workers stopped, now with ``status`` ``"stopped"``.

    Raises
    ------
    UnknownWorkerError
        When an id names no worker of this master (nothing is stopped then).
    """
    return current_backend().stop(_ids(ids))


def _ids(items):
    ids = []
    for item in items:
        if isinstance(item, (list, tuple)):
            ids += _ids(item)
        elif isinstance(item, dict):
            ids.append(item.get("id"))
        else:
            ids.append(parse_id(item) if isinstance(item, str) else item)
    return ids


def get_master():
    """The record of this dashboard's master (this process itself when it is the master).

    Returns
    -------
    dict
        Its record; ``master_id`` is None.
    """
    return current_backend().master()


def connect(worker, timeout=10):
    """A Jupyter client connected to a worker's kernel, to run code on it from the master.

    Parameters
    ----------
    worker : dict or int or str
        A worker record (from :func:`launch_workers` or :func:`get_workers`) or a worker id.
    timeout : float, optional
        Seconds to wait for the kernel to answer.

    Returns
    -------
    jupyter_client.BlockingKernelClient
        Started and ready; call ``.stop_channels()`` when done.

    Raises
    ------
    WorkerError
        When the worker is not running, has no kernel connection information, or doesn't answer.

    Examples
    --------
    >>> kc = sense.connect(workers[0])  # doctest: +SKIP
    >>> kc.execute_interactive("print(x)")  # doctest: +SKIP
    >>> kc.stop_channels()  # doctest: +SKIP
    """
    backend = current_backend()
    worker_id = worker.get("id") if isinstance(worker, dict) else worker
    record = backend.find(worker_id) if worker_id is not None else None
    if record is None:
        record = dict(worker) if isinstance(worker, dict) else {}
    if record.get("status") != "running":
        raise WorkerError(f"worker {worker_id} is not running (status: {record.get('status') or 'unknown'})")
    info = record.get("connection")
    if not info:
        raise WorkerError(f"worker {worker_id} has no kernel connection information (engine {record.get('engine')!r})")

    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient()
    client.load_connection_info(info)
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
    except RuntimeError as exc:
        client.stop_channels()
        raise WorkerError(f"worker {worker_id}'s kernel did not answer: {exc}") from None
    except BaseException:
        client.stop_channels()
        raise
    return client
