"""Write the notebooks in notebooks/ from the cell sources below (outputs stripped).

Run ``python tools/make_notebooks.py`` after editing; the test suite executes the results.
"""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "notebooks")

QUICKSTART = [
    new_markdown_cell(
        "# livepandas quickstart\n\n"
        "Functions named `livepandas_<name>` in a `%%canvas` cell are served at once from this kernel, "
        "over HTTP (`GET /<name>?kwargs=<json>`) and WebSocket (`/<name>/ws`). A `%%canvas --view` cell "
        "is the HTML page that calls them live."
    ),
    new_code_cell("%load_ext livepandas"),
    new_markdown_cell("The functions see the notebook's variables: change `offset` and the next call uses it."),
    new_code_cell("offset = 0"),
    new_code_cell(
        "%%canvas hello\n"
        "def livepandas_add(x: float = 1, y: float = 2):\n"
        '    """Add two numbers (plus the notebook\'s offset)."""\n'
        "    return x + y + offset"
    ),
    new_code_cell(
        "%%canvas hello --view --height 140\n"
        "<!DOCTYPE html>\n"
        "<html><head><meta charset=\"utf-8\"><script src=\"livepandas.js\"></script></head>\n"
        "<body style=\"font-family: sans-serif\">\n"
        "<input name=\"x\" type=\"number\" value=\"1\" aria-label=\"x\"> +\n"
        "<input name=\"y\" type=\"number\" value=\"2\" aria-label=\"y\">\n"
        "<h2 id=\"result\">Result: …</h2>\n"
        "<script>\n"
        "function update() {\n"
        "  var x = parseFloat(document.querySelector('input[name=x]').value) || 0;\n"
        "  var y = parseFloat(document.querySelector('input[name=y]').value) || 0;\n"
        "  livepandas.call('add', {x: x, y: y}).then(function (r) {\n"
        "    document.getElementById('result').textContent = 'Result: ' + r;\n"
        "  });\n"
        "}\n"
        "document.querySelectorAll('input').forEach(function (i) { i.addEventListener('input', update); });\n"
        "update();\n"
        "</script></body></html>"
    ),
    new_markdown_cell("Call it from Python, as any client would:"),
    new_code_cell(
        "import requests\n"
        "from livepandas_ipython import canvas_url\n"
        "\n"
        "url = canvas_url('hello')\n"
        "requests.get(url + 'add', params={'kwargs': '{\"x\": 40, \"y\": 2}'}).json()"
    ),
    new_code_cell("offset = 100\nrequests.get(url + 'add', params={'kwargs': '{\"x\": 40, \"y\": 2}'}).json()"),
    new_code_cell("%livepandas status hello"),
    new_code_cell("%livepandas test add --kwargs '{\"x\": 1, \"y\": 1}'"),
]

