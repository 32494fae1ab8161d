"""Canvases on the hub: validation of uploads, and their files on disk.

A canvas uploaded to the hub is checked **without running it** in the hub process: its Python is
parsed and compiled (so a syntax error is reported with its line), and its published functions
are the top-level names ``livepandas_<name>`` it binds (:func:`..canvas.defined_names`). Running it
is the worker's job; a canvas that compiles but fails at import time shows up as a failed
session with the worker's message.

Files live in ``<data-dir>/canvases/<id>/``::

    code.py        the Python source
    view.html      the HTML view (optional)
    static/...     static files (optional)

which is the directory a hub worker is given (``--canvas DIR``). A new version is written
complete into a temporary directory beside it and swapped in with two renames, so a worker
never sees half of an upload; the swap leaves the canvas directory missing for the microseconds
between the renames, and a crash right there is repaired on the next start
(:meth:`CanvasStore.recover`).
"""

import ast
import asyncio
import base64
import binascii
import functools
import json
import os
import shutil
import secrets
from dataclasses import dataclass, field

from ..canvas import PREFIX, defined_names, published_name
from .errors import BadRequest, InvalidCanvas, NotFound, TooLarge

__all__ = ["Limits", "CanvasUpload", "validate_upload", "collect_functions", "CanvasStore"]

CODE_FILE = "code.py"
VIEW_FILE = "view.html"
STATIC_DIR = "static"
_FIELDS = ("python", "html", "static", "name")


@dataclass(frozen=True)
class Limits:
    """Size limits of an upload (bytes, after base64 decoding for static files)."""

    python: int = 1024 * 1024
    html: int = 5 * 1024 * 1024
    static: int = 50 * 1024 * 1024
    static_files: int = 1000
    name: int = 200


@dataclass
class CanvasUpload:
    """A validated upload. ``None`` fields were absent (an update keeps the stored value)."""

    python: str = None
    html: object = None  # str, or None; see html_given
    html_given: bool = False
    static: dict = None  # {relative path: bytes}
    name: str = None
    functions: list = field(default_factory=list)


def validate_upload(payload, limits=Limits(), *, partial=False):
    """Check an upload's JSON object; returns a :class:`CanvasUpload`. Blocking (compiles).

    Parameters
    ----------
    payload : dict
        ``{"python": str, "html"?: str | null, "static"?: {path: base64}, "name"?: str}``.
    limits : Limits
    partial : bool
        An update: every field is optional (at least one must be given).

    Raises
    ------
    BadRequest, InvalidCanvas, TooLarge
    """
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object with a field 'python'")
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; a canvas has {', '.join(_FIELDS)}")
    if not partial and "python" not in payload:
        raise BadRequest("missing field 'python': the canvas's Python source")
    if partial and not payload:
        raise BadRequest(f"nothing to update: give one or more of {', '.join(_FIELDS)}")
    upload = CanvasUpload()
    if "name" in payload:
        name = payload["name"]
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("'name' must be a non-empty string")
        if len(name) > limits.name:
            raise BadRequest(f"'name' is longer than {limits.name} characters")
        upload.name = name.strip()
    if "html" in payload:
        html = payload["html"]
        if html is not None and not isinstance(html, str):
            raise BadRequest("'html' must be a string (the HTML view) or null")
        if html is not None:
            _check_size("html", len(html.encode("utf-8", "surrogatepass")), limits.html)
        upload.html, upload.html_given = html, True
    if "static" in payload:
        upload.static = _decode_static(payload["static"], limits)
    if "python" in payload:
        python = payload["python"]
        if not isinstance(python, str):
            raise BadRequest("'python' must be a string (the canvas's Python source)")
        _check_size("python", len(python.encode("utf-8", "surrogatepass")), limits.python)
        upload.python = python
        upload.functions = collect_functions(python)
    return upload


def _check_size(what, size, limit):
    if size > limit:
        raise TooLarge(f"'{what}' is {size} bytes, over the limit of {limit} bytes")


