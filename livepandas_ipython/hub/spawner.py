"""Spawners: start, watch and stop the worker processes behind sessions.

The contract follows JupyterHub's ``Spawner``, trimmed to what a worker needs::

    spawner = LocalProcessSpawner(cmd=[sys.executable, "-m", "livepandas_ipython.hub.worker"])
    host, port = await spawner.start()     # waits for the child's ready line
    await spawner.poll()                   # None while it runs, else its exit status
    state = spawner.get_state()            # JSON: enough for a restarted hub to find it again
    await spawner.stop()                   # SIGINT -> SIGTERM -> SIGKILL, then reaped

The child protocol: a child is ready when it writes one stdout line
``LIVEPANDAS_READY {"host": "...", "port": N, ...}``. Every other stdout line goes to
:attr:`Spawner.on_line`; stdout is read for the child's whole life, so the pipe never fills. The
last 8 KiB of stderr are kept for error messages. The child's stdin is a pipe whose write end only
the spawner holds: when the parent dies (even by ``SIGKILL``) the child reads EOF and must exit.

Thread-safety: a spawner belongs to the asyncio loop that ran :meth:`~Spawner.start`; call
``start``/``poll``/``stop`` on that loop. Synchronous code (a notebook) runs them on
``LoopThread.shared()`` with ``.call(spawner.start, timeout=...)``.
"""

import asyncio
import errno
import json
import math
import os
import shlex
import signal
import subprocess
import threading
import time

from traitlets import Any, Dict, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from ..errors import LivePandasError

__all__ = ["READY", "Spawner", "LocalProcessSpawner", "SpawnError", "reap_orphan", "process_start_time"]

READY = "LIVEPANDAS_READY"
STDERR_TAIL = 8 * 1024
_POLL_INTERVAL = 0.02


class SpawnError(LivePandasError, RuntimeError):
    """A child process did not become ready: it could not run, exited early, or timed out.

    ``status`` is its exit status when it exited (None otherwise), ``stderr`` the tail of its
    standard error.
    """

    def __init__(self, message, *, status=None, stderr=""):
        super().__init__(message)
        self.status = status
        self.stderr = stderr


class Spawner(LoggingConfigurable):
    """How the hub starts, watches and stops one worker; subclass it for another backend.

    Subclasses implement :meth:`start`, :meth:`poll`, :meth:`stop` and the state methods.
    """

    cmd = List(
        Unicode(),
        help="The worker's argv (no shell involved); the first item is the program.",
    ).tag(config=True)
    env = Dict(
        help="Extra environment variables for the worker, merged over a copy of the hub's environment.",
    ).tag(config=True)
    cwd = Unicode("", help="The worker's working directory; empty inherits the hub's.").tag(config=True)
    start_timeout = Float(
        10,
        help="Seconds to wait for the worker's ready line before giving up and killing it.",
    ).tag(config=True)
    interrupt_timeout = Float(
        1,
        help="Seconds to wait for the worker to exit after SIGINT, before sending SIGTERM.",
    ).tag(config=True)
    term_timeout = Float(
        2,
        help="Seconds to wait for the worker to exit after SIGTERM, before sending SIGKILL.",
    ).tag(config=True)
    kill_timeout = Float(
        2,
        help="Seconds to wait for the worker to exit after SIGKILL before reporting it as stuck.",
    ).tag(config=True)
    mem_limit = Integer(
        0,
        help="Largest address space of a worker in bytes (RLIMIT_AS); 0 means no limit.",
    ).tag(config=True)
    cpu_limit = Float(
        0,
        help="CPU seconds a worker may use in total (RLIMIT_CPU, rounded up); 0 means no limit.",
    ).tag(config=True)

    ready_info = Dict(help="The JSON object of the worker's ready line, once started.")
    on_line = Any(None, allow_none=True, help="Called on the loop with every other stdout line (str).")
    on_exit = Any(None, allow_none=True, help="Called on the loop with the exit status when the child exits.")

    async def start(self):
        """Start the worker and wait for its ready line; return ``(host, port)``.

        Raises
        ------
        SpawnError
            When the program can't be run, exits before it is ready, or isn't ready within
            :attr:`start_timeout` seconds (the message includes the tail of its stderr).
        """
        raise NotImplementedError

    async def poll(self):
        """``None`` while the worker runs, else its exit status (0 when unknown)."""
        raise NotImplementedError

    async def stop(self, now=False):
        """Stop the worker (SIGINT, SIGTERM, SIGKILL; at once with *now*); idempotent."""
        raise NotImplementedError

    async def send(self, line):
        """Write one line to the worker's stdin."""
        raise NotImplementedError

    def get_state(self):
        """A JSON-able dict from which :meth:`load_state` can find this worker again."""
        return {}

    def load_state(self, state):
        """Adopt the worker described by *state* (from :meth:`get_state` of an earlier hub)."""

    def clear_state(self):
        """Forget the worker (after it stopped)."""
        self.ready_info = {}


