"""``GET /api/v1/openapi.json``: the REST API as an OpenAPI 3.1 document (anonymous).

The document is built from the sections below, one function per part of the API, and kept true
by ``tests/hub/test_openapi.py``: every route of :data:`..default_handlers` has a path here (and
every path a route), and real answers of a hub validate against the schemas. A new part of the
API adds its section function to :data:`SECTIONS` (the Sense dashboards API goes in
:func:`dashboard_paths`).

``servers`` names the hub as the client reached it, so the document works as it is in tools
such as Swagger UI or schemathesis.
"""

import copy

from ..._version import __version__
from .base import APIHandler

__all__ = ["OpenAPIHandler", "build_document", "SECTIONS", "default_handlers"]

OPENAPI_VERSION = "3.1.0"

_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


def _ref(name, kind="schemas"):
    return {"$ref": f"#/components/{kind}/{name}"}


def _obj(properties, required=None, additional=False, **extra):
    """An object schema; every property is required unless *required* says otherwise."""
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else list(required),
        "additionalProperties": additional,
    }
    schema.update(extra)
    return schema


def _json_content(schema):
    return {_JSON: {"schema": schema}}


def _ok(description, schema, status="200", headers=None):
    response = {"description": description, "content": _json_content(schema)}
    if headers:
        response["headers"] = headers
    return {status: response}


_NO_CONTENT = {"204": {"description": "Done; no body."}}
_LOCATION = {"Location": {"description": "The new object's URL (its ``self``).", "schema": {"type": "string"}}}


def _errors(*statuses):
    """References to the shared error responses for *statuses*, plus the catch-all ``default``."""
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "404": "NotFound",
        "413": "PayloadTooLarge",
        "429": "TooManySessions",
    }
    responses = {status: _ref(names[status], "responses") for status in statuses}
    responses["default"] = _ref("Error", "responses")
    return responses


def _operation(operation_id, summary, responses, *, tag, auth=True, body=None, description=None):
    op = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = body
    if not auth:
        op["security"] = []  # anonymous: overrides the document's default
    op["responses"] = responses
    return op


def _preflight(operation_id, methods):
    """The CORS preflight answer of a route open to browsers on any origin."""
    return _operation(
        operation_id,
        "CORS preflight",
        {
            "204": {
                "description": "The methods and headers a browser may use from another origin.",
                "headers": {
                    name: {"schema": {"type": "string"}}
                    for name in (
                        "Access-Control-Allow-Origin",
                        "Access-Control-Allow-Methods",
                        "Access-Control-Allow-Headers",
                        "Access-Control-Max-Age",
                    )
                },
            },
        },
        tag="sessions",
        auth=False,
        description=f"Answered for browsers; allows {', '.join(methods)}.",
    )


# -- sections: one function per part of the API ------------------------------------------------


def info_paths():
    """``GET /api/v1/`` and this document."""
    return {
        "/api/v1/": {
            "get": _operation(
                "getInfo",
                "The hub's version and the URLs of its collections",
                {**_ok("The hub's version and collections.", _ref("Info")), **_errors()},
                tag="info",
                auth=False,
            )
        },
        "/api/v1/openapi.json": {
            "get": _operation(
                "getOpenAPI",
                "This OpenAPI document",
                {
                    **_ok(
                        "An OpenAPI 3.1 document whose servers entry is the hub as the client reached it.",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    ),
                    **_errors(),
                },
                tag="info",
                auth=False,
            ),
            "options": _preflight("preflightOpenAPI", ["GET"]),
        },
    }


def account_paths():
    """``/api/v1/user/`` and the API keys under ``/api/v1/keys/``."""
    prefix = {
        "name": "prefix",
        "in": "path",
        "required": True,
        "description": "The key's prefix (the ``prefix`` of the key model).",
        "schema": {"type": "string"},
    }
    note_body = {
        "required": False,
        "description": "An optional note to tell keys apart; JSON or form fields.",
        "content": {
            _JSON: {"schema": _ref("KeyRequest")},
            _FORM: {"schema": _ref("KeyRequest")},
            _MULTIPART: {"schema": _ref("KeyRequest")},
        },
    }
    return {
        "/api/v1/user/": {
            "get": _operation(
                "getUser",
                "Whose credentials these are",
                {**_ok("The caller's account.", _ref("User")), **_errors("401")},
                tag="account",
            )
        },
        "/api/v1/keys/": {
            "get": _operation(
                "listKeys",
                "The caller's live API keys (prefixes only)",
                {**_ok("The caller's keys.", {"type": "array", "items": _ref("Key")}), **_errors("401")},
                tag="account",
            ),
            "post": _operation(
                "createKey",
                "Create an API key; the key is shown only in this answer",
                {
                    **_ok("The new key, with the key itself.", _ref("NewKey"), "201", _LOCATION),
                    **_errors("400", "401", "413"),
                },
                tag="account",
                body=note_body,
            ),
        },
        "/api/v1/keys/{prefix}/": {
            "parameters": [prefix],
            "get": _operation(
                "getKey",
                "One live key of the caller",
                {**_ok("The key.", _ref("Key")), **_errors("401", "404")},
                tag="account",
            ),
            "delete": _operation(
                "revokeKey",
                "Revoke a key at once (it may be the one making the request)",
                {**_NO_CONTENT, **_errors("401", "404")},
                tag="account",
            ),
        },
    }


