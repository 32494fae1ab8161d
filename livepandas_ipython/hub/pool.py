"""A pool of hub workers: a few are kept started and *warm*, so a new session gets a socket fast.

A warm worker is a :mod:`~livepandas_ipython.hub.worker` process that has bound its port and waits
for a canvas on stdin; loading one takes a line and a few milliseconds. When no warm worker is
ready, :meth:`WorkerPool.acquire` starts a *cold* one with ``--canvas``::

    pool = WorkerPool(functools.partial(LocalProcessSpawner, parent=hub), warm=2, max_workers=100)
    pool.start()                                   # on the hub's loop: begin warming up
    worker = await pool.acquire("/data/canvases/42", on_activity=touch, on_exit=failed)
    worker.socket                                  # "127.0.0.1:40123"
    await worker.stop()
    await pool.close()                             # stops every worker, warm or not

Thread-safety: a pool belongs to the asyncio loop it is used on; call its methods from that loop.
Every worker process the pool starts is stopped by :meth:`Worker.stop` or :meth:`WorkerPool.close`,
or reaped when it exits by itself.
"""

import asyncio
import collections
import json
import os
import sys
import time

from traitlets import Any, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from .errors import TooManySessions
from .spawner import LocalProcessSpawner, SpawnError

__all__ = ["WorkerPool", "Worker", "PoolFull", "PoolClosed", "LoadFailed"]

LOADED = "LIVEPANDAS_LOADED"
LOAD_FAILED = "LIVEPANDAS_LOAD_FAILED"
ACTIVITY = "LIVEPANDAS_ACTIVITY"


class PoolFull(TooManySessions):
    """Every worker slot (``max_workers``) is taken; the hub answers 429 with ``Retry-After``."""


class PoolClosed(SpawnError):
    """The pool was closed (the hub is shutting down)."""


class LoadFailed(SpawnError):
    """The worker started but the canvas did not load; ``error`` is the one-line reason."""

    def __init__(self, error, *, status=None, stderr=""):
        super().__init__(f"the canvas failed to load: {error}", status=status, stderr=stderr)
        self.error = error


class _WarmDied(SpawnError):
    """A warm worker died before it could take its canvas (the pool starts a cold one instead)."""


class Worker:
    """One acquired worker process serving one canvas.

    Attributes
    ----------
    host, port : str, int
        Where the worker listens; ``socket`` is ``"host:port"``.
    spawner : Spawner
        The spawner that runs it.
    canvas_dir : str
        The canvas directory it serves.
    functions : list of str
        The canvas's function names.
    """

    def __init__(self, pool, spawner, host, port, canvas_dir, functions, on_activity=None, on_exit=None):
        self.pool = pool
        self.spawner = spawner
        self.host = host
        self.port = port
        self.canvas_dir = canvas_dir
        self.functions = list(functions)
        self.on_activity = on_activity
        self.on_exit = on_exit
        self.last_activity = None
        self.stopping = False
        self.acquired = False  # handed to the caller: from then on, exits are reported
        self.exit_status = None

    def __repr__(self):
        return f"<Worker pid={self.pid} {self.socket} {self.canvas_dir!r}>"

    @property
    def socket(self):
        return f"{self.host}:{self.port}"

    @property
    def pid(self):
        return getattr(self.spawner, "pid", None)

    @property
    def state(self):
        """The spawner's JSON state (to find the process again after a hub restart)."""
        return self.spawner.get_state()

    async def poll(self):
        """None while the worker runs, else its exit status."""
        return await self.spawner.poll()

    async def stop(self, now=False):
        """Stop the worker (``on_exit`` is not called for a stop you asked for); idempotent."""
        self.stopping = True
        try:
            await self.spawner.stop(now=now)
        finally:
            self.pool._forget(self.spawner, self)

    # -- called by the pool on the loop ----------------------------------------------------------

    def _activity(self, stamp):
        self.last_activity = stamp
        if self.on_activity is not None:
            _call_back(self.pool.log, self.on_activity, stamp)

    def _exited(self, status):
        self.exit_status = status
        if self.stopping or not self.acquired:
            return
        self.pool.log.warning("worker pid %s for %s exited with status %s", self.pid, self.canvas_dir, status)
        self.pool._reap(self.spawner, self)
        if self.on_exit is not None:
            _call_back(self.pool.log, self.on_exit, status)


class _Warm:
    """A warm worker: started, waiting for its canvas."""

    def __init__(self, spawner, host, port):
        self.spawner = spawner
        self.host = host
        self.port = port


