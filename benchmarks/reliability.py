"""Reliability under load: the function server and the hub, on loopback, bounded, stopping by themselves.

Four measurements, each against real processes started here and stopped at the end:

- **server-http**: a ``livepandas -P canvas.py --port 0`` process under 64 keep-alive HTTP
  connections (``GET /add?kwargs={"x":1,"y":2}``, closed loop) for ``--duration`` seconds;
- **server-ws**: the same process under 200 WebSockets (send ``{"x":1,"y":2}``, wait for the
  reply, send again) for ``--duration`` seconds;
- **server-memory**: the process's resident memory (after a ``gc.collect()`` in it) once
  ``--calls-warm`` calls have been answered and again after ``--calls`` calls in all, half over
  HTTP and half over WebSockets, in rounds of fresh connections;
- **hub-sessions**: a ``livepandas-hub`` process under ``--hub-loops`` concurrent loops, each
  creating a session (JSON ``POST /api/v1/canvas_sessions/``), polling it until it runs,
  calling its worker once and deleting it, for ``--hub-duration`` seconds; then the hub's
  processes and open file descriptors compared with before the loops.

Targets (issue 6): zero errors on the server; memory growth between the two points within
10 MiB; zero 5xx from the hub, every session created then deleted, and no process or file
descriptor left over. The load comes from ``loadgen.py`` (server) and threads of this process
(hub), never from anything but 127.0.0.1.

    python benchmarks/reliability.py                  # the issue's sizes (about 4 minutes)
    python benchmarks/reliability.py --quick          # CI sizes (about 30 seconds)
    python benchmarks/reliability.py --write docs/reliability.md   # also rewrite the report

Exit status 1 when a target is missed.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import requests
import tornado

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import loadgen  # noqa: E402  (benchmarks/loadgen.py)

LOADGEN = os.path.join(HERE, "loadgen.py")
HOST = "127.0.0.1"
ADD = "/add?kwargs=%7B%22x%22%3A1%2C%22y%22%3A2%7D"
MESSAGE = '{"x":1,"y":2}'
EXPECTED = {"result": 3}
MiB = 1024 * 1024
MEMORY_TARGET = 10 * MiB
TIMEOUT = 60

CANVAS = """\
import gc
import os


def livepandas_add(x=1, y=2):
    return x + y


def livepandas_collect():
    gc.collect()
    return os.getpid()
