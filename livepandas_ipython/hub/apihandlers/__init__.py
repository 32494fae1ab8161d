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

``GET /api/v1/openapi.json``
    ``200``: this API as an OpenAPI 3.1 document (anonymous), with the hub as the client reached
    it as its server. Its schemas are the models and errors described here.

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

Sense dashboards
----------------
A dashboard is a worker process running an IPython kernel (the ``sense-ipython-engine``) that
first runs its startup code or script, in a *project* of its owner; ``sense.launch_workers``
and friends use these endpoints when ``SENSE_API_URL`` is set. Credentials: HTTP Basic with the
user's password, or an API key as the user name and an empty password (``APIKey <user>:<key>``
works too). ``<owner>`` must be the caller's own name: any other answers ``404``, whether or not
that user or project exists. Bodies are JSON or form fields (a form's ``env`` is JSON text).

``GET /users/<owner>/projects/<project>/dashboards/``  query ``?master_id=<id>`` (empty: the
top-level ones), ``?status=<status>[,<status>...]``
    ``200 [dashboard, ...]``, oldest first; an unknown project lists nothing. ``dashboard =
    {"id", "self", "owner", "project", "engine", "size", "status", "master_id", "created_at",
    "stopped_at", "error", "pid", "host", "port", "connection", "connection_file", "mem_limit",
    "cpu_limit", "output", "traceback"?}``. ``status`` is ``starting``, ``running`` (the
    startup code ran; ``connection`` is the Jupyter connection info of its kernel, what
    ``sense.connect(record)`` uses), ``failed`` (``error`` and ``traceback`` say why) or
    ``stopped`` (by ``PATCH``, its master stopping, the hub stopping or restarting, or by
    exiting: then ``error`` says so). ``output`` is the tail of what the startup code printed.
    ``400`` a malformed project name or filter.
``POST /users/<owner>/projects/<project>/dashboards/``  body ``{"engine"?: str, "size"?: str,
"startup_script"?: str, "startup_code"?: str, "env"?: {name: str}, "master_id"?: id}``
(``startupScript``/``startupCode``/``masterId`` also accepted)
    ``201 dashboard`` (``starting``; ``GET`` it until it is ``running`` or ``failed``) with
    ``Location``. The project is created if new. ``engine`` defaults to ``sense-ipython-engine``
    (others: ``DashboardManager.engines``); ``size`` to ``small`` — ``small``, ``medium``,
    ``large`` set the process's ``RLIMIT_AS``/``RLIMIT_CPU`` to 2/8/32 GiB and 1/4/16 CPU-hours
    (``sense.SIZES``; ``DashboardManager.sizes``). A relative ``startup_script`` is a path in
    the project's folder on the hub. ``master_id``: the launching dashboard, one of the
    project's. The dashboard's environment is the caller's ``env`` plus ``SENSE_API_URL``,
    ``SENSE_OWNER_ID``, ``SENSE_PROJECT_ID``, ``SENSE_DASHBOARD_ID``, ``SENSE_MASTER_ID``
    (empty for a top-level one), ``SENSE_API_TOKEN`` (an API key of the owner made for it and
    revoked when it ends), ``SENSE_PUBLIC_DNS``, ``SENSE_PROJECT_IP`` and
    ``SENSE_PROJECT_PACKAGES``, the project's package folder (also first on ``PYTHONPATH``;
    ``sense.install`` installs there, so every dashboard of the project imports what one
    installed). ``400`` unknown or mistyped fields, an unknown size or engine, both startup
    fields, a missing script, a ``master_id`` not of the project; ``413`` a body over
    ``max_request_size``; ``429`` the caller's (``DashboardManager.max_dashboards_per_user``),
    the project's (``max_dashboards_per_project``) or the hub's (``max_dashboards``) cap of
    starting and running dashboards, with ``Retry-After``.
``GET /users/<owner>/projects/<project>/dashboards/<id>``
    ``200 dashboard``; ``404`` for an id that is not a dashboard of this project of the caller.
``PATCH /users/<owner>/projects/<project>/dashboards/<id>``  body ``{"status": "stopped"}``
    ``200 dashboard``, stopped (its process and the dashboards it is the master of are gone
    when this answers; stopping a stopped one is allowed). Any other body: ``400``.

Dashboards stop with the hub (SIGTERM), exit by themselves if it is killed, and a restarted
hub kills any that a previous one recorded and marks them ``stopped``.
"""

from . import canvases, dashboards, info, openapi, sessions, users

__all__ = ["default_handlers"]

default_handlers = [
    *info.default_handlers,
    *openapi.default_handlers,
    *users.default_handlers,
    *canvases.default_handlers,
    *sessions.default_handlers,
    *dashboards.default_handlers,
]
