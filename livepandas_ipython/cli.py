"""The ``livepandas`` command: test a canvas's functions, or serve them with a view.

Compatible with the original flags::

    livepandas -P code.py --test addition --kwargs '{"x": 1, "y": 2}'
    livepandas -P code.py [-H view.html] [-S static/] [--port 8888] [--host 127.0.0.1]
    livepandas -P code.py [-H view.html] [-S static/] --new [-U USER] [-K KEY] [--hub URL] [--session]

``--new`` checks that the code runs on its own and uploads the canvas to a hub (URL: ``--hub``,
else ``LIVEPANDAS_HUB_URL``, else ``http://127.0.0.1:8000``; credentials: ``-U``/``-K``, else
``LIVEPANDAS_USERNAME``/``LIVEPANDAS_API_KEY``, else a prompt on a terminal, the key hidden).

``main(argv)`` returns the exit status: 0 on success (and after Ctrl-C or SIGTERM), 1 when the
canvas or the call fails, 2 for bad arguments. Errors are one line on stderr.
"""

import argparse
import signal
import sys
import threading

from ._version import __version__
from .parser import ArgumentParser, HelpShown

__all__ = ["main", "build_parser"]

DEFAULT_PORT = 8888


def build_parser():
    parser = ArgumentParser(
        prog="livepandas",
        description="Serve the livepandas_<name> functions of a Python file over HTTP and WebSocket.",
        epilog="Examples:\n"
        "  livepandas -P code.py --test addition --kwargs '{\"x\": 1, \"y\": 2}'\n"
        "  livepandas -P code.py -H view.html --port 9999\n"
        "  livepandas -P code.py -H view.html -S static/ --new -U alice --hub http://127.0.0.1:8000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-P", "--python", metavar="CODE.PY", required=True, help="the canvas's Python file")
    parser.add_argument("-H", "--html", metavar="VIEW.HTML", help="the canvas's HTML view, served at /")
    parser.add_argument("-S", "--static", metavar="DIR", help="a directory served under /static/")
    parser.add_argument("--test", metavar="NAME", help="call function NAME once, print its JSON result and exit")
    parser.add_argument("--kwargs", metavar="JSON", help="the JSON object of arguments for --test (default {})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to serve on (default 8888; 0 = any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call cross-site (repeatable; '*' for any)",
    )
    parser.add_argument(
        "--allow-host", action="append", default=[], metavar="HOST", help="a Host header to accept besides loopback"
    )
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="the token required off loopback (default: generated)")
    token.add_argument(
        "--no-token", action="store_true", help="serve a non-loopback address without a token (anyone may call)"
    )
    parser.add_argument(
        "--call-timeout", type=_seconds, metavar="SECONDS", help="answer 504 for a call not done in SECONDS (default: no limit)"
    )
    parser.add_argument("--debug", action="store_true", help="include tracebacks in error replies")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--version", action="version", version=f"livepandas {__version__}")
    hub = parser.add_argument_group("upload to a hub")
    hub.add_argument("--new", action="store_true", help="check the canvas, upload it to a hub and print its id")
    hub.add_argument("-U", "--user", metavar="USER", help="hub user name (default: $LIVEPANDAS_USERNAME, else asked)")
    hub.add_argument("-K", "--key", metavar="KEY", help="hub API key (default: $LIVEPANDAS_API_KEY, else asked)")
    hub.add_argument("--hub", metavar="URL", help="the hub (default: $LIVEPANDAS_HUB_URL, else http://127.0.0.1:8000)")
    hub.add_argument("--name", metavar="NAME", help="the canvas's name on the hub (default: the file's name)")
    hub.add_argument("--session", action="store_true", help="also start a session and print its socket")
    return parser


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (0: no limit), not {text!r}")
    return value


def main(argv=None):
    """Run the command line *argv* (default ``sys.argv[1:]``); return the exit status."""
    from .errors import ArgumentError, LivePandasError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.kwargs is not None and args.test is None:
            raise ArgumentError("--kwargs needs --test NAME", usage=parser.format_usage())
        if args.new and args.test is not None:
            raise ArgumentError("--new and --test don't go together", usage=parser.format_usage())
        for flag in ("user", "key", "hub", "name", "session"):
            if getattr(args, flag) and not args.new:
                raise ArgumentError(f"--{flag} needs --new", usage=parser.format_usage())
    except ArgumentError as exc:
        sys.stderr.write(exc.usage)
        return _fail(exc, 2)
    except HelpShown as shown:
        return shown.status
    try:
        if args.test is not None:
            return _test(args)
        if args.new:
            return _upload(args)
        return _serve(args)
    except LivePandasError as exc:
        return _fail(exc, 1)


def _fail(exc, status):
    print(f"livepandas: error: {exc}", file=sys.stderr)
    return status


def _load(args):
    from .canvas import Canvas

    return Canvas.from_file(args.python, html_path=args.html, static_dir=args.static)


def _test(args):
    from .commands import test

    print(test.run(_load(args), args.test, args.kwargs), flush=True)
    return 0


def _upload(args):
    import os

    from .canvas import _read_text
    from .client import hub_url
    from .commands import upload
    from .errors import CanvasError

    python = _read_text(args.python, "Python file")
    html = _read_text(args.html, "HTML view") if args.html else None
    if args.static and not os.path.isdir(args.static):
        raise CanvasError(f"static directory {args.static} does not exist", filename=args.static)
    upload.check_source(python, args.python)
    url = hub_url(args.hub or _ask("hub URL", "--hub", "LIVEPANDAS_HUB_URL", default=hub_url()))
    user = args.user or _ask("user name", "-U USER", "LIVEPANDAS_USERNAME")
    key = args.key or _ask("API key", "-K KEY", "LIVEPANDAS_API_KEY", secret=True)
    name = args.name or os.path.splitext(os.path.basename(args.python))[0]
    result = upload.upload(
        python, html=html, static_dir=args.static, name=name, hub=url, user=user, key=key,
        session=args.session, filename=args.python,
    )
    print(result, flush=True)
    return 0


def _ask(what, flag, env, default=None, secret=False):
    """A value from *env*, else asked on a terminal, else an error naming *flag* and *env*."""
    import os

    from .errors import ArgumentError

    value = os.environ.get(env, "").strip()
    if value:
        return value
    if not sys.stdin.isatty():
        if default is not None:
            return default
        raise ArgumentError(f"no {what}: give {flag} or set {env}")
    prompt = f"Hub {what}" + (f" [{default}]" if default else "") + ": "
    try:
        if secret:
            import getpass

            value = getpass.getpass(prompt)
        else:
            sys.stderr.write(prompt)
            sys.stderr.flush()
            value = sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        value = ""
    value = value.strip() or default
    if not value:
        raise ArgumentError(f"no {what}: give {flag} or set {env}")
    return value


def _serve(args):
    import logging

    from .commands import serve

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    canvas = _load(args)
    token = False if args.no_token else args.token
    server = serve.start(
        canvas,
        host=args.host,
        port=args.port,
        token=token,
        allow_hosts=args.allow_host,
        allow_origins=args.allow_origin,
        debug=args.debug,
        log_requests=args.verbose,
        call_timeout=args.call_timeout or None,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        print("\n".join(serve.describe(server)), flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
