"""Benchmark: our FunctionServer against bare Tornado doing the same work, in one process run.

Both servers live in this process, each on its own loop thread, on 127.0.0.1 with a free port:

- **ours**: ``FunctionServer(Canvas({"add": livepandas_add}))`` (security checks, argument
  checks, the call (on the thread pool until the function has proved fast, then on the loop;
  see ``livepandas_ipython.server.calls``), encoding with ``livepandas_ipython.jsonutil``);
- **baseline**: a minimal ``tornado.web.RequestHandler`` + ``WebSocketHandler`` that look the
  function up, parse the ``kwargs`` JSON with orjson, call it inline on the loop and answer
  ``orjson.dumps({"result": ...})``.

The load comes from another process: ``wrk`` for HTTP when it is installed
(``apt-get install -y wrk``), ``wsbench.c`` for WebSocket when a C compiler is found (compiled on
first use), else the raw-socket asyncio clients of ``loadgen.py``; the output names the client.
Each connection is closed-loop (one request in flight). Baseline and
ours run alternately, in an order that flips every run (ABBA), for several rounds; the tables
give medians over rounds, the ratio ours/baseline, latency p50/p99, the server process's CPU time
per request (less sensitive to a noisy machine than wall-clock rates) and the client's CPU use
(to show it is not the bottleneck).

    python benchmarks/bench_server.py                 # 5 rounds x 3 s per run (~3 min)
    python benchmarks/bench_server.py --quick         # smoke run, a few seconds
    python benchmarks/bench_server.py --rounds 9 --duration 5 --json benchmarks/results/server.json
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import orjson
import tornado
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

import livepandas_ipython
from livepandas_ipython import Canvas, FunctionServer, LoopThread

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import loadgen  # noqa: E402  (benchmarks/loadgen.py)

LOADGEN = os.path.join(HERE, "loadgen.py")
HOST = "127.0.0.1"
KWARGS = '{"x":1,"y":2}'
EXPECTED = {"result": 3}

# Targets: ours/baseline throughput must be at least this.
TARGETS = [("http", 16, 0.90), ("ws", 1, 0.90), ("ws", 16, 0.90)]
NOISY_CORES = 0.25  # other processes' CPU use (cores) above which a run is flagged as noisy


def livepandas_add(x, y):
    return x + y


FUNCTIONS = {"add": livepandas_add}


# -- the baseline: bare Tornado -------------------------------------------------------------------


class BaselineHandler(tornado.web.RequestHandler):
    def initialize(self, functions):
        self.functions = functions

    def get(self, name):
        fn = self.functions[name]
        raw = self.request.query_arguments.get("kwargs")
        kwargs = orjson.loads(raw[-1]) if raw else {}
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"result": fn(**kwargs)}))


class BaselineSocket(tornado.websocket.WebSocketHandler):
    def initialize(self, functions):
        self.functions = functions

    def open(self, name):
        self.fn = self.functions[name]

    def on_message(self, message):
        kwargs = orjson.loads(message)
        self.write_message(orjson.dumps({"result": self.fn(**kwargs)}).decode("utf-8"))


class BaselineServer:
    """Bare Tornado on its own LoopThread; ``start()``/``stop()`` like FunctionServer."""

    def __init__(self, functions):
        self.functions = functions
        self.port = None
        self._thread = LoopThread(name="bench-baseline")
        self._server = None

    def start(self):
        self._thread.start()
        sockets = tornado.netutil.bind_sockets(0, HOST)
        self.port = sockets[0].getsockname()[1]
        self._thread.call(self._start_on_loop, sockets)
        return self

    def _start_on_loop(self, sockets):
        args = dict(functions=self.functions)
        app = tornado.web.Application(
            [
                (r"/([A-Za-z][A-Za-z0-9_]*)/ws", BaselineSocket, args),
                (r"/([A-Za-z][A-Za-z0-9_]*)/?", BaselineHandler, args),
            ],
            log_function=lambda handler: None,
            compress_response=False,
        )
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)

    async def _stop_on_loop(self):
        self._server.stop()
        await self._server.close_all_connections()

    def stop(self):
        self._thread.call(self._stop_on_loop)
        self._thread.stop()


# -- running the load -----------------------------------------------------------------------------


def _cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_busy():
    """Seconds of CPU time spent by processes on the whole machine so far (all cores; user + nice +
    system, not irq/softirq, which loopback networking fills without charging it to a process),
    or None without /proc."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system) / _TICK


