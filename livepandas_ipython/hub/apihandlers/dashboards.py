"""The Sense dashboards API: ``/users/<owner>/projects/<project>/dashboards/`` (see the package
docstring for the contract, and :mod:`..dashboards` for what a dashboard is).

HTTP Basic credentials (a password, or an API key as the user name with an empty password), or
``Authorization: APIKey <user>:<key>``. ``<owner>`` must be the caller: another user's path
answers 404 whether or not that user or project exists.
"""

import json

from ..errors import BadRequest, NotFound, Unauthorized
from .base import APIHandler, iso8601

__all__ = ["dashboard_model", "DashboardListHandler", "DashboardHandler", "default_handlers"]

_PATH = "users/{owner}/projects/{project}/dashboards/"


def dashboard_model(handler, row):
    """The JSON record of a dashboard (the same keys as the embedded backend's worker records)."""
    info = json.loads(row["info"]) if row["info"] else {}
    model = {
        "id": row["id"],
        "self": handler.url_for(_PATH.format(owner=row["owner"], project=row["project"]) + str(row["id"])),
        "owner": row["owner"],
        "project": row["project"],
        "engine": row["engine"],
        "size": row["size"],
        "status": row["status"],
        "master_id": row["master_id"],
        "created_at": iso8601(row["created"]),
        "stopped_at": iso8601(row["stopped"]),
        "error": row["error"],
        "pid": info.get("pid"),
        "host": info.get("host"),
        "port": info.get("port"),
        "connection": info.get("connection"),
        "connection_file": info.get("connection_file"),
        "mem_limit": info.get("mem_limit"),
        "cpu_limit": info.get("cpu_limit"),
        "output": info.get("output", ""),
    }
    if info.get("traceback"):
        model["traceback"] = info["traceback"]
    return model


class _DashboardsHandler(APIHandler):
    basic_auth = True

    async def check_request(self):
        if self.request.method == "OPTIONS":
            return
        if not self.request.headers.get("Authorization"):
            raise Unauthorized(
                "authentication required: HTTP Basic with your user name and password, or with an API key "
                "as the user name and an empty password"
            )
        self.current_user = await self.authenticate()
        owner, project = self.path_args[:2]
        if owner != self.current_user["name"]:
            # Whether or not that user exists: nothing about other accounts is revealed.
            raise NotFound(f"user {owner!r:.70} has no project {project!r:.70} that you can see")

    @property
    def dashboards(self):
        return self.hub.dashboards


class DashboardListHandler(_DashboardsHandler):
    def get(self, owner, project):
        """GET /users/<owner>/projects/<project>/dashboards/ — the project's dashboards, oldest first.

        Filters: ``?master_id=<id>`` (empty: the top-level ones) and ``?status=running`` (or a
        comma-separated list).
        """
        master_id = self.get_query_argument("master_id", ...)
        status = self.get_query_argument("status", None)
        rows = self.dashboards.list(self.current_user, project, master_id=master_id, status=status)
        self.write_json([dashboard_model(self, row) for row in rows])

    async def post(self, owner, project):
        """POST /users/<owner>/projects/<project>/dashboards/ — start a dashboard → 201 (``starting``)."""
        fields = self.get_fields()
        row = await self.dashboards.create(self.current_user, project, fields)
        model = dashboard_model(self, row)
        self.set_header("Location", model["self"])
        self.write_json(model, 201)


class DashboardHandler(_DashboardsHandler):
    def get(self, owner, project, dashboard_id):
        """GET /users/<owner>/projects/<project>/dashboards/<id> — one dashboard."""
        row = self.dashboards.get(self.current_user, project, dashboard_id)
        self.write_json(dashboard_model(self, row))

    async def patch(self, owner, project, dashboard_id):
        """PATCH /users/<owner>/projects/<project>/dashboards/<id> — ``{"status": "stopped"}`` stops it."""
        self.dashboards.get(self.current_user, project, dashboard_id)  # 404 before 400
        fields = self.get_fields()
        if set(fields) != {"status"} or fields["status"] != "stopped":
            raise BadRequest('the only change a dashboard takes is {"status": "stopped"}')
        row = await self.dashboards.stop(self.current_user, project, dashboard_id)
        self.write_json(dashboard_model(self, row))


default_handlers = [
    (r"/users/([^/]+)/projects/([^/]+)/dashboards/?", DashboardListHandler),
    (r"/users/([^/]+)/projects/([^/]+)/dashboards/([^/]+)/?", DashboardHandler),
]
