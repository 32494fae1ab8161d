"""Build the Tornado application of a function server from its handler modules."""

import tornado.web

from . import handlers, websocket

__all__ = ["make_app"]


def make_app(server):
    """A :class:`tornado.web.Application` serving *server*'s current canvas.

    The handlers read ``server.canvas`` on every request, so swapping the canvas needs no new app.
    """
    routes = websocket.default_handlers + handlers.default_handlers
    settings = dict(
        default_handler_class=handlers.NotFoundHandler,
        default_handler_args=dict(server=server),
        websocket_max_message_size=server.max_message_size,
        compress_response=False,
    )
    if not server.log_requests:
        settings["log_function"] = _no_log
    return tornado.web.Application([(pattern, cls, dict(server=server)) for pattern, cls in routes], **settings)


def _no_log(handler):
    pass
