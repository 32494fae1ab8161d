"""Benchmark: launching 4 workers with ``sense.launch_workers`` on the embedded backend.

Two ways to get 4 IPython kernels running, interleaved (the order alternates every repeat),
medians reported:

- **ours**: ``sense.launch_workers(4, startup_code=...)`` until it returns, which is when all four
  workers (``sense-ipython-engine`` under ``LocalProcessSpawner``) have started their kernel and
  run their startup code (each writes a file, checked after every repeat);
- **bare ipykernel**: 4 × ``python -m ipykernel_launcher -f <connection file>`` started at once
  and a ``kernel_info_request`` sent to each, until all four replied: the time any tool needs to
  get 4 stock kernels answering (jupyter_client's own ``KernelManager`` adds to that).

Target: ours <= 1.5 s. Every worker and kernel is stopped between repeats.

    python benchmarks/bench_sense.py                 # 7 repeats
    python benchmarks/bench_sense.py --quick         # smoke run: 2 repeats
    python benchmarks/bench_sense.py --repeats 11 --workers 8 --json benchmarks/results/sense.json
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import sense

TARGET_S = 1.5


def launch_ours(n, scratch):
    """Seconds until ``launch_workers(n)`` returned with every startup code run; then stop them."""
    marker_dir = tempfile.mkdtemp(dir=scratch)
    code = f"import os\nopen(os.path.join({marker_dir!r}, os.environ['SENSE_DASHBOARD_ID']), 'w').close()"
    start = time.perf_counter()
    workers = sense.launch_workers(n, startup_code=code)
    elapsed = time.perf_counter() - start
    try:
        failed = [w for w in workers if w["status"] != "running"]
        if failed:
            raise RuntimeError(f"workers failed: {[w['error'] for w in failed]}")
        ran = sorted(os.listdir(marker_dir))
        if ran != sorted(str(w["id"]) for w in workers):
            raise RuntimeError(f"startup code ran on {ran}, not on all of {[w['id'] for w in workers]}")
    finally:
        sense.stop_workers()
        shutil.rmtree(marker_dir, ignore_errors=True)
    return elapsed


def launch_bare(n, scratch):
    """Seconds until n bare ipykernels started at once all answered kernel_info; then stop them."""
    from jupyter_client import BlockingKernelClient
    from jupyter_client.connect import write_connection_file

    files = []
    for i in range(n):
        fname, _ = write_connection_file(os.path.join(scratch, f"bare-{i}-{time.monotonic_ns()}.json"))
        files.append(fname)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ipykernel_launcher", "-f", f],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for f in files
    ]
    clients = []
    try:
        for f in files:
            kc = BlockingKernelClient(connection_file=f)
            kc.load_connection_file()
            kc.start_channels()
            clients.append(kc)
        pending = {kc: kc.kernel_info() for kc in clients}
        deadline = time.monotonic() + 60
        while pending:
            for kc, msg_id in list(pending.items()):
                try:
                    reply = kc.get_shell_msg(timeout=0.01)
                except Exception:  # queue.Empty: not yet
                    continue
                if reply["parent_header"].get("msg_id") == msg_id:
                    del pending[kc]
            if time.monotonic() > deadline:
                raise RuntimeError("bare kernels did not answer within 60 s")
        elapsed = time.perf_counter() - start
    finally:
        for kc in clients:
            kc.stop_channels()
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        for f in files:
            try:
                os.unlink(f)
            except OSError:
                pass
    return elapsed


def git_commit(path):
    """``"<sha>"`` (``"<sha>+dirty"`` with local changes) of the checkout holding *path*, or None."""
    where = os.path.dirname(os.path.abspath(path))
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("+dirty" if dirty else "")) or None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7, help="interleaved repeats (default 7)")
    p.add_argument("--workers", type=int, default=4, help="workers / kernels per launch (default 4)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 repeats")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.repeats = 2
    for name in [k for k in os.environ if k.startswith("SENSE_")]:
        del os.environ[name]  # the embedded backend, whatever this shell has set
    print(f"benchmarking {sense.__file__} (commit {git_commit(sense.__file__)})", flush=True)

    scratch = tempfile.mkdtemp(prefix="bench-sense-")
    times = {"ours": [], "bare": []}
    try:
        # Warm-up: the first start of anything reads its files from disk.
        launch_ours(1, scratch)
        launch_bare(1, scratch)
        for r in range(a.repeats):
            order = ["ours", "bare"] if r % 2 == 0 else ["bare", "ours"]
            for name in order:
                fn = launch_ours if name == "ours" else launch_bare
                times[name].append(fn(a.workers, scratch))
            print(f"  repeat {r + 1}: ours {times['ours'][-1]:.3f} s, bare {times['bare'][-1]:.3f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary = {}
    for name, ts in times.items():
        summary[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "times_s": ts}
    ratio = summary["ours"]["median_s"] / summary["bare"]["median_s"]
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "commit": git_commit(sense.__file__),
        "workers": a.workers,
        "repeats": a.repeats,
        "quick": a.quick,
        "load_average": os.getloadavg()[0],
    }
    ours, bare = summary["ours"], summary["bare"]
    verdict = "meets" if ours["median_s"] <= TARGET_S else "MISSES"
    print()
    print(
        f"launch {a.workers} workers ({meta['date']}, {meta['cpus']} CPUs, load {meta['load_average']:.2f}, "
        f"Python {meta['python']}); medians of {a.repeats} interleaved repeats"
    )
    print(f"  ours  sense.launch_workers({a.workers}), startup code run : "
          f"{ours['median_s']:.3f} s (min {ours['min_s']:.3f}, max {ours['max_s']:.3f})")
    print(f"  bare  {a.workers} x python -m ipykernel_launcher, first reply : "
          f"{bare['median_s']:.3f} s (min {bare['min_s']:.3f}, max {bare['max_s']:.3f})")
    print(f"  ours / bare = {ratio:.2f}; target ours <= {TARGET_S} s: {verdict}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "summary": summary, "ours_over_bare": ratio, "target_s": TARGET_S}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
