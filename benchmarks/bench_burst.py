"""Benchmark: N sessions created at once on a real hub, each until its worker answers a call.

Starts ``livepandas-hub`` as a child process on ``127.0.0.1:0`` (caps raised to fit the burst),
creates a user and uploads a one-function canvas, then, per round, N threads at once each:
``POST /api/v1/canvas_sessions/`` → ``GET`` it every 20 ms until ``socket`` is set → ``GET
http://<socket>/add?kwargs=...`` answered ``{"result": 3}``. Reported per round: how many sessions
became usable and how many failed (with why), the time from the burst's start to each session's
first answered call (p50/p90/max) and to the last one. Sessions are deleted between rounds. At
the end the hub gets SIGTERM and the script checks that no worker process outlived it.

The baseline is the same machine starting one bare Python process per session, sequentially
(see ``bench_sessions.py``, ~80 ms each here): a burst of N that all answer within N x 80 ms / cores
is doing no worse than starting them one by one.

    python benchmarks/bench_burst.py                 # 100 sessions, 3 rounds
    python benchmarks/bench_burst.py -n 20 --rounds 1 --quick

Target (from the hub's requirements): 100 sessions created at once on this 2-core machine all get
sockets, none fail. Exit status 1 when a session failed.
"""

import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

CODE = "def livepandas_add(x, y):\n    return x + y\n"
READY = "LIVEPANDAS_HUB_READY "
POLL = 0.02
TIMEOUT = 120.0


def start_hub(data_dir, n):
    cmd = [
        sys.executable, "-m", "livepandas_ipython.hub", "--port", "0", "--data-dir", data_dir,
        f"--LivePandasHub.max_sessions={n + 10}", f"--LivePandasHub.max_sessions_per_canvas={n + 10}",
        "--log-level=WARN",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if line.startswith(READY):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, json.loads(line[len(READY):])["url"].rstrip("/")
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("the hub did not start")


def create_user(data_dir):
    out = subprocess.run(
        [sys.executable, "-m", "livepandas_ipython.hub", "create-user", "bench", "--data-dir", data_dir],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def one_session(hub, canvas_id, start_at, http):
    """Create a session, wait for its socket, call it; return (ms since start, session id) or raise."""
    while time.monotonic() < start_at:
        time.sleep(0.0005)
    t0 = start_at
    r = http.post(f"{hub}/api/v1/canvas_sessions/", json={"canvas": canvas_id}, timeout=TIMEOUT)
    if r.status_code != 201:
        raise RuntimeError(f"create: {r.status_code} {r.text[:120]}")
    session = r.json()
    deadline = time.monotonic() + TIMEOUT
    while session["socket"] is None:
        if session["status"] in ("failed", "stopped"):
            raise RuntimeError(f"session {session['status']}: {session.get('error')}")
        if time.monotonic() > deadline:
            raise RuntimeError("no socket in time")
        time.sleep(POLL)
        r = http.get(f"{hub}/api/v1/canvas_sessions/{session['id']}/", timeout=TIMEOUT)
        if r.status_code != 200:
            raise RuntimeError(f"poll: {r.status_code} {r.text[:120]}")
        session = r.json()
    r = http.get(f"http://{session['socket']}/add", params={"kwargs": '{"x":1,"y":2}'}, timeout=TIMEOUT)
    if r.status_code != 200 or r.json() != {"result": 3}:
        raise RuntimeError(f"call: {r.status_code} {r.text[:120]}")
    return (time.monotonic() - t0) * 1000, session["id"]


def burst(hub, canvas_id, n):
    start_at = time.monotonic() + 0.5  # every thread is waiting when the burst starts
    sessions = [requests.Session() for _ in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one_session, hub, canvas_id, start_at, s) for s in sessions]
        done, failed = [], []
        for f in futures:
            try:
                done.append(f.result())
            except Exception as exc:  # counted and shown
                failed.append(str(exc))
    for ms, sid in done:
        requests.delete(f"{hub}/api/v1/canvas_sessions/{sid}/", timeout=TIMEOUT)
    for s in sessions:
        s.close()
    return sorted(ms for ms, _ in done), failed


def pct(values, q):
    if not values:
        return float("nan")
    pos = (len(values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def workers_of(pid):
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=100, help="sessions per burst (default 100)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="10 sessions, 1 round: a smoke run")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.rounds = 10, 1

    with tempfile.TemporaryDirectory(prefix="livepandas-burst-") as data_dir:
        key = create_user(data_dir)
        proc, hub = start_hub(data_dir, a.n)
        rows, ok = [], True
        try:
            auth = {"Authorization": f"APIKey bench:{key}"}
            r = requests.post(f"{hub}/api/v1/canvases/", json={"python": CODE, "name": "burst"}, headers=auth, timeout=30)
            r.raise_for_status()
            canvas_id = r.json()["id"]
            print(f"hub {hub}, {os.cpu_count()} CPUs, {a.n} sessions at once, {a.rounds} rounds")
            print(f"{'round':>5} {'usable':>7} {'failed':>7} {'p50 ms':>8} {'p90 ms':>8} {'last ms':>8}")
            for rnd in range(a.rounds):
                times, failed = burst(hub, canvas_id, a.n)
                ok = ok and not failed
                row = dict(round=rnd + 1, usable=len(times), failed=len(failed), p50_ms=pct(times, 50),
                           p90_ms=pct(times, 90), last_ms=times[-1] if times else float("nan"), errors=failed[:5])
                rows.append(row)
                print(f"{row['round']:>5} {row['usable']:>7} {row['failed']:>7} {row['p50_ms']:>8.0f} "
                      f"{row['p90_ms']:>8.0f} {row['last_ms']:>8.0f}")
                for err in failed[:5]:
                    print(f"      failed: {err}")
                time.sleep(1.0)
            children = workers_of(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        time.sleep(0.5)
        leftover = [pid for pid in children if _alive(pid)]
        ok = ok and not leftover
        med = statistics.median
        print(f"\nmedians over rounds: last session usable {med(r['last_ms'] for r in rows):.0f} ms after the burst, "
              f"p50 {med(r['p50_ms'] for r in rows):.0f} ms; worker processes left after SIGTERM: {len(leftover)}")
        total = sum(r["usable"] for r in rows)
        print(f"Target: {a.n} sessions at once all usable, none failed: "
              f"{total}/{a.n * a.rounds} usable  {'PASS' if ok else 'FAIL'}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"n": a.n, "rounds": rows, "leftover_workers": len(leftover), "cpus": os.cpu_count()}, f, indent=1)
        return 0 if ok else 1


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


if __name__ == "__main__":
    sys.exit(main())
