"""Screenshot of the inline preview in JupyterLab → ``docs/images/inline-preview.png``.

Usage (from the repository root, with the venv that has the ``test`` extra)::

    .venv/bin/python tools/screenshot_preview.py [--out docs/images/inline-preview.png]

It does what ``tests/e2e/test_jupyterlab.py`` does, with the same harness
(``tests/e2e/jupyterlab_harness.py``): a sealed-off JupyterLab on a free port of 127.0.0.1 and a
temporary directory, ``notebooks/01-quickstart.ipynb`` opened in headless ``/usr/bin/chromium``
and run with Run > Run All Cells. Then it calls ``add`` from the ipywidgets form (x = 40) and
types x = 40, y = 2 into the view (``Result: 142``, the notebook's ``offset`` being 100 by then),
and captures the ``%%canvas hello`` cell (endpoint table and form) and the
``%%canvas hello --view`` cell (the view in its iframe). Nothing is downloaded; everything is
stopped before it exits.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests")]

from jupyterlab_harness import (  # noqa: E402
    CHROMIUM,
    NOTEBOOKS,
    LabPage,
    LabServer,
    code_cell,
    launch_chromium,
    make_expect,
    open_notebook,
    run_all_cells,
)

DEFAULT_OUT = ROOT / "docs" / "images" / "inline-preview.png"
VIEWPORT = {"width": 1100, "height": 1500}
MARGIN = 8  # horizontal; vertically the cells' own padding is enough (neighbours start right after)


def capture(browser, lab, out):
    expect = make_expect()
    ui = LabPage(browser, viewport=VIEWPORT)
    page = ui.page
    try:
        open_notebook(page, lab, "01-quickstart.ipynb")
        page.keyboard.press("Control+b")  # hide the file browser: a wider notebook
        run_all_cells(page, lab)

        functions = code_cell(page, "%%canvas hello")
        form = functions.locator(".jp-OutputArea-output .widget-vbox").first
        x_input = form.locator(".widget-text", has=page.get_by_text("x", exact=True)).locator("input")
        x_input.fill("40")
        x_input.press("Tab")
        form.get_by_role("button", name="Call add").click()
        expect(form.locator(".widget-html-content pre")).to_have_text("142.0")

        view_cell = code_cell(page, "%%canvas hello --view --height 140")
        view = view_cell.frame_locator("iframe")
        view.get_by_label("x", exact=True).fill("40")
        view.get_by_label("y", exact=True).fill("2")
        expect(view.locator("#result")).to_have_text("Result: 142")

        # Select a cell outside the picture (no blue selection bar, the view's input loses its
        # focus ring), move the mouse away (no hover toolbar), and scroll so the picture starts
        # a little above the functions cell.
        page.locator(".jp-NotebookPanel .jp-MarkdownCell", has_text="Call it from Python").click()
        page.mouse.move(0, 0)
        code_cell(page, "offset = 0").evaluate("el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)  # let content-visibility paint what scrolled in
        top, bottom = functions.bounding_box(), view_cell.bounding_box()
        if bottom["y"] + bottom["height"] > VIEWPORT["height"]:
            raise SystemExit("the two cells do not fit in the viewport; make VIEWPORT taller")
        x = min(top["x"], bottom["x"]) - MARGIN
        right = max(top["x"] + top["width"], bottom["x"] + bottom["width"]) + MARGIN
        clip = {
            "x": max(x, 0),
            "y": top["y"],
            "width": right - max(x, 0),
            "height": bottom["y"] + bottom["height"] - top["y"],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), clip=clip)
        if ui.external:
            raise SystemExit(f"requests left 127.0.0.1: {ui.external}")
    finally:
        ui.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="livepandas-screenshot-") as tmp:
        lab = LabServer(tmp, notebooks=[NOTEBOOKS / "01-quickstart.ipynb"])
        kernels = []
        try:
            lab.start()
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    capture(browser, lab, args.out)
                finally:
                    browser.close()
            kernels = lab.kernel_pids()
            lab.shutdown_kernels()
        finally:
            lab.stop()
            lab.kill_leftovers(kernels)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
