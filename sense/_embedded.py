"""The embedded backend: workers as local processes of the process that launches them.

Without a hub, this process is the master. Each worker is a :class:`LocalProcessSpawner` child
running the engine (``sense-ipython-engine``: an IPython kernel that first runs the startup
code). Spawners run on the shared :class:`~livepandas_ipython.server.LoopThread`; the public
functions block on it from the caller's thread. How a worker is started and described is
:mod:`sense._launch`, shared with the hub's dashboards, so records look alike on both.

A worker's id is its process id; the master's id is ``SENSE_DASHBOARD_ID`` when set, else its
own process id. Workers get the ``SENSE_*`` environment of a dashboard (``SENSE_MASTER_ID``,
``SENSE_DASHBOARD_ID``, ``SENSE_OWNER_ID``, ``SENSE_PROJECT_ID``, ``SENSE_PUBLIC_DNS``,
``SENSE_PROJECT_IP``), on top of a copy of the master's environment and the caller's ``env``.

No worker outlives its master: each reads EOF on its stdin when the master exits, however it
exits, and the master also stops its workers at interpreter exit. Each process manages the
workers it launched itself; with no hub to ask, a worker does not see its siblings.
"""

import asyncio
import atexit
import getpass
import os
import queue
import shutil
import sys
import tempfile
import threading
import time

from traitlets import Dict, Float, Unicode
from traitlets.config import LoggingConfigurable

from ._backend import SIZES, Backend, now_iso, parse_id, same_id
from ._launch import (
    connection_options,
    engine_command,
    limits_for,
    option_value,
    record_fields,
    start_engine,
    startup_options,
)
from .display import LaunchProgress, ProgressDisplay, Record, Records
from .errors import UnknownWorkerError, WorkerError

__all__ = ["EmbeddedBackend"]

# Variables that identify a dashboard: the caller's env may not override them.
_IDENTITY = ("SENSE_DASHBOARD_ID", "SENSE_MASTER_ID")


class _Worker:
    """One launched worker: its spawner and its record (updated on the loop and the caller)."""

    def __init__(self, spawner, record, order):
        self.spawner = spawner
        self.record = record
        self.order = order  # (launch number, index in it): lists follow launch order
        self.stopping = False