_children_seen = [0.0]


def _children_cpu_delta():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = r.ru_utime + r.ru_stime
    delta, _children_seen[0] = total - _children_seen[0], total
    return delta


def run_load(kind, port, path, connections, duration, client, max_requests=0, client_cpu=None):
    """Run one load in a child process; return its JSON plus the server process's CPU seconds.

    *client*: for HTTP ``"wrk"`` or ``"python"``; for WebSocket the path of the compiled
    wsbench binary, or ``"python"``.
    """
    _children_cpu_delta()
    if kind == "ws" and client != "python":
        cmd = [client, HOST, str(port), path, str(connections), str(duration), KWARGS, str(max_requests)]
    else:
        mode = ("wrk" if client == "wrk" else "http") if kind == "http" else "ws"
        cmd = [sys.executable, LOADGEN, mode, HOST, str(port), path, "--connections", str(connections),
               "--duration", str(duration), "--message", KWARGS]
        if max_requests:
            cmd += ["--max-requests", str(max_requests)]
    pin = None if client_cpu is None else (lambda: os.sched_setaffinity(0, {client_cpu}))
    busy0, cpu0, t0 = _cpu_busy(), _cpu_self(), time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90, preexec_fn=pin)
    server_cpu, busy1, wall = _cpu_self() - cpu0, _cpu_busy(), time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["server_cpu_s"] = server_cpu
    n = result["requests"]
    result["server_cpu_us_per_req"] = server_cpu / n * 1e6 if n else None
    result["client_cpu_pct"] = 100.0 * result["client_cpu_s"] / result["seconds"] if result["seconds"] else None
    # Other processes' CPU use during the run, in cores (machine busy time minus ours and the
    # client's, whole client process counted via RUSAGE_CHILDREN): a noise indicator.
    if busy0 is not None and busy1 is not None:
        other = (busy1 - busy0) - server_cpu - _children_cpu_delta()
        result["other_load_cores"] = max(0.0, other / wall)
    else:
        result["other_load_cores"] = None
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} errors during {kind} x{connections} on port {port}: {result}")
    if result["first_reply"] is not None and orjson.loads(result["first_reply"]) != EXPECTED:
        raise RuntimeError(f"unexpected reply {result['first_reply']!r} on port {port}")
    return result


def check_http(port):
    url = f"http://{HOST}:{port}/add?kwargs=" + urllib.parse.quote(KWARGS)
    with urllib.request.urlopen(url, timeout=10) as r:
        body = orjson.loads(r.read())
    if body != EXPECTED:
        raise RuntimeError(f"{url} answered {body!r}, expected {EXPECTED!r}")