class LocalProcessSpawner(Spawner):
    """Run the worker as a local child process in its own session and process group.

    Signals go to the whole process group, and when the worker exits whatever it left in its
    group is killed too, so no grandchild outlives it. A spawner restored with
    :meth:`load_state` in another process (a restarted hub) can still poll and stop the worker;
    it recognises it by pid *and* start time, so a recycled pid is never signalled.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pid = None
        self.pgid = None
        self.start_time = None
        self._proc = None
        self._loop = None
        self._exited = None  # future: the exit status of our own child
        self._ready = None  # future: the ready line's info
        self._readers = []
        self._stderr = bytearray()
        self._pidfd = None
        self._stopping = None
        self._stdin_fd = None

    def __repr__(self):
        return f"<{type(self).__name__} pid={self.pid} {shlex.join(self.cmd)!r}>"

    @property
    def stderr_tail(self):
        """The last bytes (up to 8 KiB) the child wrote to stderr, decoded."""
        return self._stderr.decode("utf-8", "replace")

    # -- start --------------------------------------------------------------------------------

    async def start(self):
        if await self.poll() is None:
            raise SpawnError(f"{self!r} is already running; stop() it first")
        self.clear_state()
        if not self.cmd:
            raise SpawnError("no command to run: set Spawner.cmd")
        loop = asyncio.get_running_loop()
        command = shlex.join(self.cmd)
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in self.env.items()})
        self.log.info("starting worker: %s", command)
        try:
            proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self.cwd or None,
                start_new_session=True,
                preexec_fn=self._limits_preexec(),
            )
        except PermissionError as exc:
            raise SpawnError(
                f"cannot run {command}: permission denied on {exc.filename or self.cmd[0]} "
                "(is it executable, and is its directory readable by the hub's user?)"
            ) from None
        except FileNotFoundError as exc:
            missing = exc.filename or self.cmd[0]
            where = f"directory {self.cwd}" if self.cwd and not os.path.isdir(self.cwd) else missing
            raise SpawnError(f"cannot run {command}: {where} does not exist") from None
        except OSError as exc:
            raise SpawnError(f"cannot run {command}: {exc.strerror or exc}") from None
        except subprocess.SubprocessError as exc:  # preexec_fn failed (a limit above the hard one)
            raise SpawnError(f"cannot run {command}: {exc}") from None

        self._loop = loop
        self._proc = proc
        self.pid = self.pgid = proc.pid
        self.start_time = process_start_time(proc.pid)
        self._stderr = bytearray()
        self._ready = loop.create_future()
        self._exited = loop.create_future()
        self._stopping = None
        self._stdin_fd = proc.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        self._readers = [
            _LineReader(loop, proc.stdout, self._on_stdout_line),
            _TailReader(loop, proc.stderr, self._stderr, STDERR_TAIL),
        ]
        self._watch_exit(loop, proc)

        try:
            info = await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except asyncio.TimeoutError:
            await self.stop(now=True)
            raise SpawnError(
                f"{command} was not ready within {self.start_timeout:g} s" + _tail_message(self.stderr_tail),
                stderr=self.stderr_tail,
            ) from None
        except asyncio.CancelledError:
            await asyncio.shield(self.stop(now=True))
            raise
        except SpawnError:
            await self.stop(now=True)
            raise
        self.log.info("worker pid %s ready on %s:%s", self.pid, info.get("host"), info.get("port"))
        return info["host"], int(info["port"])

    def _limits_preexec(self):
        limits = []
        if self.mem_limit:
            limits.append(("RLIMIT_AS", int(self.mem_limit)))
        if self.cpu_limit:
            limits.append(("RLIMIT_CPU", math.ceil(self.cpu_limit)))
        if not limits:
            return None  # without preexec_fn, Popen can use the faster vfork()
        import resource

        resolved = [(getattr(resource, name), value) for name, value in limits]

        def set_limits():
            for which, value in resolved:
                hard = resource.getrlimit(which)[1]
                resource.setrlimit(which, (value, hard if hard == resource.RLIM_INFINITY else min(value, hard)))

        return set_limits

    def _on_stdout_line(self, line):
        if not self._ready.done() and line.startswith(READY):
            try:
                info = json.loads(line[len(READY):])
                if not isinstance(info, dict) or "host" not in info or "port" not in info:
                    raise ValueError("it needs a JSON object with host and port")
            except ValueError as exc:
                self._ready.set_exception(
                    SpawnError(f"{shlex.join(self.cmd)} wrote an invalid ready line ({exc}): {line[:200]}")
                )
                return
            self.ready_info = info
            self._ready.set_result(info)
            return
        if self.on_line is not None:
            try:
                self.on_line(line)
            except Exception:
                self.log.exception("error in the on_line callback of %r", self)

    def _watch_exit(self, loop, proc):
        """Resolve ``self._exited`` when the child exits (pidfd on Linux, else a waiting thread)."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            pidfd = None
        if pidfd is not None:
            self._pidfd = pidfd
            loop.add_reader(pidfd, self._child_exited)
            return

        def wait():
            try:
                # WNOWAIT: the child stays a zombie, so its pid (and process group) can't be reused
                # until we have killed what's left in the group.
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
            loop.call_soon_threadsafe(self._child_exited)

        threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()

    def _child_exited(self):
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        proc = self._proc
        if proc is None or self._exited.done():
            return
        # The exited leader is still a zombie, so its pgid can't belong to anyone else yet.
        try:
            _killpg(self.pgid, signal.SIGKILL)
        except SpawnError:
            pass
        status = proc.wait()
        self._close_stdin()
        self._exited.set_result(status)
        self._exit_task = self._loop.create_task(self._finish_exit(status))

    async def _finish_exit(self, status):
        # Give the readers a moment to drain what the child wrote before it exited.
        await _wait_readers(self._readers, 1.0)
        if not self._ready.done():
            self._ready.set_exception(
                SpawnError(
                    f"{shlex.join(self.cmd)} exited with status {status} before it was ready"
                    + _tail_message(self.stderr_tail),
                    status=status,
                    stderr=self.stderr_tail,
                )
            )
            self._ready.exception()  # retrieved: start() may already have given up
        for reader in self._readers:
            reader.close()
        self.log.log(
            10 if self._stopping is not None else 20, "worker pid %s exited with status %s", self.pid, status
        )
        if self.on_exit is not None:
            try:
                result = self.on_exit(status)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                self.log.exception("error in the on_exit callback of %r", self)

    def _close_stdin(self):
        if self._proc is not None and self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    # -- stdin --------------------------------------------------------------------------------

    async def send(self, line):
        """Write *line* (a newline is added) to the worker's stdin.

        Raises
        ------
        SpawnError
            When the worker has exited or does not read its stdin.
        """
        if self._proc is None or self._proc.stdin is None or self._proc.stdin.closed:
            raise SpawnError("the worker is not running (or was not started by this process)")
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        deadline = time.monotonic() + 5
        while data:
            try:
                written = os.write(self._stdin_fd, data)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SpawnError(f"worker pid {self.pid} does not read its stdin") from None
                await asyncio.sleep(_POLL_INTERVAL)
                continue
            except BrokenPipeError:
                raise SpawnError(f"worker pid {self.pid} has closed its stdin") from None
            data = data[written:]

    # -- poll / stop --------------------------------------------------------------------------

    async def poll(self):
        if self._proc is not None:
            return self._exited.result() if self._exited.done() else None
        if self.pid is None:
            return 0
        if _same_process(self.pid, self.start_time):
            return None
        self.clear_state()
        return 0

    async def stop(self, now=False):
        if self._proc is None and self.pid is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(now))
        await asyncio.shield(self._stopping)

    async def _stop(self, now):
        steps = [(signal.SIGKILL, self.kill_timeout)]
        if not now:
            steps = [(signal.SIGINT, self.interrupt_timeout), (signal.SIGTERM, self.term_timeout)] + steps
        pid = self.pid
        for sig, timeout in steps:
            if await self.poll() is not None:
                break
            self.log.debug("sending %s to worker pid %s", sig.name, pid)
            if self._proc is not None or _same_process(pid, self.start_time):
                _killpg(self.pgid, sig)
            if await self._wait_exit(timeout):
                break
        else:
            self.log.error("worker pid %s did not exit after SIGKILL; giving up on it", pid)
            return
        if self._proc is not None:
            await _wait_readers(self._readers, 1.0)
            for reader in self._readers:
                reader.close()
        self.log.info("stopped worker pid %s", pid)

    async def _wait_exit(self, timeout):
        if self._proc is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), timeout)
                return True
            except asyncio.TimeoutError:
                return False
        deadline = time.monotonic() + timeout
        while _same_process(self.pid, self.start_time):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_INTERVAL)
        return True

    # -- state --------------------------------------------------------------------------------

    def get_state(self):
        if self.pid is None:
            return {}
        return {
            "pid": self.pid,
            "pgid": self.pgid,
            "start_time": self.start_time,
            "cmd": list(self.cmd),
            "ready_info": dict(self.ready_info),
        }

    def load_state(self, state):
        if not state or not state.get("pid"):
            return
        if self._proc is not None:
            raise SpawnError(f"{self!r} is running its own child; it cannot adopt another")
        self.pid = int(state["pid"])
        self.pgid = int(state.get("pgid") or self.pid)
        self.start_time = state.get("start_time")
        if state.get("cmd"):
            self.cmd = list(state["cmd"])
        self.ready_info = dict(state.get("ready_info") or {})

    def clear_state(self):
        if self._proc is not None and not self._exited.done():
            return  # our child still runs: forgetting it would leak it
        super().clear_state()
        self._proc = None
        self._stopping = None
        self.pid = self.pgid = self.start_time = None


