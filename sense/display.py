"""How worker records and launch progress look in a notebook: HTML tables with text fallbacks.

:class:`Records` (a ``list``) and :class:`Record` (a ``dict``) behave exactly like their base
types and add ``_repr_html_``; every value is escaped with :func:`html.escape`. Connection
secrets (the kernel's key) are never shown. :class:`LaunchProgress` is the display
``launch_workers`` shows and updates while workers start, inside a Jupyter kernel only.
"""

import html
import sys
import time

__all__ = ["Record", "Records", "LaunchProgress", "COLUMNS"]

COLUMNS = ("id", "engine", "size", "status", "master_id", "created_at")
_OPTIONAL_COLUMNS = ("error",)
_CELL = 'style="text-align: left; vertical-align: top"'


def _cell(value):
    return "" if value is None else html.escape(str(value))


def _table(records):
    columns = list(COLUMNS) + [c for c in _OPTIONAL_COLUMNS if any(r.get(c) for r in records)]
    head = "".join(f"<th {_CELL}>{html.escape(c)}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td {_CELL}>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in records
    )
    return f'<table class="sense-workers"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


class Record(dict):
    """One worker (or master) record: a ``dict`` that renders as a one-row HTML table."""

    def _repr_html_(self):
        return _table([self])


class Records(list):
    """A list of worker records that renders as an HTML table in a notebook."""

    def _repr_html_(self):
        if not self:
            return "<p><em>No workers.</em></p>"
        return _table(self)


class LaunchProgress:
    """The state of an ongoing ``launch_workers`` call: n slots going starting → running/failed."""

    def __init__(self, n, engine, size):
        self.n = n
        self.engine = engine
        self.size = size
        self.states = ["starting"] * n
        self.errors = [None] * n
        self.started = time.monotonic()
        self.finished = None

    def set(self, index, state, error=None):
        self.states[index] = state
        self.errors[index] = error

    def finish(self):
        self.finished = time.monotonic()

    @property
    def elapsed(self):
        return (self.finished or time.monotonic()) - self.started

    def counts(self):
        counts = {}
        for state in self.states:
            counts[state] = counts.get(state, 0) + 1
        return counts

    def summary(self):
        noun = "worker" if self.n == 1 else "workers"
        verb = "Launched" if self.finished else "Launching"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items(), key=_state_order))
        return f"{verb} {self.n} {self.size} {noun} ({self.engine}): {counts} — {self.elapsed:.1f} s"

    def __repr__(self):
        lines = [self.summary()]
        lines += [f"  {i + 1}: {e}" for i, e in enumerate(self.errors) if e]
        return "\n".join(lines)

    def _repr_html_(self):
        marks = {"starting": "&#8230;", "running": "&#10003;", "failed": "&#10007;"}
        slots = "".join(
            f'<span title="{html.escape(s)}" style="display:inline-block;min-width:1.4em">'
            f"{marks.get(s, html.escape(s))}</span>"
            for s in self.states
        )
        errors = "".join(
            f"<li>worker {i + 1}: <code>{html.escape(e)}</code></li>" for i, e in enumerate(self.errors) if e
        )
        errors = f"<ul>{errors}</ul>" if errors else ""
        return f'<div class="sense-launch"><div>{html.escape(self.summary())}</div><div>{slots}</div>{errors}</div>'


def _state_order(item):
    order = {"running": 0, "starting": 1, "failed": 2}
    return order.get(item[0], 3), item[0]


class ProgressDisplay:
    """Shows a :class:`LaunchProgress` in the current Jupyter kernel and updates it in place.

    Does nothing outside a kernel (a terminal, a script): there is no display to update there.
    """

    def __init__(self, progress):
        self.progress = progress
        self.handle = None
        ipython = sys.modules.get("IPython")  # never import IPython just for this
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is not None and getattr(shell, "kernel", None) is not None:
            from IPython.display import display

            self.handle = display(progress, display_id=True)

    def update(self):
        if self.handle is not None:
            self.handle.update(self.progress)
