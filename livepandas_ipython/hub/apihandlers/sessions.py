"""The session API: ``/api/v1/canvas_sessions/`` (also spelled ``canvas-sessions``).

Anonymous and open to every origin (CORS, preflight included): the seed's pages create sessions
with jQuery ``$.post(url, {canvas: id})`` (form-encoded) from wherever they are hosted.
"""

from .base import APIHandler, iso8601

__all__ = ["session_model", "SessionListHandler", "SessionHandler", "default_handlers"]


def session_model(handler, session_id, row):
    """The JSON object of a session (*session_id* is the client's token; the row has its hash)."""
    return {
        "id": session_id,
        "self": handler.url_for(f"api/v1/canvas_sessions/{session_id}/"),
        "canvas": row["canvas_id"],
        "status": row["status"],
        "socket": row["socket"],
        "expires_at": iso8601(row["expires_at"]),
        "last_activity": iso8601(row["last_activity"]),
        "created": iso8601(row["created"]),
        "error": row["error"],
    }


class SessionListHandler(APIHandler):
    auth = None
    cors = True

    async def post(self):
        """POST /api/v1/canvas_sessions/ — ``{"canvas": id}`` (JSON or form) → 201 with the session."""
        fields = self.get_fields()
        session_id, row = await self.hub.sessions.create(fields.get("canvas"))
        model = session_model(self, session_id, row)
        self.set_header("Location", model["self"])
        self.write_json(model, 201)


class SessionHandler(APIHandler):
    auth = None
    cors = True

    def get(self, session_id):
        """GET /api/v1/canvas_sessions/<id>/ — the session; keeps an active one alive."""
        row = self.hub.sessions.get(session_id)
        self.write_json(session_model(self, session_id, row))

    async def delete(self, session_id):
        """DELETE /api/v1/canvas_sessions/<id>/ — stop the session and its worker now → 204."""
        await self.hub.sessions.delete(session_id)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


default_handlers = [
    (r"/api/v1/canvas[_-]sessions/?", SessionListHandler),
    (r"/api/v1/canvas[_-]sessions/([^/]+)/?", SessionHandler),
]
