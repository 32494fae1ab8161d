"""``livepandas-hub``: the hub application (a traitlets ``Application``, like JupyterHub's).

::

    livepandas-hub [--ip 127.0.0.1] [--port 8000] [--data-dir DIR] [--session-timeout 300]
    livepandas-hub create-user NAME [--password P] [--data-dir DIR]

Every option is a trait of :class:`LivePandasHub`, settable on the command line
(``--LivePandasHub.max_sessions=50``) or in a config file, ``livepandas_hub_config.py`` in the
working directory or the data directory (``c.LivePandasHub.warm_pool_size = 4``,
``c.LocalProcessSpawner.mem_limit = 2**30``); ``--config FILE`` names another.

The data directory (created with mode 0700) holds everything that must survive a restart:
``hub.sqlite`` (users, hashed keys, canvases, sessions, dashboards; see :mod:`.db`),
``canvases/<id>/`` and the Sense projects' folders ``projects/<owner>/<project>/`` (see
:mod:`.dashboards`).

Once listening, the hub logs its URL and writes one line to stdout,
``LIVEPANDAS_HUB_READY {"url": "http://127.0.0.1:8000/"}``, for scripts and tests that start it
with ``--port 0``. SIGTERM or SIGINT stops it cleanly: no new requests, every worker stopped,
every session marked stopped. If it is killed instead, its workers exit on their own (their stdin
closes) and the next start kills any that did not (see :mod:`.sessions`).

Routes come from the ``default_handlers`` of the modules in :data:`HANDLER_MODULES`, in order.
"""

import asyncio
import importlib
import json
import logging
import os
import re
import signal
import socket
import stat
import sys

from traitlets import Bool, Bytes, Float, Integer, List, TraitError, Type, Unicode, default, validate
from traitlets.config import Application, catch_config_error

from .._version import __version__

__all__ = ["LivePandasHub", "CreateUserApp", "main", "HANDLER_MODULES", "READY"]

READY = "LIVEPANDAS_HUB_READY"
CONFIG_FILE = "livepandas_hub_config.py"

#: Modules whose ``default_handlers`` make the hub's routes (web pages and the OpenAPI document
#: add theirs here). The first match wins, so more specific modules come first.
HANDLER_MODULES = [
    "livepandas_ipython.hub.apihandlers",
    "livepandas_ipython.hub.pages",
]

_MiB = 1024 * 1024

aliases = {
    "ip": "LivePandasHub.ip",
    "port": "LivePandasHub.port",
    "data-dir": "LivePandasHub.data_dir",
    "session-timeout": "LivePandasHub.session_timeout",
    "config": "LivePandasHub.config_file",
    "warm-pool-size": "LivePandasHub.warm_pool_size",
    "max-sessions": "LivePandasHub.max_sessions",
    "log-level": "Application.log_level",
}

flags = {
    "debug": ({"Application": {"log_level": 10}}, "Log at DEBUG level."),
}


class _SecretBytes(Bytes):
    """Bytes, also given as a hex string (on the command line, in the environment, in a config file)."""

    info_text = "bytes or a hex string"

    def validate(self, obj, value):
        if isinstance(value, str):
            try:
                value = bytes.fromhex(value)
            except ValueError:
                raise TraitError(f"{self.name} must be bytes or a hex string") from None
        return super().validate(obj, value)

    def from_string(self, s):
        return s


class CreateUserApp(Application):
    """``livepandas-hub create-user NAME [--password P] [--data-dir DIR]``."""

    name = "livepandas-hub create-user"
    description = (
        "Create a hub user and a first API key. The key is printed as the last line of output; "
        "it is stored only as a hash, so keep it."
    )
    examples = "livepandas-hub create-user alice --password s3cret --data-dir /srv/livepandas"

    password = Unicode("", help="The user's password (for web log-in and HTTP Basic); none by default.").tag(
        config=True
    )

    aliases = {
        "password": "CreateUserApp.password",
        "data-dir": "LivePandasHub.data_dir",
        "config": "LivePandasHub.config_file",
        "log-level": "Application.log_level",
    }
    flags = {}

    def start(self):
        from .auth import Authenticator
        from .errors import APIError

        if len(self.extra_args) != 1:
            self.log.critical("create-user takes exactly one user NAME (got %d arguments)", len(self.extra_args))
            self.exit(2)
        hub = self.parent if isinstance(self.parent, LivePandasHub) else LivePandasHub()
        # The hub only saw the subcommand; give it this command line, then its config file.
        hub.update_config(self.config)
        hub.load_hub_config()
        hub.update_config(self.cli_config)
        hub.init_data_dir()
        db = hub.open_db()
        try:
            _, key = Authenticator(db).create_user(self.extra_args[0], self.password or None)
        except APIError as exc:
            print(f"livepandas-hub create-user: {exc}", file=sys.stderr)
            self.exit(1)
        finally:
            db.close()
        print(f"created user {self.extra_args[0]} in {hub.data_dir}; API key:")
        print(key, flush=True)


