"""``WorkerPool`` with real worker processes: warm and cold acquires, refill, the cap, clean closing."""

import asyncio
import functools
import json
import os
import signal
import sys
import time

import pytest
import requests

from livepandas_ipython.hub.errors import TooManySessions
from livepandas_ipython.hub.pool import LoadFailed, PoolClosed, PoolFull, WorkerPool
from livepandas_ipython.hub.spawner import LocalProcessSpawner, SpawnError

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the test extras
    psutil = None

pytestmark = pytest.mark.anyio

CODE = "def livepandas_add(x, y):\n    return x + y\n"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def children():
    """Pids of this process's live descendants."""
    if psutil is not None:
        procs = psutil.Process().children(recursive=True)
        return {p.pid for p in procs if _status(p) not in (psutil.STATUS_ZOMBIE, None)}
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.add(int(name))
    return found


def _status(proc):
    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return None


@pytest.fixture
def canvas(tmp_path):
    def make(code=CODE, name="c1"):
        root = tmp_path / name
        root.mkdir()
        (root / "code.py").write_text(code)
        return str(root)

    return make


@pytest.fixture
async def pool():
    """Factory: ``pool(**traits)`` → a started WorkerPool; closed (and checked for leftovers) at teardown."""
    before = children()
    made = []

    def make(**traits):
        traits.setdefault("warm", 1)
        p = WorkerPool(functools.partial(LocalProcessSpawner, start_timeout=10), **traits)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        await p.close()
    deadline = time.monotonic() + 5
    while children() - before:
        assert time.monotonic() < deadline, f"processes left: {children() - before}"
        await asyncio.sleep(0.02)


