"""Running published functions: plain ``def`` on a bounded thread pool, ``async def`` on the loop.

A plain function is called *and its result encoded* on a pool thread, so neither a slow call nor
the encoding of a large DataFrame holds up the loop. Generators are stepped one chunk at a time
on the pool; async generators run on the loop. A stream whose client goes away is closed, so its
``finally`` blocks run.

Fast functions skip the pool. Handing a call to a pool thread and back costs 40-90 µs and, in a
busy kernel, two extra waits for the GIL: more than a small function itself. So the server learns
each function's cost (:class:`CallCosts`): after ``PROMOTE_AFTER`` consecutive calls on the pool
that each took at most the server's ``inline_budget`` (call plus encoding, wall time; 1 ms by
default), the function is called on the loop thread directly. An inline call over the budget sends
it back to the pool, and each time that happens the run of fast pool calls needed to come back
doubles (up to ``MAX_PROMOTE_AFTER``): a function that is sometimes slow stays on the pool, while
one that was merely unlucky (the machine was busy, a garbage collection ran) soon returns. The
price: a function that turns slow after a run of fast calls holds up the loop for that one call.
``inline_budget=0`` turns inlining off, and so does a ``call_timeout``: a call running on the loop
could never be timed out.

With a ``call_timeout``, a call (or a stream's step) that has not finished in time answers
:class:`~livepandas_ipython.errors.CallTimeout`. A call still queued for a thread is dropped; one
already running keeps its thread until it returns (Python can't stop a thread), and counts in
``server.stuck_calls`` meanwhile. Once every pool thread holds such a call, further pool work is
refused at once with :class:`~livepandas_ipython.errors.ServerBusy` instead of queueing behind
calls that may never return. ``async def`` code is cancelled at its next ``await``.
"""

import asyncio
import concurrent.futures
import inspect
import logging
import queue
import threading
import time
import types
from contextlib import aclosing

import orjson

from .. import jsonutil
from ..errors import CallTimeout, ServerBusy

__all__ = ["CallCosts", "CallPool", "Deferred", "call_inline", "finish_deferred", "run_call", "iterate"]

PROMOTE_AFTER = 5
MAX_PROMOTE_AFTER = 1280

log = logging.getLogger("livepandas.server")


class CallCosts:
    """What the server has learnt of each function's cost: whether to call it on the loop.

    Keyed by the function object, so a canvas swap starts the new code from scratch. Per function:
    the run of consecutive fast pool calls, how long a run promotes it, and whether it is inline.
    Updated from pool threads and the loop without a lock: a lost update only delays a decision.
    """

    def __init__(self, budget):
        self.budget = budget
        self._inline = set()
        self._runs = {}
        self._needed = {}
        self._deferred = set()

    def inline(self, fn):
        """True when *fn* (a plain :class:`~livepandas_ipython.canvas.Function`) runs on the loop."""
        return fn.func in self._inline

    def fast(self, fn):
        """True when *fn* runs inline and has only ever returned plain values (no stream or
        awaitable): the HTTP fast path may answer it (see :mod:`.fastpath`)."""
        func = fn.func
        return func in self._inline and func not in self._deferred

    def returned(self, func, outcome):
        """Note what a call of *func* returned."""
        if type(outcome) is not bytes:
            self._deferred.add(func)

    def pooled(self, func, elapsed):
        """Record a pool call of *func* that took *elapsed* seconds."""
        if not self.budget or func in self._inline:
            return
        if elapsed > self.budget:
            self._runs[func] = 0
            return
        run = self._runs.get(func, 0) + 1
        if run >= self._needed.get(func, PROMOTE_AFTER):
            self._inline.add(func)
            run = 0
        self._runs[func] = run

    def inlined(self, func, elapsed):
        """Record an inline call of *func*; one over the budget sends it back to the pool."""
        if elapsed > self.budget:
            self._inline.discard(func)
            self._needed[func] = min(2 * self._needed.get(func, PROMOTE_AFTER), MAX_PROMOTE_AFTER)

    def clear(self):
        self._inline = set()
        self._runs = {}
        self._needed = {}
        self._deferred = set()


