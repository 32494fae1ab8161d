"""In a real Jupyter kernel: launching shows progress that updates in place, lists render as HTML."""

import os

import pytest

from sense.display import LaunchProgress, Record, Records


@pytest.fixture
def kernel():
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()


def execute(kc, code, timeout=60):
    """Run *code*; return the iopub messages it produced (raises on an error reply)."""
    messages = []
    reply = kc.execute_interactive(code, output_hook=messages.append, timeout=timeout)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert reply["content"]["status"] == "ok", errors
    return messages


def test_launching_shows_progress_and_returns_an_html_table(kernel):
    messages = execute(
        kernel,
        "import sense\nworkers = sense.launch_workers(2, startup_code='x = 1')\nworkers",
    )
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert len(shown) == 1
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert shown[0]["content"]["data"]["text/plain"].startswith("Launching 2 small workers (sense-ipython-engine)")
    updates = [m["content"] for m in messages if m["msg_type"] == "update_display_data"]
    assert updates and all(u["transient"]["display_id"] == display_id for u in updates)
    final = updates[-1]["data"]
    assert final["text/plain"].startswith("Launched 2 small workers (sense-ipython-engine): running 2")
    assert "sense-launch" in final["text/html"]
    (result,) = [m["content"]["data"] for m in messages if m["msg_type"] == "execute_result"]
    assert '<table class="sense-workers">' in result["text/html"]
    assert result["text/html"].count("<td") == 2 * 6  # two rows of the six columns; no error column

    stopped = execute(kernel, "print(len(sense.stop_workers()), len(sense.get_workers()))")
    assert [m["content"]["text"] for m in stopped if m["msg_type"] == "stream"] == ["2 0\n"]


def test_tables_and_progress_escape_what_they_show():
    record = Record(id=1, engine="<b>e</b>", size="small", status="failed", master_id=None,
                    created_at="2024-01-01T00:00:00+00:00", error="x < y & 'z'",
                    connection={"key": "SECRET-KEY"})
    html = Records([record])._repr_html_()
    assert "&lt;b&gt;e&lt;/b&gt;" in html and "<b>e</b>" not in html
    assert "x &lt; y &amp; &#x27;z&#x27;" in html
    assert "SECRET-KEY" not in html
    assert record._repr_html_() == html
    assert repr(Records([record])) == repr([dict(record)])  # the text form is the plain list

    progress = LaunchProgress(2, "<engine>", "small")
    progress.set(0, "running")
    progress.set(1, "failed", "boom <now>")
    assert "running 1, failed 1" in repr(progress) and "2: boom <now>" in repr(progress)
    assert "boom &lt;now&gt;" in progress._repr_html_() and "<engine>" not in progress._repr_html_()
