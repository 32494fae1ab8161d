"""Closed-loop load generators for bench_server.py, run in their own process.

Each connection sends one request (or WebSocket message), waits for the whole reply, records the
latency and sends the next, until the duration is over. Everything is precomputed so the client
does as little per request as it can: the HTTP request and the masked WebSocket frame are
constant bytes, and replies are only framed (Content-Length / WebSocket length), not decoded.

Usage (prints one JSON line on stdout)::

    python loadgen.py http HOST PORT PATH --connections 16 --duration 3
    python loadgen.py ws   HOST PORT PATH --connections 16 --duration 3 --message '{"x":1,"y":2}'
    python loadgen.py wrk  HOST PORT PATH --connections 16 --duration 3   # runs wrk, same JSON
    python loadgen.py cws  HOST PORT PATH --connections 16 --duration 3   # runs wsbench.c (compiled)

Only addresses on this machine are accepted (the benchmark must never load anything else).
The JSON has: requests, seconds, rps, p50_us, p99_us, mean_us, errors, first_reply, client_cpu_s.
"""

import argparse
import asyncio
import base64
import ipaddress
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

perf_ns = time.perf_counter_ns


def percentile(sorted_values, q):
    """The q-th percentile (0..100) of an ascending list, nearest-rank; None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def _check_local(host):
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"loadgen: refusing to load {host}: only loopback addresses are allowed")


class _Run:
    """Shared state of one run: the clock, the latencies and the connections still active."""

    def __init__(self, duration, max_requests):
        self.duration = duration
        self.max_requests = max_requests or 0
        self.latencies = []  # ns, per completed request
        self.errors = 0
        self.first_reply = None
        self.active = 0
        self.start = None
        self.deadline = None
        self.last = None
        self.done = None

    def begin(self, loop):
        self.done = loop.create_future()
        self.start = perf_ns()
        self.deadline = self.start + int(self.duration * 1e9)

    def more(self, now):
        if now >= self.deadline:
            return False
        return not self.max_requests or len(self.latencies) < self.max_requests

    def finished_one(self):
        self.active -= 1
        if self.active == 0 and not self.done.done():
            self.done.set_result(None)


class _HttpConn(asyncio.Protocol):
    def __init__(self, run, request, ready):
        self.run = run
        self.request = request
        self.ready = ready
        self.buf = bytearray()
        self.t0 = 0
        self.transport = None
        self.live = False

    def connection_made(self, transport):
        self.transport = transport
        self.ready.set_result(None)

    def go(self):
        self.live = True
        self.t0 = perf_ns()
        self.transport.write(self.request)

    def data_received(self, data):
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            i = head.find(b"\r\ncontent-length:")
            if i < 0:
                self.fail()
                return
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17 : j if j > 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                return
            now = perf_ns()
            run = self.run
            if head[9:12] != b"200":
                run.errors += 1
            if run.first_reply is None:
                run.first_reply = bytes(buf[end + 4 : total]).decode("utf-8", "replace")
            del buf[:total]
            run.latencies.append(now - self.t0)
            run.last = now
            if run.more(now):
                self.t0 = now
                self.transport.write(self.request)
            else:
                self.stop()
                return

    def fail(self):
        self.run.errors += 1
        self.stop()

    def stop(self):
        if self.live:
            self.live = False
            self.run.finished_one()

    def connection_lost(self, exc):
        if self.live:
            self.run.errors += 1
            self.stop()


class _WsConn(asyncio.Protocol):
    """A minimal RFC 6455 client: one constant masked text frame out, unmasked frames in."""

    def __init__(self, run, handshake, frame, ready):
        self.run = run
        self.handshake = handshake
        self.frame = frame
        self.ready = ready
        self.buf = bytearray()
        self.upgraded = False
        self.transport = None
        self.live = False
        self.t0 = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.handshake)

    def go(self):
        self.live = True
        self.t0 = perf_ns()
        self.transport.write(self.frame)

    def data_received(self, data):
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[9:12])
            del buf[: end + 4]
            if status != b"101":
                self.ready.set_exception(RuntimeError(f"WebSocket handshake answered {status.decode()}"))
                return
            self.upgraded = True
            self.ready.set_result(None)
        while len(buf) >= 2:
            b0, n = buf[0], buf[1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = int.from_bytes(buf[2:4], "big")
                head = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = int.from_bytes(buf[2:10], "big")
                head = 10
            if len(buf) < head + n:
                return
            opcode = b0 & 0x0F
            run = self.run
            if opcode not in (1, 2):  # close/ping/pong: not a reply
                del buf[: head + n]
                if opcode == 8 and self.live:
                    run.errors += 1
                    self.stop()
                continue
            now = perf_ns()
            if run.first_reply is None:
                run.first_reply = bytes(buf[head : head + n]).decode("utf-8", "replace")
            del buf[: head + n]
            if not self.live:
                continue
            run.latencies.append(now - self.t0)
            run.last = now
            if run.more(now):
                self.t0 = now
                self.transport.write(self.frame)
            else:
                self.stop()

    def stop(self):
        if self.live:
            self.live = False
            self.run.finished_one()

    def connection_lost(self, exc):
        if self.live:
            self.run.errors += 1
            self.stop()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection closed during the WebSocket handshake"))


def _ws_frame(payload, mask=b"\x37\xfa\x21\x3d"):
    """A masked, final text frame holding *payload* (bytes)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


