"""Benchmark: how fast a new session gets a worker that answers, against a bare Tornado process.

Each measurement is an async generator function (``measure_<name>``): it sets up what it needs,
then yields one sample per step (a dict of milliseconds, with at least ``"first_call"``) until it
is closed, when it cleans up. The runner interleaves the measurements sample by sample, in a
rotating order, so drift on a shared machine hits them alike:

- **warm**: ``WorkerPool(warm=2)``; a sample is ``acquire(canvas)`` on a pool whose warm workers
  are ready (a line on a waiting worker's stdin loads the canvas) → the first
  ``GET /add?kwargs=...`` answered. ``ready`` is when ``acquire`` returned.
- **cold**: ``WorkerPool(warm=0)``: ``acquire`` starts ``python -m livepandas_ipython.hub.worker
  --canvas DIR`` → the first call answered. ``ready`` is when the worker's ready line arrived
  (exec → ready).
- **baseline**: a bare ``python -c`` Tornado process (one handler parsing ``kwargs`` and adding),
  started by the same :class:`LocalProcessSpawner`: exec → its ready line (``ready``) → the first
  call answered.

Every first call is a fresh connection sending ``GET /add?kwargs={"x":1,"y":2}`` and checking the
reply is ``{"result": 3}``. Before each sample the previous one's worker is stopped and the warm
pool refilled, then the machine gets 50 ms to settle. One sample of each is taken first and
dropped. When ``PYTHONDONTWRITEBYTECODE`` is set (as in this project's development environment),
the children get a private ``PYTHONPYCACHEPREFIX`` instead, so they run from bytecode as an
installed package does (``--no-bytecode-cache`` measures without).

    python benchmarks/bench_sessions.py              # 30 samples of each (~15 s)
    python benchmarks/bench_sessions.py --quick      # 5 samples, a smoke run
    python benchmarks/bench_sessions.py -n 100 --json benchmarks/results/sessions.json

Targets (from the hub's requirements): warm p50 <= 30 ms, cold p50 <= 150 ms (first call answered).
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import livepandas_ipython
from livepandas_ipython.hub.pool import WorkerPool
from livepandas_ipython.hub.spawner import LocalProcessSpawner

CODE = "def livepandas_add(x, y):\n    return x + y\n"
REQUEST = (
    b"GET /add?kwargs=%7B%22x%22%3A1%2C%22y%22%3A2%7D HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
)
SETTLE = 0.05
TARGETS = [("warm", 30.0), ("cold", 150.0)]  # p50 of "first_call", in ms

BASELINE = r"""
import asyncio, json, sys
import tornado.httpserver, tornado.netutil, tornado.web

class Add(tornado.web.RequestHandler):
    def get(self):
        kwargs = json.loads(self.get_query_argument("kwargs", "{}"))
        self.write({"result": kwargs["x"] + kwargs["y"]})

async def main():
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    tornado.httpserver.HTTPServer(tornado.web.Application([(r"/add", Add)])).add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print("LIVEPANDAS_READY " + json.dumps({"host": "127.0.0.1", "port": port}), flush=True)
    eof = asyncio.Event()  # like a worker, exit when the parent is gone

    class Stdin(asyncio.Protocol):
        def connection_lost(self, exc):
            eof.set()

    await asyncio.get_running_loop().connect_read_pipe(Stdin, sys.stdin)
    await eof.wait()

asyncio.run(main())
"""


async def first_call(host, port):
    """Send the benchmark's call on a new connection; fail unless it answers ``{"result": 3}``."""
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(REQUEST)
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or json.loads(body) != {"result": 3}:
        raise RuntimeError(f"unexpected reply: {response[:300]!r}")


def _ms(start):
    return (time.perf_counter() - start) * 1000


# -- measurements -----------------------------------------------------------------------------------


async def measure_warm(canvas_dir):
    """Samples of acquire → first call from a pool with ready warm workers."""
    pool = WorkerPool(warm=2).start()
    try:
        while True:
            if not await pool.wait_warm(timeout=30):
                raise RuntimeError("the warm pool did not fill up in 30 s")
            await asyncio.sleep(SETTLE)
            start = time.perf_counter()
            worker = await pool.acquire(canvas_dir)
            ready = _ms(start)
            await first_call(worker.host, worker.port)
            sample = {"ready": ready, "first_call": _ms(start)}
            await worker.stop()
            # Refilled before the next sample of any measurement, so it doesn't compete with it.
            await pool.wait_warm(timeout=30)
            yield sample
    finally:
        await pool.close()


async def measure_cold(canvas_dir):
    """Samples of acquire → first call when no warm worker is there: a worker started with --canvas."""
    pool = WorkerPool(warm=0)
    try:
        while True:
            await asyncio.sleep(SETTLE)
            start = time.perf_counter()
            worker = await pool.acquire(canvas_dir)
            ready = _ms(start)
            await first_call(worker.host, worker.port)
            sample = {"ready": ready, "first_call": _ms(start)}
            await worker.stop()
            yield sample
    finally:
        await pool.close()