def collect_functions(source, filename=CODE_FILE):
    """The functions *source* publishes, as ``[{"name", "signature", "doc"}]``, without running it.

    Raises
    ------
    InvalidCanvas
        On a syntax (or compile-time) error, naming the line, or when nothing is published.
    """
    try:
        tree = ast.parse(source, filename=filename)
        compile(tree, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = f", line {exc.lineno}" if exc.lineno else ""
        raise InvalidCanvas(f"SyntaxError: {exc.msg} ({filename}{line})", line=exc.lineno) from None
    except ValueError as exc:  # NUL bytes in the source (a SyntaxError from 3.12 on)
        raise InvalidCanvas(f"{filename} cannot be compiled: {exc}") from None
    except (RecursionError, MemoryError):
        raise InvalidCanvas(f"{filename} is nested too deeply to compile") from None
    defs = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(PREFIX):
            defs.setdefault(node.name, node)
    functions = {}
    for key in defined_names(tree):
        name = published_name(key)
        if name is None or name in functions:
            continue
        node = defs.get(key)
        if node is not None:
            signature = f"{name}({ast.unparse(node.args)})"
            doc = ast.get_docstring(node) or ""
        else:
            signature, doc = f"{name}(...)", ""
        functions[name] = {"name": name, "signature": signature, "doc": doc}
    if not functions:
        raise InvalidCanvas(f"{filename} defines no function named {PREFIX}<name>; only those are published")
    return [functions[name] for name in sorted(functions)]


def _decode_static(static, limits):
    if static is None:
        return {}
    if not isinstance(static, dict):
        raise BadRequest("'static' must be an object {relative path: base64 content}")
    if len(static) > limits.static_files:
        raise TooLarge(f"'static' has {len(static)} files, over the limit of {limits.static_files}")
    files, total = {}, 0
    for path, content in static.items():
        parts = _static_parts(path)
        if not isinstance(content, str):
            raise BadRequest(f"static file {path!r}: the content must be a base64 string")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"static file {path!r}: the content is not valid base64") from None
        total += len(data)
        if total > limits.static:
            raise TooLarge(f"'static' holds over {limits.static} bytes (decoded), the limit")
        files["/".join(parts)] = data
    # A path can't be both a file and a directory ("a" and "a/b").
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    clash = sorted(dirs & set(files))
    if clash:
        raise BadRequest(f"static path {clash[0]!r} is both a file and a directory")
    return files


def _static_parts(path):
    if not isinstance(path, str) or not path:
        raise BadRequest("a static path must be a non-empty string")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise BadRequest(f"static path {path!r} is absolute; give a path relative to the static directory")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadRequest(f"static path {path!r} has an empty, '.' or '..' part")
        if "\\" in part or "\0" in part or len(part.encode("utf-8", "surrogatepass")) > 255:
            raise BadRequest(f"static path {path!r} has a part with a backslash, a NUL or over 255 bytes")
    return parts