LIVE_DATAFRAME = [
    new_markdown_cell(
        "# A live DataFrame\n\n"
        "The view filters and plots `sales` through functions that read it at call time: change the "
        "DataFrame in a later cell and the view's next call sees the change."
    ),
    new_code_cell("%load_ext livepandas"),
    new_code_cell(
        "import numpy as np\n"
        "import pandas as pd\n"
        "\n"
        "rng = np.random.default_rng(7)\n"
        "sales = pd.DataFrame({\n"
        "    'city': rng.choice(['Bogotá', 'Lisbon', 'Nairobi', 'Osaka'], 200),\n"
        "    'units': rng.integers(1, 100, 200),\n"
        "    'price': rng.uniform(1, 50, 200).round(2),\n"
        "})\n"
        "sales['revenue'] = (sales.units * sales.price).round(2)\n"
        "sales.head()"
    ),
    new_code_cell(
        "%%canvas sales\n"
        "def livepandas_filter(city: str = '', min_units: int = 0, limit: int = 10):\n"
        '    """Rows of one city (all when empty) with at least `min_units` units."""\n'
        "    rows = sales[sales.units >= min_units]\n"
        "    if city:\n"
        "        rows = rows[rows.city == city]\n"
        "    return rows.head(limit)\n"
        "\n"
        "def livepandas_revenue(min_units: int = 0):\n"
        '    """Revenue per city."""\n'
        "    return sales[sales.units >= min_units].groupby('city').revenue.sum().round(2)"
    ),
    new_code_cell(
        "%%canvas sales --view\n"
        "<!DOCTYPE html>\n"
        "<html><head><meta charset=\"utf-8\"><script src=\"livepandas.js\"></script>\n"
        "<style>body{font-family:sans-serif} .bar{display:inline-block;height:.8em;background:#4c78a8}"
        " td,th{padding:2px 8px}</style></head>\n"
        "<body>\n"
        "<label>Minimum units <input name=\"min_units\" type=\"range\" min=\"0\" max=\"99\" value=\"0\"></label>\n"
        "<span id=\"min\">0</span>\n"
        "<div id=\"plot\"></div>\n"
        "<table id=\"rows\"></table>\n"
        "<script>\n"
        "var input = document.querySelector('input[name=min_units]');\n"
        "function update() {\n"
        "  var m = parseInt(input.value, 10);\n"
        "  document.getElementById('min').textContent = m;\n"
        "  livepandas.call('revenue', {min_units: m}).then(function (s) {\n"
        "    var max = Math.max.apply(null, s.data.concat([1]));\n"
        "    document.getElementById('plot').innerHTML = s.index.map(function (c, i) {\n"
        "      return '<div>' + c + ' <span class=\"bar\" style=\"width:' + Math.round(300 * s.data[i] / max) +\n"
        "             'px\"></span> ' + s.data[i].toFixed(2) + '</div>';\n"
        "    }).join('');\n"
        "  });\n"
        "  livepandas.call('filter', {min_units: m}).then(function (f) {\n"
        "    var rows = livepandas.rows(f);\n"
        "    document.getElementById('rows').innerHTML = '<tr>' + f.columns.map(function (c) {\n"
        "      return '<th>' + c + '</th>'; }).join('') + '</tr>' + rows.map(function (r) {\n"
        "      return '<tr>' + f.columns.map(function (c) { return '<td>' + r[c] + '</td>'; }).join('') + '</tr>';\n"
        "    }).join('');\n"
        "  });\n"
        "}\n"
        "input.addEventListener('input', update);\n"
        "update();\n"
        "</script></body></html>"
    ),
    new_code_cell(
        "import requests\n"
        "from livepandas_ipython import canvas_url\n"
        "\n"
        "url = canvas_url('sales')\n"
        "frame = requests.get(url + 'filter', params={'kwargs': '{\"city\": \"Osaka\", \"limit\": 3}'}).json()['result']\n"
        "frame['columns'], len(frame['index'])"
    ),
    new_markdown_cell("Change the data: the next call from the view (or anyone) sees it."),
    new_code_cell(
        "sales = sales[sales.city != 'Osaka']\n"
        "requests.get(url + 'revenue').json()['result']['index']"
    ),
]

STREAMING = [
    new_markdown_cell(
        "# Streaming progress\n\n"
        "A generator function streams: over WebSocket each `yield` arrives as `{\"partial\": chunk}`, then "
        "`{\"result\": <return value>, \"done\": true}`; over HTTP as NDJSON lines."
    ),
    new_code_cell("%load_ext livepandas"),
    new_code_cell(
        "%%canvas progress\n"
        "import time\n"
        "\n"
        "def livepandas_work(steps: int = 5, delay: float = 0.05):\n"
        '    """Report progress step by step."""\n'
        "    for i in range(1, steps + 1):\n"
        "        time.sleep(delay)\n"
        "        yield {'step': i, 'percent': round(100 * i / steps)}\n"
        "    return f'finished {steps} steps'"
    ),
    new_code_cell(
        "%%canvas progress --view\n"
        "<!DOCTYPE html>\n"
        "<html><head><meta charset=\"utf-8\"><script src=\"livepandas.js\"></script></head>\n"
        "<body style=\"font-family: sans-serif\">\n"
        "<button id=\"go\">Run</button> <progress id=\"bar\" max=\"100\" value=\"0\"></progress>\n"
        "<p id=\"status\">Idle</p>\n"
        "<script>\n"
        "var socket = livepandas.socket('work');\n"
        "document.getElementById('go').addEventListener('click', function () {\n"
        "  document.getElementById('status').textContent = 'Running…';\n"
        "  socket.call({steps: 10}, function (chunk) {\n"
        "    document.getElementById('bar').value = chunk.percent;\n"
        "  }).then(function (result) { document.getElementById('status').textContent = result; });\n"
        "});\n"
        "</script></body></html>"
    ),
    new_code_cell(
        "import json\n"
        "import requests\n"
        "from livepandas_ipython import canvas_url\n"
        "\n"
        "url = canvas_url('progress')\n"
        "with requests.get(url + 'work', params={'kwargs': json.dumps({'steps': 4})}, stream=True) as reply:\n"
        "    messages = [json.loads(line) for line in reply.iter_lines() if line]\n"
        "messages"
    ),
]


def write(name, cells):
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating changes only what was edited
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = os.path.join(OUT, name)
    nbformat.validate(nb)
    with open(path, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    print("wrote", path)


if __name__ == "__main__":
    write("01-quickstart.ipynb", QUICKSTART)
    write("02-live-dataframe.ipynb", LIVE_DATAFRAME)
    write("03-streaming.ipynb", STREAMING)
