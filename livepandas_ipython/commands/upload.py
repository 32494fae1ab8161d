"""``upload``: check that a canvas's Python runs on its own, then publish the canvas to a hub.

A canvas written in a notebook often leans on the notebook without showing it: a variable
defined in another cell, an import done earlier. On the hub it runs alone, so before anything is
sent :func:`check` makes sure that

1. the source compiles (a syntax error names its line);
2. it defines at least one top-level ``livepandas_<name>`` function;
3. every global name its code uses is defined in it or is a builtin (:func:`undefined_names`);
4. it runs in a fresh interpreter, in a temporary directory laid out like a hub worker's
   (``code.py``, ``view.html``, ``static/``), without raising.

Then :func:`upload` posts the canvas (and, if asked, starts a session and waits for its
worker) and returns an :class:`UploadResult`, which the CLI prints and the magic displays.
"""

import ast
import builtins
import html as html_lib
import os
import subprocess
import sys
import symtable
import tempfile

from ..canvas import PREFIX, defined_names, published_name
from ..errors import CanvasError

__all__ = ["upload", "check", "check_source", "undefined_names", "run_isolated", "read_static", "UploadResult"]

#: Seconds the canvas's module may take to run in the fresh interpreter.
CHECK_TIMEOUT = 60.0
#: Seconds to wait for a new session's worker.
SESSION_TIMEOUT = 30.0

_MODULE_NAMES = frozenset(
    ("__name__", "__file__", "__doc__", "__builtins__", "__spec__", "__loader__", "__package__", "__cached__",
     "__annotations__", "__dict__")
)

_FAILED = "LIVEPANDAS_CHECK_FAILED "
# Runs in the fresh interpreter: load the canvas as a hub worker does, report one line on failure.
_RUNNER = f"""
import os, sys
from livepandas_ipython.canvas import Canvas
try:
    with open("code.py", encoding="utf-8") as f:
        Canvas.from_source(f.read(), filename=sys.argv[1])
except BaseException as exc:
    text = str(exc).strip().splitlines() or [type(exc).__name__]
    if not isinstance(exc, Exception):
        text = [f"{{type(exc).__name__}}: {{text[0]}}"]
    sys.stderr.write("\\n{_FAILED}" + text[-1] + "\\n")
    sys.stderr.flush()
    os._exit(3)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # threads the canvas started must not keep the check waiting
"""


