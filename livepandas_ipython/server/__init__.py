"""The function server: one canvas's functions over HTTP and WebSocket, on a background loop."""

from .server import FunctionServer, ServerStats
from .thread import LoopThread

__all__ = ["FunctionServer", "LoopThread", "ServerStats"]