def canvas_paths():
    """``/api/v1/canvases/``: upload, list, read, update and delete canvases."""
    canvas_id = {
        "name": "canvas_id",
        "in": "path",
        "required": True,
        "description": "The canvas's id (another user's canvas answers 404).",
        "schema": {"type": "integer"},
    }

    def update(operation_id, method):
        return _operation(
            operation_id,
            f"Replace the fields given ({method}); absent fields keep their value",
            {**_ok("The updated canvas.", _ref("Canvas")), **_errors("400", "401", "404", "413")},
            tag="canvases",
            body={"required": True, "content": _json_content(_ref("CanvasUpdate"))},
            description="``\"html\": null`` removes the view and ``\"static\": {}`` the static files. "
            "Running sessions keep the code they started with; new sessions get the new version.",
        )

    return {
        "/api/v1/canvases/": {
            "get": _operation(
                "listCanvases",
                "The caller's canvases, oldest first",
                {**_ok("The caller's canvases.", {"type": "array", "items": _ref("Canvas")}), **_errors("401")},
                tag="canvases",
            ),
            "post": _operation(
                "createCanvas",
                "Upload a canvas",
                {
                    **_ok("The new canvas.", _ref("Canvas"), "201", _LOCATION),
                    **_errors("400", "401", "413"),
                },
                tag="canvases",
                body={"required": True, "content": _json_content(_ref("CanvasUpload"))},
                description="The hub compiles the Python but never runs it: the functions are the "
                "top-level ``livepandas_<name>`` definitions. A syntax error answers 400 with ``line``.",
            ),
        },
        "/api/v1/canvases/{canvas_id}/": {
            "parameters": [canvas_id],
            "get": _operation(
                "getCanvas",
                "One canvas, with its Python, HTML view and static paths",
                {**_ok("The canvas and its contents.", _ref("CanvasContents")), **_errors("401", "404")},
                tag="canvases",
            ),
            "put": update("updateCanvas", "PUT"),
            "patch": update("patchCanvas", "PATCH"),
            "delete": _operation(
                "deleteCanvas",
                "Delete a canvas and stop its sessions (ids are never reused)",
                {**_NO_CONTENT, **_errors("401", "404")},
                tag="canvases",
            ),
        },
    }


def session_paths():
    """``/api/v1/canvas_sessions/`` and its alias ``/api/v1/canvas-sessions/`` (anonymous, CORS)."""
    session_id = {
        "name": "session_id",
        "in": "path",
        "required": True,
        "description": "The session's id: an unguessable token, the only key to the session.",
        "schema": {"type": "string"},
    }
    paths = {}
    for spelling, suffix in (("canvas_sessions", ""), ("canvas-sessions", "Alias")):
        alias = " (alias of ``/api/v1/canvas_sessions/``)" if suffix else ""
        paths[f"/api/v1/{spelling}/"] = {
            "post": _operation(
                f"createSession{suffix}",
                "Start a session on a canvas" + alias,
                {
                    **_ok(
                        "The new session; usually already running (a warm worker), else poll it.",
                        _ref("Session"),
                        "201",
                        _LOCATION,
                    ),
                    **_errors("400", "404", "413", "429"),
                },
                tag="sessions",
                auth=False,
                body={
                    "required": True,
                    "content": {
                        _JSON: {"schema": _ref("SessionRequest")},
                        _FORM: {"schema": _ref("SessionForm")},
                        _MULTIPART: {"schema": _ref("SessionForm")},
                    },
                },
            ),
            "options": _preflight(f"preflightSessions{suffix}", ["POST"]),
        }
        paths[f"/api/v1/{spelling}/{{session_id}}/"] = {
            "parameters": [session_id],
            "get": _operation(
                f"getSession{suffix}",
                "The session; keeps an active one alive" + alias,
                {**_ok("The session.", _ref("Session")), **_errors("404")},
                tag="sessions",
                auth=False,
                description="An active session's ``expires_at`` moves to now + the hub's session timeout.",
            ),
            "delete": _operation(
                f"deleteSession{suffix}",
                "Stop the session and its worker now" + alias,
                {**_NO_CONTENT, **_errors("404")},
                tag="sessions",
                auth=False,
            ),
            "options": _preflight(f"preflightSession{suffix}", ["GET", "DELETE"]),
        }
    return paths


