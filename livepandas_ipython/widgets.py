"""An ipywidgets form per published function: one input per parameter, a Call button, the result.

Widgets are chosen from annotations, then defaults: ``int`` → IntText, ``float`` → FloatText,
``bool`` → Checkbox, ``str`` → Text, ``Literal[...]``/``Enum`` → Dropdown, anything else → a JSON
text area. Calls go through the same path as ``%livepandas test`` (in this kernel, against the
canvas being served at the time of the click).
"""

import enum
import html
import inspect
import json
import typing

__all__ = ["function_form", "canvas_forms"]


def _widget_for(param):
    import ipywidgets as w

    ann, default = param.annotation, param.default
    has_default = default is not inspect.Parameter.empty
    if ann is inspect.Parameter.empty and isinstance(default, enum.Enum):
        ann = type(default)  # an Enum default picks from its Enum, like an Enum annotation
    desc = param.name
    style = {"description_width": "initial"}
    if typing.get_origin(ann) is typing.Literal:
        options = list(typing.get_args(ann))
        return w.Dropdown(options=options, value=default if has_default else options[0], description=desc), None
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        options = [(m.name, m.value) for m in ann]
        value = default.value if isinstance(default, ann) else options[0][1]
        return w.Dropdown(options=options, value=value, description=desc), None
    if isinstance(ann, type) and ann is not inspect.Parameter.empty:
        kind = ann
    else:
        kind = type(default) if has_default and default is not None else None
    if kind is bool:
        return w.Checkbox(value=bool(default) if has_default else False, description=desc, indent=False), None
    if kind is int:
        return w.IntText(value=default if has_default else 0, description=desc, style=style), None
    if kind is float:
        return w.FloatText(value=default if has_default else 0.0, description=desc, style=style), None
    if kind is str:
        return w.Text(value=default if has_default else "", description=desc, style=style), None
    text = json.dumps(default) if has_default and _json_ok(default) else ""
    widget = w.Textarea(value=text, description=desc, placeholder="JSON value", style=style)
    return widget, json.loads


def _json_ok(value):
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def function_form(fn, call):
    """A VBox for function *fn*; *call(name, kwargs)* returns the JSON text of the result.

    The form has attributes ``inputs`` (name → widget), ``button`` and ``result`` (an HTML widget)
    so tests and users can drive it.
    """
    import ipywidgets as w

    inputs, decoders = {}, {}
    for param in fn.signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        inputs[param.name], decoders[param.name] = _widget_for(param)
    button = w.Button(description=f"Call {fn.name}", button_style="primary")
    result = w.HTML(value="")
    title = w.HTML(value=f"<code>{html.escape(fn.name + str(fn.signature))}</code>")

    def on_click(_=None):
        kwargs = {}
        try:
            for name, widget in inputs.items():
                decode = decoders[name]
                if decode is None:
                    kwargs[name] = widget.value
                elif widget.value.strip():
                    kwargs[name] = decode(widget.value)
        except ValueError as exc:
            result.value = f'<pre style="color: #b00020">bad JSON: {html.escape(str(exc))}</pre>'
            return
        try:
            text = call(fn.name, kwargs)
        except Exception as exc:  # shown to the user; nothing to re-raise into
            result.value = f'<pre style="color: #b00020">{html.escape(str(exc))}</pre>'
            return
        result.value = f"<pre>{html.escape(text)}</pre>"

    button.on_click(on_click)
    box = w.VBox([title, *inputs.values(), button, result])
    box.inputs, box.button, box.result, box.click = inputs, button, result, on_click
    return box


def canvas_forms(canvas, call):
    """A VBox holding :func:`function_form` for each function of *canvas*."""
    import ipywidgets as w

    return w.VBox([function_form(fn, call) for fn in canvas.functions.values()])
