"""The canvas API: ``/api/v1/canvases/`` (see the package docstring for the contract)."""

import json

from .base import APIHandler, iso8601

__all__ = ["canvas_model", "CanvasListHandler", "CanvasHandler", "default_handlers"]


def canvas_model(handler, row, contents=None):
    """The JSON object of a canvas (with its files' contents when *contents* is given)."""
    functions = json.loads(row["functions"])
    model = {
        "id": row["id"],
        "name": row["name"],
        "owner": row["owner"],
        "functions": [f["name"] for f in functions],
        "signatures": {f["name"]: f["signature"] for f in functions},
        "self": handler.url_for(f"api/v1/canvases/{row['id']}/"),
        "sessions": handler.url_for("api/v1/canvas_sessions/"),
        "created": iso8601(row["created"]),
        "updated": iso8601(row["updated"]),
    }
    if contents is not None:
        model.update(contents)
    return model


class CanvasListHandler(APIHandler):
    large_body = True

    def get(self):
        """GET /api/v1/canvases/ — the caller's canvases, oldest first."""
        rows = self.hub.canvases.list(self.current_user["id"])
        self.write_json([canvas_model(self, row) for row in rows])

    async def post(self):
        """POST /api/v1/canvases/ — upload a canvas: ``{"python", "html"?, "static"?, "name"?}`` → 201."""
        payload = self.get_json_body()
        row = await self.hub.canvases.create(self.current_user["id"], payload)
        self.hub.log.info("user %s created canvas %s (%s)", self.current_user["name"], row["id"], row["name"])
        model = canvas_model(self, row)
        self.set_header("Location", model["self"])
        self.write_json(model, 201)


class CanvasHandler(APIHandler):
    large_body = True

    async def get(self, canvas_id):
        """GET /api/v1/canvases/<id>/ — one canvas, with its Python, HTML and static paths."""
        row = self.hub.canvases.get(canvas_id, self.current_user["id"])
        contents = await self.hub.canvases.contents(row["id"])
        self.write_json(canvas_model(self, row, contents))

    async def put(self, canvas_id):
        """PUT /api/v1/canvases/<id>/ — replace the fields given (absent ones keep their value)."""
        payload = self.get_json_body()
        row = await self.hub.canvases.update(canvas_id, self.current_user["id"], payload)
        self.hub.log.info("user %s updated canvas %s", self.current_user["name"], row["id"])
        self.write_json(canvas_model(self, row))

    patch = put

    async def delete(self, canvas_id):
        """DELETE /api/v1/canvases/<id>/ — delete the canvas and stop its sessions → 204."""
        await self.hub.delete_canvas(canvas_id, self.current_user["id"])
        self.hub.log.info("user %s deleted canvas %s", self.current_user["name"], canvas_id)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


default_handlers = [
    (r"/api/v1/canvases/?", CanvasListHandler),
    (r"/api/v1/canvases/([^/]+)/?", CanvasHandler),
]
