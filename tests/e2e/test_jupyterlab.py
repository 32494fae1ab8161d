"""The quickstart notebook, end to end, in a real JupyterLab driven by a real Chromium.

JupyterLab runs as a child process on 127.0.0.1 (free port, token, its own config/data/runtime
dirs, no outgoing traffic: see ``jupyterlab_harness.py``). Chromium opens
``notebooks/01-quickstart.ipynb``, runs Run > Run All Cells, and then uses what a reader of the
notebook sees: the inline preview's endpoint table, the ipywidgets form of the ``%%canvas hello``
cell and the view of the ``%%canvas hello --view`` cell, in its iframe. Both call ``add`` live in
the kernel, after Run All has set ``offset = 100``. Finally the kernel and the server are shut
down, and the canvas's port must be released with the kernel.
"""

import os
import re
import sys

import pytest
from jupyterlab_harness import (
    CHROMIUM,
    LabPage,
    code_cell,
    kernel_executable,
    make_expect,
    open_notebook,
    pid_alive,
    port_open,
    run_all_cells,
    wait_until,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium); Playwright must not download one",
    ),
]

NOTEBOOK = "01-quickstart.ipynb"
FUNCTIONS_CELL = "%%canvas hello"
VIEW_CELL = "%%canvas hello --view --height 140"


def check_notebook_in_lab(browser, lab):
    """Run the notebook and use its preview; returns the canvas's port."""
    expect = make_expect()
    ui = LabPage(browser)
    page = ui.page
    try:
        open_notebook(page, lab, NOTEBOOK)
        run_all_cells(page, lab)

        stderr = '[data-mime-type="application/vnd.jupyter.stderr"]'  # tracebacks and warnings too
        errors = page.locator(f".jp-NotebookPanel .jp-OutputArea-output{stderr}")
        assert errors.count() == 0, f"cells wrote errors: {errors.all_inner_texts()}"

        # -- the functions cell: endpoint table (no view yet) and the ipywidgets form ---------
        functions = code_cell(page, FUNCTIONS_CELL)
        preview = functions.locator(".livepandas-preview")
        expect(preview).to_have_count(1)
        row = preview.locator("tbody tr")
        expect(row).to_have_count(1)
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text("add")
        expect(cells.nth(1)).to_have_text("(x: float = 1, y: float = 2)")
        expect(cells.nth(2)).to_have_text("Add two numbers (plus the notebook's offset).")
        http_url = cells.nth(3).inner_text().strip()
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/add", http_url)
        assert match, f"HTTP URL in the table: {http_url!r}"
        port = int(match.group(1))
        assert port != lab.port
        expect(cells.nth(3).locator("a")).to_have_attribute("href", http_url)
        expect(cells.nth(4)).to_have_text(f"ws://127.0.0.1:{port}/add/ws")
        expect(preview.locator("iframe")).to_have_count(0)  # the view comes in the next cell

        # The widget manager (jupyterlab_widgets, prebuilt in the venv) renders the form offline.
        form = functions.locator(".jp-OutputArea-output .widget-vbox").first
        expect(form).to_be_visible()
        expect(functions).not_to_contain_text("Error displaying widget")
        expect(form.locator(".widget-html-content code").first).to_have_text("add(x: float = 1, y: float = 2)")
        x_input = form.locator(".widget-text", has=page.locator("label", has_text=re.compile(r"^x$"))).locator("input")
        y_input = form.locator(".widget-text", has=page.locator("label", has_text=re.compile(r"^y$"))).locator("input")
        expect(x_input).to_have_value("1")
        expect(y_input).to_have_value("2")
        button = form.get_by_role("button", name="Call add", exact=True)
        expect(button).to_be_visible()
        result = form.locator(".widget-html-content pre")
        expect(result).to_have_count(0)
        x_input.fill("40")
        x_input.press("Tab")  # FloatText syncs its value on change
        button.click()
        # Computed in the kernel with the notebook's offset = 100; FloatText gives floats.
        expect(result).to_have_text("142.0")
        y_input.fill("7")
        y_input.press("Tab")
        button.click()
        expect(result).to_have_text("147.0")

        # -- the view cell: the same table and the view in an iframe ----------------------------
        view_cell = code_cell(page, VIEW_CELL)
        view_preview = view_cell.locator(".livepandas-preview")
        expect(view_preview).to_have_count(1)
        expect(view_preview.locator("tbody tr td").nth(3)).to_have_text(http_url)
        expect(view_cell.locator(".jupyter-widgets")).to_have_count(0)  # the form is the functions cell's
        iframe = view_preview.locator("iframe")
        expect(iframe).to_have_count(1)
        expect(iframe).to_have_attribute("src", f"http://127.0.0.1:{port}/")
        expect(iframe).to_be_visible()
        view = view_cell.frame_locator("iframe")
        shown = view.locator("#result")
        # The view called add(1, 2) on load, before or after the `offset = 100` cell ran.
        expect(shown).to_have_text(re.compile(r"^Result: (3|103)$"))
        view.get_by_label("x", exact=True).fill("40")
        expect(shown).to_have_text("Result: 142")
        view.get_by_label("y", exact=True).fill("2.5")
        expect(shown).to_have_text("Result: 142.5")
        view.get_by_label("y", exact=True).fill("2")
        expect(shown).to_have_text("Result: 142")

        # `%livepandas status hello` reports the very port the preview shows.
        status = code_cell(page, "%livepandas status hello").locator(".jp-OutputArea-output table")
        expect(status.locator("tbody td").nth(1)).to_have_text(str(port))

        assert not ui.errors, f"uncaught errors in JupyterLab: {ui.errors}"
        assert not ui.external, f"requests left 127.0.0.1: {ui.external}"
        return port
    finally:
        ui.close()


@pytest.mark.timeout(300)
def test_quickstart_preview_in_jupyterlab(in_browser, lab_server):
    specs = lab_server.api("GET", "api/kernelspecs")
    assert "python3" in specs["kernelspecs"], specs

    canvas_port = in_browser(lambda browser: check_notebook_in_lab(browser, lab_server))

    kernels = lab_server.kernel_pids()
    assert len(kernels) == 1, kernels
    # The venv's kernel spec ("python" in argv) ran with the server's interpreter, the venv's.
    assert kernel_executable(kernels[0]) == sys.executable
    assert port_open(canvas_port)

    lab_server.shutdown_kernels()
    assert lab_server.api("GET", "api/kernels") == []
    assert wait_until(lambda: not pid_alive(kernels[0])), "the kernel outlived its shutdown"
    assert not port_open(canvas_port), f"canvas port {canvas_port} still open after the kernel stopped"

    assert lab_server.stop() == 0, lab_server.log()
