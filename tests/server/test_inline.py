"""Fast plain functions move from the pool to the loop thread; slow ones go back and stay there."""

import asyncio
import json
import threading
import time

import pytest
import requests
import websocket

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.server.calls import MAX_PROMOTE_AFTER, PROMOTE_AFTER

TIMEOUT = 30
# A budget far above any call's noise on a busy machine, and a "slow" call far above the budget:
# the decisions under test must not depend on the machine's load.
BUDGET = 0.05
SLOW = 0.15


def where(delay=0.0):
    """The name of the thread the call ran on; sleeps *delay* seconds first."""
    if delay:
        time.sleep(delay)
    return threading.current_thread().name


def later(x):
    """A plain function returning an awaitable: finished on the loop."""
    return asyncio.sleep(0, result=x)


def broken_later():
    async def boom():
        raise KeyError("later")

    return boom()


def fail():
    raise ValueError("inline failure")


def count_up(n=3):
    """A plain function (not a generator function) returning a generator: streamed."""
    return (i for i in range(n))


CANVAS = Canvas({"where": where, "later": later, "broken_later": broken_later, "fail": fail, "count_up": count_up})


def get(server, name, **kwargs):
    response = requests.get(f"http://127.0.0.1:{server.port}/{name}", params={"kwargs": json.dumps(kwargs)}, timeout=TIMEOUT)
    return response.status_code, response.json()


def http_threads(server, n, **kwargs):
    return [get(server, "where", **kwargs)[1]["result"] for _ in range(n)]


def ws_call(ws, **kwargs):
    ws.send(json.dumps(kwargs))
    return json.loads(ws.recv())


@pytest.fixture
def server(serve):
    return serve(CANVAS, inline_budget=BUDGET)


def loop_thread_name(server):
    return server._loop_thread._thread.name


def test_fast_function_moves_to_the_loop_after_a_few_pool_calls(server):
    names = http_threads(server, PROMOTE_AFTER + 2)
    assert all(name.startswith("livepandas-call") for name in names[:PROMOTE_AFTER])
    assert names[PROMOTE_AFTER:] == [loop_thread_name(server)] * 2
    assert server.costs.inline(server.canvas.get("where"))


def test_a_slow_inline_call_goes_back_to_the_pool_and_each_return_takes_longer(server):
    loop = loop_thread_name(server)
    needed = PROMOTE_AFTER
    for _ in range(3):
        names = http_threads(server, needed)
        assert all(name.startswith("livepandas-call") for name in names)
        assert http_threads(server, 1) == [loop]
        # Over budget: it ran on the loop this once (the price of inlining), then back to the pool.
        assert http_threads(server, 1, delay=SLOW) == [loop]
        needed *= 2
    assert all(name.startswith("livepandas-call") for name in http_threads(server, needed))
    assert http_threads(server, 1) == [loop]
    assert needed <= MAX_PROMOTE_AFTER


def test_a_slow_pool_call_resets_the_count(server):
    http_threads(server, PROMOTE_AFTER - 1)
    http_threads(server, 1, delay=SLOW)
    names = http_threads(server, PROMOTE_AFTER)
    assert all(name.startswith("livepandas-call") for name in names)
    assert http_threads(server, 1) == [loop_thread_name(server)]


def test_budget_zero_keeps_every_call_on_the_pool(serve):
    server = serve(CANVAS, inline_budget=0)
    assert all(name.startswith("livepandas-call") for name in http_threads(server, PROMOTE_AFTER * 3))


def test_a_canvas_swap_learns_the_new_code_from_scratch(server):
    http_threads(server, PROMOTE_AFTER)
    assert http_threads(server, 1) == [loop_thread_name(server)]
    server.canvas = Canvas({"where": lambda delay=0.0: where(delay)})  # new code, new costs
    assert http_threads(server, 1)[0].startswith("livepandas-call")


def test_a_blocked_function_never_holds_up_a_promoted_one(serve):
    """A call blocked on the pool leaves the loop free for inline calls of other functions."""
    release = threading.Event()
    canvas = Canvas({"where": where, "wait": lambda: release.wait(TIMEOUT)})
    server = serve(canvas, inline_budget=BUDGET)
    http_threads(server, PROMOTE_AFTER)
    blocked = threading.Thread(target=get, args=(server, "wait"))
    blocked.start()
    try:
        # If the blocked call held the loop, these would time out instead of answering.
        assert http_threads(server, 3) == [loop_thread_name(server)] * 3
        assert blocked.is_alive()
    finally:
        release.set()
        blocked.join(TIMEOUT)


def test_websocket_answers_inline_calls_in_order_with_errors_and_awaitables(server):
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/where/ws", timeout=TIMEOUT)
    # (delays here stay under the budget: this is about order, not promotion)
    try:
        names = [ws_call(ws)["result"] for _ in range(PROMOTE_AFTER + 2)]
        assert names[-1] == loop_thread_name(server)
        # Many messages sent at once: answered in order, whatever path each takes.
        for i in range(20):
            ws.send(json.dumps({"delay": 0.002 if i % 7 == 0 else 0}))
        replies = [json.loads(ws.recv()) for _ in range(20)]
        assert all("result" in reply for reply in replies)
        assert ws_call(ws, bogus=1)["type"] == "BadArguments"
    finally:
        ws.close()

    for name, expect in [("later", {"result": 7}), ("broken_later", {"type": "KeyError"}), ("fail", {"type": "ValueError"})]:
        ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/{name}/ws", timeout=TIMEOUT)
        try:
            kwargs = {"x": 7} if name == "later" else {}
            for _ in range(PROMOTE_AFTER + 2):
                reply = ws_call(ws, **kwargs)
                assert {key: reply.get(key) for key in expect} == expect, reply
        finally:
            ws.close()
    assert server.costs.inline(server.canvas.get("later"))
    assert server.costs.inline(server.canvas.get("fail"))
    assert server.stats.errors["fail"] == PROMOTE_AFTER + 2


def test_plain_function_returning_a_generator_streams_after_promotion(server):
    for _ in range(PROMOTE_AFTER + 2):
        response = requests.get(f"http://127.0.0.1:{server.port}/count_up", params={"kwargs": '{"n": 2}'}, timeout=TIMEOUT)
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert lines == [{"partial": 0}, {"partial": 1}, {"result": None, "done": True}]
    assert server.costs.inline(server.canvas.get("count_up"))
