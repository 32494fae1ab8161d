"""The ipywidgets form of each function: inputs chosen from annotations and defaults, a Call button,
the JSON result (or the error) shown below.

Widgets talk to the front end through a comm; here every comm is a recording dummy (conftest's
``RecordingComm``, the pattern of ipywidgets' own ``widgets/tests/utils.py``), so forms are created
outside a kernel without warnings and the test can see what the front end would be sent.
"""

import enum
import html
import json
import re
from typing import Literal

import ipywidgets as w
from extension_helpers import canvas, widget

from livepandas_ipython import jsonutil
from livepandas_ipython.canvas import Canvas
from livepandas_ipython.commands import test as test_command
from livepandas_ipython.widgets import canvas_forms, function_form


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def describe(a: int, b: float, c: bool, d: str, e: Literal["x", "y"], f: Color, g: dict, h: list = None):
    """Everything it was given, with the types it arrived as."""
    return {name: [type(value).__name__, value] for name, value in locals().items()}


def by_default(
    n=3, x=1.5, flag=True, s="hi", choice: Literal["a", "b"] = "b", color=Color.GREEN, data=[1, 2], none=None
):
    return [n, x, flag, s, choice, color if isinstance(color, str) else color.value, data, none]


def boom(message: str = "<no>"):
    raise ValueError(f"it broke: {message}")


def forms_for(*functions):
    """``{name: form}`` for *functions*, calling them the way ``%livepandas test`` does."""
    canvas_ = Canvas({fn.__name__: fn for fn in functions})

    def call(name, kwargs):
        return test_command.run(canvas_, name, jsonutil.dumps(kwargs).decode())

    box = canvas_forms(canvas_, call)
    return dict(zip(canvas_.functions, box.children))


def shown(form):
    """The result area's text (HTML tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", form.result.value))


def test_widget_types_from_annotations():
    form = forms_for(describe)["describe"]
    kinds = {name: type(widget) for name, widget in form.inputs.items()}
    assert kinds == {
        "a": w.IntText,
        "b": w.FloatText,
        "c": w.Checkbox,
        "d": w.Text,
        "e": w.Dropdown,
        "f": w.Dropdown,
        "g": w.Textarea,
        "h": w.Textarea,
    }
    assert form.inputs["e"].options == ("x", "y")
    assert form.inputs["f"].options == (("RED", "red"), ("GREEN", "green"))
    assert form.inputs["f"].label == "RED"
    assert [widget.description for widget in form.inputs.values()] == list("abcdefgh")


def test_widget_types_and_values_from_defaults():
    form = forms_for(by_default)["by_default"]
    values = {name: (type(widget), widget.value) for name, widget in form.inputs.items()}
    assert values == {
        "n": (w.IntText, 3),
        "x": (w.FloatText, 1.5),
        "flag": (w.Checkbox, True),
        "s": (w.Text, "hi"),
        "choice": (w.Dropdown, "b"),
        "color": (w.Dropdown, "green"),
        "data": (w.Textarea, "[1, 2]"),
        "none": (w.Textarea, "null"),
    }


def test_the_form_layout():
    form = forms_for(by_default)["by_default"]
    assert isinstance(form, w.VBox)
    title, *inputs, button, result = form.children
    assert inputs == list(form.inputs.values())
    assert button is form.button and result is form.result
    assert button.description == "Call by_default"
    assert "by_default(n=3" in html.unescape(title.value)
    assert result.value == ""


def test_calling_with_set_values_shows_the_json_result():
    form = forms_for(describe)["describe"]
    inputs = form.inputs
    inputs["a"].value = 7
    inputs["b"].value = 2.5
    inputs["c"].value = True
    inputs["d"].value = "<b>text</b>"
    inputs["e"].value = "y"
    inputs["f"].value = "green"
    inputs["g"].value = '{"k": [1, null]}'
    # "h" left empty: not passed, so its default applies.
    form.click()
    assert json.loads(shown(form)) == {
        "a": ["int", 7],
        "b": ["float", 2.5],
        "c": ["bool", True],
        "d": ["str", "<b>text</b>"],
        "e": ["str", "y"],
        "f": ["str", "green"],
        "g": ["dict", {"k": [1, None]}],
        "h": ["NoneType", None],
    }
    # User data is escaped in the result area.
    assert "<b>" not in form.result.value


def test_the_button_calls_too():
    form = forms_for(by_default)["by_default"]
    form.inputs["n"].value = 9
    form.button.click()
    assert json.loads(shown(form)) == [9, 1.5, True, "hi", "b", "green", [1, 2], None]


def test_the_result_reaches_the_front_end():
    form = forms_for(by_default)["by_default"]
    form.click()
    sent = [m for m in form.result.comm.messages if m.get("method") == "update"]
    assert sent and "value" in sent[-1]["state"]
    assert json.loads(html.unescape(re.sub(r"<[^>]+>", "", sent[-1]["state"]["value"])))[0] == 3


def test_a_raising_function_shows_its_message():
    form = forms_for(boom)["boom"]
    form.click()
    assert shown(form) == "ValueError: it broke: <no>"
    assert "<no>" not in form.result.value
    assert 'style="color: #b00020"' in form.result.value


def test_bad_json_in_a_text_area_shows_the_message_and_calls_nothing():
    calls = []
    canvas_ = Canvas({"take": lambda data=None: calls.append(data) or "called"})
    form = function_form(canvas_.get("take"), lambda name, kwargs: test_command.run(canvas_, name, json.dumps(kwargs)))
    form.inputs["data"].value = "{not json"
    form.click()
    assert shown(form) == "bad JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    assert calls == []
    form.inputs["data"].value = '{"ok": true}'
    form.click()
    assert calls == [{"ok": True}]
    assert json.loads(shown(form)) == "called"


def test_missing_required_json_argument_is_reported():
    form = forms_for(describe)["describe"]
    form.click()
    assert shown(form) == (
        "describe(a: int, b: float, c: bool, d: str, e: Literal['x', 'y'], "
        f"f: {Color.__module__}.Color, g: dict, h: list = None): missing a required argument: 'g'"
    )


def test_forms_in_the_preview_call_the_served_canvas(lp):
    """The form %%canvas displays calls whatever the canvas serves at click time."""
    lp.run_cell("offset = 1").raise_error()
    captured = canvas(lp, "", "def livepandas_add(x: int = 1, y: int = 2):\n    return x + y + offset\n")
    model_id = captured.outputs[1].data["application/vnd.jupyter.widget-view+json"]["model_id"]
    (form,) = widget(model_id).children
    form.inputs["x"].value = 40
    form.click()
    assert shown(form) == "43"

    lp.run_cell("offset = 100").raise_error()
    canvas(lp, "", "def livepandas_add(x: int = 1, y: int = 2):\n    return -(x + y + offset)\n")
    form.click()
    assert shown(form) == "-142"

    lp.run_line_magic("livepandas", "stop")
    form.click()
    assert shown(form) == "no served canvas has a function 'add'; served: none"
