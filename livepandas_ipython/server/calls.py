"""Running published functions: plain ``def`` on a bounded thread pool, ``async def`` on the loop.

A plain function is called *and its result encoded* on a pool thread, so neither a slow call nor
the encoding of a large DataFrame holds up the loop. Generators are stepped one chunk at a time
on the pool; async generators run on the loop. A stream whose client goes away is closed, so its
``finally`` blocks run.
"""

import asyncio
import inspect
import types
from contextlib import aclosing

import orjson

from .. import jsonutil

__all__ = ["Deferred", "run_call", "iterate"]


class Deferred:
    """A call's result that is not a plain value: a generator, async generator or awaitable."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _is_special(value):
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


async def run_call(server, fn, kwargs):
    """Call *fn* with *kwargs*; return the encoded JSON body, or a :class:`Deferred` stream.

    Exceptions raised by the function propagate.
    """
    if fn.is_stream:
        return Deferred(fn.func(**kwargs))  # creating a generator runs none of its code
    if fn.is_async:
        value = await fn.func(**kwargs)
    else:
        outcome = await server.loop.run_in_executor(server.pool, _call_and_encode, fn.func, kwargs)
        if not isinstance(outcome, Deferred):
            return outcome
        value = outcome.value
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
            return Deferred(value)
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
