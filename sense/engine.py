"""``sense-ipython-engine``: the program a worker runs — an IPython kernel that first runs its
startup code.

The engine starts an ipykernel (:class:`ipykernel.kernelapp.IPKernelApp`, in this process),
runs the worker's startup code or script in the kernel's user namespace, then announces itself
with one stdout line (the spawner's ready-line protocol)::

    LIVEPANDAS_READY {"host": "127.0.0.1", "port": <shell port>, "id": <dashboard id>,
                      "pid": <pid>, "connection_file": "/path/kernel.json",
                      "connection": {<jupyter connection info: ip, transport, key, ports>},
                      "startup": "ok" | "error: <Type>: <message>",
                      "traceback": "<text, on error>", "output": "<tail of the startup output>"}

after which the kernel serves Jupyter clients (``sense.connect(worker)`` or
``jupyter console --existing <connection_file>``) until it is stopped. A failing startup is
reported in that line, never by hanging; the kernel itself stays up and the launcher decides
what to do with it.

Command line (every option may be omitted)::

    sense-ipython-engine [--ip 127.0.0.1] [--connection-file FILE] [--debugger]
                         [--startup-code CODE | --startup-code-file FILE | --startup-script FILE]

``--startup-code-file`` runs the file's text like a notebook cell (IPython syntax);
``--startup-script`` runs a Python script with ``__file__`` set and its folder on ``sys.path``
(``.ipy`` files as IPython scripts). The kernel's debugger (debugpy) is off unless ``--debugger``
is given: a headless worker rarely needs it, and importing it is a sizeable part of a start.

Environment (read, never required): ``SENSE_DASHBOARD_ID`` — the worker's id; when empty or unset
the engine sets it to its own process id. ``SENSE_PROJECT_PACKAGES`` — the project's shared
package directory, put first on ``sys.path`` (with its ``.pth`` files). Every other ``SENSE_*``
variable is simply visible to the startup code, as in any dashboard.

Lifetime: the engine exits when its stdin (a pipe from the process that launched it) reaches
end of file — its launcher is gone, even if it was killed — and on ``SIGTERM``; both remove the
connection file and end the engine's process group at once (user ``atexit`` handlers do not
run). ``SIGINT`` interrupts the running cell, as in any kernel, and ``interrupt_request``
messages on the control channel do the same.
"""

import argparse
import io
import json
import os
import signal
import site
import stat
import sys
import tempfile
import threading
import traceback

__all__ = ["main", "READY"]

READY = "LIVEPANDAS_READY"
_OUTPUT_TAIL = 4000


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sense-ipython-engine",
        description="Run an IPython kernel for a Sense worker: run its startup code, then serve.",
    )
    parser.add_argument("--ip", default="127.0.0.1", help="address the kernel's sockets bind (default: %(default)s)")
    parser.add_argument(
        "--connection-file",
        default="",
        help="where to write the kernel's connection file (default: a private temporary folder)",
    )
    startup = parser.add_mutually_exclusive_group()
    startup.add_argument("--startup-code", default=None, help="code to run first, like a notebook cell")
    startup.add_argument("--startup-code-file", default=None, help="a file whose text is run like --startup-code")
    startup.add_argument("--startup-script", default=None, help="a Python (or .ipy) script to run first")
    parser.add_argument(
        "--debugger",
        action="store_true",
        help="enable the kernel's debugger (debugpy); off by default: importing it costs each worker ~80 ms of CPU",
    )
    return parser


def main(argv=None):
    """Entry point of ``sense-ipython-engine``; returns only when the kernel stops."""
    args = build_parser().parse_args(argv)
    ready_stream = sys.stdout
    _prepare_environment()

    cleanup = _Cleanup()
    connection_file = args.connection_file
    if not connection_file:
        private = tempfile.mkdtemp(prefix="sense-engine-")
        cleanup.dirs.append(private)
        connection_file = os.path.join(private, "kernel.json")
    connection_file = os.path.abspath(connection_file)
    cleanup.files.append(connection_file)

    # Exit with the launcher (stdin EOF) and on SIGTERM, from the very start: a launcher that
    # gives up during a slow startup must not leave an engine behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: cleanup.exit_now())
    _watch_stdin(cleanup)

    startup_code, startup_script, startup_error = _read_startup(args)

    if not args.debugger:
        # ipykernel enables its debugger when this import succeeds; a worker rarely needs it.
        sys.modules.setdefault("debugpy.server", None)
    app = _start_kernel_app(args.ip, connection_file)
    if startup_error is None:
        startup_error, output = _run_startup(app.shell, startup_code, startup_script)
    else:
        output = ""

    info = {
        "host": args.ip,
        "port": app.shell_port,
        "id": _parse_id(os.environ["SENSE_DASHBOARD_ID"]),
        "pid": os.getpid(),
        "connection_file": connection_file,
        "connection": _connection_info(app),
        "startup": "ok",
        "output": output[-_OUTPUT_TAIL:],
    }
    if startup_error is not None:
        summary, tb = startup_error
        info["startup"] = f"error: {summary}"
        info["traceback"] = tb
    ready_stream.write(f"{READY} {json.dumps(info)}\n")
    ready_stream.flush()

    try:
        app.start()
    finally:
        cleanup.run()
    return 0


def _prepare_environment():
    """Fill in ``SENSE_DASHBOARD_ID`` and put the project's package directory on ``sys.path``."""
    if not os.environ.get("SENSE_DASHBOARD_ID"):
        os.environ["SENSE_DASHBOARD_ID"] = str(os.getpid())
    packages = os.environ.get("SENSE_PROJECT_PACKAGES")
    if packages:
        packages = os.path.abspath(packages)
        if packages not in sys.path:
            sys.path.insert(0, packages)
        if os.path.isdir(packages):
            site.addsitedir(packages)  # .pth files too; the entry is already first