class LivePandasHub(Application):
    """The hub: canvases, sessions and accounts over a REST API, with worker processes."""

    name = "livepandas-hub"
    version = __version__
    description = (
        "Host livepandas canvases: users upload them, anyone with a canvas id gets a private session "
        "(a worker process serving the canvas) through the REST API."
    )
    examples = """
livepandas-hub --port 8000 --data-dir /srv/livepandas
livepandas-hub create-user alice --data-dir /srv/livepandas
livepandas-hub --LivePandasHub.max_sessions=50 --session-timeout 600
"""
    aliases = aliases
    flags = flags
    subcommands = {
        "create-user": (CreateUserApp, CreateUserApp.description),
    }

    classes = List()

    @default("classes")
    def _classes_default(self):
        from .dashboards import DashboardManager
        from .pool import WorkerPool
        from .spawner import LocalProcessSpawner, Spawner

        return [LivePandasHub, CreateUserApp, WorkerPool, Spawner, LocalProcessSpawner, DashboardManager]

    @default("log_level")
    def _log_level_default(self):
        return logging.INFO

    @default("log_format")
    def _log_format_default(self):
        return "[%(name)s %(asctime)s %(levelname)s] %(message)s"

    # -- data -------------------------------------------------------------------------------

    data_dir = Unicode(
        "livepandas-hub-data",
        help="Directory of the hub's database and canvas files (created with mode 0700). "
        "Relative paths are from the working directory. (env: LIVEPANDAS_HUB_DATA_DIR)",
    ).tag(config=True)

    @default("data_dir")
    def _data_dir_default(self):
        return os.environ.get("LIVEPANDAS_HUB_DATA_DIR", "livepandas-hub-data")

    config_file = Unicode(
        "",
        help=f"Config file to load; by default {CONFIG_FILE} in the working directory, "
        "then in the data directory.",
    ).tag(config=True)

    def load_hub_config(self):
        """Load the config file (command-line options keep precedence)."""
        if self.config_file:
            path = os.path.abspath(self.config_file)
            if not os.path.isfile(path):
                self.log.critical("config file %s does not exist", path)
                self.exit(1)
            self.load_config_file(os.path.basename(path), path=[os.path.dirname(path)])
        else:
            self.load_config_file(CONFIG_FILE, path=[os.getcwd(), os.path.abspath(self.data_dir)])

    def init_data_dir(self):
        """Create the data directory (0700), or warn when an existing one is open to others."""
        path = self.data_dir = os.path.abspath(self.data_dir)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            self.log.critical("cannot create the data directory %s: %s", path, exc.strerror or exc)
            self.exit(1)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            self.log.warning(
                "data directory %s is accessible to other users (mode %o); consider chmod 700", path, mode
            )

    def open_db(self):
        from .db import Database

        try:
            return Database(os.path.join(self.data_dir, "hub.sqlite"))
        except (RuntimeError, OSError) as exc:
            self.log.critical("cannot open the database: %s", exc)
            self.exit(1)

    # -- network ----------------------------------------------------------------------------

    ip = Unicode("127.0.0.1", help="Address the hub listens on ('' or 0.0.0.0: every interface).").tag(config=True)
    port = Integer(8000, help="Port the hub listens on; 0 picks a free one (see the ready line).").tag(config=True)
    worker_ip = Unicode(
        "",
        help="Address workers bind; empty means the hub's --ip (127.0.0.1 when that is every interface "
        "and public_host is not set).",
    ).tag(config=True)
    public_host = Unicode(
        "",
        help="Host name put in a session's socket ('host:port') instead of the worker's address; set it "
        "when browsers reach workers under another name.",
    ).tag(config=True)
    trust_xheaders = Bool(
        False,
        help="Behind a reverse proxy: take the client's address and scheme from X-Real-Ip/X-Forwarded-For "
        "and X-Scheme/X-Forwarded-Proto (so the URLs in answers say https).",
    ).tag(config=True)
    cors_origin = Unicode(
        "*",
        help="Access-Control-Allow-Origin of the session API: '*' lets pages anywhere create sessions.",
    ).tag(config=True)

    # -- sessions ---------------------------------------------------------------------------

    session_timeout = Float(
        300, help="Seconds after a session's last activity (API call or call on its worker) when it stops."
    ).tag(config=True)
    session_create_wait = Float(
        1.0,
        help="Seconds POST /api/v1/canvas_sessions/ waits for the worker before answering with socket null "
        "(the client then polls).",
    ).tag(config=True)
    session_history = Float(
        3600, help="Seconds an ended session still answers GET with its final status, before it is forgotten."
    ).tag(config=True)
    cull_interval = Float(
        0, help="Seconds between checks for expired sessions; 0 picks session_timeout/4, between 0.1 and 10."
    ).tag(config=True)
    max_sessions = Integer(100, help="Most sessions active at once on the hub (then 429); 0 for no cap.").tag(
        config=True
    )
    max_sessions_per_canvas = Integer(
        100, help="Most sessions active at once on one canvas (then 429); 0 for no cap."
    ).tag(config=True)

    # -- workers ----------------------------------------------------------------------------

    spawner_class = Type(
        "livepandas_ipython.hub.spawner.LocalProcessSpawner",
        klass="livepandas_ipython.hub.spawner.Spawner",
        help="The Spawner subclass that starts workers (configure it as c.<ClassName>.<trait>).",
    ).tag(config=True)
    warm_pool_size = Integer(
        2, help="Workers kept started and waiting for a canvas, so a new session gets a socket at once."
    ).tag(config=True)

    # -- limits -----------------------------------------------------------------------------

    max_body_size = Integer(80 * _MiB, help="Largest canvas upload (request body, bytes); larger answers 413.").tag(
        config=True
    )
    max_request_size = Integer(
        64 * 1024, help="Largest body of the other API requests (bytes); larger answers 413."
    ).tag(config=True)
    max_python_size = Integer(_MiB, help="Largest canvas Python source (bytes, UTF-8).").tag(config=True)
    max_html_size = Integer(5 * _MiB, help="Largest canvas HTML view (bytes, UTF-8).").tag(config=True)
    max_static_size = Integer(50 * _MiB, help="Largest total of a canvas's static files (bytes, decoded).").tag(
        config=True
    )
    max_static_files = Integer(1000, help="Most static files in one canvas.").tag(config=True)

    log_requests = Bool(True, help="Log every request (INFO for success, WARNING for 4xx, ERROR for 5xx).").tag(
        config=True
    )

    # -- web pages --------------------------------------------------------------------------

    allow_registration = Bool(
        True, help="Let anyone create an account on the /register page (False: it answers 403)."
    ).tag(config=True)
    cookie_secret = _SecretBytes(
        b"",
        help="Key signing the log-in cookies of the web pages: bytes, or a hex string (at least 32 bytes). "
        "Empty: the file cookie_secret in the data directory (mode 0600), created on the first start, so "
        "log-ins survive restarts. (env: LIVEPANDAS_HUB_COOKIE_SECRET, hex)",
    ).tag(config=True)
    cookie_max_age_days = Float(14, help="Days a web log-in lasts before the user logs in again.").tag(config=True)

    @default("cookie_secret")
    def _cookie_secret_default(self):
        return os.environ.get("LIVEPANDAS_HUB_COOKIE_SECRET", "")

    @validate("cookie_secret")
    def _valid_cookie_secret(self, proposal):
        value = proposal["value"]
        if value and len(value) < 32:
            raise TraitError("cookie_secret must be at least 32 bytes (64 hex digits)")
        return value

    @validate("port")
    def _valid_port(self, proposal):
        if not 0 <= proposal["value"] <= 65535:
            raise TraitError(f"port must be between 0 and 65535, not {proposal['value']}")
        return proposal["value"]

    @validate("session_timeout")
    def _valid_timeout(self, proposal):
        if proposal["value"] <= 0:
            raise TraitError("session_timeout must be positive")
        return proposal["value"]

    # -- set-up -----------------------------------------------------------------------------

    @catch_config_error
    def initialize(self, argv=None):
        super().initialize(argv)
        if self.subapp is not None:
            return
        if self.extra_args:
            self.log.critical("unexpected arguments: %s (see livepandas-hub --help)", " ".join(self.extra_args))
            self.exit(2)
        self.load_hub_config()
        self.init_data_dir()
        self.init_logging()
        self.db = self.open_db()
        self.init_stores()
        self.init_cookie_secret()

    def init_logging(self):
        """Send the loggers of the hub's parts (and Tornado's) through the application's handler."""
        for name in ("livepandas.hub", "livepandas.server", "tornado.access", "tornado.application", "tornado.general"):
            logger = logging.getLogger(name)
            logger.parent = self.log
            logger.setLevel(self.log_level)

    def init_stores(self):
        from .auth import Authenticator
        from .canvases import CanvasStore, Limits

        self.authenticator = Authenticator(self.db)
        limits = Limits(
            python=self.max_python_size,
            html=self.max_html_size,
            static=self.max_static_size,
            static_files=self.max_static_files,
        )
        self.canvases = CanvasStore(self.db, os.path.join(self.data_dir, "canvases"), limits)
        self.canvases.recover()

    def init_cookie_secret(self):
        """Use :attr:`cookie_secret`, else the data directory's file (created on the first start)."""
        from .pages import load_cookie_secret

        if not self.cookie_secret:
            try:
                self.cookie_secret = load_cookie_secret(self.data_dir)
            except RuntimeError as exc:
                self.log.critical("%s", exc)
                self.exit(1)

    @property
    def resolved_worker_ip(self):
        if self.worker_ip:
            return self.worker_ip
        if self.ip in ("", "0.0.0.0", "::") and not self.public_host:
            return "127.0.0.1"
        return self.ip or "0.0.0.0"

    def new_spawner(self, **kwargs):
        """A spawner of :attr:`spawner_class`, configured from this hub's config."""
        return self.spawner_class(parent=self, log=self.log, **kwargs)

    def init_pool(self):
        """The worker pool (on the running loop), already warming up."""
        from .pool import WorkerPool

        pool = WorkerPool(
            self.new_spawner,
            parent=self,
            warm=self.warm_pool_size,
            # Sessions are capped by max_sessions; the pool only needs room for them and the warm ones.
            max_workers=(self.max_sessions + self.warm_pool_size) if self.max_sessions else 0,
            ip=self.resolved_worker_ip,
        )
        return pool.start()

    def init_sessions(self, pool):
        from .sessions import SessionManager

        self.pool = pool
        self.sessions = SessionManager(
            self.db,
            self.canvases,
            pool,
            timeout=self.session_timeout,
            max_sessions=self.max_sessions,
            max_per_canvas=self.max_sessions_per_canvas,
            create_wait=self.session_create_wait,
            history=self.session_history,
            public_host=self.public_host,
            logger=self.log,
        )

    def init_dashboards(self):
        """The Sense dashboards (configured as ``c.DashboardManager.<trait>``)."""
        from .dashboards import DashboardManager

        self.dashboards = DashboardManager(
            self.db,
            self.authenticator,
            self.data_dir,
            self.new_spawner,
            hub_url=self.url,
            ip=self.resolved_worker_ip,
            public_dns=self.public_host,
            parent=self,
            log=self.log,
        )

    def init_handlers(self):
        handlers = []
        for name in HANDLER_MODULES:
            handlers.extend(importlib.import_module(name).default_handlers)
        return handlers

    def make_app(self):
        import tornado.web

        from . import pages
        from .apihandlers.base import NotFoundHandler

        settings = dict(
            hub=self,
            max_body_size=self.max_body_size,
            max_request_size=self.max_request_size,
            cors_origin=self.cors_origin,
            # Unknown paths: an HTML page, but the JSON 404 under the REST APIs (the last rule).
            default_handler_class=pages.NotFoundPage,
            compress_response=True,
            template_path=pages.TEMPLATE_PATH,
            static_path=pages.STATIC_PATH,
            static_url_prefix=pages.STATIC_URL_PREFIX,
            static_handler_class=pages.StaticHandler,
            cookie_secret=self.cookie_secret,
            xsrf_cookies=True,
            xsrf_cookie_kwargs=dict(httponly=True, samesite="Lax"),
            login_url="/login",
        )
        settings["log_function"] = log_request if self.log_requests else _no_log
        api_404 = (r"(?:%s).*" % "|".join(re.escape(p) for p in pages.API_PREFIXES), NotFoundHandler)
        return tornado.web.Application([*self.init_handlers(), api_404], **settings)

    # -- run --------------------------------------------------------------------------------

    async def delete_canvas(self, canvas_id, owner_id):
        """Delete a canvas of *owner_id* after stopping its sessions (NotFound if not theirs)."""
        row = self.canvases.get(canvas_id, owner_id)
        await self.sessions.stop_canvas(row["id"])
        await self.canvases.delete(row["id"], owner_id)

    def start(self):
        if self.subapp is not None:
            return self.subapp.start()
        try:
            asyncio.run(self.serve())
        except OSError as exc:
            self.log.critical("cannot listen on %s:%s: %s", self.ip, self.port, exc.strerror or exc)
            self.exit(1)

    async def serve(self):
        """Serve until SIGTERM or SIGINT, then shut down cleanly."""
        from tornado.httpserver import HTTPServer
        from tornado.netutil import bind_sockets

        from .spawner import reap_orphan

        loop = asyncio.get_running_loop()
        killed = await loop.run_in_executor(None, self._reap_recorded, reap_orphan)
        if killed:
            self.log.info("killed %d worker(s) left running by the previous hub", killed)
        sockets = bind_sockets(self.port, self.ip or None)
        self.port = sockets[0].getsockname()[1]
        pool = self.init_pool()
        self.init_sessions(pool)
        self.init_dashboards()
        server = HTTPServer(self.make_app(), max_body_size=self.max_body_size, xheaders=self.trust_xheaders)
        server.add_sockets(sockets)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        culler = loop.create_task(self._cull_loop())
        try:
            self.log.info("livepandas hub %s running at %s (data in %s)", __version__, self.url, self.data_dir)
            print(f"{READY} {json.dumps({'url': self.url})}", flush=True)
            await stop.wait()
            self.log.info("stopping: no new requests; stopping every session and worker")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            server.stop()
            culler.cancel()
            await asyncio.gather(culler, return_exceptions=True)
            await self.dashboards.close()
            await self.sessions.close()
            await pool.close()
            try:
                await asyncio.wait_for(server.close_all_connections(), 2)
            except asyncio.TimeoutError:
                pass
            self.db.close()
            self.log.info("hub stopped")

    def _reap_recorded(self, reap):
        from .sessions import SessionManager

        from .dashboards import DashboardManager

        # Only the database is needed to find what the previous hub recorded.
        killed = SessionManager(self.db, self.canvases, None, logger=self.log).reap_recorded(reap)
        dashboards = DashboardManager(self.db, self.authenticator, self.data_dir, None, parent=self, log=self.log)
        return killed + dashboards.reap_recorded(reap)

    @property
    def url(self):
        host = self.ip
        if host in ("", "0.0.0.0", "::"):
            host = self.public_host or socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def _cull_loop(self):
        interval = self.cull_interval or min(10.0, max(0.1, self.session_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sessions.cull()
            except Exception:
                self.log.exception("error while stopping expired sessions")


def log_request(handler):
    """Log a finished request: polls and other successful reads at DEBUG (browsers poll sessions
    every second), other successes at INFO, client errors at WARNING, server errors at ERROR."""
    status = handler.get_status()
    request = handler.request
    if status >= 500:
        level = logging.ERROR
    elif status >= 400:
        level = logging.WARNING
    elif request.method in ("GET", "HEAD", "OPTIONS"):
        level = logging.DEBUG
    else:
        level = logging.INFO
    logger = logging.getLogger("tornado.access")
    if logger.isEnabledFor(level):
        # Session ids are credentials: keep them out of the log.
        path = re.sub(r"(/api/v1/canvas[_-]sessions/)[^/?]+", r"\1…", request.path)
        logger.log(level, "%d %s %s (%s) %.2fms", status, request.method, path, request.remote_ip,
                   1000.0 * request.request_time())


def _no_log(handler):
    pass


def main(argv=None):
    """The ``livepandas-hub`` console script."""
    LivePandasHub.launch_instance(argv)


if __name__ == "__main__":
    main()