async def measure_baseline(canvas_dir):
    """Samples of exec → ready → first call for a bare Tornado process (``python -c``)."""
    while True:
        await asyncio.sleep(SETTLE)
        spawner = LocalProcessSpawner(cmd=[sys.executable, "-c", BASELINE], start_timeout=30)
        start = time.perf_counter()
        try:
            host, port = await spawner.start()
            ready = _ms(start)
            await first_call(host, port)
            sample = {"ready": ready, "first_call": _ms(start)}
        finally:
            await spawner.stop(now=True)
        yield sample


MEASUREMENTS = {"baseline": measure_baseline, "warm": measure_warm, "cold": measure_cold}


# -- running and reporting ------------------------------------------------------------------------


async def run(names, repetitions, canvas_dir):
    """``{name: [sample, ...]}``: *repetitions* samples of each, interleaved in a rotating order.

    One more sample of each is taken first and dropped (page cache, bytecode cache, pool fill).
    """
    generators = {name: MEASUREMENTS[name](canvas_dir) for name in names}
    samples = {name: [] for name in names}
    try:
        for name in names:
            await generators[name].__anext__()
        for i in range(repetitions):
            order = names[i % len(names):] + names[: i % len(names)]
            for name in order:
                samples[name].append(await generators[name].__anext__())
    finally:
        for generator in generators.values():
            await generator.aclose()
    return samples


def percentile(values, q):
    """The *q*-th percentile (0-100) by linear interpolation between closest ranks."""
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    pos = (len(values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def summarize(samples):
    summary = {}
    for name, rows in samples.items():
        summary[name] = {
            key: {
                "p50": statistics.median(row[key] for row in rows),
                "p90": percentile([row[key] for row in rows], 90),
                "min": min(row[key] for row in rows),
                "max": max(row[key] for row in rows),
            }
            for key in rows[0]
        }
    return summary


def report(summary, repetitions):
    lines = [
        f"{'measurement':<12} {'n':>4}  {'ready p50/p90 ms':>18}  {'first call p50/p90 ms':>22}  "
        f"{'min-max ms':>14}  {'p50/baseline':>12}",
        "-" * 92,
    ]
    base = summary.get("baseline", {}).get("first_call", {}).get("p50")
    for name, stats in summary.items():
        ready, call = stats["ready"], stats["first_call"]
        ratio = f"{call['p50'] / base:.2f}x" if base else "-"
        lines.append(
            f"{name:<12} {repetitions:>4}  {ready['p50']:>8.1f} / {ready['p90']:<7.1f}  "
            f"{call['p50']:>10.1f} / {call['p90']:<9.1f}  {call['min']:>6.1f}-{call['max']:<7.1f}  {ratio:>12}"
        )
    lines.append("")
    lines.append("Targets (first call answered, p50):")
    for name, limit in TARGETS:
        if name in summary:
            value = summary[name]["first_call"]["p50"]
            verdict = "PASS" if value <= limit else "FAIL"
            lines.append(f"  {name:<5} <= {limit:>5.0f} ms: {value:6.1f} ms  {verdict}")
    return "\n".join(lines)


def environment():
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "livepandas_ipython": livepandas_ipython.__version__,
        "livepandas_ipython_path": os.path.dirname(livepandas_ipython.__file__),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repetitions", type=int, default=30, help="samples per measurement (default 30)")
    parser.add_argument("--quick", action="store_true", help="5 samples each: a smoke run")
    parser.add_argument(
        "--only", default=",".join(MEASUREMENTS), help=f"comma-separated subset of {', '.join(MEASUREMENTS)}"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the samples and summary as JSON")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE for the workers if it is set (see 'bytecode' below)",
    )
    args = parser.parse_args(argv)
    repetitions = 5 if args.quick else args.repetitions
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement {unknown[0]!r}; choose from {', '.join(MEASUREMENTS)}")

    env = environment()
    print(f"livepandas_ipython {env['livepandas_ipython']} from {env['livepandas_ipython_path']}")
    print(f"Python {env['python']}, {env['cpus']} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        canvas_dir = os.path.join(tmp, "canvas")
        os.mkdir(canvas_dir)
        with open(os.path.join(canvas_dir, "code.py"), "w") as f:
            f.write(CODE)
        if os.environ.get("PYTHONDONTWRITEBYTECODE") and not args.no_bytecode_cache:
            # An installed package has its .pyc files; a development checkout under
            # PYTHONDONTWRITEBYTECODE would compile every module of ours in every worker (~15 ms).
            # The children (ours and the baseline alike) get a private bytecode cache instead.
            del os.environ["PYTHONDONTWRITEBYTECODE"]
            os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
            print("bytecode: PYTHONDONTWRITEBYTECODE dropped for the children, cache in a temporary directory")
        samples = asyncio.run(run(names, repetitions, canvas_dir))
    summary = summarize(samples)
    print(f"load average {os.getloadavg()[0]:.2f} at the end\n")
    print(report(summary, repetitions))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "summary": summary, "samples": samples}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