class CanvasStore:
    """Canvases of the hub: rows in the database, files under ``<root>/<id>/``.

    The coroutines run on the hub's loop; blocking work (compiling, file I/O) goes to the
    default executor. One update at a time per canvas.

    Parameters
    ----------
    db : Database
    root : str
        ``<data-dir>/canvases``.
    limits : Limits
    """

    def __init__(self, db, root, limits=Limits()):
        self.db = db
        self.root = root
        self.limits = limits
        self._locks = {}
        os.makedirs(root, mode=0o700, exist_ok=True)

    def path(self, canvas_id):
        """The directory a worker serves for *canvas_id*."""
        return os.path.join(self.root, str(int(canvas_id)))

    def recover(self):
        """Repair what a crash in the middle of a write left behind (run once at start)."""
        for entry in os.listdir(self.root):
            full = os.path.join(self.root, entry)
            if entry.startswith(".old-"):
                canvas_id = entry.split("-")[1]
                if not os.path.exists(self.path(canvas_id)) and self.db.canvas(int(canvas_id)) is not None:
                    os.rename(full, self.path(canvas_id))  # died between the two renames of a swap
                else:
                    shutil.rmtree(full, ignore_errors=True)
            elif entry.startswith(".tmp-"):
                shutil.rmtree(full, ignore_errors=True)
            elif entry.isdigit() and self.db.canvas(int(entry)) is None:
                shutil.rmtree(full, ignore_errors=True)  # a canvas deleted, or never committed

    # -- reading ----------------------------------------------------------------------------

    def get(self, canvas_id, owner_id=None):
        """The canvas row; :class:`NotFound` when missing or (with *owner_id*) someone else's."""
        row = self.db.canvas(canvas_id) if _is_id(canvas_id) else None
        if row is None or (owner_id is not None and row["owner_id"] != owner_id):
            raise NotFound(f"no canvas {canvas_id}")
        return row

    def list(self, owner_id):
        return self.db.canvases_of(owner_id)

    async def contents(self, canvas_id):
        """``{"python", "html", "static": [paths]}`` of a stored canvas."""
        return await asyncio.get_running_loop().run_in_executor(None, self._read, self.path(canvas_id))

    @staticmethod
    def _read(directory):
        with open(os.path.join(directory, CODE_FILE), encoding="utf-8") as f:
            python = f.read()
        html = None
        try:
            with open(os.path.join(directory, VIEW_FILE), encoding="utf-8") as f:
                html = f.read()
        except FileNotFoundError:
            pass
        static_root = os.path.join(directory, STATIC_DIR)
        static = []
        for dirpath, _, filenames in os.walk(static_root):
            for name in filenames:
                static.append(os.path.relpath(os.path.join(dirpath, name), static_root).replace(os.sep, "/"))
        return {"python": python, "html": html, "static": sorted(static)}

    # -- writing ----------------------------------------------------------------------------

    async def validate(self, payload, partial=False):
        loop = asyncio.get_running_loop()
        check = functools.partial(validate_upload, payload, self.limits, partial=partial)
        return await loop.run_in_executor(None, check)

    async def create(self, owner_id, payload):
        """Validate and store a new canvas of *owner_id*; returns its row."""
        upload = await self.validate(payload)
        loop = asyncio.get_running_loop()
        tmp = await loop.run_in_executor(None, self._write_tmp, upload, None)
        try:
            canvas_id = self.db.add_canvas(
                owner_id, upload.name or "untitled", upload.functions, before_commit=lambda cid: self._install(tmp, cid)
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.db.canvas(canvas_id)

    async def update(self, canvas_id, owner_id, payload):
        """Validate and apply an update (absent fields keep their value); returns the new row."""
        self.get(canvas_id, owner_id)
        upload = await self.validate(payload, partial=True)
        async with self._lock(canvas_id):
            row = self.get(canvas_id, owner_id)  # deleted while we validated?
            loop = asyncio.get_running_loop()
            tmp = await loop.run_in_executor(None, self._write_tmp, upload, self.path(canvas_id))
            try:
                await loop.run_in_executor(None, self._swap, tmp, canvas_id)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            functions = upload.functions if upload.python is not None else json.loads(row["functions"])
            self.db.update_canvas(canvas_id, upload.name or row["name"], functions)
        return self.db.canvas(canvas_id)

    async def delete(self, canvas_id, owner_id):
        self.get(canvas_id, owner_id)
        async with self._lock(canvas_id):
            self.db.delete_canvas(canvas_id)
            old = os.path.join(self.root, f".old-{int(canvas_id)}-{secrets.token_hex(4)}")
            try:
                os.rename(self.path(canvas_id), old)
            except FileNotFoundError:
                return
            await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, old, True)
        self._locks.pop(canvas_id, None)

    def _lock(self, canvas_id):
        lock = self._locks.get(canvas_id)
        if lock is None:
            lock = self._locks[canvas_id] = asyncio.Lock()
        return lock

    def _write_tmp(self, upload, current):
        """Write *upload* into a new temporary directory; fields it lacks come from *current*."""
        tmp = os.path.join(self.root, f".tmp-{secrets.token_hex(8)}")
        os.mkdir(tmp, 0o700)
        try:
            if upload.python is not None:
                _write(os.path.join(tmp, CODE_FILE), upload.python.encode("utf-8", "surrogatepass"))
            else:
                _link_or_copy(os.path.join(current, CODE_FILE), os.path.join(tmp, CODE_FILE))
            if upload.html_given:
                if upload.html is not None:
                    _write(os.path.join(tmp, VIEW_FILE), upload.html.encode("utf-8", "surrogatepass"))
            elif current and os.path.exists(os.path.join(current, VIEW_FILE)):
                _link_or_copy(os.path.join(current, VIEW_FILE), os.path.join(tmp, VIEW_FILE))
            if upload.static is not None:
                for rel, data in upload.static.items():
                    target = os.path.join(tmp, STATIC_DIR, *rel.split("/"))
                    os.makedirs(os.path.dirname(target), 0o700, exist_ok=True)
                    _write(target, data)
            elif current and os.path.isdir(os.path.join(current, STATIC_DIR)):
                shutil.copytree(
                    os.path.join(current, STATIC_DIR), os.path.join(tmp, STATIC_DIR), copy_function=_link_or_copy
                )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp

    def _install(self, tmp, canvas_id):
        target = self.path(canvas_id)
        if os.path.exists(target):  # left by a create that crashed before its commit
            shutil.rmtree(target)
        os.rename(tmp, target)

    def _swap(self, tmp, canvas_id):
        target = self.path(canvas_id)
        old = os.path.join(self.root, f".old-{int(canvas_id)}-{secrets.token_hex(4)}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)


def _is_id(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19


def _write(path, data):
    with open(path, "xb") as f:
        f.write(data)


def _link_or_copy(src, dst):
    """Hard-link an unchanged file into a new version (cheap); copy where links don't work."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
