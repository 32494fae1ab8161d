"""Sense dashboards on the hub: worker processes running an IPython kernel, per user and project.

A dashboard is the engine :mod:`sense.engine` (``sense-ipython-engine``) started by the hub's
spawner, exactly as :mod:`sense._embedded` starts a notebook's workers (both use
:mod:`sense._launch`): an IPython kernel that first runs the dashboard's startup code or
script. Lifecycle (``status``)::

    starting ──kernel up, startup code ran──▶ running ──PATCH stopped / hub stop──▶ stopped
        │                                        │
        └──startup failed / spawn failed─▶ failed └──process exited by itself──▶ stopped (+ error)

Projects are made on first use: ``POST`` to a project that does not exist creates it (its row
and its folder). On disk::

    <data-dir>/projects/<owner>/<project>/            a dashboard's working directory
    <data-dir>/projects/<owner>/<project>/packages/   the project's shared packages
    <data-dir>/dashboards/<id>/                       startup code and kernel connection file

Environment of a dashboard (SPEC section 6), over the hub's own environment and the caller's
``env`` (which cannot override the first seven)::

    SENSE_API_URL             the hub (:attr:`DashboardManager.api_url`)
    SENSE_OWNER_ID            the owner's user name
    SENSE_PROJECT_ID          the project's name
    SENSE_DASHBOARD_ID        this dashboard's id
    SENSE_MASTER_ID           the master's id ("" for a top-level dashboard)
    SENSE_API_TOKEN           an API key of the owner made for this dashboard (see below)
    SENSE_PROJECT_PACKAGES    the project's package directory (where sense.install installs),
                              also first on PYTHONPATH
    SENSE_PUBLIC_DNS          the hub's public_host, else the address dashboards bind
    SENSE_PROJECT_IP          the address dashboards bind (LivePandasHub.worker_ip)

``SENSE_API_TOKEN`` is a regular API key of the owner (note ``sense dashboard <id> of project
<project>``), created when the dashboard is created and revoked when it ends, however it ends
(stopped, failed, exited, the hub stopped, or a restarted hub reaping it). It carries the
owner's full rights on the hub's API — as a dashboard runs the owner's code, it is the owner —
and appears in the owner's ``GET /api/v1/keys/`` listing while the dashboard runs.

Sizes are the embedded backend's (:data:`sense.SIZES`, or :attr:`DashboardManager.sizes`):
``RLIMIT_AS`` and ``RLIMIT_CPU`` of the dashboard's process. Dashboards run as the hub's user:
they are the owner's code, isolated from other users only by convention, as with the canvas
workers.

No dashboard outlives the hub: the engine exits when the hub's end of its stdin closes (even if
the hub is killed), the hub stops every dashboard on SIGTERM, and a restarted hub kills any a
previous one recorded (:meth:`DashboardManager.reap_recorded`). Stopping a dashboard stops the
dashboards it is the master of.

Everything here runs on the hub's event loop.
"""

import asyncio
import json
import os
import shutil
import time

from traitlets import Dict, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from .auth import USERNAME_RE
from .errors import BadRequest, NotFound, TooManySessions

__all__ = ["DashboardManager", "TooManyDashboards", "STATUSES", "ACTIVE"]

STATUSES = ("starting", "running", "stopped", "failed")
ACTIVE = ("starting", "running")

# Set by the hub on every dashboard: the caller's env may not override them.
_IDENTITY = (
    "SENSE_API_URL",
    "SENSE_OWNER_ID",
    "SENSE_PROJECT_ID",
    "SENSE_DASHBOARD_ID",
    "SENSE_MASTER_ID",
    "SENSE_API_TOKEN",
    "SENSE_PROJECT_PACKAGES",
)
# Fields of a POST body, with their other spelling.
_FIELDS = {
    "engine": None,
    "size": None,
    "startup_script": "startupScript",
    "startup_code": "startupCode",
    "env": None,
    "master_id": "masterId",
}
_RETRY_AFTER = 30