def dashboard_paths():
    """The Sense dashboards API (``/users/<owner>/projects/<project>/dashboards/``): HTTP Basic or APIKey."""
    security = [{"Basic": []}, {"APIKey": []}]
    owner = {
        "name": "owner",
        "in": "path",
        "required": True,
        "description": "The caller's own user name (any other answers 404).",
        "schema": {"type": "string"},
    }
    project = {
        "name": "project",
        "in": "path",
        "required": True,
        "description": "The project: 1-64 letters, digits, '.', '_' or '-'; created by the first POST.",
        "schema": {"type": "string"},
    }
    dashboard_id = {
        "name": "dashboard_id",
        "in": "path",
        "required": True,
        "description": "The dashboard's id (one of this project's).",
        "schema": {"type": "integer"},
    }
    filters = [
        {
            "name": "master_id",
            "in": "query",
            "required": False,
            "description": "Only the workers of this dashboard; empty: only the top-level dashboards.",
            "schema": {"type": "string", "pattern": r"^\s*\d*\s*$"},
        },
        {
            "name": "status",
            "in": "query",
            "required": False,
            "description": "Only dashboards in these statuses (comma-separated).",
            "schema": {"type": "string"},
        },
    ]
    too_many = {
        "description": "The caller's, the project's or the hub's cap of starting and running dashboards is reached.",
        "headers": {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
        "content": _json_content(_ref("Error")),
    }

    def op(operation_id, summary, responses, **kwargs):
        operation = _operation(operation_id, summary, responses, tag="dashboards", **kwargs)
        operation["security"] = security
        return operation

    return {
        "/users/{owner}/projects/{project}/dashboards/": {
            "parameters": [owner, project],
            "get": {
                **op(
                    "listDashboards",
                    "The project's dashboards, oldest first (none for an unknown project)",
                    {
                        **_ok("The dashboards.", {"type": "array", "items": _ref("Dashboard")}),
                        **_errors("400", "401", "404"),
                    },
                ),
                "parameters": filters,
            },
            "post": op(
                "createDashboard",
                "Start a dashboard (the project is created if new)",
                {
                    **_ok("The new dashboard, starting: GET it until it runs.", _ref("Dashboard"), "201", _LOCATION),
                    **_errors("400", "401", "404", "413"),
                    "429": too_many,
                },
                body={
                    "required": False,
                    "content": {
                        _JSON: {"schema": _ref("DashboardRequest")},
                        _FORM: {"schema": _ref("DashboardForm")},
                        _MULTIPART: {"schema": _ref("DashboardForm")},
                    },
                },
                description="A worker process running an IPython kernel that first runs the startup code or "
                "script, with the SENSE_* environment set (see the REST contract).",
            ),
        },
        "/users/{owner}/projects/{project}/dashboards/{dashboard_id}/": {
            "parameters": [owner, project, dashboard_id],
            "get": op(
                "getDashboard",
                "One dashboard",
                {**_ok("The dashboard.", _ref("Dashboard")), **_errors("401", "404")},
            ),
            "patch": op(
                "stopDashboard",
                "Stop a dashboard and the dashboards it is the master of",
                {**_ok("The dashboard, stopped.", _ref("Dashboard")), **_errors("400", "401", "404", "413")},
                body={
                    "required": True,
                    "content": {
                        _JSON: {"schema": _ref("DashboardStop")},
                        _FORM: {"schema": _ref("DashboardStop")},
                    },
                },
            ),
        },
    }


#: ``(tag, description, function returning paths)`` in the order of the document.
SECTIONS = [
    ("info", "The hub itself.", info_paths),
    ("account", "The caller's account and API keys.", account_paths),
    ("canvases", "Canvases: Python functions, an HTML view and static files.", canvas_paths),
    ("sessions", "Sessions: a private worker serving a canvas (anonymous, CORS-enabled).", session_paths),
    ("dashboards", "The Sense dashboards API.", dashboard_paths),
]


def dashboard_schemas(timestamp, url):
    """The models of the Sense dashboards API."""
    text = {"type": ["string", "null"]}
    request = {
        "engine": {"type": ["string", "null"], "description": "Default sense-ipython-engine."},
        "size": {"type": ["string", "null"], "description": "small (default), medium or large."},
        "startup_script": {**text, "description": "A script on the hub; relative: in the project's folder."},
        "startupScript": text,
        "startup_code": {**text, "description": "Code run first, like a notebook cell."},
        "startupCode": text,
        "env": {
            "type": ["object", "string", "null"],
            "additionalProperties": {"type": ["string", "number"]},
            "description": "Environment variables (in a form: the object as JSON text).",
        },
        "master_id": {"type": ["integer", "string", "null"], "description": "The launching dashboard's id."},
        "masterId": {"type": ["integer", "string", "null"]},
    }
    return {
        "Dashboard": _obj(
            {
                "id": {"type": "integer"},
                "self": url,
                "owner": {"type": "string"},
                "project": {"type": "string"},
                "engine": {"type": "string"},
                "size": {"type": "string"},
                "status": {"type": "string", "enum": ["starting", "running", "stopped", "failed"]},
                "master_id": {"type": ["integer", "null"]},
                "created_at": timestamp,
                "stopped_at": {**timestamp, "type": ["string", "null"]},
                "error": {"type": ["string", "null"], "description": "Why it failed or ended."},
                "pid": {"type": ["integer", "null"]},
                "host": {"type": ["string", "null"]},
                "port": {"type": ["integer", "null"]},
                "connection": {
                    "type": ["object", "null"],
                    "description": "The Jupyter connection info of its kernel (ip, transport, key, ports).",
                },
                "connection_file": {"type": ["string", "null"]},
                "mem_limit": {"type": ["integer", "null"], "description": "RLIMIT_AS in bytes (0: none)."},
                "cpu_limit": {"type": ["number", "null"], "description": "RLIMIT_CPU in seconds (0: none)."},
                "output": {"type": "string", "description": "The tail of what the startup code printed."},
                "traceback": {"type": "string", "description": "When the startup code failed."},
            },
            required=[
                "id", "self", "owner", "project", "engine", "size", "status", "master_id", "created_at",
                "stopped_at", "error", "pid", "host", "port", "connection", "connection_file", "mem_limit",
                "cpu_limit", "output",
            ],
        ),
        "DashboardRequest": _obj(request, required=[]),
        "DashboardForm": _obj({name: {"type": "string"} for name in request}, required=[]),
        "DashboardStop": _obj({"status": {"const": "stopped"}}),
    }


def components():
    """Schemas, shared responses and the security scheme."""
    timestamp = {
        "type": "string",
        "format": "date-time",
        "description": "ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.000Z.",
        "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
    }
    url = {"type": "string", "format": "uri", "description": "An absolute URL, as the client reached the hub."}
    canvas_fields = {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "owner": {"type": "string", "description": "The owner's user name."},
        "functions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The published names (``livepandas_<name>`` without the prefix), sorted.",
        },
        "signatures": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "``{name: \"name(args)\"}``.",
        },
        "self": url,
        "sessions": {**url, "description": "Where to POST ``{\"canvas\": id}`` for a session."},
        "created": timestamp,
        "updated": timestamp,
    }
    contents = {
        "python": {"type": "string"},
        "html": {"type": ["string", "null"]},
        "static": {"type": "array", "items": {"type": "string"}, "description": "Relative paths of the static files."},
    }
    upload_fields = {
        "python": {"type": "string", "description": "The canvas's Python source (compiled, never run, by the hub)."},
        "html": {"type": ["string", "null"], "description": "The HTML view; null for none."},
        "static": {
            "type": ["object", "null"],
            "description": "``{relative path: base64 content}``; paths have no empty, '.' or '..' parts.",
            "additionalProperties": {"type": "string", "contentEncoding": "base64"},
        },
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
    }
    key_fields = {
        "prefix": {"type": "string"},
        "note": {"type": "string"},
        "created": timestamp,
        "last_used": {**timestamp, "type": ["string", "null"]},
        "self": url,
    }
    session_canvas = {
        "description": "The canvas's id (an integer, or its digits).",
        "oneOf": [{"type": "integer"}, {"type": "string", "pattern": r"^\s*\d{1,18}\s*$"}],
    }
    error_schema = _obj(
        {
            "status": {"type": "integer", "description": "The HTTP status, repeated."},
            "message": {"type": "string", "description": "One line for people."},
            "line": {"type": "integer", "description": "The line of a syntax error in an uploaded canvas."},
        },
        required=["status", "message"],
    )

    def error(description, headers=None):
        response = {"description": description, "content": _json_content(_ref("Error"))}
        if headers:
            response["headers"] = headers
        return response

    return {
        "schemas": {
            "Error": error_schema,
            "Info": _obj(
                {
                    "version": {"type": "string"},
                    "canvases": url,
                    "canvas_sessions": url,
                    "keys": url,
                    "user": url,
                }
            ),
            "User": _obj({"name": {"type": "string"}, "created": timestamp, "canvases": url}),
            "Key": _obj(key_fields),
            "NewKey": _obj({**key_fields, "key": {"type": "string", "description": "The key; shown only once."}}),
            "KeyRequest": _obj(
                {"note": {"type": "string", "maxLength": 200}}, required=[], additional=True
            ),
            "Canvas": _obj(canvas_fields),
            "CanvasContents": _obj({**canvas_fields, **contents}),
            "CanvasUpload": _obj(upload_fields, required=["python"]),
            "CanvasUpdate": _obj(upload_fields, required=[], minProperties=1),
            "SessionRequest": _obj({"canvas": session_canvas}, additional=True),
            "SessionForm": _obj({"canvas": {"type": "string", "pattern": r"^\s*\d{1,18}\s*$"}}, additional=True),
            **dashboard_schemas(timestamp, url),
            "Session": _obj(
                {
                    "id": {"type": "string"},
                    "self": url,
                    "canvas": {"type": "integer"},
                    "status": {
                        "type": "string",
                        "enum": ["starting", "running", "failed", "stopped"],
                        "description": "starting (socket null), running (socket set), failed (see error) "
                        "or stopped (deleted, expired, or the hub restarted).",
                    },
                    "socket": {
                        "type": ["string", "null"],
                        "pattern": r"^.+:\d+$",
                        "description": "``host:port`` of the worker once it runs: ``http://<socket>/<name>`` "
                        "and ``ws://<socket>/<name>/ws``.",
                    },
                    "expires_at": timestamp,
                    "last_activity": timestamp,
                    "created": timestamp,
                    "error": {"type": ["string", "null"], "description": "Why the session failed."},
                }
            ),
        },
        "responses": {
            "BadRequest": error(
                "Not JSON, unknown or mistyped fields; for a canvas also a syntax error (with ``line``) or no "
                "``livepandas_*`` function, or a bad static path or base64 content."
            ),
            "Unauthorized": error(
                "No, malformed or invalid credentials.",
                {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'APIKey realm="livepandas-hub"'}},
            ),
            "NotFound": error("No such object for this caller (another user's objects answer 404 too)."),
            "PayloadTooLarge": error("The body, or one of its fields, is over the hub's configured limit."),
            "TooManySessions": error(
                "The hub's or the canvas's session cap is reached.",
                {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
            ),
            "Error": error("Any other error (405 for a method a path does not take, ...), in the same shape."),
        },
        "securitySchemes": {
            "Basic": {
                "type": "http",
                "scheme": "basic",
                "description": "The Sense dashboards API: the user's name and password, or an API key as the "
                "user name with an empty password.",
            },
            "APIKey": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "``Authorization: APIKey <user>:<key>``. Keys come from ``livepandas-hub "
                "create-user NAME`` (its last line of output) or ``POST /api/v1/keys/``.",
            }
        },
    }


def _base_document():
    paths, tags = {}, []
    for tag, description, section in SECTIONS:
        part = section()
        if part:
            tags.append({"name": tag, "description": description})
            paths.update(part)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "livepandas hub",
            "version": __version__,
            "description": "Publish canvases (Python functions, an HTML view, static files) and start "
            "sessions on them. Every error answers JSON ``{\"status\", \"message\"}``.",
            "license": {"name": "BSD-3-Clause", "identifier": "BSD-3-Clause"},
        },
        "servers": [],
        "tags": tags,
        "security": [{"APIKey": []}],
        "paths": paths,
        "components": components(),
    }


_DOCUMENT = None


def build_document(server_url):
    """The OpenAPI document (a new dict) with *server_url* as its only server."""
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = _base_document()
    document = copy.deepcopy(_DOCUMENT)
    document["servers"] = [{"url": server_url.rstrip("/"), "description": "This hub."}]
    return document


class OpenAPIHandler(APIHandler):
    auth = None
    cors = True

    def get(self):
        """GET /api/v1/openapi.json — this API as an OpenAPI 3.1 document (anonymous)."""
        self.write_json(build_document(self.url_for("")))


default_handlers = [(r"/api/v1/openapi\.json", OpenAPIHandler)]
