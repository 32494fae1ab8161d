"""The hub's REST API, version 1. ``default_handlers`` is every route of this package.

Conventions
-----------
- Bodies are JSON (``Content-Type: application/json``); ``POST /api/v1/canvas_sessions/`` and
  ``POST /api/v1/keys/`` also take form fields (``application/x-www-form-urlencoded`` or
  ``multipart/form-data``). Trailing slashes are optional.
- Times are ISO 8601 UTC strings with milliseconds: ``"2024-05-01T12:00:00.000Z"``.
- Every error answers JSON ``{"status": <code>, "message": "<one line for people>"}`` (a syntax
  error in an upload adds ``"line"``). ``401`` carries ``WWW-Authenticate``; ``429`` carries
  ``Retry-After`` (seconds).
- ``self`` in a model is the object's absolute URL, as the client reached the hub.

Authentication
--------------
The account endpoints (canvases, keys, user) need ``Authorization: APIKey <user>:<key>``. Keys
come from ``livepandas-hub create-user NAME`` (its last line of output) or ``POST
/api/v1/keys/``. Without valid credentials: ``401``. Another user's canvas or key is ``404``,
as if it did not exist. Sessions need no account (see below).

Endpoints
---------
``GET /api/v1/``
    ``200 {"version", "canvases", "canvas_sessions", "keys", "user"}`` (anonymous).

``GET /api/v1/user/``
    ``200 {"name", "created", "canvases"}``: whose credentials these are.

``GET /api/v1/keys/``
    ``200 [key, ...]``: the caller's live keys, ``key = {"prefix", "note", "created",
    "last_used", "self"}``. Keys are stored as salted hashes; only prefixes can be listed.
``POST /api/v1/keys/``  body ``{"note"?: str}``
    ``201 {..key, "key": "<the new key>"}`` with ``Location``; the key is shown only here.
``GET /api/v1/keys/<prefix>/``
    ``200 key``; ``404`` for an unknown, revoked or another user's key.
``DELETE /api/v1/keys/<prefix>/``
    ``204``: revoked at once (also when it is the key making the request).

``POST /api/v1/canvases/``  body ``{"python": str, "html"?: str | null, "static"?: {path: base64},
"name"?: str}``
    ``201 canvas`` with ``Location``, where ``canvas = {"id", "name", "owner", "functions":
    [names], "signatures": {name: "name(args)"}, "self", "sessions", "created", "updated"}``.
    The Python is compiled, never run, by the hub: the functions are the top-level
    ``livepandas_<name>`` definitions. ``400``: not JSON, unknown or mistyped fields, a syntax
    error (``"message": "SyntaxError: invalid syntax (code.py, line 3)", "line": 3``), no
    ``livepandas_*`` function, a static path that is absolute or has ``..``/``.``/empty parts,
    static content that is not strict base64. ``413``: a body over ``max_body_size``, ``python``
    over ``max_python_size``, ``html`` over ``max_html_size``, static files over
    ``max_static_size`` bytes (decoded) or ``max_static_files`` files.
``GET /api/v1/canvases/``
    ``200 [canvas, ...]``: the caller's canvases, oldest first.
``GET /api/v1/canvases/<id>/``
    ``200 {..canvas, "python", "html": str | null, "static": [paths]}``.
``PUT /api/v1/canvases/<id>/`` (or ``PATCH``)  body: any of the POST fields
    ``200 canvas``. Fields given replace the stored ones, absent ones are kept (``"html": null``
    removes the view, ``"static": {}`` the static files). Same errors as POST. Running sessions
    keep the code they started with; new sessions get the new version.
``DELETE /api/v1/canvases/<id>/``
    ``204``; the canvas's sessions are stopped. Ids are never reused.

Sessions
--------
Anonymous, and CORS-enabled for every origin (``Access-Control-Allow-Origin: *``, preflight
answered), as the seed's pages use them: ``$.post(hub + "/api/v1/canvas_sessions/", {canvas:
id})``, then ``GET`` the session until ``socket`` is set, then ``ws://<socket>/<name>/ws`` or
``http://<socket>/<name>?kwargs=...``. A session id is an unguessable token: knowing it is what
lets a client poll, keep alive or delete the session. Both spellings work:
``/api/v1/canvas_sessions/`` and ``/api/v1/canvas-sessions/``.

``POST /api/v1/canvas_sessions/``  body ``{"canvas": id}`` (JSON) or ``canvas=<id>`` (form)
    ``201 session`` with ``Location``, where ``session = {"id", "self", "canvas", "status",
    "socket", "expires_at", "last_activity", "created", "error"}``. ``status`` is one of
    ``starting`` (``socket`` is ``null``), ``running`` (``socket`` is ``"host:port"`` of the
    session's worker, serving the canvas's functions, view and static files to any origin),
    ``failed`` (the worker could not start or died; ``error`` says why; create a new session)
    or ``stopped`` (deleted, expired, or the hub restarted). The hub waits briefly for the
    worker, so a session from the warm pool usually answers ``running`` at once. ``400`` no or
    a malformed canvas id; ``404`` no such canvas; ``429`` the hub's or the canvas's session cap
    is reached (``Retry-After``: seconds until the earliest active session would expire).
``GET /api/v1/canvas_sessions/<id>/``
    ``200 session``; an active session's ``expires_at`` moves to now + ``session_timeout``.
    ``404`` for an unknown id, or one that ended over ``session_history`` seconds ago.
``DELETE /api/v1/canvas_sessions/<id>/``
    ``204``: the worker is stopped before the answer.

A session stops ``session_timeout`` seconds (default 300) after its last activity: its
creation, a ``GET`` of it, or a call on its worker (HTTP or WebSocket). No worker outlives its
session or the hub: workers exit when the hub's end of their stdin closes, even if the hub is
killed, and a restarted hub kills any worker a previous one recorded.
"""

from . import canvases, info, sessions, users

__all__ = ["default_handlers"]

default_handlers = [
    *info.default_handlers,
    *users.default_handlers,
    *canvases.default_handlers,
    *sessions.default_handlers,
]
