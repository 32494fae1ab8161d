"""Canvases: Python functions named ``livepandas_<name>``, an optional HTML view, static files.

A :class:`Canvas` is an immutable value: the function server holds one and swaps it for a new one
when the code changes, so a call in flight keeps the function it started with.

Only callables named ``livepandas_<name>`` are published, as ``<name>``. Names that start with an
underscore after the prefix (``livepandas__x``) are not published: the server keeps ``/_...`` for
itself.
"""

import ast
import asyncio
import inspect
import os
import types
from dataclasses import dataclass, field

from .errors import BadArguments, CanvasError, FunctionNotFound

__all__ = ["PREFIX", "Canvas", "Function", "collect_functions", "defined_names", "describe_exception"]

PREFIX = "livepandas_"


@dataclass(frozen=True)
class Function:
    """One published function and what the server needs to know to call it."""

    name: str
    func: object
    signature: inspect.Signature = field(repr=False)
    is_async: bool = False
    is_stream: bool = False
    doc: str = ""
    # (names, required names) when binding keywords is a matter of set inclusion; None otherwise.
    _keywords: tuple = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        params = self.signature.parameters.values()
        simple = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        if all(p.kind in simple for p in params):
            names = frozenset(p.name for p in params)
            required = frozenset(p.name for p in params if p.default is p.empty)
            object.__setattr__(self, "_keywords", (names, required))

    @classmethod
    def from_callable(cls, name, func):
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):
            sig = inspect.Signature([inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
        target = inspect.unwrap(func)
        return cls(
            name=name,
            func=func,
            signature=sig,
            is_async=asyncio.iscoroutinefunction(target),
            is_stream=inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target),
            doc=inspect.getdoc(func) or "",
        )

    def accepts(self, kwargs):
        """True when *kwargs* surely binds (a quick test; :meth:`check` has the last word)."""
        keywords = self._keywords
        return keywords is not None and kwargs.keys() <= keywords[0] and keywords[1] <= kwargs.keys()

    def check(self, kwargs):
        """Raise :class:`BadArguments` unless *kwargs* binds to the signature."""
        if self.accepts(kwargs):
            return
        try:
            self.signature.bind(**kwargs)
        except TypeError as exc:
            raise BadArguments(f"{self.name}{self.signature}: {exc}") from None

    def describe(self):
        """The JSON-ready description served at ``/_functions``."""
        params = []
        for p in self.signature.parameters.values():
            entry = {"name": p.name, "kind": p.kind.name.lower()}
            if p.default is not p.empty:
                entry["default"] = _jsonable_default(p.default)
            if p.annotation is not p.empty:
                entry["annotation"] = _annotation_name(p.annotation)
            params.append(entry)
        return {
            "name": self.name,
            "signature": f"{self.name}{self.signature}",
            "doc": self.doc,
            "parameters": params,
            "async": self.is_async,
            "stream": self.is_stream,
        }


def _annotation_name(annotation):
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _jsonable_default(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def collect_functions(namespace, names=None):
    """The published functions of *namespace* as ``{name: Function}``, sorted by name.

    With *names*, only those keys of *namespace* are considered (a cell's own definitions).
    """
    keys = namespace.keys() if names is None else [n for n in names if n in namespace]
    found = {}
    for key in keys:
        name = published_name(key)
        if name is None or not callable(namespace[key]):
            continue
        found[name] = Function.from_callable(name, namespace[key])
    return dict(sorted(found.items()))


def published_name(key):
    """The name ``livepandas_<name>`` is published under, or None for a name that isn't published
    (no prefix, nothing after it, or a private ``livepandas__<name>``)."""
    if not key.startswith(PREFIX):
        return None
    name = key[len(PREFIX):]
    return name if name and not name.startswith("_") else None


def defined_names(tree):
    """Names bound at the top level of a module AST (defs, classes, assignments, imports).

    Statements nested in top-level ``if``/``try``/``with``/``for``/``while``/``match`` blocks
    bind module names too (``if HAVE_X: def livepandas_f(): ...``); function and class bodies don't.
    """
    names = []
    for node in _module_scope(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.extend(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.extend((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _module_scope(body):
    """The statements of *body* and of the blocks nested in it, but not inside defs or classes."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        blocks = [getattr(node, attr, []) for attr in ("body", "orelse", "finalbody")]
        blocks += [part.body for part in getattr(node, "handlers", []) + getattr(node, "cases", [])]
        for block in blocks:
            yield from _module_scope(block)


def _compile(source, filename):
    try:
        tree = ast.parse(source, filename=filename)
        return tree, compile(tree, filename, "exec")
    except SyntaxError as exc:
        line = f", line {exc.lineno}" if exc.lineno else ""
        raise CanvasError(
            f"SyntaxError: {exc.msg} ({exc.filename or filename}{line})", filename=filename, lineno=exc.lineno
        ) from None


def describe_exception(exc, filename=None):
    """``"NameError: name 'x' is not defined (code.py, line 11)"``: one line for users."""
    message = f"{type(exc).__name__}: {exc}"
    lineno = _error_line(exc, filename) if filename else None
    if lineno:
        return f"{message} ({filename}, line {lineno})"
    return message


def _error_line(exc, filename):
    """The line number in *filename* where *exc* was raised, or None."""
    tb = exc.__traceback__
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno


class Canvas:
    """Functions plus an optional HTML view and static directory, served together.

    Parameters
    ----------
    functions : dict
        ``{name: callable or Function}``; names are the endpoints (without the prefix).
    html : str, optional
        The view served at ``/``. Without one the server generates a page with a form per function.
    static_dir : str, optional
        A directory served under ``/static/``.
    name : str
        A label for listings and logs.
    source : str, optional
        The Python source the functions came from (kept for uploads).
    """

    def __init__(self, functions=None, *, html=None, static_dir=None, name="default", source=None, filename=None):
        functions = functions or {}
        self.functions = types.MappingProxyType(
            {
                key: value if isinstance(value, Function) else Function.from_callable(key, value)
                for key, value in functions.items()
            }
        )
        self.html = html
        self.static_dir = os.path.abspath(static_dir) if static_dir else None
        self.name = name
        self.source = source
        self.filename = filename

    def __repr__(self):
        return f"<Canvas {self.name!r} functions={list(self.functions)}>"

    @classmethod
    def from_source(cls, source, *, filename="<canvas>", namespace=None, require_functions=True, **kwargs):
        """Run *source* in *namespace* (a fresh module namespace by default) and collect its functions.

        Only the ``livepandas_*`` names the source itself defines at top level are published, so
        leftovers in a shared namespace (a notebook's) don't leak into the canvas.

        Raises
        ------
        CanvasError
            On a syntax error, an exception while running the source, or (with
            *require_functions*) when it defines no ``livepandas_*`` function.
        """
        tree, code = _compile(source, filename)
        if namespace is None:
            namespace = {"__name__": "__livepandas_canvas__", "__file__": filename, "__builtins__": __builtins__}
        try:
            exec(code, namespace)
        except Exception as exc:
            raise CanvasError(
                describe_exception(exc, filename), filename=filename, lineno=_error_line(exc, filename)
            ) from exc
        functions = collect_functions(namespace, defined_names(tree))
        if require_functions and not functions:
            raise CanvasError(
                f"{filename} defines no function named {PREFIX}<name>; only those are published", filename=filename
            )
        kwargs.setdefault("source", source)
        return cls(functions, filename=filename, **kwargs)

    @classmethod
    def from_file(cls, path, *, html_path=None, static_dir=None, **kwargs):
        """Load a canvas from a Python file, an optional HTML file and an optional static directory."""
        source = _read_text(path, "Python file")
        html = _read_text(html_path, "HTML view") if html_path else None
        if static_dir and not os.path.isdir(static_dir):
            raise CanvasError(f"static directory {static_dir} does not exist", filename=static_dir)
        kwargs.setdefault("name", os.path.splitext(os.path.basename(path))[0])
        return cls.from_source(source, filename=path, html=html, static_dir=static_dir, **kwargs)

    def replace(self, **changes):
        """A new canvas with some fields changed (``functions``, ``html``, ``static_dir``, ...)."""
        fields = dict(
            functions=dict(self.functions),
            html=self.html,
            static_dir=self.static_dir,
            name=self.name,
            source=self.source,
            filename=self.filename,
        )
        fields.update(changes)
        return type(self)(fields.pop("functions"), **fields)

    def get(self, name):
        """The :class:`Function` published as *name*; :class:`FunctionNotFound` lists the others."""
        try:
            return self.functions[name]
        except KeyError:
            available = ", ".join(self.functions) or "none"
            raise FunctionNotFound(f"no function {name!r}; available: {available}") from None

    def call(self, name, kwargs=None):
        """Call function *name* in this process and return its result (streams are collected).

        Generators return the list of their chunks; async functions run to completion.
        """
        fn = self.get(name)
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, dict):
            from .errors import BadRequest

            raise BadRequest(f"kwargs must be a JSON object, not {type(kwargs).__name__}")
        fn.check(kwargs)
        result = fn.func(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        elif inspect.isasyncgen(result):
            result = asyncio.run(_collect(result))
        elif inspect.isgenerator(result):
            result = list(result)
        return result


async def _await(awaitable):
    return await awaitable


async def _collect(agen):
    return [chunk async for chunk in agen]


def _read_text(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CanvasError(f"{what} {path} does not exist", filename=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CanvasError(f"cannot read {what} {path}: {exc}", filename=path) from None
