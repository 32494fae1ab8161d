"""``%%canvas`` and ``%livepandas``: the notebook front-end over :class:`~.manager.CanvasManager`.

Every option is a trait of :class:`LivePandasMagics` (``%config LivePandasMagics.port = 9000``,
``c.LivePandasMagics.port`` in ``ipython_config.py``); environment variables only supply defaults.
User mistakes raise exactly :class:`IPython.core.error.UsageError`, naming what is valid.
"""

import ast
import os
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display
from traitlets import Bool, Float, Integer, List, Unicode, default, observe

from .errors import ArgumentError, CanvasError, FunctionNotFound, LivePandasError
from .parser import ArgumentParser, HelpShown

__all__ = ["LivePandasMagics"]

LINE_COMMANDS = ("serve", "stop", "list", "status", "test", "upload", "preview")

# Chosen with benchmarks/bench_kernel.py; see its README section.
DEFAULT_SWITCH_INTERVAL = 0.0002


def _env_int(name, fallback):
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return fallback


def _usage(prefix, exc):
    usage = " ".join(exc.usage.split()) if getattr(exc, "usage", "") else ""
    return UsageError(f"{prefix}: {exc}" + (f"\n{usage}" if usage else ""))


@magics_class
class LivePandasMagics(Magics):
    """Serve a notebook's ``livepandas_*`` functions live, from this kernel."""

    port = Integer(help="Port tried first for a new canvas; a free one is used when it is taken (env: LIVEPANDAS_PORT).").tag(config=True)

    @default("port")
    def _port_default(self):
        return _env_int("LIVEPANDAS_PORT", 8888)

    host = Unicode(help="Address canvas servers bind (env: LIVEPANDAS_HOST).").tag(config=True)

    @default("host")
    def _host_default(self):
        return os.environ.get("LIVEPANDAS_HOST", "127.0.0.1")

    url_pattern = Unicode(
        help="Base URL of a canvas as the browser reaches it, with {port}, {host} and {canvas} filled in, "
        "e.g. 'https://hub.example.org/user/me/proxy/{port}/'. Empty: detect JupyterHub "
        "(JUPYTERHUB_SERVICE_PREFIX) or use the loopback URL (env: LIVEPANDAS_URL_PATTERN)."
    ).tag(config=True)

    @default("url_pattern")
    def _url_pattern_default(self):
        return os.environ.get("LIVEPANDAS_URL_PATTERN", "")

    debug = Bool(True, help="Include tracebacks of function errors in replies.").tag(config=True)
    height = Integer(320, help="Height in pixels of the view's iframe in previews (%%canvas --height overrides).").tag(
        config=True
    )
    preview = Bool(True, help="Show the inline preview after each %%canvas cell.").tag(config=True)
    widgets = Bool(True, help="Include an ipywidgets form per function in the preview.").tag(config=True)
    allow_origins = List(
        Unicode(), help="Browser origins allowed to call canvases cross-site ('*' for any)."
    ).tag(config=True)
    max_workers = Integer(0, help="Threads for plain functions per canvas (0: min(32, cpus + 4)).").tag(config=True)
    inline_budget = Float(
        0.001,
        help="Seconds. A plain function whose calls keep within this budget (five in a row on the thread pool) "
        "is then called on the server's own thread, saving a thread hand-off and, in a busy kernel, two waits "
        "for the GIL per call; its first call over the budget sends it back to the pool for good. 0: always "
        "use the pool.",
    ).tag(config=True)

    call_timeout = Float(
        None,
        allow_none=True,
        min=0.0,
        help="Seconds a call (or a stream's step) may take before it answers 504 CallTimeout; None or 0: no "
        "limit. A timed-out plain function keeps its thread until it returns (threads can't be stopped); "
        "while every thread of a canvas holds one, calls answer 503 ServerBusy. Turns inline_budget off.",
    ).tag(config=True)

    hub_url = Unicode(
        help="The hub %livepandas upload publishes to (env: LIVEPANDAS_HUB_URL; default http://127.0.0.1:8000)."
    ).tag(config=True)

    @default("hub_url")
    def _hub_url_default(self):
        return os.environ.get("LIVEPANDAS_HUB_URL", "http://127.0.0.1:8000")

    hub_user = Unicode(
        help="The user name %livepandas upload sends to the hub; empty: asked (env: LIVEPANDAS_USERNAME). "
        "The API key comes from -K, else LIVEPANDAS_API_KEY, else a hidden prompt."
    ).tag(config=True)

    @default("hub_user")
    def _hub_user_default(self):
        return os.environ.get("LIVEPANDAS_USERNAME", "")

    switch_interval = Float(
        help="The interpreter's thread switch interval (sys.setswitchinterval), in seconds, while a canvas "
        "answers calls. A busy cell and the server thread share the GIL: with Python's default of 5 ms every "
        "request waits out whole intervals while a CPU-bound cell runs. The interval is lowered at a canvas's "
        "first call and restored after half a second without calls, so an idle canvas costs the cell nothing; "
        "under load the cell gives the server its share of the CPU. 0 leaves the interpreter's setting alone "
        "(env: LIVEPANDAS_SWITCH_INTERVAL)."
    ).tag(config=True)

    @default("switch_interval")
    def _switch_interval_default(self):
        try:
            return float(os.environ["LIVEPANDAS_SWITCH_INTERVAL"])
        except (KeyError, ValueError):
            return DEFAULT_SWITCH_INTERVAL

    @observe("switch_interval")
    def _switch_interval_changed(self, change):
        if self._manager is not None:
            self._manager.switch_interval = change["new"]

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._manager = None

    @property
    def manager(self):
        """The shell's :class:`CanvasManager`, with the current traits (``%config`` applies next start)."""
        if self._manager is None:
            from .manager import CanvasManager

            self._manager = CanvasManager()
        manager = self._manager
        manager.default_port = self.port
        manager.host = self.host
        manager.switch_interval = self.switch_interval
        manager.server_options = dict(
            debug=self.debug,
            allow_origins=tuple(self.allow_origins),
            max_workers=self.max_workers or None,
            inline_budget=self.inline_budget,
            call_timeout=self.call_timeout or None,
        )
        return manager

    def close(self):
        """Stop every canvas server and release its port (``%unload_ext``)."""
        if self._manager is not None:
            self._manager.close()  # restores the switch interval
            self._manager = None

    # -- %%canvas ---------------------------------------------------------------------------

    @staticmethod
    def canvas_parser():
        p = ArgumentParser(prog="%%canvas", add_help=False)
        p.add_argument("name", nargs="?", default="default")
        p.add_argument("--port", type=int)
        p.add_argument("--host")
        p.add_argument("--html", metavar="FILE")
        p.add_argument("--static", metavar="DIR")
        p.add_argument("--view", action="store_true")
        p.add_argument("--no-preview", action="store_true")
        p.add_argument("--height", type=int, metavar="PIXELS")
        return p

    @cell_magic
    def canvas(self, line, cell):
        """Serve this cell's ``livepandas_<name>`` functions as canvas NAME (default ``default``).

        Usage: ``%%canvas [NAME] [--port P] [--host H] [--html FILE] [--static DIR] [--view] [--no-preview]
        [--height PIXELS]``

        The cell runs in the notebook's namespace, so the functions see notebook variables.
        Running it again swaps the functions on the same port. With ``--view`` the cell body is
        the canvas's HTML view instead.
        """
        args = self._parse(self.canvas_parser(), line, "%%canvas")
        html = self._read(args.html, "HTML view") if args.html else None
        if args.static and not os.path.isdir(args.static):
            raise UsageError(f"%%canvas: static directory {args.static} does not exist")
        if args.view and args.html:
            raise UsageError("%%canvas: --view takes the view from the cell and --html from a file; use one of them")
        if args.view:
            server = self._apply(
                lambda: self.manager.set_view(
                    args.name, html=cell, static_dir=args.static, port=args.port, host=args.host
                )
            )
        else:
            canvas = self._run_cell(args.name, cell)
            current = self.manager.servers.get(args.name)
            changes = {}
            if html is not None:
                changes["html"] = html
            elif current is not None:
                changes["html"] = current.canvas.html
            if args.static:
                changes["static_dir"] = args.static
            elif current is not None:
                changes["static_dir"] = current.canvas.static_dir
            canvas = canvas.replace(**changes)
            server = self._apply(lambda: self.manager.publish(args.name, canvas, port=args.port, host=args.host))
        if self.preview and not args.no_preview:
            # A view cell shows the view; the forms belong to the functions' cell.
            self._show_preview(args.name, server, forms=not args.view, height=args.height)

    def _run_cell(self, name, cell):
        from .canvas import Canvas, collect_functions, defined_names

        source = self.shell.transform_cell(cell)
        try:
            tree = ast.parse(source)
        except SyntaxError:
            tree = None  # run_cell reports it with IPython's usual formatting
        result = self.shell.run_cell(cell, store_history=False)
        if not result.success:
            kept = "keeps its functions" if name in self.manager.servers else "was not started"
            raise UsageError(f"%%canvas: the cell failed, so canvas {name!r} {kept} (error above)")
        functions = collect_functions(self.shell.user_ns, defined_names(tree))
        if not functions:
            raise UsageError(
                f"%%canvas: this cell defines no function named livepandas_<name>, so canvas {name!r} has nothing to serve"
            )
        return Canvas(functions, name=name, source=cell)

    def _apply(self, start):
        try:
            server = start()
        except LivePandasError as exc:
            raise UsageError(f"%%canvas: {exc}") from None
        return server

    def _show_preview(self, name, server, forms=True, height=None):
        from .display import CanvasPreview

        display(CanvasPreview(name, server, self.url_pattern, iframe_height=height or self.height))
        if forms and self.widgets and server.canvas.functions:
            try:
                from .widgets import canvas_forms
            except ImportError:  # ipywidgets missing: the table and the view are enough
                return
            display(canvas_forms(server.canvas, self._call_json))

    def _call_json(self, name, kwargs, canvas_name=None):
        from . import jsonutil
        from .commands import test

        canvas = self._find_canvas(name, canvas_name)
        return test.run(canvas, name, jsonutil.dumps(kwargs).decode())

    def _find_canvas(self, function, canvas_name=None):
        if canvas_name is not None:
            return self.manager.get(canvas_name).canvas
        for server in self.manager.servers.values():
            if function in server.canvas.functions:
                return server.canvas
        served = ", ".join(
            f"{n} ({', '.join(s.canvas.functions) or 'no functions'})" for n, s in self.manager.servers.items()
        )
        raise FunctionNotFound(f"no served canvas has a function {function!r}; served: {served or 'none'}")

    # -- %livepandas ------------------------------------------------------------------------

    @line_magic
    def livepandas(self, line):
        """Manage this kernel's canvases: ``%livepandas serve|stop|list|status|test|upload|preview ...``

        - ``serve [NAME] -P CODE.PY [-H VIEW.HTML] [-S DIR] [--port P] [--host H]``: serve a file
        - ``stop [NAME ...]``: stop canvases (all with no name) and free their ports
        - ``list``: the served canvases, their ports and URLs
        - ``status [NAME]``: ports, URLs, functions, call counts and the last error
        - ``test FUNCTION [--canvas NAME] [--kwargs JSON]``: call a function here, print its JSON result
        - ``upload [NAME] [--session] [--hub URL] [-U USER] [-K KEY] [--name NAME]``: check that the
          canvas's code runs on its own, then publish it (code, view, static files) to a hub
        - ``preview [NAME]``: show a canvas's preview again
        """
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%livepandas: {exc}") from None
        valid = ", ".join(LINE_COMMANDS)
        if not argv:
            raise UsageError(f"%livepandas needs a command. Valid commands are: {valid}")
        command, rest = argv[0], argv[1:]
        if command not in LINE_COMMANDS:
            raise UsageError(f"%livepandas has no command {command!r}. Valid commands are: {valid}")
        handler = getattr(self, f"_cmd_{command}")
        parser = getattr(self, f"_parser_{command}")()
        args = self._parse(parser, rest, f"%livepandas {command}")
        try:
            return handler(args)
        except (LivePandasError, CanvasError) as exc:
            raise UsageError(f"%livepandas {command}: {exc}") from None

    @staticmethod
    def _parse(parser, argv, prefix):
        if isinstance(argv, str):
            try:
                argv = shlex.split(argv)
            except ValueError as exc:
                raise UsageError(f"{prefix}: {exc}") from None
        try:
            return parser.parse_args(argv)
        except ArgumentError as exc:
            raise _usage(prefix, exc) from None
        except HelpShown:
            raise UsageError(" ".join(parser.format_usage().split())) from None

    @staticmethod
    def _parser_serve():
        p = ArgumentParser(prog="%livepandas serve", add_help=False)
        p.add_argument("name", nargs="?")
        p.add_argument("-P", "--python", required=True, metavar="CODE.PY")
        p.add_argument("-H", "--html", metavar="VIEW.HTML")
        p.add_argument("-S", "--static", metavar="DIR")
        p.add_argument("--port", type=int)
        p.add_argument("--host")
        return p

    def _cmd_serve(self, args):
        from .canvas import Canvas

        canvas = Canvas.from_file(args.python, html_path=args.html, static_dir=args.static)
        name = args.name or canvas.name
        canvas = canvas.replace(name=name)
        server = self.manager.publish(name, canvas, port=args.port, host=args.host)
        self._show_preview(name, server)

    @staticmethod
    def _parser_stop():
        p = ArgumentParser(prog="%livepandas stop", add_help=False)
        p.add_argument("names", nargs="*", metavar="NAME")
        return p

    def _cmd_stop(self, args):
        names = args.names or list(self.manager.servers)
        for name in names:
            port = self.manager.get(name).port
            self.manager.stop(name)
            print(f"Stopped canvas {name!r} (port {port} released).")
        if not names:
            print("No canvases are served.")

    @staticmethod
    def _parser_list():
        return ArgumentParser(prog="%livepandas list", add_help=False)

    def _cmd_list(self, args):
        from .display import StatusTable

        display(StatusTable(self.manager.servers, self.url_pattern, detail=False))

    @staticmethod
    def _parser_status():
        p = ArgumentParser(prog="%livepandas status", add_help=False)
        p.add_argument("name", nargs="?")
        return p

    def _cmd_status(self, args):
        from .display import StatusTable

        servers = self.manager.servers
        if args.name is not None:
            servers = {args.name: self.manager.get(args.name)}
        display(StatusTable(servers, self.url_pattern))

    @staticmethod
    def _parser_test():
        p = ArgumentParser(prog="%livepandas test", add_help=False)
        p.add_argument("function")
        p.add_argument("--canvas", metavar="NAME")
        p.add_argument("--kwargs", metavar="JSON")
        return p

    def _cmd_test(self, args):
        from .commands import test

        print(test.run(self._find_canvas(args.function, args.canvas), args.function, args.kwargs))

    @staticmethod
    def _parser_upload():
        p = ArgumentParser(prog="%livepandas upload", add_help=False)
        p.add_argument("canvas", nargs="?", default="default")
        p.add_argument("--session", action="store_true")
        p.add_argument("--hub", metavar="URL")
        p.add_argument("-U", "--user", metavar="USER")
        p.add_argument("-K", "--key", metavar="KEY")
        p.add_argument("--name", metavar="NAME")
        return p

    def _cmd_upload(self, args):
        from .commands import upload

        canvas = self.manager.get(args.canvas).canvas
        if not canvas.source:
            raise CanvasError(f"canvas {args.canvas!r} has no Python source to upload: run its %%canvas cell first")
        filename = canvas.filename or f"%%canvas {args.canvas}"
        upload.check_source(canvas.source, filename)  # before asking for credentials
        user = args.user or self.hub_user or self._ask("user name", "-U USER", "LIVEPANDAS_USERNAME")
        key = args.key or os.environ.get("LIVEPANDAS_API_KEY") or self._ask(
            "API key", "-K KEY", "LIVEPANDAS_API_KEY", secret=True
        )
        result = upload.upload(
            canvas.source,
            html=canvas.html,
            static_dir=canvas.static_dir,
            name=args.name or canvas.name,
            hub=args.hub or self.hub_url,
            user=user,
            key=key,
            session=args.session,
            filename=filename,
        )
        display(result)

    @staticmethod
    def _ask(what, flag, env, secret=False):
        """Ask for a missing credential (Jupyter's stdin, hidden for the key); an error without one."""
        try:
            if secret:
                import getpass

                value = getpass.getpass(f"Hub {what}: ")
            else:
                value = input(f"Hub {what}: ")
        except (EOFError, KeyboardInterrupt, NotImplementedError, OSError):
            value = ""
        if not value.strip():
            raise ArgumentError(f"no {what}: give {flag} or set {env}")
        return value.strip()

    @staticmethod
    def _parser_preview():
        p = ArgumentParser(prog="%livepandas preview", add_help=False)
        p.add_argument("name", nargs="?", default="default")
        return p

    def _cmd_preview(self, args):
        self._show_preview(args.name, self.manager.get(args.name))

    def _read(self, path, what):
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise UsageError(f"%%canvas: cannot read {what} {path}: {exc.strerror}") from None
