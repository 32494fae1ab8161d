"""The ``livepandas`` command: test a canvas's functions, or serve them with a view.

Compatible with the original flags::

    livepandas -P code.py --test addition --kwargs '{"x": 1, "y": 2}'
    livepandas -P code.py [-H view.html] [-S static/] [--port 8888] [--host 127.0.0.1]

``main(argv)`` returns the exit status: 0 on success (and after Ctrl-C or SIGTERM), 1 when the
canvas or the call fails, 2 for bad arguments. Errors are one line on stderr.
"""

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
        "  livepandas -P code.py -H view.html --port 9999",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
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
    return parser


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise __import__("argparse").ArgumentTypeError(f"must be a number of seconds (0: no limit), not {text!r}")
    return value


def main(argv=None):
    """Run the command line *argv* (default ``sys.argv[1:]``); return the exit status."""
    from .errors import ArgumentError, LivePandasError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.kwargs is not None and args.test is None:
            raise ArgumentError("--kwargs needs --test NAME", usage=parser.format_usage())
    except ArgumentError as exc:
        sys.stderr.write(exc.usage)
        return _fail(exc, 2)
    except HelpShown as shown:
        return shown.status
    try:
        if args.test is not None:
            return _test(args)
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