"""

FULL = dict(duration=60.0, connections=64, websockets=200, calls_warm=10_000, calls=100_000,
            hub_loops=50, hub_duration=60.0)
QUICK = dict(duration=3.0, connections=64, websockets=200, calls_warm=2_000, calls=20_000,
             hub_loops=10, hub_duration=5.0)


# -- the function server --------------------------------------------------------------------------


class ServerProcess:
    """``python -m livepandas_ipython -P canvas.py --port 0`` in a temporary directory."""

    def __init__(self, workdir):
        path = os.path.join(workdir, "canvas.py")
        with open(path, "w") as f:
            f.write(CANVAS)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livepandas_ipython", "-P", path, "--host", HOST, "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("Serving canvas"):
            self.proc.kill()
            raise SystemExit(f"reliability: the livepandas process did not start: {line}{self.proc.stderr.read()}")
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])
        self.pid = self.proc.pid

    def rss_after_gc(self):
        r = requests.get(f"http://{HOST}:{self.port}/collect", timeout=TIMEOUT)
        assert r.json() == {"result": self.pid}, r.text
        return psutil.Process(self.pid).memory_info().rss

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.proc.returncode


def run_loadgen(kind, port, path, connections, duration, max_requests=0, message=MESSAGE):
    cmd = [sys.executable, LOADGEN, kind, HOST, str(port), path, "--connections", str(connections),
           "--duration", str(duration), "--max-requests", str(max_requests), "--message", message]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if proc.returncode != 0:
        raise SystemExit(f"reliability: loadgen failed: {proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["first_reply"] is not None and json.loads(result["first_reply"]) != EXPECTED:
        result["errors"] += 1
    return result


def measure_server(sizes, workdir, log):
    server = ServerProcess(workdir)
    rows = []
    try:
        log(f"server-http: {sizes['connections']} connections for {sizes['duration']:g} s")
        http = run_loadgen("http", server.port, ADD, sizes["connections"], sizes["duration"])
        rows.append(_load_row("server-http", f"{sizes['connections']} HTTP keep-alive connections", http))
        log(f"server-ws: {sizes['websockets']} WebSockets for {sizes['duration']:g} s")
        ws = run_loadgen("ws", server.port, "/add/ws", sizes["websockets"], sizes["duration"])
        rows.append(_load_row("server-ws", f"{sizes['websockets']} WebSockets", ws))

        log(f"server-memory: {sizes['calls_warm']:,} calls, then up to {sizes['calls']:,}")
        served, errors = 0, 0

        def calls_until(total):
            nonlocal served, errors
            while served < total:
                batch = min(20_000, total - served)
                for kind, path in (("http", ADD), ("ws", "/add/ws")):
                    result = run_loadgen(kind, server.port, path, 16, TIMEOUT * 10, max_requests=batch // 2)
                    served += result["requests"]
                    errors += result["errors"]

        calls_until(sizes["calls_warm"])
        warm_calls, warm_rss = served, server.rss_after_gc()
        calls_until(sizes["calls"])
        rss = server.rss_after_gc()
        rows.append({
            "name": "server-memory",
            "what": f"RSS after {warm_calls:,} and after {served:,} calls (gc.collect() first)",
            "requests": served,
            "errors": errors,
            "rss_warm_mib": warm_rss / MiB,
            "rss_mib": rss / MiB,
            "growth_mib": (rss - warm_rss) / MiB,
            "ok": errors == 0 and rss - warm_rss <= MEMORY_TARGET,
            "target": "growth <= 10 MiB, 0 errors",
        })
    finally:
        status = server.stop()
    if status != 0:
        rows.append({"name": "server-exit", "what": "exit status after SIGTERM", "errors": 1, "ok": False,
                     "target": "0", "requests": 0})
    return rows


def _load_row(name, what, result):
    return {
        "name": name,
        "what": what,
        "requests": result["requests"],
        "seconds": result["seconds"],
        "rps": result["rps"],
        "p50_ms": (result["p50_us"] or 0) / 1e3,
        "p99_ms": (result["p99_us"] or 0) / 1e3,
        "errors": result["errors"],
        "ok": result["errors"] == 0 and result["requests"] > 0,
        "target": "0 errors",
    }


# -- the hub --------------------------------------------------------------------------------------


class HubProcess:
    """``python -m livepandas_ipython.hub --port 0`` on a fresh data directory, with one user."""

    def __init__(self, workdir):
        self.data_dir = os.path.join(workdir, "hub-data")
        hub = [sys.executable, "-m", "livepandas_ipython.hub"]
        made = subprocess.run([*hub, "create-user", "bench", "--data-dir", self.data_dir],
                              capture_output=True, text=True, timeout=TIMEOUT)
        if made.returncode != 0:
            raise SystemExit(f"reliability: create-user failed: {made.stderr}")
        self.key = made.stdout.strip().splitlines()[-1]
        self.log = open(os.path.join(workdir, "hub.log"), "wb")
        self.proc = subprocess.Popen(
            [*hub, "--ip", HOST, "--port", "0", "--data-dir", self.data_dir, "--warm-pool-size", "2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=workdir,
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout] + [lines.put("")],
                         daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=TIMEOUT)
            except queue.Empty:
                line = ""
            if not line:
                self.proc.kill()
                raise SystemExit("reliability: the hub did not start (see hub.log)")
            if line.startswith("LIVEPANDAS_HUB_READY "):
                self.url = json.loads(line.split(" ", 1)[1])["url"]
                break
        self.process = psutil.Process(self.proc.pid)

    def workers(self):
        return [p for p in self.process.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.proc.returncode


def session_loop(url, canvas_id, deadline, stats):
    """Create, poll until running, call, delete; until *deadline*. Records into *stats*."""
    api = url + "api/v1/canvas_sessions/"
    with requests.Session() as http:

        def request(method, target, **kwargs):
            t0 = time.perf_counter()
            try:
                r = http.request(method, target, timeout=TIMEOUT, **kwargs)
            except requests.RequestException as exc:
                stats.add(None, time.perf_counter() - t0, f"{method} {exc!r}")
                return None
            stats.add(r.status_code, time.perf_counter() - t0)
            return r

        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            r = request("POST", api, json={"canvas": canvas_id})
            if r is None or r.status_code != 201:
                stats.fail(f"POST {getattr(r, 'status_code', None)} {getattr(r, 'text', '')[:200]}")
                time.sleep(0.1)
                continue
            session = r.json()
            while session["status"] == "starting":
                time.sleep(0.02)
                r = request("GET", api + session["id"] + "/")
                if r is None or r.status_code != 200:
                    break
                session = r.json()
            if session["status"] == "running":
                stats.ready(time.perf_counter() - t0)
                try:
                    reply = http.get(f"http://{session['socket']}{ADD}", timeout=TIMEOUT).json()
                except (requests.RequestException, ValueError) as exc:
                    reply = repr(exc)
                if reply != EXPECTED:
                    stats.fail(f"worker answered {reply!r:.200}")
            else:
                stats.fail(f"session {session['status']}: {session.get('error')}")
            r = request("DELETE", api + session["id"] + "/")
            if r is not None and r.status_code == 204:
                stats.deleted()
            else:
                stats.fail(f"DELETE {getattr(r, 'status_code', None)}")


class LoopStats:
    """What the session loops saw (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.latencies = []
        self.ready_times = []
        self.failures = []
        self.sessions = 0

    def add(self, status, seconds, failure=None):
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append(seconds)
            if failure:
                self.failures.append(failure)

    def ready(self, seconds):
        with self.lock:
            self.ready_times.append(seconds)

    def deleted(self):
        with self.lock:
            self.sessions += 1

    def fail(self, message):
        with self.lock:
            self.failures.append(message)


def measure_hub(sizes, workdir, log):
    hub = HubProcess(workdir)
    auth = {"Authorization": f"APIKey bench:{hub.key}"}
    try:
        r = requests.post(hub.url + "api/v1/canvases/", headers=auth, json={"python": CANVAS}, timeout=TIMEOUT)
        r.raise_for_status()
        canvas_id = r.json()["id"]
        _wait(lambda: len(hub.workers()) == 2, "the hub's warm pool")
        workers_before, fds_before = len(hub.workers()), hub.process.num_fds()
        loops, duration = sizes["hub_loops"], sizes["hub_duration"]
        log(f"hub-sessions: {loops} loops for {duration:g} s")
        stats = LoopStats()
        deadline = time.monotonic() + duration
        started = time.perf_counter()
        threads = [threading.Thread(target=session_loop, args=(hub.url, canvas_id, deadline, stats))
                   for _ in range(loops)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        settled = _wait(lambda: len(hub.workers()) == workers_before and hub.process.num_fds() <= fds_before,
                        "the hub to settle", fail=False)
        workers_after, fds_after = len(hub.workers()), hub.process.num_fds()
    finally:
        status = hub.stop()
    five = sum(n for code, n in stats.statuses.items() if code is not None and code >= 500)
    lat = sorted(stats.latencies)
    ready = sorted(stats.ready_times)
    ok = (five == 0 and not stats.failures and stats.sessions > 0 and settled and status == 0
          and stats.statuses[None] == 0)
    return [{
        "name": "hub-sessions",
        "what": f"{loops} loops: create, poll until running, call, delete",
        "requests": sum(stats.statuses.values()),
        "seconds": elapsed,
        "rps": sum(stats.statuses.values()) / elapsed if elapsed else 0.0,
        "p50_ms": loadgen.percentile(lat, 50) * 1e3 if lat else 0.0,
        "p99_ms": loadgen.percentile(lat, 99) * 1e3 if lat else 0.0,
        "errors": five + len(stats.failures) + stats.statuses[None],
        "sessions": stats.sessions,
        "ready_p50_ms": loadgen.percentile(ready, 50) * 1e3 if ready else 0.0,
        "ready_p99_ms": loadgen.percentile(ready, 99) * 1e3 if ready else 0.0,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items(), key=lambda kv: str(kv[0]))},
        "status_5xx": five,
        "failures": stats.failures[:10],
        "workers_before": workers_before,
        "workers_after": workers_after,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "hub_exit": status,
        "ok": ok,
        "target": "0 5xx, no leaked process or fd",
    }]


