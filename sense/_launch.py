"""Starting one worker: the engine's command line, its limits, its start and its record fields.

Shared by the two places that run engines as local processes: the embedded backend
(:mod:`sense._embedded`, workers of a notebook) and the hub's dashboards
(:mod:`livepandas_ipython.hub.dashboards`). Both build a command with :func:`engine_command`,
:func:`startup_options` and :func:`connection_options`, run it with a
:class:`~livepandas_ipython.hub.spawner.Spawner` configured with :func:`limits_for`, wait for it
with :func:`start_engine`, and describe it with :func:`record_fields`, so a worker record looks
the same whichever of them launched it (and :func:`sense.connect` works on both).
"""

import os
import shutil
import sys
import tempfile
import uuid

from ._backend import DEFAULT_ENGINE, SIZES

__all__ = [
    "engine_command",
    "limits_for",
    "startup_options",
    "connection_options",
    "option_value",
    "start_engine",
    "record_fields",
]


def engine_command(engine, ip, engines=None):
    """The argv that runs *engine*, before the startup and connection options.

    ``sense-ipython-engine`` is :mod:`sense.engine` on this interpreter (so workers import what
    their launcher imports), binding *ip*. Any other engine is looked up in *engines* (a dict of
    name to argv) when given, else on ``PATH``.

    Raises
    ------
    ValueError
        For an engine that is neither.
    """
    if not isinstance(engine, str) or not engine:
        raise ValueError(f"engine must be a non-empty string, not {engine!r}")
    if engine == DEFAULT_ENGINE:
        return [sys.executable, "-m", "sense.engine", "--ip", ip]
    if engines is not None:
        if engine not in engines:
            known = ", ".join(map(repr, [DEFAULT_ENGINE, *engines]))
            raise ValueError(f"unknown engine {engine!r}; the engines are: {known}")
        command = engines[engine]
        return [command] if isinstance(command, str) else list(command)
    path = shutil.which(engine)
    if path is None:
        raise ValueError(f"unknown engine {engine!r}: no such command on PATH (the default is {DEFAULT_ENGINE!r})")
    return [path]


def limits_for(size, sizes=None):
    """``{"mem_limit": bytes, "cpu_limit": seconds}`` of worker *size* (0: no limit).

    Raises
    ------
    ValueError
        For a size that is not in *sizes* (default :data:`sense.SIZES`).
    """
    sizes = sizes or SIZES
    if not isinstance(size, str) or size not in sizes:
        raise ValueError(f"unknown worker size {size!r}; the sizes are: {', '.join(sizes)}")
    limits = sizes[size]
    return {"mem_limit": int(limits.get("mem_limit") or 0), "cpu_limit": float(limits.get("cpu_limit") or 0)}


def startup_options(startup_script, startup_code, directory):
    """The engine options that run the startup script or code; returns ``(argv, code_file)``.

    Startup code is written to a new file in *directory* (``code_file``, for the caller to
    remove when the worker has started); a script is passed by its absolute path.

    Raises
    ------
    ValueError
        When both are given.
    FileNotFoundError
        When the script does not exist.
    """
    if startup_script and startup_code:
        raise ValueError("startup_script and startup_code are mutually exclusive: give one of them")
    if startup_script:
        script = os.path.abspath(os.path.expanduser(startup_script))
        if not os.path.isfile(script):
            raise FileNotFoundError(f"startup script {script} does not exist")
        return ["--startup-script", script], None
    if startup_code:
        fd, path = tempfile.mkstemp(prefix="startup-", suffix=".py", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(startup_code)
        return ["--startup-code-file", path], path
    return [], None


def connection_options(engine, directory):
    """``--connection-file`` in *directory* for the default engine (other engines: none)."""
    if engine != DEFAULT_ENGINE:
        return []
    return ["--connection-file", os.path.join(directory, f"kernel-{uuid.uuid4().hex}.json")]


def option_value(argv, option):
    """The value following *option* in *argv*, or None."""
    try:
        return argv[argv.index(option) + 1]
    except (ValueError, IndexError):
        return None


async def start_engine(spawner):
    """Start *spawner* and wait for its engine's ready line; returns ``(info, error, traceback)``.

    *error* is None when the engine runs and its startup code succeeded; otherwise it says why
    (and a worker whose startup code failed has been stopped). *info* is the ready line's object
    (empty when the process never got that far).
    """
    from livepandas_ipython.hub.spawner import SpawnError

    error = traceback = None
    try:
        await spawner.start()
    except SpawnError as exc:
        error = str(exc)
    info = dict(spawner.ready_info)
    if error is None and info.get("startup", "ok") != "ok":
        error = "startup failed: " + info["startup"].removeprefix("error: ")
        traceback = info.get("traceback")
        await spawner.stop(now=True)
    return info, error, traceback


def record_fields(info, limits, pid):
    """How to reach a started worker, as its record carries it."""
    fields = {
        "pid": pid,
        "host": info.get("host"),
        "port": info.get("port"),
        "connection": info.get("connection"),
        "connection_file": info.get("connection_file"),
        "mem_limit": int(limits.get("mem_limit") or 0),
        "cpu_limit": float(limits.get("cpu_limit") or 0),
        "output": info.get("output", ""),
    }
    return fields
