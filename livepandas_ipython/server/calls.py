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
``inline_budget=0`` turns inlining off.
"""

import asyncio
import inspect
import time
import types
from contextlib import aclosing

import orjson

from .. import jsonutil

__all__ = ["CallCosts", "Deferred", "call_inline", "finish_deferred", "run_call", "iterate"]

PROMOTE_AFTER = 5
MAX_PROMOTE_AFTER = 1280



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

    Exceptions raised by the function propagate.
    """
    if fn.is_stream:
        return Deferred(fn.func(**kwargs))  # creating a generator runs none of its code
    if fn.is_async:
        value = await fn.func(**kwargs)
    else:
        if server.costs.inline(fn):
            outcome = call_inline(server, fn, kwargs)
        else:
            outcome = await server.loop.run_in_executor(server.pool, _timed_call, server.costs, fn.func, kwargs)
        return outcome if not isinstance(outcome, Deferred) else await finish_deferred(outcome)
    if _is_special(value):
        return Deferred(value)
    return encode_result(value)


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
    when it is idle, or as soon as the step running on the pool returns.
    """
    if isinstance(gen, types.AsyncGeneratorType):
        async with aclosing(gen):
            try:
                async for chunk in gen:
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
                step = server.pool.submit(_step, gen)
                item = await asyncio.wrap_future(step)
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
                    await server.loop.run_in_executor(server.pool, gen.close)
                except RuntimeError:  # the pool has shut down: the generator is idle, close it here
                    gen.close()
