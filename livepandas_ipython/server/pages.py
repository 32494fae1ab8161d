"""The page served at ``/`` for a canvas without an HTML view: a form per function.

Every parameter is a text field holding a JSON value (prefilled with the default); the form calls
the function through ``livepandas.js`` (streaming functions show each chunk as it arrives).
"""

import html
import json

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; }}
form {{ border: 1px solid #ccc; border-radius: 6px; padding: 1em; margin: 1em 0; }}
label {{ display: block; margin: .3em 0; }}
label span {{ display: inline-block; min-width: 8em; font-family: monospace; }}
pre {{ background: #f6f6f6; padding: .5em; white-space: pre-wrap; }}
.error {{ color: #b00020; }}
code {{ font-size: 1.05em; }}
</style>
<script src="livepandas.js"></script>
</head>
<body>
<h1>{title}</h1>
<p>Parameters take JSON values: <code>1</code>, <code>"text"</code>, <code>[1, 2]</code>.</p>
{forms}
<script>
document.querySelectorAll("form[data-function]").forEach(function (form) {{
  form.addEventListener("submit", function (event) {{
    event.preventDefault();
    var out = form.querySelector("pre");
    var kwargs = {{}};
    try {{
      form.querySelectorAll("input[name]").forEach(function (input) {{
        if (input.value.trim() !== "") kwargs[input.name] = JSON.parse(input.value);
      }});
    }} catch (err) {{
      out.className = "error"; out.textContent = "Bad JSON: " + err.message; return;
    }}
    out.className = ""; out.textContent = "…";
    var name = form.dataset.function;
    var done = function (result) {{ out.textContent = JSON.stringify(result, null, 2); }};
    var fail = function (err) {{ out.className = "error"; out.textContent = err.type + ": " + err.message; }};
    if (form.dataset.stream === "true") {{
      out.textContent = "";
      livepandas.stream(name, kwargs, function (chunk) {{
        out.textContent += JSON.stringify(chunk) + "\\n";
      }}).then(function (result) {{ if (result !== null) out.textContent += "→ " + JSON.stringify(result); }}, fail);
    }} else {{
      livepandas.call(name, kwargs).then(done, fail);
    }}
  }});
}});
</script>
</body>
</html>
"""

_FORM = """<form data-function="{name}" data-stream="{stream}">
<h2><code>{signature}</code></h2>
{doc}{fields}
<button type="submit">Call {name}</button>
<pre></pre>
</form>"""


def generated_index(canvas):
    """The HTML of the generated page for *canvas*."""
    forms = []
    for fn in canvas.functions.values():
        fields = []
        for param in fn.describe()["parameters"]:
            if param["kind"] in ("var_positional", "var_keyword"):
                continue
            value = json.dumps(param["default"]) if "default" in param else ""
            fields.append(
                '<label><span>{0}</span> <input name="{0}" value="{1}"></label>'.format(
                    html.escape(param["name"]), html.escape(value)
                )
            )
        forms.append(
            _FORM.format(
                name=html.escape(fn.name),
                stream="true" if fn.is_stream else "false",
                signature=html.escape(f"{fn.name}{fn.signature}"),
                doc=f"<p>{html.escape(fn.doc)}</p>\n" if fn.doc else "",
                fields="\n".join(fields),
            )
        )
    if not forms:
        forms.append("<p>This canvas publishes no functions yet.</p>")
    return _PAGE.format(title=html.escape(f"livepandas: {canvas.name}"), forms="\n".join(forms))