def check_source(python, filename="code.py"):
    """Checks 1-3 of the module docstring, without running anything; returns the function names.

    Raises
    ------
    CanvasError
        For a syntax error (``lineno`` set), no ``livepandas_*`` function, or a name used but
        not defined in the canvas's code.
    """
    try:
        tree = ast.parse(python, filename=filename)
        compile(tree, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f", line {exc.lineno}" if exc.lineno else ""
        hint = ""
        if (exc.text or "").lstrip().startswith(("%", "!")):
            hint = "; IPython magics and ! commands don't run outside IPython"
        raise CanvasError(
            f"SyntaxError: {exc.msg} ({filename}{where}){hint}", filename=filename, lineno=exc.lineno
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise CanvasError(f"{filename} cannot be compiled: {exc}", filename=filename) from None
    functions = sorted({name for name in map(published_name, defined_names(tree)) if name is not None})
    if not functions:
        raise CanvasError(
            f"{filename} defines no top-level function named {PREFIX}<name>; only those are published",
            filename=filename,
        )
    missing = undefined_names(python, filename, tree)
    if missing:
        name, line = missing[0]
        where = f" ({filename}, line {line})" if line else ""
        if len(missing) == 1:
            message = f"name {name!r} is used but not defined in the canvas's code (it came from the notebook?)"
        else:
            names = ", ".join(repr(n) for n, _ in missing)
            message = f"names {names} are used but not defined in the canvas's code (they came from the notebook?)"
        raise CanvasError(message + where, filename=filename, lineno=line)
    return functions


def undefined_names(python, filename="code.py", tree=None):
    """Global names the code uses but never binds at module level and that are not builtins.

    Returns ``[(name, first line used)]`` in order of first use. Empty when the module has a
    ``from ... import *`` (its names can't be known without running it).
    """
    tree = tree if tree is not None else ast.parse(python, filename=filename)
    if any(isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names) for node in ast.walk(tree)):
        return []
    defined, used = set(), set()

    def visit(table, top):
        for symbol in table.get_symbols():
            name = symbol.get_name()
            binds = symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()
            if top and binds:
                defined.add(name)
            elif top:
                if symbol.is_referenced():
                    used.add(name)
            elif symbol.is_declared_global() and binds:
                defined.add(name)  # ``global x`` then ``x = ...`` in a function
            elif symbol.is_global() and symbol.is_referenced():
                used.add(name)
        for child in table.get_children():
            visit(child, False)

    visit(symtable.symtable(python, filename, "exec"), True)
    missing = used - defined - set(dir(builtins)) - _MODULE_NAMES
    if not missing:
        return []
    first = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in missing:
            line = getattr(node, "lineno", None)
            if node.id not in first or (line or 0) < (first[node.id] or 0):
                first[node.id] = line
    return sorted(((name, first.get(name)) for name in missing), key=lambda item: (item[1] or 0, item[0]))


def run_isolated(python, filename="code.py", html=None, static_dir=None, timeout=CHECK_TIMEOUT):
    """Check 4: run the module in a fresh ``sys.executable``, in a temporary directory like a worker's.

    Raises
    ------
    CanvasError
        With the last line of its error (``"NameError: ... (code.py, line 3)"``), or when it
        runs over *timeout* seconds.
    """
    with tempfile.TemporaryDirectory(prefix="livepandas-check-") as tmp:
        with open(os.path.join(tmp, "code.py"), "w", encoding="utf-8") as f:
            f.write(python)
        if html is not None:
            with open(os.path.join(tmp, "view.html"), "w", encoding="utf-8") as f:
                f.write(html)
        if static_dir:
            os.symlink(os.path.abspath(static_dir), os.path.join(tmp, "static"))
        try:
            result = subprocess.run(
                [sys.executable, "-c", _RUNNER, filename],
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise CanvasError(
                f"{filename} did not finish running within {timeout:g} s in a fresh interpreter "
                "(does it wait for input, or do long work at import?)",
                filename=filename,
            ) from None
        except OSError as exc:
            raise CanvasError(f"cannot start {sys.executable} to check {filename}: {exc}", filename=filename) from None
    if result.returncode == 0:
        return
    lines = [line for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    reported = [line[len(_FAILED):] for line in lines if line.startswith(_FAILED)]
    if reported:
        detail = reported[-1]
    elif lines:
        detail = lines[-1].strip()
    else:
        detail = f"the interpreter exited with status {result.returncode}"
    raise CanvasError(f"{filename} fails when run on its own: {detail}", filename=filename)


def check(python, filename="code.py", html=None, static_dir=None, timeout=CHECK_TIMEOUT):
    """All four checks of the module docstring; returns the function names (CanvasError if one fails)."""
    functions = check_source(python, filename)
    run_isolated(python, filename, html=html, static_dir=static_dir, timeout=timeout)
    return functions


def read_static(static_dir):
    """Every regular file under *static_dir* as ``{relative/posix/path: bytes}``.

    Links are followed while they stay inside the directory; one that leads outside it is refused
    (a canvas ships its own files, not the machine's).
    """
    root = os.path.realpath(static_dir)
    if not os.path.isdir(root):
        raise CanvasError(f"static directory {static_dir} does not exist", filename=static_dir)
    files, seen = {}, set()
    for dirpath, dirnames, filenames in os.walk(static_dir, followlinks=True):
        rel_dir = os.path.relpath(dirpath, static_dir)
        real_dir = os.path.realpath(dirpath)
        if not _inside(real_dir, root):
            raise CanvasError(
                f"static directory entry {rel_dir} links to {real_dir}, outside {static_dir}", filename=static_dir
            )
        if real_dir in seen:  # a link back up the tree
            dirnames[:] = []
            continue
        seen.add(real_dir)
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.relpath(full, static_dir)).replace(os.sep, "/")
            real = os.path.realpath(full)
            if not _inside(real, root):
                raise CanvasError(f"static file {rel} links to {real}, outside {static_dir}", filename=static_dir)
            if not os.path.exists(real):
                raise CanvasError(f"static file {rel} is a broken link", filename=static_dir)
            if not os.path.isfile(real):
                continue  # sockets, fifos, devices
            try:
                with open(real, "rb") as f:
                    files[rel] = f.read()
            except OSError as exc:
                message = f"cannot read static file {rel}: {exc.strerror or exc}"
                raise CanvasError(message, filename=static_dir) from None
    return files


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def upload(
    python,
    html=None,
    static_dir=None,
    name=None,
    hub=None,
    user=None,
    key=None,
    session=False,
    canvas_id=None,
    *,
    filename="code.py",
    check_timeout=CHECK_TIMEOUT,
    session_timeout=SESSION_TIMEOUT,
):
    """Check a canvas, upload it, and optionally start a session on it.

    Parameters
    ----------
    python : str
        The canvas's Python source.
    html : str, optional
        Its HTML view.
    static_dir : str, optional
        A directory whose files are uploaded as the canvas's static files.
    name : str, optional
        The canvas's name on the hub.
    hub, user, key : str, optional
        The hub's URL and the credentials (defaults: ``LIVEPANDAS_HUB_URL``,
        ``LIVEPANDAS_USERNAME``, ``LIVEPANDAS_API_KEY``).
    session : bool
        Also start a session and wait (up to *session_timeout* seconds) for its worker.
    canvas_id : int, optional
        Update this canvas instead of creating one.
    filename : str
        What to call the source in messages.

    Returns
    -------
    UploadResult

    Raises
    ------
    CanvasError
        A check failed; nothing was sent.
    HubError
        The hub refused the upload or could not be reached.
    """
    from ..client import HubClient

    check_source(python, filename)
    static = read_static(static_dir) if static_dir else None
    run_isolated(python, filename, html=html, static_dir=static_dir, timeout=check_timeout)
    with HubClient(hub, user, key) as client:
        if canvas_id is None:
            canvas = client.create_canvas(python, html=html, static=static, name=name)
        else:
            fields = dict(python=python, html=html, static=static or {})
            if name is not None:
                fields["name"] = name
            canvas = client.update_canvas(canvas_id, **fields)
        model = None
        if session:
            model = client.create_session(canvas["id"])
            model = client.wait_for_socket(model["id"], timeout=session_timeout)
        return UploadResult(client.url, canvas, client.share_url(canvas["id"]), model, updated=canvas_id is not None)


class UploadResult:
    """What an upload made: ``canvas`` (the hub's model), ``share_url``, ``session`` (or None)."""

    def __init__(self, hub_url, canvas, share_url, session=None, updated=False):
        self.hub_url = hub_url
        self.canvas = canvas
        self.share_url = share_url
        self.session = session
        self.updated = updated

    @property
    def id(self):
        return self.canvas["id"]

    @property
    def socket(self):
        return self.session["socket"] if self.session else None

    def _rows(self):
        canvas = self.canvas
        rows = [
            ("id", str(canvas["id"])),
            ("functions", ", ".join(canvas.get("functions", [])) or "none"),
            ("share", self.share_url),
            ("api", canvas.get("self", "")),
        ]
        if self.session:
            first = (canvas.get("functions") or ["<name>"])[0]
            rows += [
                ("session", self.session["id"]),
                ("socket", self.socket),
                ("call", f"http://{self.socket}/{first}?kwargs={{...}}"),
                ("expires", self.session.get("expires_at") or ""),
            ]
        return rows

    def _title(self):
        verb = "Updated" if self.updated else "Uploaded"
        return f"{verb} canvas {self.canvas['id']} {self.canvas.get('name', '')!r} to {self.hub_url}"

    def lines(self):
        """The result as lines of text (what the CLI prints)."""
        rows = self._rows()
        width = max(len(label) for label, _ in rows) + 1
        return [self._title()] + [f"  {label + ':':<{width}} {value}" for label, value in rows]

    def __repr__(self):
        return "\n".join(self.lines())

    def _repr_html_(self):
        esc = html_lib.escape
        cells = []
        for label, value in self._rows():
            if value.startswith(("http://", "https://")) and label in ("share", "api"):
                value_html = f'<a href="{esc(value)}" target="_blank" rel="noopener">{esc(value)}</a>'
            else:
                value_html = f"<code>{esc(value)}</code>"
            cells.append(
                f"<tr><th style='text-align:left'>{esc(label)}</th>"
                f"<td style='text-align:left'>{value_html}</td></tr>"
            )
        return f"<div class='livepandas-upload'><p>{esc(self._title())}</p><table>{''.join(cells)}</table></div>"
