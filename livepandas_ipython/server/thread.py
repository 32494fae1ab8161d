"""A Tornado event loop on its own daemon thread.

Thread-safety contract: the loop belongs to its thread. Other threads reach it only through
:meth:`LoopThread.call` (run a function on the loop and wait for its result) or
:meth:`LoopThread.submit` (fire and forget); both go through ``call_soon_threadsafe``.
User functions that are plain ``def`` run on a server's thread pool, ``async def`` functions and
generators' bookkeeping run on this loop.

One ``LoopThread`` can carry many servers: the kernel uses a single one for all its canvases.
The thread is a daemon, so it never keeps an interpreter from exiting, and :meth:`stop` also
runs at interpreter exit.
"""

import asyncio
import atexit
import concurrent.futures
import threading
import weakref

from ..errors import ServerError

__all__ = ["LoopThread"]


class LoopThread:
    """An asyncio/Tornado loop running on a daemon thread.

    Parameters
    ----------
    name : str
        The thread's name (shown by debuggers and ``threading.enumerate()``).
    start_timeout : float
        Seconds to wait for the loop to come up before :class:`ServerError`.
    """

    _shared = None
    _shared_lock = threading.Lock()

    def __init__(self, name="livepandas-server", start_timeout=10.0):
        self.name = name
        self.start_timeout = start_timeout
        self.loop = None
        self._thread = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._finalizer = None

    @classmethod
    def shared(cls):
        """The process-wide loop thread (started on first use, restarted if stopped)."""
        with cls._shared_lock:
            if cls._shared is None or not cls._shared.running:
                cls._shared = cls().start()
            return cls._shared

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive() and self.loop is not None

    def start(self):
        """Start the thread and wait until its loop runs; idempotent. Returns self."""
        with self._lock:
            if self.running:
                return self
            self._ready.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
            if not self._ready.wait(self.start_timeout):
                raise ServerError(f"the server loop did not start within {self.start_timeout:g} s")
            self._finalizer = weakref.finalize(self, _stop_loop, self.loop, self._thread)
            atexit.register(self._finalizer)
        return self

    def _run(self):
        from tornado.ioloop import IOLoop

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        IOLoop.current()  # bind Tornado's wrapper to this loop
        self.loop = loop
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self.loop = None

    def in_thread(self):
        """True when called from this loop's own thread."""
        return self._thread is threading.current_thread()

    def call(self, fn, *args, timeout=10.0):
        """Run ``fn(*args)`` on the loop (awaiting it if it returns an awaitable); return its result."""
        if not self.running:
            raise ServerError("the server loop is not running")
        if self.in_thread():
            raise ServerError("LoopThread.call() from the loop's own thread would deadlock")
        result = concurrent.futures.Future()

        def runner():
            try:
                value = fn(*args)
            except BaseException as exc:
                result.set_exception(exc)
                return
            if asyncio.isfuture(value) or asyncio.iscoroutine(value):
                task = asyncio.ensure_future(value)
                task.add_done_callback(lambda t: _copy_result(t, result))
            else:
                result.set_result(value)

        self.loop.call_soon_threadsafe(runner)
        try:
            return result.result(timeout)
        except concurrent.futures.TimeoutError:
            raise ServerError(f"the server loop did not answer within {timeout:g} s") from None

    def submit(self, fn, *args):
        """Schedule ``fn(*args)`` on the loop without waiting."""
        if self.running:
            self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout=5.0):
        """Stop the loop and join the thread; idempotent."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer.detach()
                atexit.unregister(self._finalizer)
                self._finalizer = None
            thread, loop = self._thread, self.loop
            self._thread = None
        if thread is not None and loop is not None:
            _stop_loop(loop, thread, timeout)


def _copy_result(task, future):
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        future.set_result(task.result())


def _stop_loop(loop, thread, timeout=5.0):
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # already closed
        pass
    if thread is not threading.current_thread():
        thread.join(timeout)