class CallPool(concurrent.futures.Executor):
    """The bounded thread pool plain functions run on: a ``ThreadPoolExecutor`` of daemon threads.

    Threads start on demand, up to *max_workers*, and are reused. Unlike ``ThreadPoolExecutor``'s,
    the interpreter does not wait for them at exit: a user's function that never returns must not
    keep a kernel, the CLI or a hub worker from exiting once its server has stopped.
    ``shutdown()`` lets the calls already queued run, then the threads end.
    """

    def __init__(self, max_workers, thread_name_prefix="livepandas-call"):
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = []
        self._idle = 0  # threads waiting for work, less the work already queued for them
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.max_workers:
                name = f"{self._prefix}_{len(self._threads)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                    del exc
                else:
                    future.set_result(result)
                    del result
            del future, fn, args, kwargs  # drop references while idle
            with self._lock:
                self._idle += 1

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)  # after the queued calls: those still run
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()


class Deferred:
    """A call's result that is not a plain value: a generator, async generator or awaitable."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


_PLAIN = frozenset({int, float, str, bool, type(None), list, dict, tuple})


def _is_special(value):
    if type(value) in _PLAIN:
        return False
    return isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)) or inspect.isawaitable(value)


def encode_result(value):
    """``{"result": value}`` as JSON bytes; a value that can't be encoded raises ``TypeError``."""
    try:
        return jsonutil.dumps({"result": value})
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from None


def _call_and_encode(func, kwargs):
    value = func(**kwargs)
    if _is_special(value):
        return Deferred(value)
    return encode_result(value)


def _timed_call(costs, func, kwargs):
    """On a pool thread: call and encode, and record how long that took."""
    start = time.perf_counter()
    try:
        outcome = _call_and_encode(func, kwargs)
    finally:
        costs.pooled(func, time.perf_counter() - start)
    costs.returned(func, outcome)
    return outcome


def call_inline(server, fn, kwargs):
    """Call plain *fn* on this (the loop's) thread; the encoded body or a :class:`Deferred`.

    Only for functions ``server.costs.inline(fn)`` approves. Exceptions propagate.
    """
    start = time.perf_counter()
    try:
        outcome = _call_and_encode(fn.func, kwargs)
    finally:
        server.costs.inlined(fn.func, time.perf_counter() - start)
    if type(outcome) is not bytes:
        server.costs.returned(fn.func, outcome)
    return outcome


async def run_call(server, fn, kwargs):
    """Call *fn* with *kwargs*; return the encoded JSON body, or a :class:`Deferred` stream.

    Exceptions raised by the function propagate; :class:`CallTimeout` after the server's
    ``call_timeout``, :class:`ServerBusy` when every pool thread holds a timed-out call.
    """
    if fn.is_stream:
        return Deferred(fn.func(**kwargs))  # creating a generator runs none of its code
    timeout = server.call_timeout
    late = f"{fn.name} did not return within {timeout:g} s (call_timeout)" if timeout is not None else None
    if fn.is_async:
        value = await _limit(fn.func(**kwargs), timeout, late)
    else:
        if server.costs.inline(fn):
            outcome = call_inline(server, fn, kwargs)
        else:
            start = time.monotonic()
            future = _submit(server, _timed_call, server.costs, fn.func, kwargs)
            outcome = await _within(server, future, late)
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - start))  # one deadline for both parts
        if not isinstance(outcome, Deferred):
            return outcome
        value = outcome.value
        if inspect.isawaitable(value):
            value = await _limit(value, timeout, late)
    if _is_special(value):
        return Deferred(value)
    return encode_result(value)


def _submit(server, func, *args):
    """Hand ``func(*args)`` to the pool, unless every pool thread holds a call that timed out."""
    if server.stuck_calls and len(server.stuck_calls) >= server.max_workers:
        raise ServerBusy(
            f"all {server.max_workers} threads are still running calls that timed out (call_timeout); "
            "try again later"
        )
    return server.pool.submit(func, *args)


