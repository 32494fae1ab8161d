"""Fixtures for the end-to-end tests: a real JupyterLab server and a headless Chromium driving it.

The machinery lives in ``jupyterlab_harness.py`` (next to this file, on ``sys.path`` through
pytest's rootdir-less conftest import) so ``tools/screenshot_preview.py`` uses the very same.

Playwright's sync API refuses to start while another sync Playwright is alive in the same thread
("using Playwright Sync API inside the asyncio loop"), and ``tests/browser/`` keeps a
session-scoped one for the whole run. So ``in_browser(scenario)`` runs *scenario(browser)* in a
thread of its own with its own Playwright and Chromium, and re-raises whatever it raised.
"""

import os
import threading

import pytest
from jupyterlab_harness import CHROMIUM, NOTEBOOKS, LabServer, launch_chromium

SCENARIO_TIMEOUT = 240


@pytest.fixture
def lab_server(tmp_path):
    """A started :class:`LabServer` whose root holds a copy of ``notebooks/01-quickstart.ipynb``;
    stopped at teardown (kernels first), whatever the test did."""
    lab = LabServer(tmp_path / "lab", notebooks=[NOTEBOOKS / "01-quickstart.ipynb"])
    try:
        lab.start()
        yield lab
    finally:
        kernels = lab.kernel_pids() if lab.proc is not None and lab.proc.poll() is None else []
        if kernels:
            try:
                lab.shutdown_kernels()
            except OSError:
                pass  # SIGTERM makes the server stop them too
        lab.stop()
        lab.kill_leftovers(kernels)


@pytest.fixture
def in_browser():
    """``in_browser(scenario)``: run ``scenario(browser)`` in a fresh thread with its own
    Playwright and headless Chromium; return its result or re-raise its exception."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); Playwright must not download one")

    def run(scenario):
        outcome = {}

        def target():
            from playwright.sync_api import sync_playwright

            try:
                with sync_playwright() as playwright:
                    browser = launch_chromium(playwright)
                    try:
                        outcome["result"] = scenario(browser)
                    finally:
                        browser.close()
            except BaseException as exc:  # handed to the test's thread
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="playwright-e2e", daemon=True)
        thread.start()
        thread.join(SCENARIO_TIMEOUT)
        if thread.is_alive():
            pytest.fail(f"the browser scenario did not finish within {SCENARIO_TIMEOUT}s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    return run