# -- statistics and output ------------------------------------------------------------------------


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    """Medians per (kind, connections, server) and ratios ours/baseline."""
    keys = sorted({(r["kind"], r["connections"]) for r in runs}, key=lambda k: (k[0] != "http", k[1]))
    rows = []
    for kind, conns in keys:
        row = {"kind": kind, "connections": conns}
        for server in ("baseline", "ours"):
            sel = [r for r in runs if r["kind"] == kind and r["connections"] == conns and r["server"] == server]
            row[server] = {
                "rps": med(r["rps"] for r in sel),
                "p50_us": med(r["p50_us"] for r in sel),
                "p99_us": med(r["p99_us"] for r in sel),
                "server_cpu_us_per_req": med(r["server_cpu_us_per_req"] for r in sel),
                "client_cpu_pct": med(r["client_cpu_pct"] for r in sel),
                "rounds": len(sel),
                "rps_all": [round(r["rps"], 1) for r in sel],
            }
        b, o = row["baseline"], row["ours"]
        row["ratio_rps"] = o["rps"] / b["rps"] if b["rps"] else None
        # Paired ratio: each round's ours over the same round's baseline (they ran back to back).
        pairs = {}
        for r in runs:
            if r["kind"] == kind and r["connections"] == conns:
                pairs.setdefault(r["round"], {})[r["server"]] = r["rps"]
        paired = [p["ours"] / p["baseline"] for p in pairs.values() if "ours" in p and p.get("baseline")]
        row["ratio_rps_paired_median"] = med(paired)
        row["ratio_rps_paired_min"] = min(paired) if paired else None
        row["ratio_rps_paired_max"] = max(paired) if paired else None
        row["cpu_ratio"] = (b["server_cpu_us_per_req"] / o["server_cpu_us_per_req"]
                            if b["server_cpu_us_per_req"] and o["server_cpu_us_per_req"] else None)
        same = [r for r in runs if r["kind"] == kind and r["connections"] == conns]
        row["other_load_cores"] = med(r["other_load_cores"] for r in same)
        rows.append(row)
    return rows


def _load(cores):
    return "-" if cores is None else f"{cores:.2f}"


def _ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


