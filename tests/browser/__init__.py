"""Browser tests: the examples' views in headless Chromium, driven by Playwright."""