class TooManyDashboards(TooManySessions):
    """A dashboard cap is reached (429 with ``Retry-After``)."""


class _Dashboard:
    """A dashboard this hub process started: its spawner and start task."""

    def __init__(self, dashboard_id, owner_id, spawner, run_dir, key_prefix):
        self.id = dashboard_id
        self.owner_id = owner_id
        self.spawner = spawner
        self.run_dir = run_dir
        self.key_prefix = key_prefix
        self.task = None
        self.running = False  # its start succeeded: an exit from now on is reported
        self.stopping = False
        self.ended = False


class DashboardManager(LoggingConfigurable):
    """The dashboards of a hub over its :class:`.db.Database`.

    Parameters
    ----------
    db : Database
    authenticator : Authenticator
        Makes and revokes the dashboards' API keys.
    data_dir : str
        The hub's data directory.
    spawner_factory : callable
        ``spawner_factory(**traits)`` → a new :class:`.spawner.Spawner`.
    hub_url : str
        The hub's URL (the default of :attr:`api_url`).
    ip : str
        The address dashboards' kernels bind (also ``SENSE_PROJECT_IP``).
    public_dns : str
        ``SENSE_PUBLIC_DNS`` ("" means *ip*).
    """

    max_dashboards_per_user = Integer(
        10, help="Most dashboards one user may have starting or running at once (then 429); 0 for no cap."
    ).tag(config=True)
    max_dashboards_per_project = Integer(
        0, help="Most dashboards one project may have starting or running at once (then 429); 0 for no cap."
    ).tag(config=True)
    max_dashboards = Integer(
        50, help="Most dashboards starting or running at once on the hub (then 429); 0 for no cap."
    ).tag(config=True)
    default_size = Unicode("small", help="The size of a dashboard whose POST names none.").tag(config=True)
    sizes = Dict(
        help="Dashboard sizes: name -> {'mem_limit': bytes (RLIMIT_AS), 'cpu_limit': CPU seconds "
        "(RLIMIT_CPU)}; 0 means no limit. Defaults to sense.SIZES, the sizes of the embedded backend.",
    ).tag(config=True)
    engines = Dict(
        help="Engines besides 'sense-ipython-engine': name -> argv (list) or program (str). An engine "
        "must print the LIVEPANDAS_READY line of sense.engine once it runs.",
    ).tag(config=True)
    api_url = Unicode(
        "", help="SENSE_API_URL of the dashboards: how they reach the hub; empty means the hub's own URL."
    ).tag(config=True)
    start_timeout = Float(
        60, help="Seconds a dashboard may take to start its kernel and run its startup code before it fails."
    ).tag(config=True)
    create_wait = Float(
        0,
        help="Seconds a POST waits for the new dashboard to leave 'starting' before answering (clients "
        "poll GET otherwise).",
    ).tag(config=True)
    interrupt_timeout = Float(
        0.1, help="Seconds between SIGINT (interrupts a running cell) and SIGTERM when stopping a dashboard."
    ).tag(config=True)
    term_timeout = Float(2, help="Seconds between SIGTERM and SIGKILL when stopping a dashboard.").tag(config=True)
    history = Float(
        7 * 24 * 3600, help="Seconds an ended dashboard is still listed, before it is forgotten; 0 keeps them."
    ).tag(config=True)

    @default("sizes")
    def _sizes_default(self):
        from sense import SIZES

        return {name: dict(limits) for name, limits in SIZES.items()}

    def __init__(self, db, authenticator, data_dir, spawner_factory, *, hub_url="", ip="127.0.0.1",
                 public_dns="", **kwargs):
        super().__init__(**kwargs)
        self.db = db
        self.authenticator = authenticator
        self.data_dir = data_dir
        self.spawner_factory = spawner_factory
        self.hub_url = hub_url
        self.ip = ip
        self.public_dns = public_dns or ip
        self._live = {}  # id -> _Dashboard
        self._closing = False

    # -- paths ------------------------------------------------------------------------------

    def project_dir(self, owner, project):
        return os.path.join(self.data_dir, "projects", owner, project)

    def packages_dir(self, owner, project):
        return os.path.join(self.project_dir(owner, project), "packages")

    def run_dir(self, dashboard_id):
        return os.path.join(self.data_dir, "dashboards", str(dashboard_id))

    # -- queries ----------------------------------------------------------------------------

    def list(self, user, project, master_id=..., status=None):
        """The dashboards of *user*'s *project* (none for an unknown project), oldest first.

        *master_id* and *status* are the query's filters as given (strings; ``master_id=""``
        means the top-level dashboards).

        Raises
        ------
        BadRequest
            For a malformed project name or filter.
        """
        _check_name(project)
        if master_id is not ...:
            master_id = None if master_id.strip() == "" else _dashboard_id(master_id, "master_id")
        if status is not None:
            statuses = [s.strip() for s in status.split(",") if s.strip()]
            bad = [s for s in statuses if s not in STATUSES]
            if bad or not statuses:
                raise BadRequest(f"status must be one of {', '.join(STATUSES)} (comma-separated), not {status!r:.60}")
            status = tuple(statuses)
        row = self.db.project(user["id"], project)
        if row is None:
            return []
        return self.db.dashboards(row["id"], master_id=master_id, status=status)

    def get(self, user, project, dashboard_id):
        """The dashboard row; :class:`NotFound` unless it is one of *user*'s in *project*."""
        row = None
        if isinstance(dashboard_id, int) or (isinstance(dashboard_id, str) and _is_id(dashboard_id)):
            row = self.db.dashboard(int(dashboard_id))
        if row is None or row["owner_id"] != user["id"] or row["project"] != project:
            raise NotFound(f"project {project!r} has no dashboard {dashboard_id!r:.40}")
        return row

    # -- create -----------------------------------------------------------------------------

    async def create(self, user, project, fields):
        """Start a dashboard in *user*'s *project* (created if new) from a POST body; returns its row.

        Raises
        ------
        BadRequest
            For unknown or mistyped fields, an unknown size or engine, a missing startup script or a
            master that is not a dashboard of the project.
        TooManyDashboards
            When a cap is reached.
        """
        if self._closing:
            raise TooManyDashboards("the hub is shutting down", retry_after=5)
        _check_name(project)
        spec = self._validate(user, project, fields)
        self._check_caps(user, project)
        if self.history:
            self.db.forget_dashboards(time.time() - self.history)

        from sense._launch import connection_options, start_engine, startup_options

        project_row = self.db.ensure_project(user["id"], project)
        project_dir = self.project_dir(user["name"], project)
        packages = self.packages_dir(user["name"], project)
        os.makedirs(packages, mode=0o700, exist_ok=True)
        dashboard_id = self.db.add_dashboard(project_row["id"], spec["engine"], spec["size"], spec["master_id"])
        run_dir = self.run_dir(dashboard_id)
        key_row, key = self.authenticator.create_key(
            user["id"], note=f"sense dashboard {dashboard_id} of project {project}"
        )
        self.db.update_dashboard(dashboard_id, key_prefix=key_row["prefix"], info=dict(spec["limits"]))
        try:
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
            options, _ = startup_options(spec["startup_script"], spec["startup_code"], run_dir)
            spawner = self.spawner_factory(
                cmd=spec["command"] + options + connection_options(spec["engine"], run_dir),
                cwd=project_dir,
                start_timeout=self.start_timeout,
                interrupt_timeout=self.interrupt_timeout,
                term_timeout=self.term_timeout,
                **spec["limits"],
            )
            spawner.env = {**spawner.env, **self._environment(user, project, dashboard_id, spec, key)}
        except Exception as exc:
            self._ended(dashboard_id, user["id"], key_row["prefix"], run_dir, "failed", f"cannot start it: {exc}")
            raise
        dashboard = _Dashboard(dashboard_id, user["id"], spawner, run_dir, key_row["prefix"])
        spawner.on_exit = lambda status: self._on_exit(dashboard, status)
        self._live[dashboard_id] = dashboard
        dashboard.task = asyncio.get_running_loop().create_task(self._start(dashboard, spec, start_engine))
        dashboard.task.add_done_callback(_retrieve)
        self.log.info(
            "user %s started dashboard %s in project %s (%s, %s)",
            user["name"], dashboard_id, project, spec["engine"], spec["size"],
        )
        if self.create_wait > 0:
            await asyncio.wait([dashboard.task], timeout=self.create_wait)
        return self.db.dashboard(dashboard_id)

    def _validate(self, user, project, fields):
        from sense._launch import engine_command, limits_for

        unknown = [name for name in fields if name not in _FIELDS and name not in _FIELDS.values()]
        if unknown:
            valid = ", ".join(_FIELDS)
            raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are: {valid}")
        values = {}
        for name, other in _FIELDS.items():
            value = fields.get(name)
            if other is not None and fields.get(other) not in (None, ""):
                if value not in (None, "") and value != fields[other]:
                    raise BadRequest(f"give {name} or {other}, not both")
                value = fields[other]
            values[name] = value

        engine = values["engine"] if values["engine"] not in (None, "") else "sense-ipython-engine"
        size = values["size"] if values["size"] not in (None, "") else self.default_size
        for name, value in (("engine", engine), ("size", size)):
            if not isinstance(value, str):
                raise BadRequest(f"'{name}' must be a string, not {_type(value)}")
        try:
            limits = limits_for(size, self.sizes)
            command = engine_command(engine, self.ip, self.engines)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

        script, code = values["startup_script"], values["startup_code"]
        for name, value in (("startup_script", script), ("startup_code", code)):
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"'{name}' must be a string, not {_type(value)}")
        if script and code:
            raise BadRequest("startup_script and startup_code are mutually exclusive: give one of them")
        if script:
            if "\0" in script:
                raise BadRequest("'startup_script' is not a valid path")
            script = os.path.join(self.project_dir(user["name"], project), os.path.expanduser(script))
            if not os.path.isfile(script):
                raise BadRequest(f"startup script {os.path.abspath(script)} does not exist")

        return {
            "engine": engine,
            "size": size,
            "limits": limits,
            "command": command,
            "startup_script": script or None,
            "startup_code": code or None,
            "env": _environment_field(values["env"]),
            "master_id": self._master(user, project, values["master_id"]),
        }

    def _master(self, user, project, value):
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise BadRequest(f"'master_id' must be a dashboard id, not {_type(value)}")
        master_id = _dashboard_id(value, "master_id")
        row = self.db.dashboard(master_id)
        if row is None or row["owner_id"] != user["id"] or row["project"] != project:
            raise BadRequest(f"master_id {value!r:.40} is not a dashboard of your project {project!r}")
        return master_id

    def _check_caps(self, user, project):
        if self.max_dashboards_per_project:
            row = self.db.project(user["id"], project)
            if row is not None and self.db.count_dashboards(project_id=row["id"]) >= self.max_dashboards_per_project:
                raise TooManyDashboards(
                    f"project {project!r} has the maximum of {self.max_dashboards_per_project} dashboards running; "
                    "stop one first",
                    retry_after=_RETRY_AFTER,
                )
        if self.max_dashboards_per_user and self.db.count_dashboards(user["id"]) >= self.max_dashboards_per_user:
            raise TooManyDashboards(
                f"you have the maximum of {self.max_dashboards_per_user} dashboards running; stop one first",
                retry_after=_RETRY_AFTER,
            )
        if self.max_dashboards and self.db.count_dashboards() >= self.max_dashboards:
            raise TooManyDashboards(
                f"the hub runs its maximum of {self.max_dashboards} dashboards; try again later",
                retry_after=_RETRY_AFTER,
            )

    def _environment(self, user, project, dashboard_id, spec, key):
        env = {name: value for name, value in spec["env"].items() if name not in _IDENTITY}
        if "SENSE_USERNAME" not in env and "SENSE_PASSWORD" not in env:
            # Credentials the hub itself may have in its environment are not the owner's.
            env.update(SENSE_USERNAME="", SENSE_PASSWORD="")
        packages = self.packages_dir(user["name"], project)
        inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        env.update(
            SENSE_API_URL=(self.api_url or self.hub_url).rstrip("/"),
            SENSE_OWNER_ID=user["name"],
            SENSE_PROJECT_ID=project,
            SENSE_DASHBOARD_ID=str(dashboard_id),
            SENSE_MASTER_ID="" if spec["master_id"] is None else str(spec["master_id"]),
            SENSE_API_TOKEN=key,
            SENSE_PROJECT_PACKAGES=packages,
            PYTHONPATH=packages + (os.pathsep + inherited if inherited else ""),
        )
        env.setdefault("SENSE_PUBLIC_DNS", self.public_dns)
        env.setdefault("SENSE_PROJECT_IP", self.ip)
        return env

    async def _start(self, dashboard, spec, start_engine):
        from sense._launch import record_fields

        spawner = dashboard.spawner
        try:
            info, error, traceback = await start_engine(spawner)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a spawner other than ours may raise anything
            self.log.exception("dashboard %s could not be started", dashboard.id)
            info, error, traceback = {}, f"cannot start it: {exc}", None
        if dashboard.stopping:
            return
        fields = record_fields(info, spec["limits"], getattr(spawner, "pid", None))
        if traceback:
            fields["traceback"] = traceback
        if error is not None:
            self.log.warning("dashboard %s failed to start: %s", dashboard.id, error.splitlines()[0])
            self.db.update_dashboard(dashboard.id, info=fields)
            await self._finish(dashboard, "failed", error)
            return
        exit_status = await spawner.poll()
        if exit_status is not None:
            self.db.update_dashboard(dashboard.id, info=fields)
            await self._finish(dashboard, "stopped", f"exited with status {exit_status} right after starting")
            return
        dashboard.running = True
        self.db.update_dashboard(
            dashboard.id, only_active=True, status="running", info=fields, state=spawner.get_state()
        )
        self._remove_code_files(dashboard)

    # -- stop -------------------------------------------------------------------------------

    async def stop(self, user, project, dashboard_id):
        """Stop one of *user*'s dashboards (idempotent); returns its row.

        Raises
        ------
        NotFound
            Unless it is one of *user*'s dashboards in *project*.
        """
        row = self.get(user, project, dashboard_id)
        await self._stop(row["id"], "stopped", None)
        return self.db.dashboard(row["id"])

    async def _stop(self, dashboard_id, status, error, now=False):
        dashboard = self._live.get(dashboard_id)
        if dashboard is None:
            row = self.db.dashboard(dashboard_id)
            if row is not None and row["status"] in ACTIVE:  # not ours to stop: recorded by a previous hub
                self._ended(dashboard_id, row["owner_id"], row["key_prefix"], self.run_dir(dashboard_id), status, error)
            return
        dashboard.stopping = True
        if not dashboard.ended:
            self.db.update_dashboard(dashboard_id, only_active=True, status=status, error=error, stopped=time.time())
        if dashboard.task is not None and not dashboard.task.done():
            dashboard.task.cancel()
            await asyncio.gather(dashboard.task, return_exceptions=True)
        try:
            await dashboard.spawner.stop(now=now)
        except Exception:
            self.log.exception("could not stop dashboard %s", dashboard_id)
        await self._finish(dashboard, status, error)

    async def _finish(self, dashboard, status, error):
        """Mark *dashboard* ended, revoke its key, remove its files, stop its workers."""
        if dashboard.ended:
            return
        dashboard.ended = True
        self._live.pop(dashboard.id, None)
        self._ended(dashboard.id, dashboard.owner_id, dashboard.key_prefix, dashboard.run_dir, status, error)
        workers = [row["id"] for row in self.db.dashboards(master_id=dashboard.id, status=ACTIVE)]
        if workers:
            self.log.info("dashboard %s ended: stopping its workers %s", dashboard.id, workers)
            await asyncio.gather(*(self._stop(i, "stopped", f"its master {dashboard.id} stopped") for i in workers))

    def _ended(self, dashboard_id, owner_id, key_prefix, run_dir, status, error):
        self.db.update_dashboard(dashboard_id, only_active=True, status=status, error=error, stopped=time.time())
        if key_prefix:
            self.db.revoke_key(owner_id, key_prefix)
        shutil.rmtree(run_dir, ignore_errors=True)

    def _remove_code_files(self, dashboard):
        """The startup code has run: its file is not needed any more (the connection file is)."""
        try:
            names = os.listdir(dashboard.run_dir)
        except OSError:
            return
        for name in names:
            if name.startswith("startup-"):
                try:
                    os.unlink(os.path.join(dashboard.run_dir, name))
                except OSError:
                    pass

    def _on_exit(self, dashboard, status):
        """The spawner's on_exit: a running dashboard's process ended without being stopped."""
        if not dashboard.running or dashboard.stopping or dashboard.ended:
            return None
        self.log.warning("dashboard %s exited on its own with status %s", dashboard.id, status)
        return self._finish(dashboard, "stopped", f"exited on its own with status {status}")

    # -- hub start and stop -----------------------------------------------------------------

    def reap_recorded(self, reap):
        """Kill the dashboards a previous hub left (``reap(state) -> bool``); mark them stopped.

        Blocking (``reap`` waits for each process to exit): run it before serving.
        Returns the number of processes killed.
        """
        killed = 0
        for row in self.db.dashboards(status=ACTIVE):
            state = _json(row["state"])
            if state and reap(state):
                killed += 1
                self.log.info("killed dashboard %s (pid %s) left by the previous hub", row["id"], state.get("pid"))
            self._ended(row["id"], row["owner_id"], row["key_prefix"], self.run_dir(row["id"]), "stopped",
                        "the hub restarted")
        return killed

    async def close(self):
        """Stop every dashboard (the hub is shutting down)."""
        self._closing = True
        ids = list(self._live)
        await asyncio.gather(*(self._stop(i, "stopped", "the hub stopped") for i in ids))
        for row in self.db.dashboards(status=ACTIVE):  # none should be left; mark any stragglers
            self._ended(row["id"], row["owner_id"], row["key_prefix"], self.run_dir(row["id"]), "stopped",
                        "the hub stopped")


