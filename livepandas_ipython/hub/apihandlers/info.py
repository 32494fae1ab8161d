"""``GET /api/v1/``: the hub's version and where its collections are (anonymous)."""

from ..._version import __version__
from .base import APIHandler

__all__ = ["InfoHandler", "default_handlers"]


class InfoHandler(APIHandler):
    auth = None

    def get(self):
        """GET /api/v1/ — ``{"version", "canvases", "canvas_sessions", "keys", "user"}``."""
        self.write_json(
            {
                "version": __version__,
                "canvases": self.url_for("api/v1/canvases/"),
                "canvas_sessions": self.url_for("api/v1/canvas_sessions/"),
                "keys": self.url_for("api/v1/keys/"),
                "user": self.url_for("api/v1/user/"),
            }
        )


default_handlers = [(r"/api/v1/?", InfoHandler)]
