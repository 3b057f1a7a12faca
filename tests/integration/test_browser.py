# SPDX-License-Identifier: AGPL-3.0-or-later
"""The plugin's settings page in a real browser: Debian's Chromium, driven by
Playwright for Python (no browser download: executable_path)."""

import os

import octoprint_tsd._tsd as native
from tsd_testing import ADMIN, browser_login, output_dir

def test_settings_page_in_chromium(octoprint_server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        browser_login(page, octoprint_server.url, *ADMIN)
        page.click("#navbar_show_settings")
        page.click("#settings_plugin_tsd_link a")
        page.wait_for_selector("#tsd_settings", state="visible", timeout=30000)
        native_cell = page.locator("#tsd_status_native")
        native_cell.wait_for(state="visible")
        page.wait_for_function(
            "document.querySelector('#tsd_status_native').textContent.length > 0",
            timeout=30000,
        )
        assert native_cell.text_content().strip() == "_tsd {}".format(native.__version__)
        assert page.locator("#tsd_server_url").input_value().startswith("https://")
        assert page.locator("#tsd_action").input_value() in (
            "notify", "pause", "pause_heaters_off", "cancel",
        )
        # No error banner (the native module's, a refused farm file's) when all is well.
        assert page.locator("#tsd_settings .alert-error:visible").count() == 0
        # Let the settings dialog finish fading in before the picture.
        page.wait_for_selector("#settings_dialog.in", timeout=10000)
        page.wait_for_timeout(600)
        path = os.path.join(output_dir("screenshots"), "tsd-settings.png")
        page.screenshot(path=path)
        assert os.path.getsize(path) > 10000
        assert not [e for e in errors if "tsd" in e.lower()], errors
    finally:
        page.close()