class WorkerPool(LoggingConfigurable):
    """Start workers for sessions, keeping ``warm`` of them started in advance.

    Parameters
    ----------
    spawner_factory : callable, optional
        Called with no arguments for every worker; returns a :class:`~.spawner.Spawner` (its
        timeouts, limits and environment apply). When the spawner has no ``cmd``, the pool sets
        :attr:`worker_cmd` ``+ ["--ip", ip]``; ``--canvas DIR`` is appended for a cold start.
        Default: :class:`~.spawner.LocalProcessSpawner`.
    **kwargs
        Trait values (``warm``, ``max_workers``, ``ip``, ...) and ``parent``/``config``.
    """

    warm = Integer(2, help="How many started workers to keep waiting for a canvas (0 disables the pool).").tag(
        config=True
    )
    max_workers = Integer(
        200,
        help="Most worker processes at once, warm ones included; beyond it acquire() raises PoolFull (0: no cap).",
    ).tag(config=True)
    ip = Unicode("127.0.0.1", help="The address workers bind (passed as --ip when the pool sets the command).").tag(
        config=True
    )
    worker_cmd = List(
        Unicode(),
        help="The worker command when the spawner has none (default: this Python, -m livepandas_ipython.hub.worker).",
    ).tag(config=True)
    max_starting = Integer(
        0,
        help="Most worker processes starting at once (0: twice the CPU count). Python start-ups compete for "
        "the CPU: in a burst, a few at a time get every session its worker sooner than all at once.",
    ).tag(config=True)
    load_timeout = Float(10, help="Seconds a warm worker may take to load its canvas.").tag(config=True)
    max_backoff = Float(
        30, help="Longest pause between attempts to refill the pool while workers keep failing to start."
    ).tag(config=True)
    spawner_factory = Any(help="Callable returning a new Spawner; see the class docstring.")

    def __init__(self, spawner_factory=None, **kwargs):
        super().__init__(**kwargs)
        self.spawner_factory = spawner_factory or LocalProcessSpawner
        if not self.worker_cmd:
            self.worker_cmd = [sys.executable, "-m", "livepandas_ipython.hub.worker"]
        self._idle = collections.deque()  # _Warm, ready
        self._starting = []  # tasks starting warm workers nobody has claimed yet
        self._spawners = set()  # every spawner of a process that may be running
        self._workers = set()  # acquired workers not stopped yet
        self._tasks = set()
        self._started = False
        self._closed = False
        self._failures = 0
        self._retry_at = 0.0
        self._retry_handle = None
        self._start_slots = None  # asyncio.Semaphore of max_starting, made on the loop

    def __repr__(self):
        counts = self.counts()
        return f"<WorkerPool idle={counts['idle']} starting={counts['starting']} total={counts['total']}>"

    def counts(self):
        """``{"idle", "starting", "total"}``: ready warm workers, warm ones starting, all processes."""
        return {"idle": len(self._idle), "starting": len(self._starting), "total": len(self._spawners)}

    # -- warming up -----------------------------------------------------------------------------

    def start(self):
        """Begin starting warm workers (call on the loop the pool will be used on). Returns self."""
        self._started = True
        self._refill()
        return self

    async def wait_warm(self, timeout=10):
        """Wait until ``warm`` workers are ready (or the cap allows no more); False on timeout."""
        self.start()
        deadline = time.monotonic() + timeout
        while len(self._idle) < self._warm_target():
            if time.monotonic() >= deadline or self._closed:
                return False
            await asyncio.sleep(0.01)
        return True

    def _warm_target(self):
        if not self.max_workers:
            return self.warm
        busy = len(self._spawners) - len(self._idle) - len(self._starting)
        return max(0, min(self.warm, self.max_workers - busy))

    def _refill(self):
        if self._closed or not self._started or time.monotonic() < self._retry_at:
            return
        missing = self.warm - len(self._idle) - len(self._starting)
        if self.max_workers:
            missing = min(missing, self.max_workers - len(self._spawners))
        for _ in range(max(0, missing)):
            spawner = self._new_spawner(None)
            task = asyncio.ensure_future(self._start_warm(spawner))
            self._starting.append(task)
            task.add_done_callback(self._warm_started)

    async def _start_process(self, spawner):
        """``spawner.start()``, at most ``max_starting`` at once."""
        if self._start_slots is None:
            self._start_slots = asyncio.Semaphore(self.max_starting or 2 * (os.cpu_count() or 1))
        async with self._start_slots:
            if self._closed:
                raise PoolClosed("the worker pool is closed")
            return await spawner.start()

    async def _start_warm(self, spawner):
        try:
            host, port = await self._start_process(spawner)
        except BaseException:
            self._forget(spawner)
            raise
        warm = _Warm(spawner, host, port)
        spawner.on_exit = lambda status: self._warm_exited(warm, status)
        return warm

    def _warm_started(self, task):
        if task.cancelled() or self._closed:
            return
        exc = task.exception()  # retrieved here even when a claimer awaits it too
        if exc is not None:
            self._failed(f"a warm worker failed to start: {exc}")
        else:
            self._failures = 0
        if task in self._starting:  # nobody claimed it: it joins the idle ones
            self._starting.remove(task)
            if exc is None:
                self._idle.append(task.result())
            self._refill()

    def _warm_exited(self, warm, status):
        if warm in self._idle:
            self._idle.remove(warm)
            self._failed(f"warm worker pid {warm.spawner.pid} exited with status {status}")
            self._reap(warm.spawner)
            self._refill()

    def _failed(self, message):
        """Back off exponentially while warm workers keep failing, so a broken setup doesn't spin."""
        self._failures += 1
        delay = min(self.max_backoff, 0.25 * 2 ** (self._failures - 1))
        self.log.warning("%s; refilling the pool again in %.2g s", message, delay)
        self._retry_at = time.monotonic() + delay
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        self._retry_handle = asyncio.get_running_loop().call_later(delay, self._refill)

    # -- acquiring ------------------------------------------------------------------------------

    async def acquire(self, canvas_dir, on_activity=None, on_exit=None):
        """A worker serving the canvas in *canvas_dir*: a warm one if ready, else a cold one.

        Parameters
        ----------
        canvas_dir : str
            Directory holding ``code.py`` (and optionally ``view.html``, ``static/``).
        on_activity : callable, optional
            Called with the unix time of the worker's latest call (at most once a second).
        on_exit : callable, optional
            Called with the exit status if the worker exits without :meth:`Worker.stop`.
            Either callback may be a coroutine function.

        Raises
        ------
        PoolFull
            When ``max_workers`` processes already run.
        LoadFailed
            When the canvas does not load (syntax error, exception on import, no function).
        SpawnError
            When the worker process could not be started.
        """
        if self._closed:
            raise PoolClosed("the worker pool is closed")
        self._started = True
        warm = None
        while self._idle and warm is None:
            warm = self._idle.popleft()
            if await warm.spawner.poll() is not None:  # died while idle: reap it and look again
                self._reap(warm.spawner)
                warm = None
        if warm is None and self._starting:
            warm = await self._claim(self._starting.pop(0))
        worker = None
        try:
            if warm is not None:
                try:
                    worker = await self._load(warm, canvas_dir, on_activity, on_exit)
                except _WarmDied as exc:
                    self.log.warning("%s; starting a cold worker instead", exc)
            if worker is None:
                worker = await self._start_cold(canvas_dir, on_activity, on_exit)
        finally:
            # Refill after the load: starting a process blocks the loop for a moment (fork/exec).
            self._refill()
        worker.acquired = True
        if self._closed or worker.exit_status is not None:
            await worker.stop(now=True)
            if self._closed:
                raise PoolClosed("the worker pool is closed")
            raise SpawnError(f"worker pid {worker.pid} exited with status {worker.exit_status} right after loading")
        self._workers.add(worker)
        return worker

    async def _claim(self, task):
        """The warm worker a starting *task* yields, or None if it failed to start."""
        try:
            return await asyncio.shield(task)
        except BaseException as exc:
            if task.done() and task.cancelled():
                raise PoolClosed("the worker pool is closed") from None
            if task.done() and task.exception() is not None:
                if isinstance(task.exception(), SpawnError):
                    return None  # start a cold one instead
                raise
            # We were cancelled ourselves: give the worker back to the pool.
            if task.done():
                self._idle.appendleft(task.result())
            else:
                self._starting.insert(0, task)
            raise exc

    async def _load(self, warm, canvas_dir, on_activity, on_exit):
        spawner = warm.spawner
        loop = asyncio.get_running_loop()
        loaded = loop.create_future()
        worker = Worker(self, spawner, warm.host, warm.port, canvas_dir, [], on_activity, on_exit)

        def on_line(line):
            tag, _, payload = line.partition(" ")
            if tag == ACTIVITY and loaded.done():
                worker._activity(_float(payload))
            elif tag == LOADED and not loaded.done():
                loaded.set_result(_json(payload))
            elif tag == LOAD_FAILED and not loaded.done():
                _fail(loaded, LoadFailed(_json(payload).get("error", payload)))

        def exited(status):
            if not loaded.done():
                _fail(loaded, _WarmDied(f"warm worker pid {spawner.pid} exited with status {status} before loading"))
            worker._exited(status)

        spawner.on_line = on_line
        spawner.on_exit = exited
        try:
            try:
                await spawner.send(json.dumps({"canvas": canvas_dir}))
            except SpawnError as exc:
                raise _WarmDied(str(exc)) from None
            info = await asyncio.wait_for(asyncio.shield(loaded), self.load_timeout)
        except asyncio.TimeoutError:
            await worker.stop(now=True)
            raise SpawnError(f"worker pid {spawner.pid} did not load {canvas_dir} within {self.load_timeout:g} s")
        except BaseException as exc:
            await asyncio.shield(worker.stop())
            if isinstance(exc, SpawnError) and hasattr(spawner, "stderr_tail"):
                exc.stderr = spawner.stderr_tail
            raise
        worker.functions = list(info.get("functions", []))
        return worker

    async def _start_cold(self, canvas_dir, on_activity, on_exit):
        if self._closed:
            raise PoolClosed("the worker pool is closed")
        if self.max_workers and len(self._spawners) >= self.max_workers:
            raise PoolFull(
                f"all {self.max_workers} worker processes are in use; try again in a few seconds", retry_after=5
            )
        spawner = self._new_spawner(canvas_dir)
        worker = Worker(self, spawner, None, None, canvas_dir, [], on_activity, on_exit)
        load_error = []

        def on_line(line):
            tag, _, payload = line.partition(" ")
            if tag == ACTIVITY:
                worker._activity(_float(payload))
            elif tag == LOAD_FAILED:
                load_error.append(_json(payload).get("error", payload))

        spawner.on_line = on_line
        spawner.on_exit = worker._exited
        try:
            worker.host, worker.port = await self._start_process(spawner)
        except SpawnError as exc:
            self._forget(spawner)
            if load_error:
                raise LoadFailed(load_error[0], status=exc.status, stderr=exc.stderr) from None
            raise
        except BaseException:
            self._forget(spawner)
            raise
        worker.functions = list(spawner.ready_info.get("functions", []))
        return worker

    def _new_spawner(self, canvas_dir):
        spawner = self.spawner_factory()
        if not spawner.cmd:
            spawner.cmd = list(self.worker_cmd) + ["--ip", self.ip]
        if canvas_dir is not None:
            spawner.cmd = list(spawner.cmd) + ["--canvas", canvas_dir]
        self._spawners.add(spawner)
        return spawner

    # -- bookkeeping ----------------------------------------------------------------------------

    def _forget(self, spawner, worker=None):
        self._spawners.discard(spawner)
        self._workers.discard(worker)
        self._refill()  # a slot under the cap may have opened

    def _reap(self, spawner, worker=None):
        """Collect an exited worker in the background (its pipes closed, its group killed)."""
        task = asyncio.ensure_future(spawner.stop(now=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._forget(spawner, worker)

    async def close(self):
        """Stop every worker (warm, starting and acquired) and refuse new acquires; idempotent."""
        self._closed = True
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        starting, self._starting = self._starting, []
        for task in starting:
            task.cancel()
        self._idle.clear()
        for worker in self._workers:
            worker.stopping = True  # no on_exit callbacks for a shutdown
        self._workers.clear()
        spawners = list(self._spawners)
        self._spawners.clear()
        await asyncio.gather(*starting, *(sp.stop() for sp in spawners), *self._tasks, return_exceptions=True)


def _call_back(log, callback, *args):
    """Call *callback* (a plain or coroutine function) without letting its errors escape."""

    def done(task):
        if not task.cancelled() and task.exception() is not None:
            log.error("error in worker callback %r", callback, exc_info=task.exception())

    try:
        result = callback(*args)
    except Exception:
        log.exception("error in worker callback %r", callback)
        return
    if asyncio.iscoroutine(result):
        asyncio.ensure_future(result).add_done_callback(done)


def _fail(future, exc):
    future.set_exception(exc)
    future.exception()  # marked as retrieved: nobody may be waiting any more (a timeout)


def _json(payload):
    try:
        value = json.loads(payload)
    except ValueError:
        return {"error": payload}
    return value if isinstance(value, dict) else {"error": payload}


def _float(payload):
    try:
        return float(payload)
    except ValueError:
        return time.time()