async def add(worker, x, y):
    response = await asyncio.to_thread(
        requests.get, f"http://{worker.socket}/add", params={"kwargs": json.dumps({"x": x, "y": y})}, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_warm_acquire_uses_a_ready_worker_and_refills(pool, canvas):
    p = pool(warm=1)
    assert await p.wait_warm()
    warm_pid = p._idle[0].spawner.pid
    worker = await p.acquire(canvas())
    assert worker.pid == warm_pid and "--canvas" not in worker.spawner.cmd
    assert worker.socket == f"127.0.0.1:{worker.port}" and worker.functions == ["add"]
    assert worker.state["pid"] == warm_pid
    assert await worker.poll() is None
    assert await add(worker, 2, 3) == 5
    assert await p.wait_warm()
    assert p.counts() == {"idle": 1, "starting": 0, "total": 2}
    assert p._idle[0].spawner.pid != warm_pid
    await worker.stop()
    assert await worker.poll() == 0
    assert p.counts()["total"] == 1


async def test_cold_acquire_when_the_pool_is_empty(pool, canvas):
    p = pool(warm=0)
    worker = await p.acquire(canvas())
    assert worker.spawner.cmd[-2:] == ["--canvas", worker.canvas_dir]
    assert worker.functions == ["add"]
    assert await add(worker, 1, 1) == 2
    assert p.counts() == {"idle": 0, "starting": 0, "total": 1}


async def test_an_acquire_claims_a_warm_worker_that_is_still_starting(pool, canvas):
    p = pool(warm=1)
    assert p.counts()["starting"] == 1
    worker = await p.acquire(canvas())
    assert "--canvas" not in worker.spawner.cmd
    assert await add(worker, 1, 2) == 3


async def test_concurrent_acquires_each_get_their_own_worker(pool, canvas):
    p = pool(warm=2)
    await p.wait_warm()
    paths = [canvas(name=f"c{i}") for i in range(6)]
    workers = await asyncio.gather(*(p.acquire(path) for path in paths))
    assert len({w.pid for w in workers}) == 6
    assert [w.canvas_dir for w in workers] == paths
    assert await asyncio.gather(*(add(w, i, i) for i, w in enumerate(workers))) == [2 * i for i in range(6)]
    await asyncio.gather(*(w.stop() for w in workers))


async def test_process_starts_are_limited_in_a_burst(pool, canvas):
    starting = {"now": 0, "most": 0}

    class CountingSpawner(LocalProcessSpawner):
        async def start(self):
            starting["now"] += 1
            starting["most"] = max(starting["most"], starting["now"])
            try:
                return await super().start()
            finally:
                starting["now"] -= 1

    p = WorkerPool(CountingSpawner, warm=0, max_starting=2)
    try:
        workers = await asyncio.gather(*(p.acquire(canvas(name=f"b{i}")) for i in range(5)))
        assert starting["most"] == 2
        assert await asyncio.gather(*(add(w, i, 1) for i, w in enumerate(workers))) == [1, 2, 3, 4, 5]
    finally:
        await p.close()


async def test_the_cap_raises_pool_full(pool, canvas):
    p = pool(warm=1, max_workers=2)
    await p.wait_warm()
    first = await p.acquire(canvas("def livepandas_add(x, y):\n    return x + y\n", name="a"))
    second = await p.acquire(canvas(name="b"))
    assert p.counts() == {"idle": 0, "starting": 0, "total": 2}  # no refill beyond the cap
    with pytest.raises(PoolFull, match="all 2 worker processes are in use") as info:
        await p.acquire(canvas(name="c"))
    assert isinstance(info.value, TooManySessions) and info.value.status == 429 and info.value.retry_after >= 1
    await first.stop()
    third = await p.acquire(canvas(name="d"))
    assert await add(third, 2, 2) == 4
    await second.stop()


async def test_activity_and_exit_callbacks(pool, canvas):
    p = pool(warm=1)
    await p.wait_warm()
    stamps, exits = [], []

    async def on_exit(status):  # coroutine callbacks work too
        exits.append(status)

    worker = await p.acquire(canvas(), on_activity=stamps.append, on_exit=on_exit)
    cold = await p.acquire(canvas(name="cold"), on_activity=stamps.append, on_exit=on_exit)
    before = time.time()
    await add(worker, 1, 2)
    await add(cold, 1, 2)
    await until(lambda: len(stamps) == 2)
    assert all(before - 0.01 <= s <= time.time() for s in stamps)
    assert worker.last_activity in stamps

    os.kill(worker.pid, signal.SIGKILL)
    await until(lambda: exits)
    assert exits == [-signal.SIGKILL]
    assert await worker.poll() == -signal.SIGKILL
    await cold.stop()  # a requested stop is not reported
    await asyncio.sleep(0.1)
    assert exits == [-signal.SIGKILL]


async def test_a_dead_warm_worker_is_replaced(pool, canvas):
    p = pool(warm=1, max_backoff=0.5)
    await p.wait_warm()
    dead = p._idle[0].spawner
    os.kill(dead.pid, signal.SIGKILL)
    await until(lambda: p._idle and p._idle[0].spawner is not dead)
    assert await dead.poll() == -signal.SIGKILL
    worker = await p.acquire(canvas())
    assert await add(worker, 3, 4) == 7


async def test_load_failures_are_reported_and_leave_nothing_running(pool, canvas):
    p = pool(warm=1)
    await p.wait_warm()
    bad = canvas("def livepandas_f():\n    return 1\nraise ValueError('no data today')\n")
    with pytest.raises(LoadFailed) as warm_failure:
        await p.acquire(bad)
    assert warm_failure.value.error == "ValueError: no data today (code.py, line 3)"
    assert str(warm_failure.value) == "the canvas failed to load: ValueError: no data today (code.py, line 3)"
    p.warm = 0
    await until(lambda: p.counts()["starting"] == 0)
    while p._idle:
        await (await p.acquire(canvas(name=f"drain{len(p._idle)}"))).stop()
    with pytest.raises(LoadFailed) as cold_failure:
        await p.acquire(bad)
    assert cold_failure.value.error == warm_failure.value.error and cold_failure.value.status == 3
    assert p.counts() == {"idle": 0, "starting": 0, "total": 0}


async def test_a_canvas_that_takes_too_long_to_load(pool, canvas):
    p = pool(warm=1, load_timeout=0.3)
    await p.wait_warm()
    slow = canvas("import time\ntime.sleep(30)\ndef livepandas_f():\n    return 1\n")
    with pytest.raises(SpawnError, match=r"did not load .* within 0.3 s"):
        await p.acquire(slow)
    await until(lambda: p.counts() == {"idle": 1, "starting": 0, "total": 1})


async def test_a_broken_worker_command_backs_off(pool, canvas):
    def factory():
        return LocalProcessSpawner(cmd=[sys.executable, "-c", "import sys; sys.exit('no worker here')"])

    p = WorkerPool(factory, warm=1, max_backoff=0.2)
    try:
        p.start()
        await asyncio.sleep(0.5)
        assert p._failures >= 1
        with pytest.raises(SpawnError, match="no worker here"):
            await p.acquire(canvas())
    finally:
        await p.close()


async def test_close_stops_everything_and_refuses_new_acquires(pool, canvas):
    before = children()
    p = pool(warm=2)
    await p.wait_warm()
    worker = await p.acquire(canvas())
    exits = []
    worker.on_exit = exits.append
    starting = p.acquire(canvas(name="late"))
    late = asyncio.ensure_future(starting)
    await asyncio.sleep(0)
    assert len(children() - before) >= 3
    await p.close()
    await p.close()  # idempotent
    assert children() - before == set()
    assert await worker.poll() is not None and exits == []
    with pytest.raises(PoolClosed):  # acquired while closing: stopped and refused
        await late
    with pytest.raises(PoolClosed):
        await p.acquire(canvas(name="after"))