# -- process identity ---------------------------------------------------------------------------


def process_start_time(pid):
    """When *pid* started, in clock ticks since boot (``/proc/<pid>/stat``); None if unknown.

    A pid is recycled after its process is gone; the pair (pid, start time) is not.
    """
    stat = _read_stat(pid)
    return int(stat[19]) if stat else None


def _read_stat(pid):
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces and ')'.
    return data[data.rindex(b")") + 2:].split()


def _same_process(pid, start_time):
    """True when *pid* is alive (not a zombie) and, if *start_time* is known, started then."""
    if not pid:
        return False
    stat = _read_stat(pid)
    if stat is None:
        if os.path.isdir("/proc/self"):
            return False
        try:  # no procfs: the pid alone is all there is to go by
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if stat[0] in (b"Z", b"X"):
        return False
    return start_time is None or int(stat[19]) == int(start_time)


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise SpawnError(f"not permitted to signal process group {pgid} (owned by another user?)") from exc


def reap_orphan(state, timeout=1.0):
    """Kill the worker a saved *state* describes, if and only if it is still that process.

    Sends SIGTERM to its process group, then SIGKILL after *timeout* seconds. A pid that now
    belongs to another process (its start time differs) or that is gone is left alone.

    Returns
    -------
    bool
        True when a process was found and killed.
    """
    pid = state.get("pid") if state else None
    start_time = state.get("start_time") if state else None
    if not pid or start_time is None or not _same_process(pid, start_time):
        return False
    pgid = state.get("pgid") or pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            _killpg(pgid, sig)
        except SpawnError:
            return False
        deadline = time.monotonic() + wait
        while _same_process(pid, start_time):
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_INTERVAL)
        else:
            return True
    return not _same_process(pid, start_time)


