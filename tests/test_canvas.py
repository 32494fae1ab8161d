"""Canvases: loading Python source, which names are published, calling in-process."""

import textwrap

import pytest

from livepandas_ipython.canvas import Canvas
from livepandas_ipython.errors import BadArguments, BadRequest, CanvasError, FunctionNotFound


def load(source, **kwargs):
    return Canvas.from_source(textwrap.dedent(source), **kwargs)


# -- loading -------------------------------------------------------------------------------------


def test_from_source_publishes_livepandas_functions():
    canvas = load(
        """
        import math

        def helper():
            return 1

        def livepandas_b(x):
            return x

        async def livepandas_a():
            return helper()
        """,
        name="demo",
    )
    assert list(canvas.functions) == ["a", "b"]  # sorted
    assert canvas.name == "demo"
    assert canvas.filename == "<canvas>"
    assert "def livepandas_b(x):" in canvas.source
    assert repr(canvas) == "<Canvas 'demo' functions=['a', 'b']>"
    assert canvas.functions["a"].is_async and not canvas.functions["b"].is_async


def test_syntax_error_names_the_line():
    with pytest.raises(CanvasError) as info:
        load(
            """\
            def livepandas_ok():
                return 1

            def livepandas_bad(:
                pass
            """,
            filename="cell.py",
        )
    assert info.value.lineno == 4
    assert info.value.filename == "cell.py"
    assert str(info.value) == "SyntaxError: invalid syntax (cell.py, line 4)"
    assert isinstance(info.value, ValueError)


def test_exception_at_load_names_the_line():
    with pytest.raises(CanvasError) as info:
        load(
            """\
            def livepandas_ok():
                return 1

            RATE = 1 / 0
            """
        )
    assert str(info.value) == "ZeroDivisionError: division by zero (<canvas>, line 4)"
    assert info.value.lineno == 4
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_exception_inside_a_helper_called_at_load_names_the_helpers_line():
    with pytest.raises(CanvasError) as info:
        load(
            """\
            def setup():
                return undefined_name

            DATA = setup()
            """
        )
    assert str(info.value) == "NameError: name 'undefined_name' is not defined (<canvas>, line 2)"
    assert info.value.lineno == 2


def test_no_functions_is_an_error():
    with pytest.raises(CanvasError) as info:
        load(
            """
            def add(x, y):
                return x + y
            livepandas__hidden = lambda: 1
            livepandas_value = 3
            """,
            filename="code.py",
        )
    assert str(info.value) == "code.py defines no function named livepandas_<name>; only those are published"


def test_no_functions_allowed_when_not_required():
    canvas = load("x = 1", require_functions=False)
    assert dict(canvas.functions) == {}


def test_shared_namespace_publishes_only_what_the_source_defines():
    namespace = {"__name__": "__main__", "livepandas_old": lambda: "old", "livepandas_kept": lambda: "stale"}
    canvas = load(
        """
        def livepandas_new():
            return livepandas_old()

        livepandas_kept = lambda: "redefined"
        livepandas_alias = livepandas_new
        """,
        namespace=namespace,
    )
    assert list(canvas.functions) == ["alias", "kept", "new"]
    assert canvas.call("new") == "old"  # the source still sees the namespace
    assert canvas.call("kept") == "redefined"
    assert namespace["livepandas_new"] is canvas.functions["new"].func  # it ran in that namespace


def test_imported_names_count_as_defined():
    canvas = load("from posixpath import join as livepandas_join\n")
    assert list(canvas.functions) == ["join"]
    assert canvas.call("join", {"a": "x"}) == "x"


@pytest.mark.parametrize(
    "block",
    [
        "if True:\n    def livepandas_f():\n        return 1\n",
        "try:\n    def livepandas_f():\n        return 1\nexcept Exception:\n    pass\n",
        "import contextlib\nwith contextlib.nullcontext():\n    def livepandas_f():\n        return 1\n",
    ],
    ids=["if", "try", "with"],
)
def test_functions_defined_in_top_level_blocks_are_published(block):
    assert list(load(block).functions) == ["f"]


def test_names_bound_inside_defs_and_classes_are_not_module_names():
    namespace = {"livepandas_inner": lambda: "stale", "livepandas_method": lambda: "stale"}
    source = """
    def livepandas_outer():
        def livepandas_inner():
            return 1
        return livepandas_inner()

    class Holder:
        def livepandas_method(self):
            return 2
    """
    assert list(load(source, namespace=namespace).functions) == ["outer"]