class EmbeddedBackend(LoggingConfigurable, Backend):
    """Local worker processes, for a notebook with no hub."""

    kind = "embedded"

    start_timeout = Float(
        60,
        help="Seconds a worker may take to start its kernel and run its startup code before it "
        "is reported failed (its startup code runs before it counts as running).",
    ).tag(config=True)
    ip = Unicode(
        "127.0.0.1",
        help="Address the workers' kernels bind (for the default engine). Anything but loopback "
        "exposes them to the network (their messages are signed, not encrypted).",
    ).tag(config=True)
    interrupt_timeout = Float(
        0.1,
        help="Seconds between SIGINT (interrupts a running cell) and SIGTERM when stopping a worker.",
    ).tag(config=True)
    term_timeout = Float(2, help="Seconds between SIGTERM and SIGKILL when stopping a worker.").tag(config=True)
    sizes = Dict(
        help="Worker sizes: name -> {'mem_limit': bytes (RLIMIT_AS), 'cpu_limit': CPU seconds "
        "(RLIMIT_CPU)}; 0 means no limit. Defaults to sense.SIZES.",
    ).tag(config=True)

    _instance = None
    _instance_lock = threading.Lock()

    @classmethod
    def instance(cls):
        """The process-wide backend (configured from the IPython shell's config, if any)."""
        with cls._instance_lock:
            if cls._instance is None:
                shell = _shell()
                config = shell.config if shell is not None else None
                cls._instance = cls(config=config) if config is not None else cls()
                if shell is not None:
                    shell.configurables.append(cls._instance)  # %config EmbeddedBackend...
            return cls._instance

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._workers = {}  # str(id) -> _Worker, in launch order
        self._lock = threading.Lock()
        self._run_dir = None
        self._atexit_registered = False
        self._launches = 0
        self.started_at = time.time()

    # -- identity -----------------------------------------------------------------------------

    @property
    def master_id(self):
        return parse_id(os.environ.get("SENSE_DASHBOARD_ID")) or os.getpid()

    def master(self):
        launcher = parse_id(os.environ.get("SENSE_MASTER_ID"))
        if launcher is not None and not same_id(launcher, self.master_id):
            # A worker asking for its master: the process that launched it.
            return Record(
                id=launcher,
                engine=None,
                size=None,
                status="running",  # a worker lives only while its master does
                master_id=None,
                created_at=None,
                host=os.environ.get("SENSE_PROJECT_IP") or "127.0.0.1",
            )
        return Record(
            id=self.master_id,
            engine=None,
            size=None,
            status="running",
            master_id=None,
            created_at=now_iso(_process_start_time() or self.started_at),
            pid=os.getpid(),
            host=os.environ.get("SENSE_PROJECT_IP") or "127.0.0.1",
        )

    # -- launch -------------------------------------------------------------------------------

    def launch(self, n, size, engine, startup_script, startup_code, env):
        from livepandas_ipython.hub.spawner import LocalProcessSpawner
        from livepandas_ipython.server import LoopThread

        loop_thread = LoopThread.shared()
        if loop_thread.in_thread():
            raise WorkerError("launch_workers() blocks: call it from a thread other than the server loop's")
        limits = limits_for(size, self.sizes or SIZES)
        command = engine_command(engine, self.ip)
        run_dir = self._ensure_run_dir()
        options, code_file = startup_options(startup_script, startup_code, run_dir)
        command += options
        worker_env = self._worker_env(env)
        spawners = [
            LocalProcessSpawner(
                parent=self,
                cmd=command + connection_options(engine, run_dir),
                env=worker_env,
                start_timeout=self.start_timeout,
                interrupt_timeout=self.interrupt_timeout,
                term_timeout=self.term_timeout,
                **limits,
            )
            for _ in range(n)
        ]
        progress = LaunchProgress(n, engine, size)
        shown = ProgressDisplay(progress)
        events = queue.SimpleQueue()
        self._register_atexit()
        created_at = now_iso()
        with self._lock:
            self._launches += 1
            launch = self._launches
        future = asyncio.run_coroutine_threadsafe(
            self._start_all(spawners, engine, size, limits, created_at, events, launch), loop_thread.loop
        )
        try:
            while not future.done():
                try:
                    index, status, error = events.get(timeout=0.25)
                except queue.Empty:
                    shown.update()  # the elapsed time moves on
                    continue
                progress.set(index, status, error)
                shown.update()
            records = future.result()
        except BaseException:
            # Interrupted (or broken): no half-started worker may survive the call.
            future.cancel()
            try:
                loop_thread.call(self._stop_spawners, spawners, True, timeout=10)
            finally:
                self._forget(spawners)
            raise
        finally:
            if code_file is not None:
                _unlink(code_file)
        while not events.empty():
            progress.set(*events.get())
        progress.finish()
        shown.update()
        return Records(Record(r) for r in records)

    async def _start_all(self, spawners, engine, size, limits, created_at, events, launch):
        return await asyncio.gather(
            *(
                self._start_one((launch, i), spawner, engine, size, limits, created_at, events)
                for i, spawner in enumerate(spawners)
            )
        )

    async def _start_one(self, order, spawner, engine, size, limits, created_at, events):
        connection_file = option_value(spawner.cmd, "--connection-file")

        def on_exit(status):
            if connection_file:
                _unlink(connection_file)  # the engine removes it too, unless it was killed
            self._exited(spawner, status)

        spawner.on_exit = on_exit
        info, error, traceback = await start_engine(spawner)
        if spawner.pid is None:
            raise WorkerError(error or "the worker process could not be started")
        record = {
            "id": parse_id(info.get("id")) or spawner.pid,
            "engine": engine,
            "size": size,
            "status": "failed" if error else "running",
            "master_id": self.master_id,
            "created_at": created_at,
            "stopped_at": now_iso() if error else None,
            **record_fields(info, limits, spawner.pid),
            "error": error,
        }
        if traceback:
            record["traceback"] = traceback
        exit_status = None if error else await spawner.poll()
        with self._lock:
            worker = _Worker(spawner, record, order)
            if exit_status is not None:
                # It exited between its ready line and now (e.g. its startup code ended the process).
                record.update(status="stopped", stopped_at=now_iso(), exit_status=exit_status)
                record["error"] = f"exited with status {exit_status} right after starting"
            self._workers[str(record["id"])] = worker
            snapshot = dict(record)
        events.put((order[1], snapshot["status"], snapshot["error"]))
        return snapshot

    def _exited(self, spawner, status):
        """The spawner's on_exit (on the loop): a worker ended, stopped by us or not."""
        with self._lock:
            for worker in self._workers.values():
                if worker.spawner is spawner:
                    break
            else:
                return
            record = worker.record
            record["exit_status"] = status
            if record["status"] == "running":
                record["status"] = "stopped"
                record["stopped_at"] = now_iso()
                if not worker.stopping:
                    record["error"] = f"exited on its own with status {status}"

    # -- list / find / stop ---------------------------------------------------------------------

    def workers(self):
        with self._lock:
            running = [w for w in self._workers.values() if w.record["status"] == "running"]
            return Records(Record(w.record) for w in sorted(running, key=lambda w: w.order))

    def find(self, worker_id):
        with self._lock:
            worker = self._workers.get(str(worker_id))
            if worker is None:
                raise UnknownWorkerError(self._unknown_message([worker_id]), ids=[worker_id])
            return Record(worker.record)

    def stop(self, ids):
        with self._lock:
            if ids:
                unknown = [i for i in ids if str(i) not in self._workers]
                if unknown:
                    raise UnknownWorkerError(self._unknown_message(unknown), ids=unknown)
                chosen = list(dict.fromkeys(self._workers[str(i)] for i in ids))
            else:
                running = [w for w in self._workers.values() if w.record["status"] == "running"]
                chosen = sorted(running, key=lambda w: w.order)
            for worker in chosen:
                worker.stopping = True
        if chosen:
            from livepandas_ipython.server import LoopThread

            timeout = self.interrupt_timeout + self.term_timeout + 2 * 2 + 5
            LoopThread.shared().call(self._stop_spawners, [w.spawner for w in chosen], False, timeout=timeout)
        with self._lock:
            for worker in chosen:
                record = worker.record
                if record["status"] in ("running", "starting"):
                    record["status"] = "stopped"
                    record["stopped_at"] = now_iso()
            return Records(Record(w.record) for w in chosen)

    def _unknown_message(self, ids):
        known = [w.record["id"] for w in self._workers.values() if w.record["status"] == "running"]
        listed = ", ".join(map(str, known)) if known else "none are running"
        names = ", ".join(map(repr, ids))
        noun = "id" if len(ids) == 1 else "ids"
        return f"no worker of this master has the {noun} {names} (running workers: {listed})"

    async def _stop_spawners(self, spawners, now):
        await asyncio.gather(*(s.stop(now=now) for s in spawners), return_exceptions=True)

    def _forget(self, spawners):
        with self._lock:
            for key, worker in list(self._workers.items()):
                if worker.spawner in spawners and worker.record["status"] == "running":
                    worker.record.update(status="stopped", stopped_at=now_iso(), error="launch interrupted")

    # -- helpers --------------------------------------------------------------------------------

    def _worker_env(self, env):
        worker_env = {str(k): str(v) for k, v in (env or {}).items() if k not in _IDENTITY}
        worker_env.update(
            SENSE_DASHBOARD_ID="",  # the engine sets it to its process id, the worker's id
            SENSE_MASTER_ID=str(self.master_id),
        )
        defaults = {
            "SENSE_OWNER_ID": _user(),
            "SENSE_PROJECT_ID": "local",
            "SENSE_PUBLIC_DNS": "localhost",
            "SENSE_PROJECT_IP": "127.0.0.1",
        }
        for name, value in defaults.items():
            if name not in worker_env:
                worker_env[name] = os.environ.get(name) or value
        return worker_env

    def _ensure_run_dir(self):
        """This process's private folder for startup code and connection files (mode 0700)."""
        with self._lock:
            if self._run_dir is None or not os.path.isdir(self._run_dir):
                self._run_dir = tempfile.mkdtemp(prefix="sense-")
                atexit.register(shutil.rmtree, self._run_dir, True)
            return self._run_dir

    def _register_atexit(self):
        with self._lock:
            if not self._atexit_registered:
                # Registered after the loop thread started: atexit runs it first, while the loop
                # still runs.
                atexit.register(self.stop_all_now)
                self._atexit_registered = True

    def stop_all_now(self):
        """Kill every running worker at once (used at interpreter exit)."""
        with self._lock:
            running = [w for w in self._workers.values() if w.record["status"] == "running"]
            for worker in running:
                worker.stopping = True
        if not running:
            return
        from livepandas_ipython.hub.spawner import reap_orphan
        from livepandas_ipython.server import LoopThread

        loop_thread = LoopThread._shared
        try:
            if loop_thread is None or not loop_thread.running:
                raise RuntimeError("no loop")
            loop_thread.call(self._stop_spawners, [w.spawner for w in running], True, timeout=5)
        except Exception:
            for worker in running:
                reap_orphan(worker.spawner.get_state(), timeout=0.5)


def _shell():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _user():
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _process_start_time():
    """Wall-clock time this process started (Linux), or None."""
    try:
        with open("/proc/self/stat", "rb") as f:
            data = f.read()
        ticks = int(data[data.rindex(b")") + 2:].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