def _check_name(project):
    if not isinstance(project, str) or not USERNAME_RE.fullmatch(project):
        raise BadRequest(
            f"{project!r:.70} is not a project name: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _is_id(text):
    return text.isascii() and text.isdigit() and len(text) < 19


def _dashboard_id(value, name):
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and _is_id(value.strip()):
        return int(value.strip())
    raise BadRequest(f"'{name}' must be a dashboard id (a positive integer), not {value!r:.40}")


def _environment_field(value):
    """The caller's ``env``: a JSON object of names to strings (numbers are turned into strings)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):  # a form field carries it as JSON
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest("'env' must be an object of environment variables (in a form: its JSON)") from None
    if not isinstance(value, dict):
        raise BadRequest(f"'env' must be an object of environment variables, not {_type(value)}")
    env = {}
    for name, item in value.items():
        if not name or "=" in name or "\0" in name:
            raise BadRequest(f"{name!r:.60} is not an environment variable name")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise BadRequest(f"env[{name!r:.60}] must be a string, not {_type(item)}")
        item = str(item)
        if "\0" in item:
            raise BadRequest(f"env[{name!r:.60}] contains a NUL character")
        env[name] = item
    return env


def _type(value):
    return {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _json(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _retrieve(task):
    if not task.cancelled():
        task.exception()