async def _run(kind, host, port, path, connections, duration, message, max_requests):
    loop = asyncio.get_running_loop()
    run = _Run(duration, max_requests)
    conns = []
    hostport = f"{host}:{port}"
    for _ in range(connections):
        ready = loop.create_future()
        if kind == "http":
            request = f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: loadgen\r\n\r\n".encode()
            factory = lambda ready=ready, request=request: _HttpConn(run, request, ready)  # noqa: E731
        else:
            key = base64.b64encode(os.urandom(16)).decode()
            handshake = (
                f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            frame = _ws_frame(message.encode())
            factory = lambda ready=ready, h=handshake, f=frame: _WsConn(run, h, f, ready)  # noqa: E731
        _, proto = await loop.create_connection(factory, host, port)
        await asyncio.wait_for(ready, 10)
        conns.append(proto)
    run.active = len(conns)
    cpu0 = time.process_time()
    run.begin(loop)
    for c in conns:
        c.go()
    try:
        await asyncio.wait_for(run.done, duration + 30)
    except asyncio.TimeoutError:
        run.errors += 1
    cpu = time.process_time() - cpu0
    for c in conns:
        c.transport.close()
    lat = sorted(run.latencies)
    n = len(lat)
    seconds = ((run.last or run.start) - run.start) / 1e9
    return {
        "client": f"python-asyncio ({'HTTP/1.1 keep-alive' if kind == 'http' else 'WebSocket'}, raw sockets)",
        "requests": n,
        "seconds": seconds,
        "rps": n / seconds if seconds > 0 else 0.0,
        "p50_us": percentile(lat, 50) / 1e3 if n else None,
        "p99_us": percentile(lat, 99) / 1e3 if n else None,
        "mean_us": sum(lat) / n / 1e3 if n else None,
        "errors": run.errors,
        "first_reply": run.first_reply,
        "client_cpu_s": cpu,
    }


_WRK_SCRIPT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.3f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_version():
    """``"wrk 4.1.0..."`` or None when wrk is not on PATH."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"wrk\s+(\S+)", out)
    return f"wrk {m.group(1)}" if m else "wrk"


def run_wrk(host, port, path, connections, duration):
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("loadgen: wrk is not installed (apt-get install -y wrk), use the python client")
    seconds = max(1, int(round(duration)))  # wrk takes whole seconds
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT)
        script = f.name
    try:
        cpu0 = os.times()
        proc = subprocess.run(
            [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script,
             f"http://{host}:{port}{path}"],
            capture_output=True, text=True, timeout=seconds + 60,
        )
        cpu1 = os.times()
    finally:
        os.unlink(script)
    m = re.search(r"^WRKJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"loadgen: wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    w = json.loads(m.group(1))
    secs = w["duration_us"] / 1e6
    return {
        "client": f"{wrk_version()} (C, 1 thread, HTTP/1.1 keep-alive)",
        "requests": w["requests"],
        "seconds": secs,
        "rps": w["requests"] / secs if secs else 0.0,
        "p50_us": float(w["p50_us"]),
        "p99_us": float(w["p99_us"]),
        "mean_us": w["mean_us"],
        "errors": sum(w[k] for k in ("connect", "read", "write", "status", "timeout")),
        "first_reply": None,
        "client_cpu_s": (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system),
    }


WSBENCH_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wsbench.c")


def build_wsbench():
    """Compile wsbench.c (cached by its hash in the temp directory); its path, or None without a C compiler."""
    import hashlib

    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not os.path.exists(WSBENCH_SOURCE):
        return None
    with open(WSBENCH_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"livepandas-bench-{os.getuid()}")
    exe = os.path.join(cache, f"wsbench-{digest}")
    if os.path.exists(exe):
        return exe
    os.makedirs(cache, exist_ok=True)
    tmp = f"{exe}.{os.getpid()}.tmp"
    proc = subprocess.run([cc, "-O2", "-o", tmp, WSBENCH_SOURCE], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"loadgen: could not compile wsbench.c, using the Python client:\n{proc.stderr}\n")
        return None
    os.replace(tmp, exe)
    return exe


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["http", "ws", "wrk", "cws"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0, help="seconds (wrk: rounded to whole seconds)")
    p.add_argument("--max-requests", type=int, default=0, help="stop after this many replies (0: no limit)")
    p.add_argument("--message", default='{"x":1,"y":2}', help="WebSocket message to send")
    p.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    a = p.parse_args(argv)
    _check_local(a.host)
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    if a.kind == "wrk":
        result = run_wrk(a.host, a.port, a.path, a.connections, a.duration)
    elif a.kind == "cws":
        exe = build_wsbench()
        if exe is None:
            raise SystemExit("loadgen: no C compiler to build wsbench.c; use the ws (Python) client")
        cmd = [exe, a.host, str(a.port), a.path, str(a.connections), str(a.duration), a.message, str(a.max_requests)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 60)
        if proc.returncode != 0:
            raise SystemExit(f"loadgen: wsbench failed ({proc.returncode}): {proc.stderr}")
        result = json.loads(proc.stdout)
    else:
        result = asyncio.run(_run(a.kind, a.host, a.port, a.path, a.connections, a.duration, a.message, a.max_requests))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