def _parse_id(value):
    return int(value) if value.isdigit() else value


class _Cleanup:
    """Files and folders the engine owns; removed however it exits."""

    def __init__(self):
        self.files = []
        self.dirs = []
        self._lock = threading.Lock()

    def run(self):
        # Non-blocking: a signal handler may interrupt a run() in progress on the same thread.
        if not self._lock.acquire(blocking=False):
            return
        try:
            for path in self.files:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            for path in self.dirs:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            self.files, self.dirs = [], []
        finally:
            self._lock.release()

    def exit_now(self):
        self.run()
        _kill_own_group()
        os._exit(0)


def _kill_own_group():
    """SIGKILL the other processes of our process group (what the user's code started)."""
    me = os.getpid()
    if os.getpgid(0) != me:
        return  # not our own group: it is the launcher's to manage
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return
    for pid in pids:
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            pgrp = int(data[data.rindex(b")") + 2:].split()[2])
        except (OSError, ValueError, IndexError):
            continue
        if pgrp == me:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _watch_stdin(cleanup):
    """Exit when stdin, a pipe from the launcher, reaches EOF; stdin becomes /dev/null."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return  # run by hand (a terminal, /dev/null): nothing to watch
    watched = os.dup(0)
    # User code and its subprocesses must neither read the launcher's pipe nor hold it open.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)

    def watch():
        try:
            while os.read(watched, 4096):
                pass  # lines from the launcher are not used by this engine
        except OSError:
            pass
        cleanup.exit_now()

    threading.Thread(target=watch, name="sense-stdin-watch", daemon=True).start()


def _read_startup(args):
    """``(code, script, error)``: what to run first, or why it can't be read."""
    if args.startup_code is not None:
        return args.startup_code, None, None
    if args.startup_code_file is not None:
        try:
            with open(args.startup_code_file, encoding="utf-8") as f:
                return f.read(), None, None
        except OSError as exc:
            return None, None, _error_from(exc)
    if args.startup_script is not None:
        script = os.path.abspath(args.startup_script)
        if not os.path.isfile(script):
            return None, None, (f"FileNotFoundError: startup script {script} does not exist", "")
        return None, script, None
    return None, None, None


def _start_kernel_app(ip, connection_file):
    from ipykernel.kernelapp import IPKernelApp
    from traitlets.config import Config

    config = Config()
    config.IPKernelApp.ip = ip
    config.IPKernelApp.connection_file = connection_file
    # Leave file descriptor 1 alone: it carries the ready line to the launcher.
    config.IPKernelApp.capture_fd_output = False
    # A worker's parent is its launcher; naming it also keeps the kernel from printing its
    # "to connect, use --existing" banner on our stdout.
    config.IPKernelApp.parent_handle = os.getppid()
    # Many workers start at once: a shared SQLite history file would make them wait on its lock.
    config.HistoryManager.hist_file = ":memory:"
    app = IPKernelApp.instance(config=config)
    app.initialize([])
    return app


def _run_startup(shell, code, script):
    """Run the startup code or script in the user namespace; return ``(error, output)``.

    ``error`` is None or ``(one-line summary, traceback text)``; ``output`` is what the startup
    printed (also copied to stderr, where the launcher keeps its tail).
    """
    if code is None and script is None:
        return None, ""
    tee = _Tee(sys.__stderr__)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = tee
    error = None
    try:
        if script is not None:
            shell.user_ns["__file__"] = script
            try:
                if script.endswith(".ipy"):
                    shell.safe_execfile_ipy(script, raise_exceptions=True)
                else:
                    shell.safe_execfile(script, shell.user_ns, raise_exceptions=True, shell_futures=True)
            except BaseException as exc:  # noqa: B036 - SystemExit in a script is a failure too
                error = _error_from(exc)
            finally:
                shell.user_ns.pop("__file__", None)
        else:
            result = shell.run_cell(code, store_history=False)
            exc = result.error_before_exec or result.error_in_exec
            if exc is not None:
                error = _error_from(exc)
    finally:
        sys.stdout, sys.stderr = saved
    if error is not None:
        sys.__stderr__.write(error[1] or error[0] + "\n")
        sys.__stderr__.flush()
    return error, tee.getvalue()


def _error_from(exc):
    summary = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return summary, "".join(traceback.format_exception(exc))


class _Tee(io.TextIOBase):
    """Keep what is written and copy it to another stream."""

    def __init__(self, copy_to):
        self._copy_to = copy_to
        self._buffer = io.StringIO()

    def writable(self):
        return True

    def write(self, text):
        self._buffer.write(text)
        if self._copy_to is not None:
            self._copy_to.write(text)
        return len(text)

    def flush(self):
        if self._copy_to is not None:
            self._copy_to.flush()

    def getvalue(self):
        return self._buffer.getvalue()


def _connection_info(app):
    key = app.session.key
    return {
        "ip": app.ip,
        "transport": app.transport,
        "key": key.decode("ascii") if isinstance(key, bytes) else key,
        "signature_scheme": app.session.signature_scheme,
        "shell_port": app.shell_port,
        "iopub_port": app.iopub_port,
        "stdin_port": app.stdin_port,
        "control_port": app.control_port,
        "hb_port": app.hb_port,
        "kernel_name": "python3",
    }


if __name__ == "__main__":
    sys.exit(main())
