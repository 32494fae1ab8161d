"""What the notebook shows: previews and status tables, each with a text and an HTML form.

All user data (names, docstrings, signatures, URLs) is escaped with :func:`html.escape`.
"""

import html
import os

__all__ = ["CanvasPreview", "StatusTable", "canvas_urls"]


def canvas_urls(server, url_pattern=""):
    """``{"base", "view", "ws_base"}`` for *server*, as a browser showing the notebook reaches it.

    With *url_pattern* (``{port}``, ``{host}`` and ``{canvas}`` are filled in) that is the base;
    inside JupyterHub (``JUPYTERHUB_SERVICE_PREFIX``) it is ``<prefix>proxy/<port>/`` through
    jupyter-server-proxy; otherwise the server's own loopback URL. Proxied view URLs carry the
    server's token, which the server then keeps in a cookie scoped to that path.
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "")
    if url_pattern:
        base = url_pattern.format(port=server.port, host=server.host, canvas=server.canvas.name)
    elif prefix:
        base = f"{prefix.rstrip('/')}/proxy/{server.port}/"
    else:
        base = f"http://{server.url_host}:{server.port}/"
    if not base.endswith("/"):
        base += "/"
    proxied = bool(url_pattern or prefix)
    token = server.security.token
    view = base + (f"?token={token}" if token and (proxied or server.security.require_token) else "")
    if base.startswith("http"):
        ws_base = "ws" + base[4:]
    else:
        ws_base = base  # a path: the browser's own scheme and host apply
    return {"base": base, "view": view, "ws_base": ws_base}


# JupyterLab right-aligns table cells and lets code wrap anywhere: endpoints read better left-aligned.
_CELL = 'style="text-align: left; vertical-align: top"'
_NOWRAP = 'style="white-space: nowrap"'


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


class CanvasPreview:
    """The endpoint table of a served canvas, and its view in an iframe when it has one."""

    def __init__(self, name, server, url_pattern="", iframe_height=320):
        self.name = name
        self.server = server
        self.urls = canvas_urls(server, url_pattern)
        self.iframe_height = iframe_height

    def rows(self):
        canvas = self.server.canvas
        for fn in canvas.functions.values():
            yield fn, self.urls["base"] + fn.name, self.urls["ws_base"] + fn.name + "/ws"

    def __repr__(self):
        canvas = self.server.canvas
        lines = [f"Canvas {self.name!r} on {self.urls['view']} ({_count(len(canvas.functions), 'function')})"]
        for fn, http_url, ws_url in self.rows():
            lines.append(f"  {fn.name}{fn.signature}")
            lines.append(f"    GET {http_url}?kwargs={{...}}   WS {ws_url}")
        if canvas.html is not None:
            lines.append(f"  view: {self.urls['view']}")
        return "\n".join(lines)

    def _repr_html_(self):
        e = html.escape
        canvas = self.server.canvas
        rows = []
        for fn, http_url, ws_url in self.rows():
            doc = e(fn.doc.splitlines()[0]) if fn.doc else ""
            rows.append(
                "<tr>"
                f"<td {_CELL}><code>{e(fn.name)}</code></td>"
                f"<td {_CELL}><code {_NOWRAP}>{e(str(fn.signature))}</code></td>"
                f"<td {_CELL}>{doc}</td>"
                f'<td {_CELL}><a href="{e(http_url)}" target="_blank"><code {_NOWRAP}>{e(http_url)}</code></a></td>'
                f"<td {_CELL}><code {_NOWRAP}>{e(ws_url)}</code></td>"
                "</tr>"
            )
        if not rows:
            rows.append('<tr><td colspan="5"><em>no functions yet</em></td></tr>')
        view = e(self.urls["view"])
        parts = [
            '<div class="livepandas-preview">',
            f'<p><strong>Canvas <code>{e(self.name)}</code></strong> on '
            f'<a href="{view}" target="_blank">{view}</a></p>',
            "<table><thead><tr>"
            + "".join(f"<th {_CELL}>{h}</th>" for h in ("function", "signature", "doc", "HTTP", "WebSocket"))
            + "</tr></thead><tbody>",
            *rows,
            "</tbody></table>",
        ]
        if canvas.html is not None:
            parts.append(
                f'<iframe src="{view}" title="{e(self.name)} view" '
                f'style="width: 100%; height: {int(self.iframe_height)}px; border: 1px solid #ddd;"></iframe>'
            )
        parts.append("</div>")
        return "\n".join(parts)


class StatusTable:
    """``%livepandas status`` / ``list``: one row per canvas (port, URL, functions, calls, errors)."""

    def __init__(self, servers, url_pattern="", detail=True):
        self.rows = []
        for name, server in servers.items():
            stats = server.stats.as_dict()
            self.rows.append(
                {
                    "canvas": name,
                    "port": server.port,
                    "url": canvas_urls(server, url_pattern)["view"],
                    "functions": list(server.canvas.functions),
                    "calls": stats["calls"],
                    "errors": stats["errors"],
                    "last_error": stats["last_error"],
                }
            )
        self.detail = detail

    @staticmethod
    def _last_error(row):
        err = row["last_error"]
        return f"{err['function']}: {err['type']}: {err['message']}" if err else ""

    def __repr__(self):
        if not self.rows:
            return "No canvases are served."
        lines = []
        for row in self.rows:
            lines.append(f"{row['canvas']}  port {row['port']}  {row['url']}")
            if self.detail:
                for name in row["functions"]:
                    lines.append(
                        f"  {name}: {row['calls'].get(name, 0)} calls, {row['errors'].get(name, 0)} errors"
                    )
                if row["last_error"]:
                    lines.append(f"  last error: {self._last_error(row)}")
            else:
                lines.append(f"  functions: {', '.join(row['functions']) or 'none'}")
        return "\n".join(lines)

    def _repr_html_(self):
        e = html.escape
        if not self.rows:
            return "<p>No canvases are served.</p>"
        head = "<tr><th>canvas</th><th>port</th><th>URL</th><th>functions</th>"
        head += "<th>calls</th><th>errors</th><th>last error</th></tr>" if self.detail else "</tr>"
        body = []
        for row in self.rows:
            cells = [
                f"<td><code>{e(row['canvas'])}</code></td>",
                f"<td>{row['port']}</td>",
                f'<td><a href="{e(row["url"])}" target="_blank">{e(row["url"])}</a></td>',
                f"<td>{e(', '.join(row['functions']))}</td>",
            ]
            if self.detail:
                calls = ", ".join(f"{k}: {v}" for k, v in row["calls"].items())
                errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items())
                cells += [f"<td>{e(calls)}</td>", f"<td>{e(errors)}</td>", f"<td>{e(self._last_error(row))}</td>"]
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