def _wait(predicate, what, timeout=TIMEOUT, fail=True):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if fail:
                raise SystemExit(f"reliability: timed out waiting for {what}")
            return False
        time.sleep(0.05)
    return True


# -- report ---------------------------------------------------------------------------------------


def machine():
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "tornado": tornado.version,
        "system": f"{platform.system()} {platform.release()}",
        "commit": _git_commit(),
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit():
    git = shutil.which("git")
    if git is None:
        return None
    out = subprocess.run([git, "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([git, "-C", ROOT, "status", "--porcelain"], capture_output=True, text=True).stdout
    return out.stdout.strip() + ("+changes" if dirty.strip() else "") if out.returncode == 0 else None


def table(rows):
    lines = [
        "| measurement | load | calls | per s | p50 ms | p99 ms | errors | memory (RSS) | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        memory = ""
        if "rss_mib" in row:
            memory = f"{row['rss_warm_mib']:.1f} → {row['rss_mib']:.1f} MiB ({row['growth_mib']:+.2f})"
        rate = f"{row['rps']:,.0f}" if "rps" in row else ""
        p50 = f"{row['p50_ms']:.2f}" if "p50_ms" in row else ""
        p99 = f"{row['p99_ms']:.2f}" if "p99_ms" in row else ""
        verdict = ("PASS" if row["ok"] else "FAIL") + f" ({row['target']})"
        lines.append(f"| {row['name']} | {row['what']} | {row['requests']:,} | {rate} | {p50} | {p99} | "
                     f"{row['errors']} | {memory} | {verdict} |")
    return "\n".join(lines)


def hub_details(row):
    return (
        f"- sessions created, running, called and deleted: {row['sessions']:,}; creation to running: "
        f"p50 {row['ready_p50_ms']:.0f} ms, p99 {row['ready_p99_ms']:.0f} ms\n"
        f"- answers by status: {', '.join(f'{k}: {v:,}' for k, v in row['statuses'].items())} "
        f"(5xx: {row['status_5xx']})\n"
        f"- hub worker processes before / after: {row['workers_before']} / {row['workers_after']} "
        f"(the warm pool); open file descriptors before / after: {row['fds_before']} / {row['fds_after']}\n"
        f"- hub exit status on SIGTERM: {row['hub_exit']}"
        + (f"\n- failures (first 10): {'; '.join(row['failures'])}" if row["failures"] else "")
    )


DOC = """\
# Reliability

What happens to the function server and the hub under sustained load and faults, and how it is
checked. The figures below are written by `benchmarks/reliability.py`; every test named here runs
in CI (`tests/reliability/`), each file in about 20 seconds or less.

## Load

{run_kind}

- command: `{command}`
- date: {date}
- machine: {cores} cores ({cpu}), {system}, Python {python}, Tornado {tornado}; livepandas_ipython at `{commit}`

{table}

Hub session loops:

{hub}

How it is measured: the function server is the real `livepandas -P canvas.py` process; the load
comes from `benchmarks/loadgen.py` in another process, one request in flight per connection
(closed loop), loopback only. Latencies are what the client measured, including its own time.
Memory is the server process's resident set size read from `/proc` right after a `gc.collect()`
run in it through the canvas itself. The hub is a real `livepandas-hub` process (warm pool of 2)
driven by threads of the benchmark process, each looping over create (JSON `POST
/api/v1/canvas_sessions/`), polling `GET` until `running`, one call to the worker and `DELETE`;
its processes and file descriptors are read with psutil before the loops and after they end.
On a 2-core machine the client, the server and the hub's workers share the cores, so the rates
say little about capacity; the error counts and leak checks are the point.

CI versions (`tests/reliability/test_load.py`, about 20 s): 64 HTTP connections for 3 s and 200
WebSockets for 2 s with zero errors; RSS after 12,000 more calls within 2 MiB of RSS after the
first 4,000 (it grows by about 0.02 MiB; a leak of 256 bytes per call adds 3.5 MiB); 8 hub loops
for 5 s with zero 5xx, and the hub back to its warm pool and its file descriptors afterwards.

## Faults

| fault | what must hold | test |
| --- | --- | --- |
| a call that never returns | the thread pool stays available to other calls; `call_timeout` answers 504, stuck threads make pool calls answer 503 | `test_faults.py` |
| a client disconnecting mid-stream | the generator is closed (`finally` runs), on every path | `test_faults.py` |
| a hub worker killed with SIGKILL mid-call | the in-flight HTTP call gets a connection error, the WebSocket closes, the session reports `failed` with `the worker exited with status -9`, a new session works | `test_hub_faults.py` |
| the hub killed with SIGKILL with 20 live sessions while requests arrive | every old worker exits by itself; `PRAGMA integrity_check` is `ok` right after the kill and after the restart; every user, key (revoked ones stay revoked) and canvas is intact through the API; the old sessions read `stopped`; new sessions work | `test_hub_faults.py` (a worker that ignores its closed stdin is killed by the restarted hub: `tests/hub/test_app.py`) |
| the kernel interrupted during a long cell while calls are in flight | the cell stops with `KeyboardInterrupt`, every call in flight is answered, the canvas keeps serving with the notebook's variables, the kernel answers the next cell | `test_kernel_faults.py` |
| the kernel restarted (or killed) while serving, with a stream open and a call stuck | the kernel exits by itself (exit status 0, not killed after the shutdown wait), the port is released, the WebSocket closes, the stuck call ends (a closed connection, or a JSON 500 when the exit cancels it first), a new `%%canvas` on the same port serves | `test_kernel_faults.py` |

## Hostile input

| input | what must hold | test |
| --- | --- | --- |
| any JSON, query, body, multipart, path, WebSocket frame (hypothesis) | no 5xx, every error `{{"exception", "type"}}`, the server still answers; oversized bodies 413, frames close with 1009; no path escapes the static directory; no header injection; foreign `Host` and cross-site `Origin` refused | `test_hostile.py` |
| every operation of `/api/v1/openapi.json` (schemathesis, positive and negative cases) | no 5xx; status, body schema and content type as documented; every error `{{"status", "message"}}` | `test_hub_fuzz.py` |
| SQL-ish strings (`' OR 1=1 --`, `'; DROP TABLE users; --`, ...) in every path parameter and string field | no 5xx; names and notes come back verbatim; another user's objects unchanged | `test_hub_fuzz.py` |
| every endpoint on another user's canvas, key, dashboard (two users) | `404` as if it did not exist, the object untouched, the owner's own request succeeds; listings show only one's own; missing or malformed credentials `401` | `test_authz_matrix.py` |
"""


def write_doc(path, rows, meta, command, quick):
    hub = [row for row in rows if row["name"] == "hub-sessions"]
    run_kind = (
        "**Quick run** (`--quick`: CI sizes — 3 s of load, 2,000 → 20,000 calls, 10 hub loops for 5 s). "
        "The issue's sizes (60 s, 10,000 → 100,000 calls, 50 hub loops for 60 s) are the default of the "
        "script; run it without `--quick` on a quiet machine to replace these figures."
        if quick else
        "Full run at the issue's sizes: 60 s of load, 10,000 → 100,000 calls, 50 hub loops for 60 s."
    )
    text = DOC.format(
        run_kind=run_kind,
        command=command,
        date=meta["date"],
        table=table(rows),
        hub=hub_details(hub[0]) if hub else "(not run)",
        **meta["machine"],
    )
    with open(path, "w") as f:
        f.write(text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI sizes: a few seconds per measurement")
    p.add_argument("--duration", type=float, help="seconds of server load (default 60; quick 3)")
    p.add_argument("--connections", type=int, help="HTTP connections (default 64)")
    p.add_argument("--websockets", type=int, help="WebSockets (default 200)")
    p.add_argument("--calls-warm", type=int, help="calls before the first memory reading (default 10,000)")
    p.add_argument("--calls", type=int, help="calls before the second memory reading (default 100,000)")
    p.add_argument("--hub-loops", type=int, help="concurrent session loops (default 50; quick 10)")
    p.add_argument("--hub-duration", type=float, help="seconds of hub load (default 60; quick 5)")
    p.add_argument("--only", choices=["server", "hub"], help="run one half")
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--write", metavar="MARKDOWN", help="rewrite this report (docs/reliability.md)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    if sizes["calls_warm"] >= sizes["calls"]:
        raise SystemExit("reliability: --calls must be larger than --calls-warm")
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(), "sizes": sizes}
    command = shlex.join(["python", os.path.relpath(os.path.abspath(__file__), ROOT), *(sys.argv[1:] if argv is None
                                                                                       else argv)])

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="livepandas-reliability-") as workdir:
        if args.only in (None, "server"):
            os.makedirs(os.path.join(workdir, "server"))
            rows += measure_server(sizes, os.path.join(workdir, "server"), log)
        if args.only in (None, "hub"):
            os.makedirs(os.path.join(workdir, "hub"))
            rows += measure_hub(sizes, os.path.join(workdir, "hub"), log)

    m = meta["machine"]
    print(f"{meta['date']}  {m['cores']} cores ({m['cpu']}), Python {m['python']}, Tornado {m['tornado']}, "
          f"commit {m['commit']}")
    print(f"command: {command}\n")
    print(table(rows))
    hub = [row for row in rows if row["name"] == "hub-sessions"]
    if hub:
        print("\n" + hub_details(hub[0]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
    if args.write:
        write_doc(args.write, rows, meta, command, args.quick)
        print(f"\nwrote {args.write}")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