# -- pipes ----------------------------------------------------------------------------------------


class _PipeReader:
    """Read a child's pipe on the loop without blocking; ``done`` resolves at EOF."""

    def __init__(self, loop, file):
        self.loop = loop
        self.file = file
        self.fd = file.fileno()
        self.done = loop.create_future()
        os.set_blocking(self.fd, False)
        loop.add_reader(self.fd, self._readable)

    def _readable(self):
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if data:
            self.feed(data)
        else:
            self.close()

    def feed(self, data):
        raise NotImplementedError

    def close(self):
        if self.file.closed:
            return
        self.loop.remove_reader(self.fd)
        self.flush()
        self.file.close()
        if not self.done.done():
            self.done.set_result(None)

    def flush(self):
        pass


class _LineReader(_PipeReader):
    def __init__(self, loop, file, on_line, max_line=1024 * 1024):
        self.on_line = on_line
        self.max_line = max_line
        self.buffer = bytearray()
        super().__init__(loop, file)

    def feed(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            self.on_line(line.decode("utf-8", "replace").rstrip("\r"))
        if len(self.buffer) > self.max_line:  # a runaway line: deliver it in pieces
            self.flush()

    def flush(self):
        if self.buffer:
            line, self.buffer = bytes(self.buffer), bytearray()
            self.on_line(line.decode("utf-8", "replace"))


class _TailReader(_PipeReader):
    def __init__(self, loop, file, tail, size):
        self.tail = tail
        self.size = size
        super().__init__(loop, file)

    def feed(self, data):
        self.tail += data
        if len(self.tail) > self.size:
            del self.tail[: len(self.tail) - self.size]


async def _wait_readers(readers, timeout):
    pending = [r.done for r in readers if not r.done.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def _tail_message(tail, lines=15):
    tail = tail.strip()
    if not tail:
        return " (it wrote nothing to stderr)"
    return "; its stderr ended with:\n" + "\n".join(tail.splitlines()[-lines:])
