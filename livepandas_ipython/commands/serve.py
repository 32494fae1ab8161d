"""``serve``: start a function server for a canvas and describe its endpoints."""

from ..server import FunctionServer

__all__ = ["start", "describe"]


def start(canvas, **options):
    """Start and return a :class:`FunctionServer` for *canvas* (options as its constructor's)."""
    return FunctionServer(canvas, **options).start()


def describe(server):
    """Lines naming the server's view URL and each function's HTTP and WebSocket URL."""
    canvas = server.canvas
    source = f" from {canvas.filename}" if canvas.filename else ""
    lines = [f"Serving canvas {canvas.name!r}{source} on {server.url}"]
    width = max((len(name) for name in canvas.functions), default=0)
    for name in canvas.functions:
        http_url, ws_url = server.endpoint_urls(name)
        lines.append(f"  {name:<{width}}  GET {http_url}?kwargs={{...}}  WS {ws_url}")
    if not server.security.require_token and server.security.token is None and not _loopback(server):
        lines.append("  warning: no token and not bound to loopback: anyone who can reach this port can call these")
    return lines


def _loopback(server):
    from ..server.security import is_loopback_host

    return server.host == "localhost" or is_loopback_host(server.host)
