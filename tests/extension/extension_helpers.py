"""Helpers for the extension tests: run magics with captured output, call canvases over HTTP, and a
recording comm for widgets.
"""

import json
import socket
import uuid

import pytest
import ipywidgets
import requests
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from testsupport import assert_port_free  # noqa: F401 (re-exported)

# Generous: a loaded 2-core CI machine must never turn a wait into a failure.
TIMEOUT = 30


def canvas(ip, line, body):
    """Run ``%%canvas line`` with *body*; return the captured output (``.stdout``, ``.outputs``)."""
    with capture_output() as captured:
        ip.run_cell_magic("canvas", line, body)
    return captured


def line_magic(ip, line):
    """Run ``%livepandas line``; return the captured output."""
    with capture_output() as captured:
        ip.run_line_magic("livepandas", line)
    return captured


def usage_error(fn, *args):
    """Call ``fn(*args)`` (output captured), expecting exactly ``UsageError``; return its message."""
    with capture_output(), pytest.raises(UsageError) as info:
        fn(*args)
    assert type(info.value) is UsageError, f"{type(info.value)} is a subclass: IPython would show a traceback"
    return str(info.value)


def server(ip, name="default"):
    """The :class:`FunctionServer` of canvas *name* in shell *ip*."""
    from livepandas_ipython import canvas_server

    return canvas_server(name, ip)


def call(port, function, timeout=TIMEOUT, **kwargs):
    """``GET http://127.0.0.1:<port>/<function>?kwargs=...``; the :class:`requests.Response`."""
    return requests.get(
        f"http://127.0.0.1:{port}/{function}", params={"kwargs": json.dumps(kwargs)}, timeout=timeout
    )


def result(port, function, **kwargs):
    reply = call(port, function, **kwargs)
    assert reply.status_code == 200, reply.text
    return reply.json()["result"]




class RecordingComm:
    """Stands in for the kernel's comm: remembers what would be sent to the front end.

    The pattern of ipywidgets' own ``widgets/tests/utils.py`` (``DummyComm``), with a unique id per
    widget so widgets can be found again, and a record of every comm opened (``opened``).
    """

    kernel = "Truthy"  # Widget._send() only sends when the comm has a kernel
    opened = []

    def __init__(self, **kwargs):
        self.comm_id = kwargs.get("comm_id") or uuid.uuid4().hex
        self.opened_with = kwargs.get("data")
        self.messages = []
        self.closed = False
        self.opened.append(self)

    def on_msg(self, callback):
        pass

    def send(self, data=None, buffers=None, **kwargs):
        self.messages.append(data)

    def close(self, *args, **kwargs):
        self.closed = True


def widget(model_id):
    """The live widget with *model_id* (as a widget-view bundle names it), or None."""
    found = ipywidgets.widget_serialization["from_json"](f"IPY_MODEL_{model_id}", None)
    return found if isinstance(found, ipywidgets.Widget) else None