def print_tables(rows, meta):
    out = []
    out.append("")
    out.append(f"livepandas FunctionServer vs bare Tornado  ({meta['date']}, {meta['cpus']} CPUs, "
               f"Python {meta['python']}, Tornado {meta['tornado']})")
    out.append(f"  livepandas_ipython {meta['livepandas_ipython']} at commit {meta['commit']}; "
               f"{meta['rounds']} rounds x {meta['duration']:g} s per run, interleaved (ABBA); medians over rounds")
    out.append(f"  HTTP client: {meta['http_client']}")
    out.append(f"  WS client:   {meta['ws_client']}")
    out.append(f"  request: GET /add?kwargs={KWARGS}  |  WebSocket /add/ws message {KWARGS}")
    header = (f"{'test':<8}{'conns':>6} {'baseline/s':>11} {'ours/s':>10} {'ours/base':>10} {'(paired min-max)':>17}"
              f"  {'base p50/p99 ms':>16}  {'ours p50/p99 ms':>16}  {'srv CPU us/req b/o':>19}  {'client CPU%':>11}"
              f"  {'others':>6}")
    out.append("")
    out.append(header)
    out.append("-" * len(header))
    for row in rows:
        b, o = row["baseline"], row["ours"]
        spread = (f"{row['ratio_rps_paired_min']:.2f}-{row['ratio_rps_paired_max']:.2f}"
                  if row["ratio_rps_paired_min"] is not None else "-")
        cpu = f"{b['server_cpu_us_per_req']:.0f} / {o['server_cpu_us_per_req']:.0f}"
        client = f"{b['client_cpu_pct']:.0f} / {o['client_cpu_pct']:.0f}"
        out.append(
            f"{row['kind'].upper():<8}{row['connections']:>6} {b['rps']:>11.0f} {o['rps']:>10.0f} "
            f"{row['ratio_rps']:>9.2f}x {spread:>17}  "
            f"{_ms(b['p50_us']) + ' / ' + _ms(b['p99_us']):>16}  {_ms(o['p50_us']) + ' / ' + _ms(o['p99_us']):>16}  "
            f"{cpu:>19}  {client:>11}  {_load(row['other_load_cores']):>6}"
        )
    out.append("")
    out.append("  ours/base: ratio of the medians (throughput); paired: per-round ours/baseline, min-max.")
    out.append("  srv CPU us/req: CPU time of the server process (all threads) per request, baseline / ours.")
    out.append("  client CPU%: the load generator's CPU use, baseline run / ours run (100% = one core busy).")
    out.append("  others: CPU used by other processes on the machine during the runs, in cores (noise; 0 is quiet).")
    out.append("")
    out.append("Targets (ours/baseline throughput, same run), with the CPU cross-check "
               "(baseline CPU/req / ours CPU/req):")
    noisy = False
    for kind, conns, target in TARGETS:
        row = next((r for r in rows if r["kind"] == kind and r["connections"] == conns), None)
        if row is None:
            continue
        ok = row["ratio_rps"] >= target
        cpu = row["cpu_ratio"]
        note = ""
        if cpu is not None and (cpu >= target) != ok:
            note = "  <- throughput and CPU disagree: noise, rerun"
        others = row["other_load_cores"]
        if others is not None and others > NOISY_CORES:
            noisy = True
        out.append(f"  {kind.upper():<5} x{conns:<3} >= {target:.2f}x: throughput {row['ratio_rps']:.2f}x  "
                   f"{'PASS' if ok else 'FAIL'}   (CPU {'-' if cpu is None else f'{cpu:.2f}x'}){note}")
    if noisy:
        out.append(f"  WARNING: other processes used more than {NOISY_CORES} of a core during some runs "
                   "(column 'others'); the throughput ratios are unreliable on a busy 2-core machine. "
                   "Trust the CPU cross-check more, or rerun when the machine is quiet.")
    print("\n".join(out), flush=True)


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per configuration (default 5)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per run (default 3; wrk rounds to whole s)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up load per server and protocol")
    p.add_argument("--http-conns", default="1,16,64", help="HTTP concurrent connections (default 1,16,64)")
    p.add_argument("--ws-conns", default="1,16", help="concurrent WebSockets (default 1,16)")
    p.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                   help="HTTP load generator: wrk (C) or the python asyncio client; auto = wrk if installed "
                        "(python with --quick, since wrk runs whole seconds)")
    p.add_argument("--ws-client", choices=["auto", "c", "python"], default="auto",
                   help="WebSocket load generator: c (wsbench.c, compiled on first use with cc) or the python "
                        "asyncio client; auto = c if a C compiler is found (python with --quick)")
    p.add_argument("--pin", action="store_true",
                   help="pin the servers to CPU 0 and the load generator to CPU 1 (both cores otherwise shared)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, short runs, a few hundred requests each")
    p.add_argument("--json", metavar="PATH", help="write all runs and the summary as JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.duration, a.warmup = 1, 0.25, 0.1
    a.http_conns = [int(x) for x in a.http_conns.split(",") if x]
    a.ws_conns = [int(x) for x in a.ws_conns.split(",") if x]
    if a.client == "auto":
        a.client = "wrk" if shutil.which("wrk") and not a.quick else "python"
    elif a.client == "wrk" and not shutil.which("wrk"):
        p.error("wrk is not installed (apt-get install -y wrk); use --client python")
    if a.ws_client == "auto":
        a.ws_client = "python" if a.quick else (loadgen.build_wsbench() or "python")
    elif a.ws_client == "c":
        a.ws_client = loadgen.build_wsbench()
        if a.ws_client is None:
            p.error("no C compiler found to build benchmarks/wsbench.c; use --ws-client python")
    return a


def git_commit(path):
    """``"<sha>"`` (``"<sha>+dirty"`` with local changes) of the checkout holding *path*, or None."""
    where = os.path.dirname(os.path.abspath(path))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("+dirty" if dirty else "")) or None


