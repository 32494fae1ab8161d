"""The caller's account: ``/api/v1/user/`` and API keys under ``/api/v1/keys/``."""

from ..errors import BadRequest, NotFound
from .base import APIHandler, iso8601

__all__ = ["key_model", "UserHandler", "KeyListHandler", "KeyHandler", "default_handlers"]

_MAX_NOTE = 200


def key_model(handler, row):
    return {
        "prefix": row["prefix"],
        "note": row["note"],
        "created": iso8601(row["created"]),
        "last_used": iso8601(row["last_used"]),
        "self": handler.url_for(f"api/v1/keys/{row['prefix']}/"),
    }


class UserHandler(APIHandler):
    def get(self):
        """GET /api/v1/user/ — who the credentials belong to (check them before an upload)."""
        user = self.current_user
        self.write_json(
            {
                "name": user["name"],
                "created": iso8601(user["created"]),
                "canvases": self.url_for("api/v1/canvases/"),
            }
        )


class KeyListHandler(APIHandler):
    def get(self):
        """GET /api/v1/keys/ — the caller's live keys (prefixes only, never the keys)."""
        rows = self.hub.db.keys_of(self.current_user["id"])
        self.write_json([key_model(self, row) for row in rows])

    def post(self):
        """POST /api/v1/keys/ — a new key (``{"note"?}``) → 201; the key is shown only in this answer."""
        note = self.get_fields().get("note", "")
        if not isinstance(note, str) or len(note) > _MAX_NOTE:
            raise BadRequest(f"'note' must be a string of at most {_MAX_NOTE} characters")
        row, key = self.hub.authenticator.create_key(self.current_user["id"], note)
        self.hub.log.info("user %s created key %s…", self.current_user["name"], row["prefix"])
        model = key_model(self, row)
        model["key"] = key
        self.set_header("Location", model["self"])
        self.write_json(model, 201)


class KeyHandler(APIHandler):
    def get(self, prefix):
        """GET /api/v1/keys/<prefix>/ — one live key of the caller."""
        row = self.hub.db.key(self.current_user["id"], prefix)
        if row is None:
            raise NotFound(f"no key {prefix}")
        self.write_json(key_model(self, row))

    def delete(self, prefix):
        """DELETE /api/v1/keys/<prefix>/ — revoke a key at once → 204 (it may be the one in use)."""
        if not self.hub.db.revoke_key(self.current_user["id"], prefix):
            raise NotFound(f"no key {prefix}")
        self.hub.log.info("user %s revoked key %s…", self.current_user["name"], prefix)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


default_handlers = [
    (r"/api/v1/user/?", UserHandler),
    (r"/api/v1/keys/?", KeyListHandler),
    (r"/api/v1/keys/([^/]+)/?", KeyHandler),
]