def test_non_callables_and_private_names_are_not_published():
    canvas = load(
        """
        livepandas_value = 3
        livepandas_ = lambda: "empty name"
        def livepandas__private():
            return 1
        def livepandas_public():
            return 2
        """
    )
    assert list(canvas.functions) == ["public"]


def test_from_file(tmp_path):
    code = tmp_path / "sales.py"
    code.write_text("def livepandas_total(x=1):\n    return x * 2\n")
    view = tmp_path / "view.html"
    view.write_text("<p>sales</p>")
    static = tmp_path / "static"
    static.mkdir()
    canvas = Canvas.from_file(str(code), html_path=str(view), static_dir=str(static))
    assert canvas.name == "sales"
    assert canvas.filename == str(code)
    assert canvas.html == "<p>sales</p>"
    assert canvas.static_dir == str(static)
    assert canvas.call("total", {"x": 4}) == 8


def test_from_file_errors_name_the_file(tmp_path):
    with pytest.raises(CanvasError, match=r"^Python file .*missing\.py does not exist$"):
        Canvas.from_file(str(tmp_path / "missing.py"))
    code = tmp_path / "code.py"
    code.write_text("def livepandas_f():\n    return 1\n\nx = {}['nope']\n")
    with pytest.raises(CanvasError) as info:
        Canvas.from_file(str(code))
    assert str(info.value) == f"KeyError: 'nope' ({code}, line 4)"
    code.write_text("def livepandas_f():\n    return 1\n")
    with pytest.raises(CanvasError, match=r"^HTML view .*nope\.html does not exist$"):
        Canvas.from_file(str(code), html_path=str(tmp_path / "nope.html"))
    with pytest.raises(CanvasError, match=r"^static directory .*nodir does not exist$"):
        Canvas.from_file(str(code), static_dir=str(tmp_path / "nodir"))


def test_replace_makes_a_new_canvas():
    canvas = Canvas({"f": lambda: 1}, html="<p>a</p>", name="x")
    other = canvas.replace(html="<p>b</p>")
    assert (other.html, other.name, list(other.functions)) == ("<p>b</p>", "x", ["f"])
    assert canvas.html == "<p>a</p>"
    with pytest.raises(TypeError):
        canvas.functions["g"] = lambda: 2  # read-only mapping


# -- calling -------------------------------------------------------------------------------------


CALLS = """
import asyncio

def livepandas_add(x, y=2):
    return x + y

async def livepandas_aadd(x, y=2):
    await asyncio.sleep(0)
    return x + y

def livepandas_count(n):
    yield from range(n)
    return "ignored"

async def livepandas_acount(n):
    for i in range(n):
        yield i

def livepandas_fail():
    raise LookupError("missing thing")
"""


@pytest.fixture
def calls():
    return load(CALLS)


def test_call_plain(calls):
    assert calls.call("add", {"x": 1}) == 3
    assert calls.call("add", {"x": 1, "y": 5}) == 6


def test_call_async(calls):
    assert calls.call("aadd", {"x": 1}) == 3


def test_call_generators_collect_their_chunks(calls):
    assert calls.call("count", {"n": 3}) == [0, 1, 2]
    assert calls.call("acount", {"n": 2}) == [0, 1]


def test_call_errors(calls):
    with pytest.raises(FunctionNotFound) as info:
        calls.call("nope")
    assert str(info.value) == "no function 'nope'; available: aadd, acount, add, count, fail"
    assert isinstance(info.value, LookupError) and info.value.status == 404
    with pytest.raises(BadArguments) as info:
        calls.call("add", {"y": 1})
    assert str(info.value) == "add(x, y=2): missing a required argument: 'x'"
    assert isinstance(info.value, TypeError) and info.value.status == 400
    with pytest.raises(BadRequest, match="^kwargs must be a JSON object, not list$"):
        calls.call("add", [1])
    with pytest.raises(LookupError, match="^missing thing$") as info:
        calls.call("fail")
    assert type(info.value) is LookupError  # the function's own exception, unwrapped


def test_function_descriptions(calls):
    fn = calls.functions["add"]
    assert (fn.name, fn.is_async, fn.is_stream) == ("add", False, False)
    assert calls.functions["acount"].is_stream and not calls.functions["acount"].is_async
    assert calls.functions["count"].describe()["signature"] == "count(n)"