def main(argv=None):
    a = parse_args(argv)
    t_start = time.monotonic()
    if a.pin:
        if (os.cpu_count() or 1) < 2:
            raise SystemExit("--pin needs 2 CPUs")
        os.sched_setaffinity(0, {0})
    client_cpu = 1 if a.pin else None
    max_requests = 2000 if a.quick else 0

    ours_thread = LoopThread(name="bench-ours")
    ours = FunctionServer(Canvas(FUNCTIONS, name="bench"), host=HOST, port=0, loop_thread=ours_thread)
    ours.start()
    base = BaselineServer(FUNCTIONS).start()
    servers = {"baseline": base, "ours": ours}
    path_http = "/add?kwargs=" + urllib.parse.quote(KWARGS)
    path_ws = "/add/ws"
    configs = [("http", c) for c in a.http_conns] + [("ws", c) for c in a.ws_conns]
    load1 = os.getloadavg()[0]
    print(f"benchmarking {livepandas_ipython.__file__} (commit {git_commit(livepandas_ipython.__file__)})", flush=True)
    print(f"ours on port {ours.port} (pool of {ours.max_workers}), baseline on port {base.port}; "
          f"HTTP client: {a.client}; WS client: {a.ws_client}; load average {load1:.2f}", flush=True)
    runs = []
    try:
        for server in servers.values():
            check_http(server.port)
            run_load("ws", server.port, path_ws, 1, 0.05, "python", max_requests=5, client_cpu=client_cpu)
        for server in servers.values():  # warm both up, so the first round isn't special
            for kind in ("http", "ws"):
                path = path_http if kind == "http" else path_ws
                if kind == "http":
                    warm_client = "python" if a.warmup < 1 else a.client
                else:
                    warm_client = a.ws_client
                run_load(kind, server.port, path, 16, a.warmup, warm_client, client_cpu=client_cpu)
        http_client = ws_client = None
        for rnd in range(a.rounds):
            for i, (kind, conns) in enumerate(configs):
                order = ["baseline", "ours"] if (rnd + i) % 2 == 0 else ["ours", "baseline"]
                for name in order:
                    path = path_http if kind == "http" else path_ws
                    r = run_load(kind, servers[name].port, path, conns, a.duration,
                                 a.client if kind == "http" else a.ws_client,
                                 max_requests=max_requests, client_cpu=client_cpu)
                    r.update(server=name, kind=kind, connections=conns, round=rnd)
                    runs.append(r)
                    if kind == "http":
                        http_client = r["client"]
                    else:
                        ws_client = r["client"]
                    print(f"  round {rnd + 1}/{a.rounds} {kind:<4} x{conns:<3} {name:<8} {r['rps']:9.0f}/s  "
                          f"p50 {_ms(r['p50_us'])} ms  p99 {_ms(r['p99_us'])} ms  "
                          f"srv {r['server_cpu_us_per_req']:.0f} us/req  client CPU {r['client_cpu_pct']:.0f}%  "
                          f"others {_load(r['other_load_cores'])}",
                          flush=True)
    finally:
        ours.stop()
        ours_thread.stop()
        base.stop()
    pin_note = " [pinned: servers CPU 0, client CPU 1]" if a.pin else ""
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "tornado": tornado.version,
        "orjson": orjson.__version__,
        "livepandas_ipython": livepandas_ipython.__version__,
        "commit": git_commit(livepandas_ipython.__file__),
        "module": livepandas_ipython.__file__,
        "rounds": a.rounds,
        "duration": a.duration,
        "quick": a.quick,
        "pinned": a.pin,
        "http_client": (http_client or a.client) + pin_note,
        "ws_client": (ws_client or "python") + pin_note,
        "load_average_before": load1,
        "load_average_after": os.getloadavg()[0],
        "max_workers": ours.max_workers,
        "elapsed_s": time.monotonic() - t_start,
    }
    rows = summarize(runs)
    print_tables(rows, meta)
    print(f"\n(load average {meta['load_average_before']:.2f} before, {meta['load_average_after']:.2f} after; "
          f"{meta['elapsed_s']:.0f} s)")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "summary": rows, "runs": runs}, f, indent=2)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
