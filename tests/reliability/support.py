"""Helpers of the reliability tests: raw HTTP exchanges and checks every error reply must pass."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time

__all__ = [
    "LOADGEN",
    "TIMEOUT",
    "assert_json_error",
    "exchange",
    "is_bare_400",
    "loadgen",
    "request_bytes",
    "rss_bytes",
    "start_cli",
    "wait_until",
]

TIMEOUT = 30  # seconds; only ever waited on, never asserted
LOADGEN = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "loadgen.py")


def exchange(port, data, timeout=TIMEOUT):
    """Send the raw bytes *data* on a new connection; ``(status, headers, body)`` of the reply.

    The request should say ``Connection: close``. ``status`` is None when the server closed the
    connection without answering.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock, method=data.split(b" ", 1)[0].decode("latin-1"))
        try:
            try:
                response.begin()
            except (http.client.RemoteDisconnected, ConnectionResetError):
                return None, {}, b""
            return response.status, response.headers, response.read()
        finally:
            response.close()


def request_bytes(method, target, headers=(), body=b""):
    """An HTTP/1.1 request as bytes: *target* (bytes or str) is sent exactly as given."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Connection: close"]
    names = {name.lower() for name, _ in headers}
    if "host" not in names:
        lines.append(b"Host: 127.0.0.1")
    for name, value in headers:
        lines.append(_bytes(name) + b": " + _bytes(value))
    if body or method == "POST":
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _bytes(value):
    return value if isinstance(value, bytes) else value.encode("utf-8")


def is_bare_400(status, headers, body):
    """True for Tornado's own answer to bytes that are not valid HTTP (a malformed request line,
    an invalid ``Host``): a bodiless 400 before any handler runs, and the connection closed."""
    return status == 400 and body == b"" and "Content-Type" not in headers


def assert_json_error(status, headers, body):
    """An error reply as the contract says: JSON ``{"exception": str, "type": str}``, not 5xx."""
    assert status is not None and 400 <= status < 500, (status, body[:300])
    assert headers.get("Content-Type", "").startswith("application/json"), (status, dict(headers), body[:300])
    error = json.loads(body)
    assert isinstance(error.get("exception"), str) and error["exception"], error
    assert isinstance(error.get("type"), str) and error["type"], error
    assert "traceback" not in error, error  # input errors never carry one, even in debug mode
    return error


def wait_until(predicate, timeout=TIMEOUT, interval=0.02):
    """Poll *predicate* until it is true (returns True) or *timeout* seconds pass (returns False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def loadgen(kind, port, path, *, connections, duration=60.0, max_requests=0, message=None):
    """Run ``benchmarks/loadgen.py`` in its own process; its JSON summary."""
    cmd = [sys.executable, LOADGEN, kind, "127.0.0.1", str(port), path, "--connections", str(connections),
           "--duration", str(duration), "--max-requests", str(max_requests)]
    if message is not None:
        cmd += ["--message", message]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rss_bytes(pid):
    """Resident set size of process *pid*, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_cli(directory, source, *args):
    """Run ``livepandas -P canvas.py --port 0 *args`` in *directory* with *source* as the canvas.

    Returns ``(process, port)`` once it serves; stdout and stderr are pipes, stdin is closed.
    """
    code = os.path.join(str(directory), "canvas.py")
    with open(code, "w") as f:
        f.write(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "livepandas_ipython", "-P", code, "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(directory),
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Serving canvas"), line + proc.stderr.read()
        port = int(line.rsplit(":", 1)[1].split("/")[0])
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc, port