async def _within(server, future, late):
    """The result of pool *future*; :class:`CallTimeout` (message *late*) after ``call_timeout``.

    A call that times out while queued never runs; one that is running keeps its thread and is
    counted in ``server.stuck_calls`` until it returns.
    """
    if server.call_timeout is None:
        return await asyncio.wrap_future(future)
    try:
        done = await _done_within(future, server.call_timeout)
    except asyncio.CancelledError:
        future.cancel()  # the caller gave up (client gone): drop the call if it hasn't started
        raise
    if not done:
        if not future.cancel():
            server.stuck_calls.add(future)
            future.add_done_callback(server.stuck_calls.discard)
            log.warning("%s; its thread stays busy until it does", late)
        raise CallTimeout(late)
    return future.result()


async def _done_within(future, timeout):
    """Wait until concurrent *future* is done, for at most *timeout* seconds (None: no limit).

    True when it is done. Waits on a future of its own, which never fails, so that a
    ``TimeoutError`` raised by the user's function is never mistaken for the timeout.
    """
    if future.done():
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    future.add_done_callback(lambda _: _wake(loop, waiter))
    try:
        await asyncio.wait_for(waiter, timeout)
    except asyncio.TimeoutError:
        return future.done()
    return True


def _wake(loop, waiter):
    try:
        loop.call_soon_threadsafe(lambda: waiter.done() or waiter.set_result(None))
    except RuntimeError:  # the loop has closed: nobody waits any more
        pass


async def _limit(awaitable, timeout, late):
    """Await *awaitable* on the loop; after *timeout* seconds (None: no limit) cancel it and raise
    :class:`CallTimeout` (message *late*).

    Like ``asyncio.wait_for``, but a ``TimeoutError`` the function raises itself stays its own.
    """
    if timeout is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    except asyncio.CancelledError:
        await _cancel(task)
        raise
    if not done:
        await _cancel(task)
        raise CallTimeout(late)
    return task.result()


async def _cancel(task):
    """Cancel *task* and wait for its cleanup (``finally`` blocks) to run, as ``wait_for`` does."""
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()  # it failed while cleaning up; retrieved so asyncio doesn't log it


async def _anext(agen):
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _END


_END = object()


async def finish_deferred(outcome):
    """Finish what a plain function returned that was not a plain value: await an awaitable;
    a generator (or an awaitable's generator) stays a :class:`Deferred` stream."""
    value = outcome.value
    if inspect.isawaitable(value):
        value = await value
    if _is_special(value):
        return Deferred(value)
    return encode_result(value)


def _step(gen):
    try:
        return next(gen)
    except StopIteration as stop:
        return _Return(stop.value)


class _Return:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


async def iterate(server, gen):
    """Drive a (sync or async) generator, yielding ``("partial", chunk)`` for each chunk, then
    ``("result", return_value)`` or ``("error", exception)``.

    When the consumer stops early (client gone, server stopping), the generator is closed: at once
    when it is idle, or as soon as the step running on the pool returns. The server's
    ``call_timeout`` applies to each step; a step over it ends the stream with
    :class:`CallTimeout` and closes the generator the same way.
    """
    timeout = server.call_timeout
    late = None if timeout is None else f"the stream did not yield its next value within {timeout:g} s (call_timeout)"
    if isinstance(gen, types.AsyncGeneratorType):
        async with aclosing(gen):
            try:
                while (chunk := await _limit(_anext(gen), timeout, late)) is not _END:
                    yield "partial", chunk
            except Exception as exc:
                yield "error", exc
                return
            yield "result", None
        return
    step = None
    finished = False
    try:
        while True:
            try:
                step = _submit(server, _step, gen)
                item = await _within(server, step, late)
            except (CallTimeout, ServerBusy) as exc:
                yield "error", exc  # the generator has not finished: the finally closes it
                return
            except Exception as exc:
                finished = True
                yield "error", exc
                return
            if isinstance(item, _Return):
                finished = True
                yield "result", item.value
                return
            yield "partial", item
    finally:
        if not finished:
            if step is not None and not step.done():
                step.add_done_callback(lambda _: gen.close())  # runs when the step returns
            else:
                try:
                    closing = server.pool.submit(gen.close)
                except RuntimeError:  # the pool has shut down: the generator is idle, close it here
                    gen.close()
                else:
                    # With a call_timeout, a close queued behind stuck calls doesn't hold up the
                    # reply: it runs when a thread frees up.
                    if await _done_within(closing, timeout):
                        closing.result()
